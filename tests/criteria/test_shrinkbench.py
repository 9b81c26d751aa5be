import keras
import numpy as np
import pytest

import kprune
from kprune import criteria


def mlp():
    inp = keras.Input((6,))
    h = keras.layers.Dense(8, activation="relu", name="d1")(inp)
    out = keras.layers.Dense(3, name="d2")(h)
    m = keras.Model(inp, out)
    m.get_layer("d2").set_weights([m.get_layer("d2").kernel.numpy() * 10, np.zeros(3, "float32")])
    return m


def recipe(name, **prune):
    return {"prune": {"criterion": name, "config_list": [{"op_types": ["Dense"], "sparsity": 0.5}], **prune}}


def test_scores():
    w = np.array([[1.0, -2.0], [0.5, 3.0]])
    g = kprune.pruning.statistics.GradientStats.from_batches(w, [np.array([[2.0, 1.0], [-4.0, 0.0]])])
    for name in ("global_magnitude", "layerwise_magnitude"):
        np.testing.assert_array_equal(criteria.get(name)(w), np.abs(w))
    for name in ("global_gradient_magnitude", "layerwise_gradient_magnitude"):
        np.testing.assert_array_equal(criteria.get(name)(w, gradients=g), [[2.0, 2.0], [2.0, 0.0]])


def test_global_ranks_across_layers_layerwise_inside_each():
    w = kprune.wrap(mlp(), recipe("global_magnitude"))
    before = {n: np.abs(w.get_layer(n).layer.kernel.numpy()) for n in ("d1", "d2")}
    kprune.Pruner(w).prune_now()
    sp = kprune.sparsity(w)
    # half of all 72 weights together; d2 was scaled x10 so d1 loses more
    assert sp["total"] == pytest.approx(36 / 72)
    assert sp["d1"] > 0.5 > sp["d2"]
    threshold = np.sort(np.concatenate([b.ravel() for b in before.values()]))[35]
    for n, b in before.items():
        k = w.get_layer(n).layer.kernel.numpy()
        assert np.all(b[k == 0] <= threshold) and np.all(b[k != 0] >= threshold)
    lw = kprune.wrap(mlp(), recipe("layerwise_magnitude"))
    kprune.Pruner(lw).prune_now()
    assert kprune.sparsity(lw)["d1"] == 0.5 and kprune.sparsity(lw)["d2"] == 0.5


def test_gradient_magnitude_global():
    x = np.random.default_rng(0).normal(size=(16, 6)).astype("float32")
    y = np.random.default_rng(1).integers(0, 3, 16)
    w = kprune.wrap(mlp(), recipe("global_gradient_magnitude", statistics_batches=1))
    kprune.Pruner(w, data=(x, y)).prune_now()
    assert kprune.sparsity(w)["total"] == pytest.approx(0.5)


def test_contradicting_scope_is_an_error():
    with pytest.raises(kprune.RecipeError, match="global by definition"):
        kprune.Recipe.from_dict(recipe("global_magnitude", scope="layerwise"))
    with pytest.raises(kprune.RecipeError, match="layerwise by definition"):
        kprune.Recipe.from_dict(recipe("layerwise_gradient_magnitude", scope="global"))
    kprune.Recipe.from_dict(recipe("global_magnitude", scope="global"))
