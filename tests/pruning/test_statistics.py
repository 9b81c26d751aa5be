import keras
import numpy as np
import pytest

import kprune
from kprune.pruning import statistics as S


def bn_model():
    inp = keras.Input((6, 6, 3))
    x = keras.layers.Conv2D(4, 3, name="conv1")(inp)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.ReLU(name="relu1")(x)
    y = keras.layers.Conv2D(4, 3, padding="same", name="conv2")(x)
    y = keras.layers.BatchNormalization(name="bn2")(y)
    x = keras.layers.Add(name="add")([x, y])
    x = keras.layers.Activation("relu", name="act")(x)
    x = keras.layers.Conv2D(5, 3, activation="tanh", name="conv3")(x)
    x = keras.layers.Dropout(0.5, name="drop")(x)
    x = keras.layers.Conv2D(6, 1, name="conv4")(x)
    x = keras.layers.Flatten(name="flat")(x)
    return keras.Model(inp, keras.layers.Dense(3, name="fc")(x))


def data(n=16):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 6, 6, 3)).astype("float32"), rng.integers(0, 3, n)


def test_activation_sources_follow_the_graph():
    src = S.activation_sources(bn_model(), ["conv1", "conv2", "conv3", "conv4"])
    assert (src["conv1"].via, src["conv1"].relu) == ("relu1", False)     # through BN
    assert (src["conv2"].via, src["conv2"].relu) == ("act", False)       # through BN and Add
    assert (src["conv3"].via, src["conv3"].relu) == ("conv3", False)     # its own activation
    assert (src["conv4"].via, src["conv4"].relu) == ("conv4+relu", True)  # none before Flatten: ReLU applied (NNI)


def test_activation_values_match_inference_mode_forward():
    m = bn_model()
    m.get_layer("bn1").moving_mean.assign(np.full(4, 0.3, "float32"))
    x, y = data(8)
    stats = S.collect_activations(m, [(x, y)], ["conv1", "conv4"], batches=1)
    relu1 = keras.Model(m.input, m.get_layer("relu1").output)(x, training=False).numpy()
    np.testing.assert_array_equal(stats["conv1"].zeros, (relu1 == 0).reshape(-1, 4).sum(0))
    np.testing.assert_allclose(stats["conv1"].mean, relu1.reshape(-1, 4).mean(0), rtol=1e-5)
    assert stats["conv1"].count == 8 * 4 * 4
    conv4 = keras.Model(m.input, m.get_layer("conv4").output)(x, training=False).numpy()
    np.testing.assert_allclose(stats["conv4"].mean, np.maximum(conv4, 0).reshape(-1, 6).mean(0), rtol=1e-5)


def test_collection_changes_no_weight_and_no_bn_statistic():
    m = bn_model()
    m.compile("sgd", "sparse_categorical_crossentropy")
    before = [np.array(v.numpy(), copy=True) for v in m.weights]
    x, y = data()
    S.collect_activations(m, (x, y), ["conv1", "conv3"], batches=2)
    S.collect_gradients(m, (x, y), {"k": m.get_layer("conv1").kernel, "g": m.get_layer("bn1").gamma}, batches=2)
    for b, v in zip(before, m.weights):
        np.testing.assert_array_equal(b, v.numpy(), err_msg=v.path)


def test_gradients_are_training_mode_gradients_of_the_loss():
    import tensorflow as tf
    m = bn_model()
    m.get_layer("drop").rate = 0.0
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    x, y = data(8)
    got = S.collect_gradients(m, [(x, y)], {"k": m.get_layer("conv1").kernel}, batches=1, loss=loss)["k"]
    saved = [np.array(v.numpy(), copy=True) for v in m.weights]
    with tf.GradientTape() as tape:
        value = loss(y, m(x, training=True))
    ref = tape.gradient(value, m.get_layer("conv1").kernel).numpy()
    for v, s in zip(m.weights, saved):
        v.assign(s)
    np.testing.assert_allclose(got.grad, ref, rtol=1e-4, atol=1e-7)


def test_nested_models_and_wrapped_models():
    inner = keras.Sequential([keras.Input((6, 6, 3)), keras.layers.Conv2D(4, 3, activation="relu", name="c")],
                             name="inner")
    inp = keras.Input((6, 6, 3))
    out = keras.layers.Dense(2, name="fc")(keras.layers.Flatten()(inner(inp)))
    m = keras.Model(inp, out)
    x, y = data(4)
    stats = S.collect_activations(m, [(x, y)], ["c"], batches=1)["c"]
    ref = inner(x).numpy()
    np.testing.assert_array_equal(stats.zeros, (ref == 0).reshape(-1, 4).sum(0))
    w = kprune.wrap(bn_model(), {"prune": {"criterion": "l1", "granularity": "filter",
                                           "config_list": [{"op_names": ["conv1"], "sparsity": 0.5}]}})
    assert S.collect_activations(w, [(x, y)], ["conv1"], batches=1)["conv1"].source == "relu1"


def test_batches_from_arrays_and_errors():
    x, y = data(10)
    got = list(S.iter_batches((x, y), batches=5, batch_size=4))
    assert [b[0].shape[0] for b in got] == [4, 4, 2]
    assert len(list(S.iter_batches((x, y), batches=2, batch_size=4))) == 2
    with pytest.raises(kprune.DataError, match="no batch"):
        list(S.iter_batches([], batches=2))
    m = bn_model()
    with pytest.raises(kprune.DataError, match="labels"):
        S.collect_gradients(m, [x], {"k": m.get_layer("conv1").kernel}, batches=1)
