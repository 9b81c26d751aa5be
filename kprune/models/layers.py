"""Convolutions of the zoo: PyTorch-style symmetric padding for strided layers, per-model init.

Keras' ``padding="same"`` pads ``max(k - s, 0)`` pixels in total when the input size is a
multiple of the stride, and puts the odd pixel at the bottom/right: a 3x3 stride-2
convolution on a 32x32 input pads 0 on the top/left and 1 on the bottom/right. PyTorch's
reference implementations (``nn.Conv2d(..., stride=2, padding=1)``) pad one pixel on every
side. The two sample different pixels, so in a ResNet the strided 3x3 branch is shifted by
one pixel against the 1x1 stride-2 shortcut, which samples the top-left pixel of each 2x2
cell. With ``strided_padding="symmetric"`` (the zoo's default) a strided convolution with a
kernel larger than 1 is built as ``ZeroPadding2D(k // 2)`` followed by the convolution with
``padding="valid"``: the layout of the papers' reference code, and the same output size and
MACs as ``same``. Stride-1 ``same`` convolutions with odd kernels already pad symmetrically
and are unchanged; 1x1 convolutions never pad.

The padding layer is named after its convolution with ``_conv`` / ``_dw`` replaced:
``stage2_block1_conv1`` gets ``stage2_block1_pad1``, ``block4_dw`` gets ``block4_dw_pad``.
"""

from __future__ import annotations

import keras

from kprune.errors import KPruneError
from kprune.models.initializers import depthwise as _depthwise_kwargs
from kprune.models.initializers import fans, initializers

PADDINGS = ("symmetric", "same")


def check_padding(strided_padding) -> str:
    """Validate a ``strided_padding`` argument and return it.

    Raises:
        KPruneError: when it is not ``"symmetric"`` or ``"same"``.
    """
    if strided_padding not in PADDINGS:
        raise KPruneError(
            f"`strided_padding` must be one of {list(PADDINGS)} (symmetric: pad k//2 on every side like "
            f"PyTorch's reference models; same: Keras' bottom/right padding, the zoo before issue 19). "
            f"Received: strided_padding={strided_padding!r}")
    return strided_padding


def pad_name(conv_name: str) -> str:
    """The name of the ``ZeroPadding2D`` in front of the strided convolution ``conv_name``.

    Example:
        >>> pad_name("stage2_block1_conv1"), pad_name("block4_dw")
        ('stage2_block1_pad1', 'block4_dw_pad')
    """
    if conv_name.endswith("_dw"):
        return conv_name + "_pad"
    head, sep, tail = conv_name.rpartition("_conv")
    return f"{head}_pad{tail}" if sep else conv_name + "_pad"


def _pad(x, kernel: int, stride: int, name: str, strided_padding: str):
    if stride > 1 and kernel > 1 and strided_padding == "symmetric":
        return keras.layers.ZeroPadding2D(kernel // 2, name=pad_name(name))(x), "valid"
    return x, "same"


def conv2d(x, filters: int, kernel: int, stride: int, name: str, *, init: str, reference: str,
           strided_padding: str = "symmetric", use_bias: bool = False, keras_kernel: str = "glorot_uniform",
           activation=None):
    """Apply a (padded, initialised) ``Conv2D`` to ``x``.

    Args:
        x: the input tensor (NHWC).
        filters, kernel, stride: the convolution's output channels, square kernel size and stride.
        name: the convolution's name (a padding layer, if any, gets :func:`pad_name`).
        init: ``"reference"``, ``"torch"`` or ``"keras"`` (see :mod:`kprune.models.initializers`).
        reference: the model's reference rule for this layer (e.g. ``"kaiming_normal_fan_out"``).
        strided_padding: ``"symmetric"`` (default) or ``"same"`` (see the module docstring).
        use_bias: default ``False`` (convolutions followed by BatchNorm).
        keras_kernel: the kernel initialiser of the ``"keras"`` scheme.
        activation: passed to ``Conv2D``.

    Returns:
        The output tensor.
    """
    kw = initializers(init, reference, *fans(kernel, x.shape[-1], filters), keras_kernel=keras_kernel)
    if not use_bias:
        kw.pop("bias_initializer")
    x, padding = _pad(x, kernel, stride, name, strided_padding)
    return keras.layers.Conv2D(filters, kernel, strides=stride, padding=padding, use_bias=use_bias,
                               activation=activation, name=name, **kw)(x)


def depthwise_conv2d(x, kernel: int, stride: int, name: str, *, init: str, reference: str,
                     strided_padding: str = "symmetric"):
    """Apply a bias-free ``DepthwiseConv2D`` (depth multiplier 1) to ``x``; arguments as :func:`conv2d`."""
    channels = x.shape[-1]
    kw = _depthwise_kwargs(initializers(init, reference, *fans(kernel, channels, channels, groups=channels)))
    kw.pop("bias_initializer")
    x, padding = _pad(x, kernel, stride, name, strided_padding)
    return keras.layers.DepthwiseConv2D(kernel, strides=stride, padding=padding, use_bias=False, name=name, **kw)(x)


def dense(x, units: int, name: str, *, init: str, reference: str, activation=None):
    """Apply an initialised ``Dense`` layer to ``x`` (the ``"keras"`` scheme: glorot_uniform, zero bias)."""
    kw = initializers(init, reference, *fans(1, x.shape[-1], units))
    return keras.layers.Dense(units, activation=activation, name=name, **kw)(x)
