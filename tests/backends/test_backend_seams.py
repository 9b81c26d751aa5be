"""The backend seams, checked in the main (TensorFlow) suite: what is a no-op on TensorFlow and
the errors other backends get."""

import keras
import numpy as np
import pytest

import kprune
from kprune.pruning import fast_update, statistics
from kprune.pruning.pruner import Pruner
from kprune.wrappers import stateless


def small():
    x = keras.Input((6, 6, 3))
    h = keras.layers.Conv2D(4, 3, activation="relu", name="c1")(x)
    h = keras.layers.GlobalAveragePooling2D()(h)
    return keras.Model(x, keras.layers.Dense(2, name="fc")(h))


def data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(8, 6, 6, 3)).astype("float32"), rng.integers(0, 2, 8)


def test_stateless_hook_is_a_no_op_on_tensorflow():
    m = kprune.wrap(small(), sparsity=0.5, op_types=["Conv2D"])
    m.compile("sgd", "mse")
    assert keras.backend.backend() == "tensorflow"
    assert stateless.install(m) is False
    assert "train_step" not in m.__dict__


def test_mask_values_maps_masks_and_checks_the_count():
    m = kprune.wrap(small(), sparsity=0.5, op_types=["Conv2D"])
    mask = m.get_layer("c1").masks["kernel"]
    zeros = [np.zeros(v.shape, v.dtype) for v in m.non_trainable_variables]
    with stateless.mask_values(m, zeros):
        assert np.all(keras.ops.convert_to_numpy(stateless.current(mask)) == 0)
    assert np.all(keras.ops.convert_to_numpy(stateless.current(mask)) == 1)  # the variable again
    with pytest.raises(kprune.KPruneError, match="Received: 1 values"):
        with stateless.mask_values(m, zeros[:1]):
            pass


@pytest.mark.parametrize("criterion", ["apoz", "taylor_fo"])
def test_statistics_on_another_backend_is_a_kprune_error(monkeypatch, criterion):
    m = kprune.wrap(small(), {"prune": {"criterion": criterion, "granularity": "filter",
                                        "config_list": [{"op_names": ["c1"], "sparsity": 0.5}]}})
    pruner = Pruner(m, data=data())
    monkeypatch.setattr(statistics.keras.backend, "backend", lambda: "openvino")
    with pytest.raises(kprune.KPruneError, match=rf"criterion `{criterion}`.*Received: KERAS_BACKEND='openvino'"):
        pruner.prune_now()


def test_fast_update_only_on_tensorflow(monkeypatch):
    m = kprune.wrap(small(), sparsity=0.5, criterion="level", granularity="weight", op_types=["Conv2D"])
    pruner = Pruner(m)
    assert fast_update.eligible(pruner) is True
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    assert fast_update.eligible(pruner) is False
