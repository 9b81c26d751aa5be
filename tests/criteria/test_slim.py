import keras
import numpy as np
import pytest

import kprune
from kprune import criteria
from kprune.criteria.slim import SlimPenalty


def cnn():
    inp = keras.Input((6, 6, 2))
    x = keras.layers.Conv2D(8, 3, name="conv1")(inp)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.ReLU(name="relu1")(x)
    x = keras.layers.Conv2D(4, 3, name="conv2")(x)
    x = keras.layers.BatchNormalization(name="bn2")(x)
    x = keras.layers.ReLU(name="relu2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inp, keras.layers.Dense(3, name="fc")(x))


def recipe(**prune):
    return {"prune": {"criterion": "slim", "granularity": "filter",
                      "config_list": [{"op_names": ["conv1", "conv2"], "total_sparsity": 0.5}], **prune}}


def test_scores_are_abs_gamma():
    np.testing.assert_array_equal(criteria.get("slim")(np.zeros((1, 3)), axis=1, gamma=np.array([-1.0, 0.5, 2.0])),
                                  [1.0, 0.5, 2.0])


def test_global_ranking_of_gammas_across_layers():
    m = cnn()
    m.get_layer("bn1").gamma.assign(np.array([0.1, 5, 0.2, 6, 0.3, 7, 0.4, 8], "float32"))
    m.get_layer("bn2").gamma.assign(np.array([-0.05, 9, 0.15, 10], "float32"))
    w = kprune.wrap(m, recipe())
    kprune.Pruner(w).prune_now()
    # 12 channels, half pruned globally: the six smallest |gamma| (0.05, 0.1, 0.15, 0.2, 0.3, 0.4)
    k1 = w.get_layer("conv1").masks["kernel"].numpy()[0, 0, 0]
    k2 = w.get_layer("conv2").masks["kernel"].numpy()[0, 0, 1]  # input channel 1 of conv1 is kept
    np.testing.assert_array_equal(k1, [0, 1, 0, 1, 0, 1, 0, 1])
    np.testing.assert_array_equal(k2, [0, 1, 0, 1])
    np.testing.assert_array_equal(w.get_layer("bn1").masks["gamma"].numpy(), k1)


def test_layerwise_is_an_error_and_missing_bn_is_explained():
    with pytest.raises(kprune.RecipeError, match="slim.*global by definition"):
        kprune.Recipe.from_dict(recipe(scope="layerwise"))
    inp = keras.Input((6, 6, 2))
    x = keras.layers.Conv2D(4, 3, name="conv1")(inp)
    x = keras.layers.Conv2D(2, 3, name="conv2")(x)
    w = kprune.wrap(keras.Model(inp, x), {"prune": {"criterion": "slim", "granularity": "filter",
                                                    "config_list": [{"op_names": ["conv1"], "sparsity": 0.5}]}})
    with pytest.raises(kprune.KPruneError, match="BatchNormalization"):
        kprune.Pruner(w).prune_now()


def test_penalty_is_in_the_loss_and_shrinks_gammas():
    x = np.random.default_rng(0).normal(size=(32, 6, 6, 2)).astype("float32")
    y = np.random.default_rng(1).integers(0, 3, 32)
    base = cnn()

    def train(lam, steps):
        w = kprune.wrap(base, recipe(slim_lambda=lam, schedule={"name": "oneshot", "at_step": 100}))
        w.compile(keras.optimizers.SGD(0.1), "sparse_categorical_crossentropy")
        hist = w.fit(x, y, batch_size=32, epochs=steps, verbose=0, shuffle=False,
                     callbacks=[kprune.PruningCallback()])
        return w, hist.history["loss"][0]

    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        (plain, loss0), (slim, loss1) = train(0.0, 1), train(0.05, 1)
    gam = slim.get_layer("bn1").layer.gamma
    assert isinstance(gam.regularizer, SlimPenalty) and gam.regularizer.lam == 0.05
    assert plain.get_layer("bn1").layer.gamma.regularizer is None
    # the training loss of the first step includes 0.05 * sum|gamma| with 12 gammas at 1.0
    assert loss1 - loss0 == pytest.approx(0.05 * 12, rel=1e-4)
    expected = 0.05 * sum(np.abs(slim.get_layer(n).layer.gamma.numpy()).sum() for n in ("bn1", "bn2"))
    assert float(sum(keras.ops.convert_to_numpy(v) for v in slim.losses)) == pytest.approx(expected, rel=1e-5)
    # one SGD step from the same weights: the penalty's gradient is lambda * sign(gamma)
    for n in ("bn1", "bn2"):
        diff = slim.get_layer(n).layer.gamma.numpy() - plain.get_layer(n).layer.gamma.numpy()
        np.testing.assert_allclose(diff, -0.1 * 0.05, atol=1e-5)
