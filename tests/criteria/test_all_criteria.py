"""Every registered criterion runs from a recipe through kprune.wrap + Pruner.prune_now()."""

import keras
import numpy as np
import pytest

import kprune
from kprune import criteria


def cnn():
    inp = keras.Input((6, 6, 4))
    x = keras.layers.Conv2D(8, 3, name="conv1")(inp)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.ReLU(name="relu1")(x)
    x = keras.layers.Conv2D(8, 3, name="conv2", activation="relu")(x)
    x = keras.layers.Flatten(name="flat")(x)
    return keras.Model(inp, keras.layers.Dense(3, name="fc")(x))


X = np.random.default_rng(0).normal(size=(16, 6, 6, 4)).astype("float32")
Y = np.random.default_rng(1).integers(0, 3, 16)


@pytest.mark.parametrize("name", criteria.names())
def test_every_criterion_from_a_recipe(name):
    crit = criteria.get(name)
    gran = "filter" if "filter" in crit.granularities else "weight"
    entry = {"op_names": ["conv1"] if name == "slim" else ["conv1", "conv2"], "sparsity": 0.5}
    w = kprune.wrap(cnn(), {"prune": {"criterion": name, "granularity": gran, "statistics_batches": 2,
                                      "config_list": [entry]}})
    kprune.Pruner(w, data=(X, Y)).prune_now()
    sp = kprune.sparsity(w)
    if gran == "filter":
        masks = w.get_layer("conv1").masks["kernel"].numpy()
        assert masks[0, 0, 0].sum() == 4           # 4 of 8 filters kept
        assert sp["conv1"] == pytest.approx(0.5)
    elif crit.scope == "global":
        assert (sp["conv1"] * 288 + sp["conv2"] * 576) / 864 == pytest.approx(0.5, abs=1e-3)
    else:
        assert sp["conv1"] == pytest.approx(0.5, abs=1e-3) and sp["conv2"] == pytest.approx(0.5, abs=1e-3)
    np.testing.assert_array_equal(w.get_layer("conv1").layer.kernel.numpy() == 0,
                                  w.get_layer("conv1").masks["kernel"].numpy() == 0)


def test_docs_list_every_criterion():
    text = open("docs/criteria.md", encoding="utf-8").read()
    missing = [n for n in criteria.names() if f"| `{n}` |" not in text]
    assert not missing, f"docs/criteria.md does not document: {missing}"
