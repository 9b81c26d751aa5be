import keras
import numpy as np
import pytest

import kprune
from kprune import criteria
from kprune.criteria.fpgm import distance_sums


def four_filters():
    # filters (as 2-vectors) (0,0), (1,0), (0,1), (-1,0): their geometric median is (0,0),
    # a data point, because the unit vectors from it to the others sum to (0,1), norm <= 1
    k = np.zeros((1, 1, 2, 4))
    k[0, 0, :, 0] = [0, 0]
    k[0, 0, :, 1] = [1, 0]
    k[0, 0, :, 2] = [0, 1]
    k[0, 0, :, 3] = [-1, 0]
    return k


def test_fpgm_is_sum_of_distances_and_median_scores_lowest():
    s2 = np.sqrt(2.0)
    expected = [3.0, 1 + s2 + 2, 1 + s2 + s2, 1 + s2 + 2]
    scores = criteria.get("fpgm")(four_filters(), axis=3)
    np.testing.assert_allclose(scores, expected, rtol=1e-12)
    assert np.argmin(scores) == 0


def test_fpgm_matches_bruteforce_on_random_kernel():
    k = np.random.default_rng(1).normal(size=(3, 3, 5, 7))
    f = k.reshape(-1, 7).T
    ref = [sum(np.linalg.norm(f[i] - f[j]) for j in range(7)) for i in range(7)]
    np.testing.assert_allclose(distance_sums(k, 3), ref, rtol=1e-9)
    g = np.moveaxis(k, 2, 0).reshape(5, -1)
    ref_in = [sum(np.linalg.norm(g[i] - g[j]) for j in range(5)) for i in range(5)]
    np.testing.assert_allclose(criteria.get("fpgm")(k, axis=2), ref_in, rtol=1e-9)


def test_fpgm_requires_axis_and_structured_granularity():
    with pytest.raises(ValueError, match="axis"):
        criteria.get("fpgm")(four_filters())
    with pytest.raises(kprune.RecipeError, match="granularities"):
        kprune.Recipe.from_dict({"prune": {"criterion": "fpgm", "granularity": "weight",
                                           "config_list": [{"op_types": ["Conv2D"], "sparsity": 0.5}]}})


def test_fpgm_prunes_the_median_filter_through_the_pruner():
    inp = keras.Input((4, 4, 2))
    x = keras.layers.Conv2D(4, 1, use_bias=False, name="conv")(inp)
    x = keras.layers.Conv2D(2, 1, name="head")(x)
    model = keras.Model(inp, x)
    model.get_layer("conv").set_weights([four_filters().astype("float32")])
    w = kprune.wrap(model, {"prune": {"criterion": "fpgm", "granularity": "filter",
                                      "config_list": [{"op_names": ["conv"], "sparsity": 0.25}]}})
    kprune.Pruner(w).prune_now()
    mask = w.get_layer("conv").masks["kernel"].numpy()
    np.testing.assert_array_equal(mask[0, 0, 0], [0, 1, 1, 1])
    # the consumer's input channel 0 is masked too (dependency group)
    head = w.get_layer("head").masks["kernel"].numpy()
    np.testing.assert_array_equal(head[0, 0, 0], [0, 0])
    np.testing.assert_array_equal(head[0, 0, 1:], np.ones((3, 2)))
