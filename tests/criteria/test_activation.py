import keras
import numpy as np
import pytest

import kprune
from kprune import criteria
from kprune.pruning.statistics import ActivationStats, collect_activations


def relu_conv():
    # 1x1 conv, no bias, ReLU inside the layer; filter 0 = +1, filter 1 = -1
    inp = keras.Input((2, 2, 1))
    x = keras.layers.Conv2D(2, 1, use_bias=False, activation="relu", name="conv")(inp)
    out = keras.layers.Conv2D(1, 1, name="head")(x)
    m = keras.Model(inp, out)
    m.get_layer("conv").set_weights([np.array([1.0, -1.0], "float32").reshape(1, 1, 1, 2)])
    return m


X = np.array([1.0, -1.0, 2.0, 3.0], "float32").reshape(1, 2, 2, 1)
Y = np.zeros((1, 2, 2, 1), "float32")
# relu(+x) = [1, 0, 2, 3] -> one zero of 4; relu(-x) = [0, 1, 0, 0] -> three zeros of 4


def test_apoz_and_mean_activation_on_hand_chosen_input():
    stats = collect_activations(relu_conv(), [(X, Y)], ["conv"], batches=1)["conv"]
    np.testing.assert_array_equal(stats.zeros, [1, 3])
    assert stats.count == 4 and stats.source == "conv"
    np.testing.assert_allclose(stats.apoz, [0.25, 0.75])
    kernel = np.zeros((1, 1, 1, 2))
    np.testing.assert_allclose(criteria.get("apoz")(kernel, axis=3, activations=stats), [0.75, 0.25])
    np.testing.assert_allclose(criteria.get("mean_activation")(kernel, axis=3, activations=stats), [1.5, 0.25])


def test_accumulates_over_batches():
    stats = collect_activations(relu_conv(), [(X, Y), (-X, Y)], ["conv"], batches=2)["conv"]
    # second batch: relu(-x) = [0, 1, 0, 0], relu(x) = [1, 0, 2, 3]
    np.testing.assert_array_equal(stats.zeros, [4, 4])
    assert stats.count == 8
    np.testing.assert_allclose(stats.mean, [7 / 8, 7 / 8])


def test_apoz_prunes_the_mostly_zero_filter():
    w = kprune.wrap(relu_conv(), {"prune": {"criterion": "apoz", "granularity": "filter",
                                            "config_list": [{"op_names": ["conv"], "sparsity": 0.5}]}})
    kprune.Pruner(w, data=[(X, Y)]).prune_now()
    np.testing.assert_array_equal(w.get_layer("conv").masks["kernel"].numpy().ravel(), [1, 0])
    w2 = kprune.wrap(relu_conv(), {"prune": {"criterion": "mean_activation", "granularity": "filter",
                                             "config_list": [{"op_names": ["conv"], "sparsity": 0.5}]}})
    kprune.Pruner(w2, data=[(X, Y)]).prune_now()
    np.testing.assert_array_equal(w2.get_layer("conv").masks["kernel"].numpy().ravel(), [1, 0])


def test_missing_data_is_a_clear_error():
    w = kprune.wrap(relu_conv(), {"prune": {"criterion": "apoz", "granularity": "filter",
                                            "config_list": [{"op_names": ["conv"], "sparsity": 0.5}]}})
    with pytest.raises(kprune.KPruneError, match=r"criterion `apoz`.*PruningCallback\(data=ds\)"):
        kprune.Pruner(w).prune_now()


def test_activation_criteria_score_filters_only():
    with pytest.raises(kprune.RecipeError, match="supports granularities"):
        kprune.Recipe.from_dict({"prune": {"criterion": "apoz", "granularity": "weight",
                                           "config_list": [{"op_types": ["Conv2D"], "sparsity": 0.5}]}})
    with pytest.raises(ValueError, match="activation channels"):
        s = ActivationStats(np.zeros(3), np.zeros(3), 1)
        criteria.get("apoz")(np.zeros((2, 2)), axis=1, activations=s)
