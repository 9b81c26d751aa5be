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
"""

from __future__ import annotations

import keras

from kprune.models.registry import register, scale

_BN = {"momentum": 0.9, "epsilon": 1e-5}

CFG = ((1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


def inverted_residual(x, expansion, out_channels, stride, prefix):
    """One MobileNetV2 block; see the module docstring for its layout."""
    in_channels = x.shape[-1]
    y = x
    if expansion != 1:
        y = keras.layers.Conv2D(in_channels * expansion, 1, use_bias=False, name=f"{prefix}_expand")(y)
        y = keras.layers.BatchNormalization(**_BN, name=f"{prefix}_expand_bn")(y)
        y = keras.layers.ReLU(6.0, name=f"{prefix}_expand_relu")(y)
    y = keras.layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False, name=f"{prefix}_dw")(y)
    y = keras.layers.BatchNormalization(**_BN, name=f"{prefix}_dw_bn")(y)
    y = keras.layers.ReLU(6.0, name=f"{prefix}_dw_relu")(y)
    y = keras.layers.Conv2D(out_channels, 1, use_bias=False, name=f"{prefix}_project")(y)
    y = keras.layers.BatchNormalization(**_BN, name=f"{prefix}_project_bn")(y)
    if stride == 1 and in_channels == out_channels:
        y = keras.layers.Add(name=f"{prefix}_add")([x, y])
    return y


@register("mobilenetv2")
def mobilenetv2(input_shape=(32, 32, 3), num_classes=10, width=1.0):
    """CIFAR MobileNetV2.

    Args:
        input_shape: ``(height, width, channels)``, default ``(32, 32, 3)``.
        num_classes: output units, default 10.
        width: multiplier on every channel count (stem, block outputs, the 1280 head);
            expanded widths are ``expansion x`` the (scaled) block input.

    Returns:
        A functional ``keras.Model`` named ``"mobilenetv2"`` (logits).

    Example:
        >>> mobilenetv2(width=0.5).get_layer("conv1").filters
        16
    """
    inputs = keras.Input(shape=tuple(input_shape), name="input")
    x = keras.layers.Conv2D(scale(32, width), 3, padding="same", use_bias=False, name="conv1")(inputs)
    x = keras.layers.BatchNormalization(**_BN, name="bn1")(x)
    x = keras.layers.ReLU(6.0, name="relu1")(x)
    i = 0
    for t, c, n, s in CFG:
        for r in range(n):
            i += 1
            x = inverted_residual(x, t, scale(c, width), s if r == 0 else 1, f"block{i}")
    x = keras.layers.Conv2D(scale(1280, width), 1, use_bias=False, name="conv_last")(x)
    x = keras.layers.BatchNormalization(**_BN, name="conv_last_bn")(x)
    x = keras.layers.ReLU(6.0, name="conv_last_relu")(x)
    x = keras.layers.GlobalAveragePooling2D(name="avgpool")(x)
    outputs = keras.layers.Dense(num_classes, name="predictions")(x)
    return keras.Model(inputs, outputs, name="mobilenetv2")
