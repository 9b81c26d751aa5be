import keras
import numpy as np

import kprune
from kprune import criteria
from kprune.pruning.statistics import collect_gradients


def model():
    inp = keras.Input((3,))
    out = keras.layers.Dense(2, use_bias=False, name="d")(inp)
    m = keras.Model(inp, out)
    m.get_layer("d").set_weights([np.array([[1.0, -2.0], [0.5, 0.0], [3.0, 1.0]], "float32")])
    m.compile("sgd", "mse")
    return m


def test_snip_is_abs_g_times_w_from_one_batch():
    m = model()
    x = np.array([[1.0, 2.0, -1.0]], "float32")
    y = np.array([[0.0, 1.0]], "float32")
    w = m.get_layer("d").kernel.numpy().astype(np.float64)
    # L = mean_o (x W - y)^2 over 2 outputs -> dL/dW = x^T (p - y)
    g = x.T.astype(np.float64) @ (x @ w - y)
    stats = collect_gradients(m, [(x, y), (2 * x, y)], {"d": m.get_layer("d").kernel}, batches=1)["d"]
    np.testing.assert_allclose(criteria.get("snip")(w, gradients=stats), np.abs(g * w), rtol=1e-5)
    assert criteria.get("snip").batches == 1


def test_snip_uses_one_batch_even_if_recipe_says_more():
    m = kprune.wrap(model(), {"prune": {"criterion": "snip", "scope": "global", "statistics_batches": 5,
                                        "config_list": [{"op_names": ["d"], "total_sparsity": 0.5}]}})
    m.compile("sgd", "mse")
    x = np.array([[1.0, 2.0, -1.0]], "float32")
    y = np.array([[0.0, 1.0]], "float32")
    w = m.get_layer("d").layer.kernel.numpy().astype(np.float64)
    score = np.abs((x.T @ (x @ w - y)) * w)
    # the second batch would change the ranking if it were used
    kprune.Pruner(m, data=[(x, y), (np.array([[0.0, 0.0, 5.0]], "float32"), y)]).prune_now()
    mask = m.get_layer("d").masks["kernel"].numpy()
    assert mask.sum() == 3
    assert np.min(score[mask == 1]) >= np.max(score[mask == 0])
