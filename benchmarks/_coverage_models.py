"""Hand-built models of the shapes people prune, for the coverage sweep and its test subset.

Each builder returns a small functional (or Sequential) Keras model with random weights. They
exercise what ``keras.applications`` does not: keras.ops arithmetic written in the graph
(hard-swish, squeeze-excite as ``x * s``), channel split and shuffle, CBAM attention over
channels, grouped convolutions, transposed convolutions, Conv1D, BatchNorm nested in a
Sequential, a shared layer, several inputs and outputs.
"""

from __future__ import annotations

import keras
from keras import layers as L
from keras import ops


def unet(size=32):
    """A two-level U-Net: Conv2DTranspose upsampling, skip concatenations, per-pixel logits."""
    x = keras.Input((size, size, 3), name="image")
    c1 = L.Conv2D(8, 3, padding="same", activation="relu", name="enc1")(x)
    p1 = L.MaxPooling2D()(c1)
    c2 = L.Conv2D(16, 3, padding="same", activation="relu", name="enc2")(p1)
    p2 = L.MaxPooling2D()(c2)
    b = L.Conv2D(32, 3, padding="same", activation="relu", name="bottleneck")(p2)
    u2 = L.Conv2DTranspose(16, 2, strides=2, name="up2")(b)
    d2 = L.Conv2D(16, 3, padding="same", activation="relu", name="dec2")(L.Concatenate()([u2, c2]))
    u1 = L.Conv2DTranspose(8, 2, strides=2, name="up1")(d2)
    d1 = L.Conv2D(8, 3, padding="same", activation="relu", name="dec1")(L.Concatenate()([u1, c1]))
    out = L.Conv2D(4, 1, name="mask_logits")(d1)
    return keras.Model(x, out, name="unet")


def conv1d_audio(length=128):
    """A keyword-spotting style Conv1D net over a waveform-like sequence."""
    x = keras.Input((length, 1), name="audio")
    y = L.Conv1D(16, 9, strides=2, padding="same", name="c1")(x)
    y = L.BatchNormalization(name="bn1")(y)
    y = L.ReLU()(y)
    y = L.Conv1D(32, 5, strides=2, padding="same", name="c2")(y)
    y = L.BatchNormalization(name="bn2")(y)
    y = L.ReLU()(y)
    y = L.SeparableConv1D(32, 3, padding="same", name="sep3")(y)
    y = L.GlobalAveragePooling1D()(y)
    return keras.Model(x, L.Dense(12, name="logits")(y), name="conv1d_audio")


def _shuffle(x, groups):
    h, w, c = x.shape[1], x.shape[2], x.shape[3]
    x = L.Reshape((h, w, groups, c // groups))(x)
    x = L.Permute((1, 2, 4, 3))(x)
    return L.Reshape((h, w, c))(x)


def shufflenet_block(size=32):
    """ShuffleNetV2-style units: channel split with slicing, branch, concatenate, shuffle."""
    x = keras.Input((size, size, 3))
    y = L.Conv2D(16, 3, strides=2, padding="same", name="stem")(x)
    y = L.BatchNormalization(name="stem_bn")(y)
    y = L.ReLU()(y)
    for i in range(2):
        left, right = y[..., :8], y[..., 8:]
        r = L.Conv2D(8, 1, name=f"u{i}_pw1")(right)
        r = L.BatchNormalization(name=f"u{i}_bn1")(r)
        r = L.ReLU()(r)
        r = L.DepthwiseConv2D(3, padding="same", name=f"u{i}_dw")(r)
        r = L.BatchNormalization(name=f"u{i}_bn2")(r)
        r = L.Conv2D(8, 1, name=f"u{i}_pw2")(r)
        r = L.BatchNormalization(name=f"u{i}_bn3")(r)
        r = L.ReLU()(r)
        y = _shuffle(L.Concatenate()([left, r]), 2)
    y = L.Conv2D(32, 1, name="head")(y)
    y = L.GlobalAveragePooling2D()(y)
    return keras.Model(x, L.Dense(10, name="logits")(y), name="shufflenet_block")


def cbam(size=32):
    """CBAM: channel attention (shared MLP on avg/max pools) and spatial attention over
    ``ops.mean``/``ops.max`` of the channels."""
    x = keras.Input((size, size, 3))
    f = L.Conv2D(16, 3, padding="same", activation="relu", name="c1")(x)
    mlp1, mlp2 = L.Dense(4, activation="relu", name="mlp1"), L.Dense(16, name="mlp2")
    avg = mlp2(mlp1(L.GlobalAveragePooling2D(keepdims=True)(f)))
    mx = mlp2(mlp1(L.GlobalMaxPooling2D(keepdims=True)(f)))
    f = f * ops.sigmoid(avg + mx)
    spatial = ops.concatenate([ops.mean(f, axis=-1, keepdims=True), ops.max(f, axis=-1, keepdims=True)], axis=-1)
    f = f * L.Conv2D(1, 7, padding="same", activation="sigmoid", name="spatial")(spatial)
    f = L.Conv2D(16, 3, padding="same", activation="relu", name="c2")(f)
    f = L.GlobalAveragePooling2D()(f)
    return keras.Model(x, L.Dense(10, name="logits")(f), name="cbam")


def resnext_block(size=32):
    """ResNeXt/RegNet-style bottlenecks: 1x1 → grouped 3x3 (4 groups) → 1x1, and ``x + skip``."""
    x = keras.Input((size, size, 3))
    y = L.Conv2D(32, 3, padding="same", name="stem")(x)
    y = L.BatchNormalization(name="stem_bn")(y)
    y = L.ReLU()(y)
    for i in range(2):
        r = L.Conv2D(32, 1, name=f"b{i}_conv1")(y)
        r = L.BatchNormalization(name=f"b{i}_bn1")(r)
        r = L.ReLU()(r)
        r = L.Conv2D(32, 3, padding="same", groups=4, name=f"b{i}_gconv")(r)
        r = L.BatchNormalization(name=f"b{i}_bn2")(r)
        r = L.ReLU()(r)
        r = L.Conv2D(32, 1, name=f"b{i}_conv3")(r)
        r = L.BatchNormalization(name=f"b{i}_bn3")(r)
        y = ops.relu(y + r)
    y = L.GlobalAveragePooling2D()(y)
    return keras.Model(x, L.Dense(10, name="logits")(y), name="resnext_block")


def squeeze_excite_ops(size=32):
    """Squeeze-excite written as ``x * s`` and hard-swish written as ``x * relu6(x + 3) / 6``."""
    x = keras.Input((size, size, 3))
    y = L.Conv2D(16, 3, padding="same", name="c1")(x)
    y = y * ops.relu6(y + 3.0) / 6.0
    s = ops.mean(y, axis=(1, 2), keepdims=True)
    s = L.Conv2D(4, 1, activation="relu", name="se_reduce")(s)
    s = L.Conv2D(16, 1, name="se_expand")(s)
    y = y * ops.hard_sigmoid(s)
    y = L.Conv2D(24, 3, padding="same", name="c2")(y)
    y = L.GlobalAveragePooling2D()(y)
    return keras.Model(x, L.Dense(10, name="logits")(y), name="squeeze_excite_ops")


def nested_sequential_bn(size=32):
    """A functional model whose middle is a Sequential holding Conv2D + BatchNormalization."""
    inner = keras.Sequential([
        keras.Input((size, size, 8)),
        L.Conv2D(16, 3, padding="same", name="inner_conv"),
        L.BatchNormalization(name="inner_bn"),
        L.ReLU(name="inner_relu"),
    ], name="inner_block")
    x = keras.Input((size, size, 3))
    y = L.Conv2D(8, 3, padding="same", name="c1")(x)
    y = L.BatchNormalization(name="bn1")(y)
    y = inner(y)
    y = L.Conv2D(16, 3, padding="same", name="c2")(y)
    y = L.GlobalAveragePooling2D()(y)
    return keras.Model(x, L.Dense(10, name="logits")(y), name="nested_sequential_bn")


def shared_layer(size=32):
    """One Conv2D applied to two branches (weights shared)."""
    x = keras.Input((size, size, 3))
    y = L.Conv2D(8, 3, padding="same", activation="relu", name="c1")(x)
    shared = L.Conv2D(8, 3, padding="same", activation="relu", name="shared")
    a = shared(y)
    b = shared(L.MaxPooling2D(padding="same", strides=1)(y))
    y = L.Conv2D(16, 3, padding="same", name="c2")(L.Add()([a, b]))
    y = L.GlobalAveragePooling2D()(y)
    return keras.Model(x, L.Dense(10, name="logits")(y), name="shared_layer")


def multi_io(size=32):
    """Two inputs (image, metadata) and two outputs (class logits, a regression)."""
    img = keras.Input((size, size, 3), name="image")
    meta = keras.Input((5,), name="meta")
    y = L.Conv2D(16, 3, padding="same", activation="relu", name="c1")(img)
    y = L.Conv2D(16, 3, padding="same", activation="relu", name="c2")(y)
    y = L.GlobalAveragePooling2D()(y)
    m = L.Dense(8, activation="relu", name="meta_fc")(meta)
    h = L.Dense(32, activation="relu", name="fuse")(L.Concatenate()([y, m]))
    cls = L.Dense(10, name="cls")(h)
    reg = L.Dense(1, name="reg")(h)
    return keras.Model({"image": img, "meta": meta}, {"cls": cls, "reg": reg}, name="multi_io")


def channels_first_tail(size=16):
    """A channels_last stem whose features continue channels_first (as in a model ported from
    PyTorch): kprune prunes the stem and leaves the layers next to and after the Permute whole,
    each with its reason."""
    x = keras.Input((size, size, 3))
    y = L.Conv2D(8, 3, padding="same", activation="relu", name="stem")(x)
    y = L.Conv2D(8, 3, padding="same", activation="relu", name="c1")(y)
    y = L.Permute((3, 1, 2))(y)
    y = L.Conv2D(8, 3, padding="same", data_format="channels_first", name="c2_cf")(y)
    y = L.GlobalAveragePooling2D(data_format="channels_first")(y)
    return keras.Model(x, L.Dense(10, name="logits")(y), name="channels_first_tail")


HAND_BUILT = {f.__name__: f for f in (unet, conv1d_audio, shufflenet_block, cbam, resnext_block,
                                      squeeze_excite_ops, nested_sequential_bn, shared_layer, multi_io,
                                      channels_first_tail)}
