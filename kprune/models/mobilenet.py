"""CIFAR MobileNetV2 (Sandler et al. 2018) with a stride-1 stem for 32x32 inputs.

Layout: ``conv1`` 3x3 stride 1 (32 filters) → BN → ReLU6, then inverted residual blocks
``(expansion t, channels c, repeats n, stride s)``::

    (1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2),
    (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)

(ImageNet's table with the first two strides set to 1, as is usual for CIFAR), then
``conv_last`` 1x1 (1280) → BN → ReLU6 → global average pool → ``predictions``.
Each block: 1x1 expand (skipped when t = 1) → BN → ReLU6 → 3x3 depthwise (stride s) →
BN → ReLU6 → 1x1 project → BN; a residual ``Add`` when the stride is 1 and the input
and output channel counts are equal. Layer names: ``block{i}_{expand,expand_bn,
expand_relu,dw,dw_bn,dw_relu,project,project_bn,add}`` with blocks counted from 1.

Strided depthwise convolutions pad one pixel on every side like torchvision's
``Conv2dNormActivation(padding=(k - 1) // 2)``: ``block{i}_dw_pad`` (``ZeroPadding2D(1)``)
then a ``valid`` depthwise convolution; ``strided_padding="same"`` rebuilds the pre-issue-19
layout with Keras' bottom/right padding (see :mod:`kprune.models.layers`).

Initialisation (``init="reference"``) is torchvision's MobileNetV2: every convolution,
depthwise included, N(0, 2/fan_out) with PyTorch's fan_out = out_channels·k² (so 9·C for a
3x3 depthwise layer over C channels), BatchNorm γ = 1 and β = 0, the classifier N(0, 0.01²)
with a zero bias. ``init="torch"`` is PyTorch's layer default, U(±1/sqrt(fan_in)) with
fan_in = 9 for a 3x3 depthwise kernel; ``init="keras"`` is the pre-issue-19 zoo (Keras'
``glorot_uniform``). See :mod:`kprune.models.initializers`.
"""

from __future__ import annotations

import keras

from kprune.models import layers as zoo_layers
from kprune.models.initializers import check_scheme
from kprune.models.registry import register, scale

_BN = {"momentum": 0.9, "epsilon": 1e-5}

CFG = ((1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


def _conv(x, filters, kernel, stride, name, opts):
    return zoo_layers.conv2d(x, filters, kernel, stride, name, init=opts["init"],
                             reference="kaiming_normal_fan_out", strided_padding=opts["strided_padding"])


def inverted_residual(x, expansion, out_channels, stride, prefix, opts=None):
    """One MobileNetV2 block; see the module docstring for its layout.

    ``opts`` is ``{"init": ..., "strided_padding": ...}``, default the zoo's defaults.
    """
    opts = opts or {"init": "reference", "strided_padding": "symmetric"}
    in_channels = x.shape[-1]
    y = x
    if expansion != 1:
        y = _conv(y, in_channels * expansion, 1, 1, f"{prefix}_expand", opts)
        y = keras.layers.BatchNormalization(**_BN, name=f"{prefix}_expand_bn")(y)
        y = keras.layers.ReLU(6.0, name=f"{prefix}_expand_relu")(y)
    y = zoo_layers.depthwise_conv2d(y, 3, stride, f"{prefix}_dw", init=opts["init"],
                                    reference="kaiming_normal_fan_out", strided_padding=opts["strided_padding"])
    y = keras.layers.BatchNormalization(**_BN, name=f"{prefix}_dw_bn")(y)
    y = keras.layers.ReLU(6.0, name=f"{prefix}_dw_relu")(y)
    y = _conv(y, out_channels, 1, 1, f"{prefix}_project", opts)
    y = keras.layers.BatchNormalization(**_BN, name=f"{prefix}_project_bn")(y)
    if stride == 1 and in_channels == out_channels:
        y = keras.layers.Add(name=f"{prefix}_add")([x, y])
    return y


@register("mobilenetv2")
def mobilenetv2(input_shape=(32, 32, 3), num_classes=10, width=1.0, init="reference", strided_padding="symmetric"):
    """CIFAR MobileNetV2.

    Args:
        input_shape: ``(height, width, channels)``, default ``(32, 32, 3)``.
        num_classes: output units, default 10.
        width: multiplier on every channel count (stem, block outputs, the 1280 head);
            expanded widths are ``expansion x`` the (scaled) block input.
        init: ``"reference"`` (default, torchvision's), ``"torch"`` or ``"keras"``.
        strided_padding: ``"symmetric"`` (default) or ``"same"`` (pre-issue-19).

    Returns:
        A functional ``keras.Model`` named ``"mobilenetv2"`` (logits).

    Example:
        >>> mobilenetv2(width=0.5).get_layer("conv1").filters
        16
    """
    opts = {"init": check_scheme(init), "strided_padding": zoo_layers.check_padding(strided_padding)}
    inputs = keras.Input(shape=tuple(input_shape), name="input")
    x = _conv(inputs, scale(32, width), 3, 1, "conv1", opts)
    x = keras.layers.BatchNormalization(**_BN, name="bn1")(x)
    x = keras.layers.ReLU(6.0, name="relu1")(x)
    i = 0
    for t, c, n, s in CFG:
        for r in range(n):
            i += 1
            x = inverted_residual(x, t, scale(c, width), s if r == 0 else 1, f"block{i}", opts)
    x = _conv(x, scale(1280, width), 1, 1, "conv_last", opts)
    x = keras.layers.BatchNormalization(**_BN, name="conv_last_bn")(x)
    x = keras.layers.ReLU(6.0, name="conv_last_relu")(x)
    x = keras.layers.GlobalAveragePooling2D(name="avgpool")(x)
    outputs = zoo_layers.dense(x, num_classes, "predictions", init=opts["init"], reference="normal_0.01")
    return keras.Model(inputs, outputs, name="mobilenetv2")
