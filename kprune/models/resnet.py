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

Strided 3x3 convolutions pad one pixel on every side, as ``nn.Conv2d(padding=1)`` in the
reference implementations: a ``ZeroPadding2D(1)`` layer (``stage{s}_block1_pad1``, or
``_pad2`` in front of a bottleneck's ``conv2``) and a ``valid`` convolution. Keras' ``same``
would pad only the bottom/right and shift the residual branch one pixel against the 1x1
stride-2 shortcut (see :mod:`kprune.models.layers`); ``strided_padding="same"`` rebuilds
that pre-issue-19 layout. Parameter and MAC counts are the same for both.

Initialisation (``init="reference"``, the default) is torchvision's ResNet scheme, which
fb.resnet.torch (the reproduction of He et al.'s CIFAR results) also uses for convolutions:
convolution kernels N(0, 2/fan_out) with fan_out = out_channels·k² (``kaiming_normal_``,
``mode="fan_out"``), BatchNorm γ = 1 and β = 0, and PyTorch's default for the classifier,
U(±1/sqrt(fan_in)) for kernel and bias. ``init="torch"`` gives every convolution PyTorch's
default U(±1/sqrt(fan_in)) too (the CIFAR ResNets of kuangliu/pytorch-cifar, which set no
init); ``init="keras"`` is the pre-issue-19 zoo (``he_normal`` convolutions,
``glorot_uniform`` classifier). See :mod:`kprune.models.initializers`.

Layer names: ``conv1``/``bn1``/``relu1`` for the stem, then
``stage{s}_block{b}_{conv1,bn1,relu1,conv2,bn2,...,shortcut_conv,shortcut_bn,add,out}``
with stages and blocks counted from 1, then ``avgpool`` and ``predictions``.
"""

from __future__ import annotations

import keras

from kprune.models import layers as zoo_layers
from kprune.models.initializers import check_scheme
from kprune.models.registry import register, scale

_BN = {"momentum": 0.9, "epsilon": 1e-5}


def _conv(x, filters, kernel, stride, name, opts):
    return zoo_layers.conv2d(x, filters, kernel, stride, name, init=opts["init"],
                             reference="kaiming_normal_fan_out", strided_padding=opts["strided_padding"],
                             keras_kernel="he_normal")


def _shortcut(x, out_channels, stride, prefix, opts):
    if stride == 1 and x.shape[-1] == out_channels:
        return x
    x = _conv(x, out_channels, 1, stride, f"{prefix}_shortcut_conv", opts)
    return keras.layers.BatchNormalization(**_BN, name=f"{prefix}_shortcut_bn")(x)


def basic_block(x, planes, stride, prefix, opts):
    """Two 3x3 conv-BN pairs and a shortcut; output channels ``planes``.

    ``opts`` is ``{"init": ..., "strided_padding": ...}`` (see :func:`cifar_resnet`).
    """
    shortcut = _shortcut(x, planes, stride, prefix, opts)
    y = _conv(x, planes, 3, stride, f"{prefix}_conv1", opts)
    y = keras.layers.BatchNormalization(**_BN, name=f"{prefix}_bn1")(y)
    y = keras.layers.ReLU(name=f"{prefix}_relu1")(y)
    y = _conv(y, planes, 3, 1, f"{prefix}_conv2", opts)
    y = keras.layers.BatchNormalization(**_BN, name=f"{prefix}_bn2")(y)
    y = keras.layers.Add(name=f"{prefix}_add")([y, shortcut])
    return keras.layers.ReLU(name=f"{prefix}_out")(y)


def bottleneck_block(x, planes, stride, prefix, opts, expansion=4):
    """1x1 → 3x3 (strided) → 1x1 (``expansion * planes``) with a shortcut; ``opts`` as :func:`basic_block`."""
    out_channels = expansion * planes
    shortcut = _shortcut(x, out_channels, stride, prefix, opts)
    y = _conv(x, planes, 1, 1, f"{prefix}_conv1", opts)
    y = keras.layers.BatchNormalization(**_BN, name=f"{prefix}_bn1")(y)
    y = keras.layers.ReLU(name=f"{prefix}_relu1")(y)
    y = _conv(y, planes, 3, stride, f"{prefix}_conv2", opts)
    y = keras.layers.BatchNormalization(**_BN, name=f"{prefix}_bn2")(y)
    y = keras.layers.ReLU(name=f"{prefix}_relu2")(y)
    y = _conv(y, out_channels, 1, 1, f"{prefix}_conv3", opts)
    y = keras.layers.BatchNormalization(**_BN, name=f"{prefix}_bn3")(y)
    y = keras.layers.Add(name=f"{prefix}_add")([y, shortcut])
    return keras.layers.ReLU(name=f"{prefix}_out")(y)


def cifar_resnet(block, blocks_per_stage, planes, input_shape, num_classes, width, name,
                 init="reference", strided_padding="symmetric"):
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
        init: ``"reference"`` (default: torchvision's scheme), ``"torch"`` or ``"keras"``;
            see the module docstring.
        strided_padding: ``"symmetric"`` (default, PyTorch's ``padding=1``) or ``"same"``
            (Keras' bottom/right padding, the zoo before issue 19).

    Returns:
        A functional ``keras.Model`` (logits).

    Example:
        >>> m = cifar_resnet("basic", (3, 3, 3), (16, 32, 64), (32, 32, 3), 10, 1.0, "resnet20")
    """
    fn = basic_block if block == "basic" else bottleneck_block
    opts = {"init": check_scheme(init), "strided_padding": zoo_layers.check_padding(strided_padding)}
    inputs = keras.Input(shape=tuple(input_shape), name="input")
    x = _conv(inputs, scale(planes[0], width), 3, 1, "conv1", opts)
    x = keras.layers.BatchNormalization(**_BN, name="bn1")(x)
    x = keras.layers.ReLU(name="relu1")(x)
    for s, (n, p) in enumerate(zip(blocks_per_stage, planes), start=1):
        for b in range(1, n + 1):
            stride = 2 if (s > 1 and b == 1) else 1
            x = fn(x, scale(p, width), stride, f"stage{s}_block{b}", opts)
    x = keras.layers.GlobalAveragePooling2D(name="avgpool")(x)
    outputs = zoo_layers.dense(x, num_classes, "predictions", init=opts["init"], reference="torch_default")
    return keras.Model(inputs, outputs, name=name)


@register("resnet20")
def resnet20(input_shape=(32, 32, 3), num_classes=10, width=1.0, init="reference", strided_padding="symmetric"):
    """CIFAR ResNet-20: 3 stages (16/32/64) of 3 BasicBlocks, option-B shortcuts.

    Example:
        >>> resnet20().count_params()  # 272,474 trainable + 1,568 BN statistics
        274042
    """
    return cifar_resnet("basic", (3, 3, 3), (16, 32, 64), input_shape, num_classes, width, "resnet20",
                        init, strided_padding)


@register("resnet56")
def resnet56(input_shape=(32, 32, 3), num_classes=10, width=1.0, init="reference", strided_padding="symmetric"):
    """CIFAR ResNet-56: 3 stages (16/32/64) of 9 BasicBlocks, option-B shortcuts."""
    return cifar_resnet("basic", (9, 9, 9), (16, 32, 64), input_shape, num_classes, width, "resnet56",
                        init, strided_padding)


@register("resnet18")
def resnet18(input_shape=(32, 32, 3), num_classes=10, width=1.0, init="reference", strided_padding="symmetric"):
    """CIFAR ResNet-18: 4 stages (64/128/256/512) of 2 BasicBlocks, 3x3 stem, no max-pool."""
    return cifar_resnet("basic", (2, 2, 2, 2), (64, 128, 256, 512), input_shape, num_classes, width, "resnet18",
                        init, strided_padding)


@register("resnet50")
def resnet50(input_shape=(32, 32, 3), num_classes=10, width=1.0, init="reference", strided_padding="symmetric"):
    """CIFAR ResNet-50: 4 stages (64/128/256/512 planes, x4 expansion) of 3/4/6/3 Bottlenecks."""
    return cifar_resnet("bottleneck", (3, 4, 6, 3), (64, 128, 256, 512), input_shape, num_classes, width, "resnet50",
                        init, strided_padding)
