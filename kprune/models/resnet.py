"""CIFAR ResNets: ResNet-20/56 (He et al. 2016, §4.2) and ResNet-18/50 (CIFAR variants).

Shared layout: a 3x3 stride-1 stem convolution (no max-pool), stages of residual blocks,
global average pooling and one Dense classifier. Convolutions have no bias and are each
followed by ``BatchNormalization(momentum=0.9, epsilon=1e-5)``.

Shortcuts use **option B** everywhere: identity when the shape is unchanged, otherwise a
1x1 convolution with the block's stride followed by BatchNormalization (``*_shortcut_conv``,
``*_shortcut_bn``). With option B, CIFAR ResNet-20 has 40,813,184 MACs at 32x32x3
(the 40.8 M of the literature); option A (zero-padded identity) would have no
shortcut convolutions and 40,551,040 MACs. Option B is used because a 1x1 projection is
an ordinary layer that dependency-aware pruning can slice.

Layer names: ``conv1``/``bn1``/``relu1`` for the stem, then
``stage{s}_block{b}_{conv1,bn1,relu1,conv2,bn2,...,shortcut_conv,shortcut_bn,add,out}``
with stages and blocks counted from 1, then ``avgpool`` and ``predictions``.
"""

from __future__ import annotations

import keras

from kprune.models.registry import register, scale

_BN = {"momentum": 0.9, "epsilon": 1e-5}


def _conv(filters, kernel, stride, name):
    return keras.layers.Conv2D(
        filters, kernel, strides=stride, padding="same", use_bias=False,
        kernel_initializer="he_normal", name=name,
    )


def _shortcut(x, out_channels, stride, prefix):
    if stride == 1 and x.shape[-1] == out_channels:
        return x
    x = _conv(out_channels, 1, stride, f"{prefix}_shortcut_conv")(x)
    return keras.layers.BatchNormalization(**_BN, name=f"{prefix}_shortcut_bn")(x)


def basic_block(x, planes, stride, prefix):
    """Two 3x3 conv-BN pairs and a shortcut; output channels ``planes``."""
    shortcut = _shortcut(x, planes, stride, prefix)
    y = _conv(planes, 3, stride, f"{prefix}_conv1")(x)
    y = keras.layers.BatchNormalization(**_BN, name=f"{prefix}_bn1")(y)
    y = keras.layers.ReLU(name=f"{prefix}_relu1")(y)
    y = _conv(planes, 3, 1, f"{prefix}_conv2")(y)
    y = keras.layers.BatchNormalization(**_BN, name=f"{prefix}_bn2")(y)
    y = keras.layers.Add(name=f"{prefix}_add")([y, shortcut])
    return keras.layers.ReLU(name=f"{prefix}_out")(y)


def bottleneck_block(x, planes, stride, prefix, expansion=4):
    """1x1 → 3x3 (strided) → 1x1 (``expansion * planes``) with a shortcut."""
    out_channels = expansion * planes
    shortcut = _shortcut(x, out_channels, stride, prefix)
    y = _conv(planes, 1, 1, f"{prefix}_conv1")(x)
    y = keras.layers.BatchNormalization(**_BN, name=f"{prefix}_bn1")(y)
    y = keras.layers.ReLU(name=f"{prefix}_relu1")(y)
    y = _conv(planes, 3, stride, f"{prefix}_conv2")(y)
    y = keras.layers.BatchNormalization(**_BN, name=f"{prefix}_bn2")(y)
    y = keras.layers.ReLU(name=f"{prefix}_relu2")(y)
    y = _conv(out_channels, 1, 1, f"{prefix}_conv3")(y)
    y = keras.layers.BatchNormalization(**_BN, name=f"{prefix}_bn3")(y)
    y = keras.layers.Add(name=f"{prefix}_add")([y, shortcut])
    return keras.layers.ReLU(name=f"{prefix}_out")(y)


def cifar_resnet(block, blocks_per_stage, planes, input_shape, num_classes, width, name):
    """Build a CIFAR ResNet.

    Args:
        block: ``"basic"`` or ``"bottleneck"``.
        blocks_per_stage: number of blocks in each stage, e.g. ``(3, 3, 3)``.
        planes: full-width planes per stage, e.g. ``(16, 32, 64)``; the stem has
            ``planes[0]`` filters. The first block of every stage after the first
            has stride 2.
        input_shape: ``(height, width, channels)``.
        num_classes: output units.
        width: multiplier on every channel count (stem, planes, expansions).
        name: model name.

    Returns:
        A functional ``keras.Model`` (logits).

    Example:
        >>> m = cifar_resnet("basic", (3, 3, 3), (16, 32, 64), (32, 32, 3), 10, 1.0, "resnet20")
    """
    fn = basic_block if block == "basic" else bottleneck_block
    inputs = keras.Input(shape=tuple(input_shape), name="input")
    x = _conv(scale(planes[0], width), 3, 1, "conv1")(inputs)
    x = keras.layers.BatchNormalization(**_BN, name="bn1")(x)
    x = keras.layers.ReLU(name="relu1")(x)
    for s, (n, p) in enumerate(zip(blocks_per_stage, planes), start=1):
        for b in range(1, n + 1):
            stride = 2 if (s > 1 and b == 1) else 1
            x = fn(x, scale(p, width), stride, f"stage{s}_block{b}")
    x = keras.layers.GlobalAveragePooling2D(name="avgpool")(x)
    outputs = keras.layers.Dense(num_classes, name="predictions")(x)
    return keras.Model(inputs, outputs, name=name)


@register("resnet20")
def resnet20(input_shape=(32, 32, 3), num_classes=10, width=1.0):
    """CIFAR ResNet-20: 3 stages (16/32/64) of 3 BasicBlocks, option-B shortcuts.

    Example:
        >>> resnet20().count_params()  # 272,474 trainable + 1,568 BN statistics
        274042
    """
    return cifar_resnet("basic", (3, 3, 3), (16, 32, 64), input_shape, num_classes, width, "resnet20")


@register("resnet56")
def resnet56(input_shape=(32, 32, 3), num_classes=10, width=1.0):
    """CIFAR ResNet-56: 3 stages (16/32/64) of 9 BasicBlocks, option-B shortcuts."""
    return cifar_resnet("basic", (9, 9, 9), (16, 32, 64), input_shape, num_classes, width, "resnet56")


@register("resnet18")
def resnet18(input_shape=(32, 32, 3), num_classes=10, width=1.0):
    """CIFAR ResNet-18: 4 stages (64/128/256/512) of 2 BasicBlocks, 3x3 stem, no max-pool."""
    return cifar_resnet("basic", (2, 2, 2, 2), (64, 128, 256, 512), input_shape, num_classes, width, "resnet18")


@register("resnet50")
def resnet50(input_shape=(32, 32, 3), num_classes=10, width=1.0):
    """CIFAR ResNet-50: 4 stages (64/128/256/512 planes, x4 expansion) of 3/4/6/3 Bottlenecks."""
    return cifar_resnet("bottleneck", (3, 4, 6, 3), (64, 128, 256, 512), input_shape, num_classes, width, "resnet50")
