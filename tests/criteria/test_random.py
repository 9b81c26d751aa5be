import keras
import numpy as np

import kprune
from kprune import criteria


def test_random_is_seeded_per_layer_and_uniform():
    r = criteria.get("random")
    a = r(np.zeros((50, 40)), seed=1, name="d1/kernel")
    assert a.shape == (50, 40)
    np.testing.assert_array_equal(a, r(np.zeros((50, 40)), seed=1, name="d1/kernel"))
    assert not np.array_equal(a, r(np.zeros((50, 40)), seed=2, name="d1/kernel"))
    assert not np.array_equal(a, r(np.zeros((50, 40)), seed=1, name="d2/kernel"))
    assert 0.0 <= a.min() and a.max() < 1.0 and abs(a.mean() - 0.5) < 0.02
    assert r(np.zeros((3, 3, 2, 7)), axis=3, seed=0, name="c").shape == (7,)


def test_random_recipe_seed_changes_masks():
    def run(seed):
        inp = keras.Input((20,))
        m = keras.Model(inp, keras.layers.Dense(30, name="d")(inp))
        w = kprune.wrap(m, {"prune": {"criterion": "random", "seed": seed,
                                      "config_list": [{"op_names": ["d"], "sparsity": 0.5}]}})
        kprune.Pruner(w).prune_now()
        return w.get_layer("d").masks["kernel"].numpy()
    a, b = run(0), run(1)
    assert a.sum() == 300 and b.sum() == 300
    np.testing.assert_array_equal(a, run(0))
    assert not np.array_equal(a, b)
