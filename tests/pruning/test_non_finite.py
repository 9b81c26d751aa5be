"""NaN or Inf weights are refused where they would silently decide masks or be copied:
the Pruner scoring a kernel, and ``compact`` reading a layer's weights."""

import keras
import numpy as np
import pytest

import kprune
from kprune.errors import KPruneError, NonFiniteWeightsError


def _model():
    keras.utils.set_random_seed(0)
    x = keras.Input((8, 8, 3))
    h = keras.layers.Conv2D(8, 3, name="conv")(x)
    h = keras.layers.GlobalAveragePooling2D()(h)
    return keras.Model(x, keras.layers.Dense(4, name="out")(h))


def _poison(model, layer, value, where=(0, 0, 0, 2)):
    kernel = model.get_layer(layer).get_weights()
    kernel[0][where] = value
    model.get_layer(layer).set_weights(kernel)
    return model


@pytest.mark.parametrize("granularity", ["filter", "weight"])
@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_a_non_finite_kernel_is_refused_when_scored(granularity, value):
    model = _poison(_model(), "conv", value)
    wrapped = kprune.wrap(model, {"prune": {"criterion": "l1", "granularity": granularity,
                                            "config_list": [{"op_names": ["conv"], "sparsity": 0.5}]}})
    with pytest.raises(NonFiniteWeightsError, match=r"layer `conv` weight `kernel` cannot be scored: it holds "
                       + ("1 NaN and 0 Inf" if np.isnan(value) else "0 NaN and 1 Inf") + r" value\(s\) of 216"):
        kprune.Pruner(wrapped).prune_now()


def test_an_all_nan_layer_is_not_left_silently_unpruned():
    model = _model()
    w = model.get_layer("conv").get_weights()
    w[0][:] = np.nan
    model.get_layer("conv").set_weights(w)
    wrapped = kprune.wrap(model, {"prune": {"criterion": "l2", "granularity": "filter",
                                            "config_list": [{"op_names": ["conv"], "sparsity": 0.5}]}})
    with pytest.raises(KPruneError, match="216 NaN and 0 Inf"):
        kprune.Pruner(wrapped).prune_now()


def test_compact_refuses_non_finite_weights_and_names_the_layer():
    model = _model()
    b = model.get_layer("out").get_weights()
    b[1][3] = -np.inf
    model.get_layer("out").set_weights(b)
    with pytest.raises(NonFiniteWeightsError, match=r"layer `out` weight `bias` cannot be compacted: it holds "
                       r"0 NaN and 1 Inf value\(s\) of 4"):
        kprune.compact(model)


def test_finite_models_prune_and_compact_as_before():
    wrapped = kprune.wrap(_model(), {"prune": {"criterion": "l1", "granularity": "filter",
                                               "config_list": [{"op_names": ["conv"], "sparsity": 0.5}]}})
    kprune.Pruner(wrapped).prune_now()
    small = kprune.compact(wrapped)
    assert small.get_layer("conv").filters == 4
