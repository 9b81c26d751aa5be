import keras
import numpy as np

import kprune
from kprune import criteria
from kprune.pruning.statistics import GradientStats, collect_gradients


def two_layer(w1, w2):
    inp = keras.Input((3,))
    h = keras.layers.Dense(4, use_bias=False, name="d1")(inp)
    out = keras.layers.Dense(1, use_bias=False, name="d2")(h)
    m = keras.Model(inp, out)
    m.get_layer("d1").set_weights([w1.astype("float32")])
    m.get_layer("d2").set_weights([w2.astype("float32")])
    m.compile("sgd", "mse")
    return m


def hand_grad_w1(x, y, w1, w2):
    # L = mean_b (x W1 W2 - y)^2  ->  dL/dW1 = x^T (2 (p - y) / B) W2^T
    p = x @ w1 @ w2
    return x.T @ (2.0 * (p - y) / x.shape[0]) @ w2.T


def setup():
    rng = np.random.default_rng(3)
    w1, w2 = rng.normal(size=(3, 4)), rng.normal(size=(4, 1))
    batches = [(rng.normal(size=(2, 3)).astype("float32"), rng.normal(size=(2, 1)).astype("float32"))
               for _ in range(2)]
    return w1, w2, batches


def test_gradients_and_taylor_scores_match_hand_computation():
    w1, w2, batches = setup()
    m = two_layer(w1, w2)
    stats = collect_gradients(m, batches, {"d1": m.get_layer("d1").kernel}, batches=2)["d1"]
    grads = [hand_grad_w1(x.astype(np.float64), y, w1, w2) for x, y in batches]
    np.testing.assert_allclose(stats.grad, np.mean(grads, axis=0), rtol=1e-4, atol=1e-6)
    w = m.get_layer("d1").kernel.numpy().astype(np.float64)
    filt = np.mean([np.sum(g * w, axis=0) ** 2 for g in grads], axis=0)   # per output unit
    elem = np.mean([(g * w) ** 2 for g in grads], axis=0)
    taylor = criteria.get("taylor_fo")
    np.testing.assert_allclose(taylor(w, axis=1, gradients=stats), filt, rtol=1e-4)
    np.testing.assert_allclose(taylor(w, gradients=stats), elem, rtol=1e-4)
    chan = np.mean([np.sum(g * w, axis=1) ** 2 for g in grads], axis=0)   # per input unit
    np.testing.assert_allclose(taylor(w, axis=0, gradients=stats), chan, rtol=1e-4)


def test_taylor_prunes_lowest_filters_through_the_pruner():
    w1, w2, batches = setup()
    grads = [hand_grad_w1(x.astype(np.float64), y, w1, w2) for x, y in batches]
    w = w1.astype("float32").astype(np.float64)
    filt = np.mean([np.sum(g * w, axis=0) ** 2 for g in grads], axis=0)
    model = kprune.wrap(two_layer(w1, w2), {"prune": {
        "criterion": "taylor_fo", "granularity": "filter", "statistics_batches": 2,
        "config_list": [{"op_names": ["d1"], "sparsity": 0.5}]}})
    model.compile("sgd", "mse")
    kprune.Pruner(model, data=batches).prune_now()
    kept = model.get_layer("d1").masks["kernel"].numpy()[0] == 1
    np.testing.assert_array_equal(kept, np.isin(np.arange(4), np.argsort(filt)[2:]))


def test_gradient_stats_from_batches():
    s = GradientStats.from_batches(np.array([[1.0, 2.0]]), [np.array([[1.0, 1.0]]), np.array([[3.0, -1.0]])])
    np.testing.assert_allclose(s.grad, [[2.0, 0.0]])
    np.testing.assert_allclose(s.gw2, [[5.0, 4.0]])
    np.testing.assert_allclose(s.gw_axis2[0], [(9 + 1) / 2])        # (1+2)^2, (3-2)^2
    assert s.batches == 2


def test_taylor_during_fit_with_agp_and_callback_data():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 3)).astype("float32"), rng.normal(size=(32, 1)).astype("float32")
    w1, w2 = rng.normal(size=(3, 4)), rng.normal(size=(4, 1))
    model = kprune.wrap(two_layer(w1, w2), {"prune": {
        "criterion": "taylor_fo", "granularity": "filter", "statistics_batches": 2,
        "schedule": {"name": "agp", "start_step": 0, "end_step": 4, "frequency": 2},
        "config_list": [{"op_names": ["d1"], "sparsity": 0.5}]}})
    model.compile(keras.optimizers.SGD(0.01), "mse")
    model.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[kprune.PruningCallback(data=(x, y))])
    mask = model.get_layer("d1").masks["kernel"].numpy()
    assert mask[0].sum() == 2 and np.all(mask == mask[0])
    import pytest
    with pytest.raises(kprune.KPruneError, match="taylor_fo"):
        again = kprune.wrap(two_layer(w1, w2), {"prune": {
            "criterion": "taylor_fo", "granularity": "filter",
            "config_list": [{"op_names": ["d1"], "sparsity": 0.5}]}})
        again.compile("sgd", "mse")
        again.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[kprune.PruningCallback()])
