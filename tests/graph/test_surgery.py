"""compact(): pruned channels are physically removed and the function is unchanged."""

import keras
import numpy as np
import pytest
from keras import layers as L
from surgery_utils import random_filter_zeroing, randomize_batchnorm

import kprune
from kprune.errors import GraphError
from kprune.graph.analysis import check_independent, groups
from kprune.graph.masks import apply_group_mask, channel_mask_from_weights, zero_channels
from kprune.graph.surgery import compact


def assert_same_function(model, small, shape, seed=1):
    x = np.random.default_rng(seed).normal(size=(2,) + tuple(shape)).astype("float32")
    y0 = keras.ops.convert_to_numpy(model(x, training=False))
    y1 = keras.ops.convert_to_numpy(small(x, training=False))
    assert y0.shape == y1.shape
    diff = float(np.max(np.abs(y0 - y1)))
    assert diff <= 1e-4 * max(1.0, float(np.max(np.abs(y0)))), diff
    return diff


# ---- small architectures covering every rule -------------------------------------------

def residual():
    x = keras.Input((8, 8, 3))
    h = L.ReLU()(L.BatchNormalization()(L.Conv2D(8, 3, padding="same")(x)))
    r = L.Conv2D(8, 3, padding="same")(h)
    r = L.BatchNormalization()(r)
    h = L.Activation("relu")(L.Add()([h, r]))
    h = L.MaxPooling2D()(h)
    h = L.Conv2D(6, 3, padding="same", activation="relu")(h)
    return keras.Model(x, L.Dense(3)(L.GlobalAveragePooling2D()(h)))


def dense_concat():
    x = keras.Input((8, 8, 3))
    a = L.Conv2D(4, 3, padding="same", activation="relu")(x)
    b = L.Conv2D(6, 1, activation="relu")(a)
    c = L.Concatenate()([a, b])
    d = L.Conv2D(5, 1)(c)
    s = L.Add()([c, L.Conv2D(10, 1)(x)])
    e = L.Concatenate()([d, L.AveragePooling2D(1)(s)])
    return keras.Model(x, L.Dense(2)(L.Flatten()(L.MaxPooling2D(4)(e))))


def depthwise_separable():
    x = keras.Input((10, 10, 3))
    h = L.Conv2D(6, 3, padding="same")(x)
    h = L.BatchNormalization()(h)
    h = L.ReLU(6.0)(h)
    h = L.DepthwiseConv2D(3, depth_multiplier=2, padding="same")(h)
    h = L.BatchNormalization()(h)
    h = L.PReLU(shared_axes=[1, 2])(h)
    h = L.SeparableConv2D(7, 3, depth_multiplier=2, padding="same", activation="relu")(h)
    h = L.ZeroPadding2D(1)(h)
    h = L.Cropping2D(1)(h)
    h = L.UpSampling2D()(h)
    return keras.Model(x, L.Conv2D(2, 1)(h))


def squeeze_excite():
    x = keras.Input((8, 8, 3))
    f = L.Conv2D(8, 3, padding="same", activation="swish")(x)
    s = L.GlobalAveragePooling2D(keepdims=True)(f)
    s = L.Conv2D(3, 1, activation="relu")(s)
    s = L.Conv2D(8, 1)(s)
    s = keras.ops.multiply(keras.ops.relu6(keras.ops.add(s, 3.0)), 1.0 / 6.0)  # hard sigmoid
    y = L.Multiply()([f, s])
    g = L.GlobalAveragePooling2D()(y)
    g = L.Dense(4, activation="sigmoid")(g)  # consumer of a sigmoid: must be zeroed too
    g = L.Reshape((1, 1, 4))(g)
    return keras.Model(x, L.Conv2D(2, 1)(g))


def group_norm():
    x = keras.Input((6, 6, 3))
    h = L.Conv2D(8, 3, padding="same")(x)
    h = L.GroupNormalization(groups=4)(h)
    h = L.Activation("gelu")(h)
    return keras.Model(x, L.Conv2D(2, 1)(h))


def conv1d_3d_transpose():
    x = keras.Input((4, 6, 6, 2))
    h = L.Conv3D(5, 3, padding="same", activation="relu")(x)
    h = L.Conv3D(3, 1)(h)
    h = L.Reshape((4 * 6 * 6, 3))(h)
    h = L.Conv1D(6, 3, padding="same", activation="tanh")(h)
    h = L.Conv1DTranspose(4, 3, strides=2)(h)
    return keras.Model(x, L.Dense(2)(L.GlobalMaxPooling1D()(h)))


def transpose_2d():
    x = keras.Input((6, 6, 3))
    h = L.Conv2DTranspose(6, 3, strides=2, activation="relu")(x)
    h = L.Conv2D(4, 3)(h)
    h = L.LeakyReLU(0.1)(h)
    return keras.Model(x, L.Conv2D(2, 1)(h))


def mlp_einsum():
    x = keras.Input((5, 12))
    h = L.Dense(16, activation="relu")(x)
    h = L.EinsumDense("abc,cd->abd", output_shape=(5, 10), bias_axes="d")(h)
    h = L.ELU()(h)
    h = L.Dropout(0.5)(h)
    h = L.EinsumDense("abc,cd->abd", output_shape=(5, 3))(h)
    return keras.Model(x, h)


def nested_and_shared():
    inner = keras.Sequential([keras.Input((8, 8, 3)), L.Conv2D(6, 3, padding="same"),
                              L.BatchNormalization(), L.ReLU()], name="backbone")
    shared = L.Conv2D(4, 1, name="shared")
    x = keras.Input((8, 8, 3))
    h = inner(x)
    y = L.Add()([shared(h), shared(L.SpatialDropout2D(0.2)(h))])
    y = L.Flatten()(y)
    return keras.Sequential([keras.Input((8, 8, 3)), keras.Model(x, y, name="body"),
                             L.Dense(3)])


def merges():
    x = keras.Input((6, 6, 3))
    a = L.Conv2D(6, 3, padding="same", activation="relu")(x)
    b = L.Conv2D(6, 1)(x)
    c = L.Conv2D(6, 1, activation="tanh")(x)
    h = L.Subtract()([a, b])
    h = L.Maximum()([h, c])
    h = L.Minimum()([h, a])
    h = L.Average()([h, L.Conv2D(6, 1)(x)])
    h = L.BatchNormalization()(h)
    return keras.Model(x, L.Conv2D(2, 1)(h))


def grouped_depthwise():
    x = keras.Input((8, 8, 3))
    h = L.Conv2D(6, 1, activation="relu")(x)
    h = L.Conv2D(12, 3, groups=6, padding="same")(h)  # depthwise with multiplier 2
    h = L.BatchNormalization()(h)
    return keras.Model(x, L.Conv2D(2, 1)(L.ReLU()(h)))


def embedding_text():
    x = keras.Input((6,), dtype="int32")
    h = L.Embedding(20, 8)(x)
    h = L.Conv1D(5, 3, activation="relu")(h)
    return keras.Model(x, L.Dense(2)(L.GlobalAveragePooling1D()(h)))


ARCHS = {
    "residual": (residual, (8, 8, 3)),
    "dense_concat": (dense_concat, (8, 8, 3)),
    "depthwise_separable": (depthwise_separable, (10, 10, 3)),
    "squeeze_excite": (squeeze_excite, (8, 8, 3)),
    "group_norm": (group_norm, (6, 6, 3)),
    "conv1d_3d_transpose": (conv1d_3d_transpose, (4, 6, 6, 2)),
    "transpose_2d": (transpose_2d, (6, 6, 3)),
    "mlp_einsum": (mlp_einsum, (5, 12)),
    "nested_and_shared": (nested_and_shared, (8, 8, 3)),
    "merges": (merges, (6, 6, 3)),
    "grouped_depthwise": (grouped_depthwise, (8, 8, 3)),
}


@pytest.mark.parametrize("name", sorted(ARCHS))
def test_compact_is_exact_and_smaller(name):
    build, shape = ARCHS[name]
    keras.utils.set_random_seed(0)
    model = build()
    randomize_batchnorm(model)
    assert random_filter_zeroing(model, 0.4, seed=3) > 0
    small = compact(model)
    assert_same_function(model, small, shape)
    assert small.count_params() < model.count_params()
    assert not any("kprune" in type(layer).__module__ for layer in small.layers)


def test_embedding_model():
    keras.utils.set_random_seed(0)
    model = embedding_text()
    random_filter_zeroing(model, 0.5)
    small = compact(model)
    x = np.random.default_rng(0).integers(0, 20, size=(3, 6)).astype("int32")
    np.testing.assert_allclose(model(x), small(x), atol=1e-5)
    assert small.count_params() < model.count_params()


def test_group_norm_loses_whole_groups():
    keras.utils.set_random_seed(0)
    model = group_norm()
    g = [g for g in groups(model) if g.size == 4][0]
    zero_channels(g, np.array([True, False, True, False]))
    small = compact(model)
    gn = [layer for layer in small.layers if isinstance(layer, L.GroupNormalization)][0]
    assert gn.groups == 2 and gn.gamma.shape == (4,)
    assert_same_function(model, small, (6, 6, 3))


def test_flatten_dense_rows_removed_exactly():
    x = keras.Input((4, 4, 1))
    y = L.Conv2D(3, 3, name="conv")(x)
    y = L.Dense(2, name="fc")(L.Flatten()(y))
    model = keras.Model(x, y)
    g = [g for g in groups(model) if g.layer_names("producer") == ["conv"]][0]
    zero_channels(g, np.array([True, False, True]))
    small = compact(model)
    assert small.get_layer("conv").filters == 2
    kept_rows = [0, 2, 3, 5, 6, 8, 9, 11]
    np.testing.assert_array_equal(small.get_layer("fc").kernel.numpy(),
                                  model.get_layer("fc").kernel.numpy()[kept_rows])
    assert_same_function(model, small, (4, 4, 1))


def test_channel_mask_rules_and_min_channels():
    x = keras.Input((5,))
    h = L.Dense(4, activation="sigmoid", name="h")(x)
    model = keras.Model(x, L.Dense(1, name="out")(h))
    g = [g for g in groups(model) if g.layer_names("producer") == ["h"]][0]
    zero_channels(g, np.array([False, True, True, True]), consumers="none")
    # sigmoid(0) = 0.5 still reaches `out`: not removable until its row is zero too
    assert channel_mask_from_weights(g).tolist() == [False, False, False, False]
    zero_channels(g, np.array([False, True, True, True]))
    assert channel_mask_from_weights(g).tolist() == [True, False, False, False]
    zero_channels(g, np.zeros(4, bool))
    small = compact(model)
    assert small.get_layer("h").units == 1  # min_channels=1 keeps one
    assert_same_function(model, small, (5,))


def test_naive_per_layer_pruning_of_an_add_is_refused_and_kept_exact():
    keras.utils.set_random_seed(0)
    x = keras.Input((8, 8, 3))
    a = L.Conv2D(8, 3, padding="same", name="a")(x)
    b = L.Conv2D(8, 1, name="b")(x)
    y = L.Conv2D(2, 1, name="out")(L.ReLU()(L.Add()([a, b])))
    model = keras.Model(x, y)
    gs = groups(model)
    with pytest.raises(GraphError) as err:
        check_independent(gs, ["a"])
    msg = str(err.value)
    assert "'a' cannot be filter-pruned on its own" in msg and "'b'" in msg
    assert "dependency_aware: true" in msg
    check_independent(gs, ["out"])  # not coupled: fine
    # Per-layer zeroing of `a` alone: the channels still flow from `b`, so nothing is removed.
    kernel = model.get_layer("a").kernel
    kernel.assign(keras.ops.convert_to_numpy(kernel) * np.array([0, 1] * 4, "float32"))
    model.get_layer("a").bias.assign(np.zeros(8, "float32"))
    small = compact(model)
    assert small.get_layer("a").filters == 8
    assert_same_function(model, small, (8, 8, 3))
    # Dependency-aware zeroing of the whole group removes them and stays exact.
    random_filter_zeroing(model, 0.5)
    small = compact(model)
    assert small.get_layer("a").filters == small.get_layer("b").filters == 4
    assert_same_function(model, small, (8, 8, 3))


def test_wrapped_model_with_group_masks():
    keras.utils.set_random_seed(0)
    model = residual()
    randomize_batchnorm(model)
    convs = [layer.name for layer in model.layers if isinstance(layer, L.Conv2D)]
    wrapped = kprune.wrap(model, {"prune": {"criterion": "l1", "granularity": "filter",
                                            "config_list": [{"op_names": convs, "sparsity": 0.5}]}})
    rng = np.random.default_rng(0)
    for g in groups(wrapped):
        if g.prunable and g.size > 1:
            keep = rng.random(g.size) > 0.5
            keep[0] = True
            apply_group_mask(g, keep)
            assert (channel_mask_from_weights(g) == ~keep).all()
    small = compact(wrapped)
    assert_same_function(wrapped, small, (8, 8, 3))
    assert small.count_params() < model.count_params()
    assert_same_function(kprune.strip(wrapped), compact(kprune.strip(wrapped)), (8, 8, 3))


SLOW = pytest.mark.slow


@pytest.mark.parametrize("name,shape,width", [
    pytest.param("vgg16", (32, 32, 3), 0.125, marks=SLOW),
    pytest.param("vgg19", (32, 32, 3), 0.125, marks=SLOW),
    pytest.param("resnet18", (32, 32, 3), 0.125, marks=SLOW),
    ("resnet20", (32, 32, 3), 0.5),
    pytest.param("resnet50", (32, 32, 3), 0.125, marks=SLOW),
    pytest.param("resnet56", (32, 32, 3), 0.25, marks=SLOW),
    pytest.param("mobilenetv2", (32, 32, 3), 0.25, marks=SLOW),
    ("lenet5", (28, 28, 1), 1.0),
    ("lenet300_100", (28, 28, 1), 1.0),
])
def test_zoo_models(name, shape, width):
    keras.utils.set_random_seed(0)
    model = kprune.models.get(name, input_shape=shape, num_classes=10, width=width)
    randomize_batchnorm(model)
    random_filter_zeroing(model, 0.3)
    small = compact(model)
    assert_same_function(model, small, shape)
    assert small.count_params() < model.count_params()


def test_saves_loads_without_kprune_and_converts(tmp_path):
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    model = squeeze_excite()
    random_filter_zeroing(model, 0.4)
    small = compact(model)
    path = str(tmp_path / "small.keras")
    small.save(path)
    loaded = keras.models.load_model(path)  # no custom_objects needed
    assert_same_function(small, loaded, (8, 8, 3))
    tflite = tf.lite.TFLiteConverter.from_keras_model(small).convert()
    assert len(tflite) > 1000


def test_soft_masks_are_the_truth_until_compact():
    keras.utils.set_random_seed(0)
    model = residual()
    randomize_batchnorm(model)
    convs = [layer.name for layer in model.layers if isinstance(layer, L.Conv2D)]
    wrapped = kprune.wrap(model, {"prune": {"criterion": "l1", "granularity": "filter",
                                            "config_list": [{"op_names": convs, "sparsity": 0.5}]}},
                          soft=True)
    before = [w.numpy().copy() for w in wrapped.weights]
    for g in groups(wrapped):
        if g.prunable and g.size > 1:
            keep = np.ones(g.size, bool)
            keep[::2] = False
            apply_group_mask(g, keep)
    masks = {id(v) for layer in wrapped.layers for v in getattr(layer, "masks", {}).values()}
    for w, value in zip(wrapped.weights, before):  # soft pruning: weights trained back
        if id(w) not in masks:
            w.assign(value)
    small = compact(wrapped)
    assert small.count_params() < model.count_params()
    assert_same_function(kprune.strip(wrapped), small, (8, 8, 3))


def test_grouped_conv_as_depthwise_loses_whole_groups():
    keras.utils.set_random_seed(0)
    model = grouped_depthwise()
    g = [g for g in groups(model) if g.size == 6][0]
    dw = [m for m in g.members if m.weight == "kernel" and m.role == "follower"][0]
    assert dw.index.tolist() == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9], [10, 11]]
    zero_channels(g, np.array([True, False, True, True, False, True]))
    small = compact(model)
    conv = [layer for layer in small.layers if getattr(layer, "groups", 1) > 1][0]
    assert (conv.groups, conv.filters) == (4, 8)
    assert_same_function(model, small, (8, 8, 3))
