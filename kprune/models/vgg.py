"""CIFAR VGG-16 / VGG-19 with BatchNorm, the model of NNI's pruner comparison.

Layout (NNI's ``examples/model_compress/models/cifar10/vgg.py``, re-expressed in Keras):
every ``cfg`` entry is a 3x3 ``Conv2D`` without bias (``same`` padding) followed by
``BatchNormalization`` and ReLU; ``"M"`` is a 2x2 max-pool. After the last convolution
(2x2 at 32x32 input) comes a global average pool (NNI uses a 2x2 average pool there,
which is the same operation at 32x32 and also works for other input sizes), then the
classifier ``fc1`` Dense(512) → BatchNormalization → ReLU → ``predictions``
Dense(num_classes).

At 32x32x3 and 10 classes VGG-16 has 14,987,722 trainable parameters (NNI's count;
PyTorch does not count BatchNorm running statistics) and 14,997,194 Keras parameters
(``model.count_params()`` adds the 2 x 4,736 moving mean/variance entries).

VGG has no strided convolution (2x2 max-pools downsample), so its ``same`` 3x3
convolutions pad one pixel on every side, as NNI's ``padding=1``. The pools use ``same``
padding, which equals PyTorch's ``MaxPool2d(2)`` on even sizes (32 → 16 → 8 → 4 → 2) and
keeps odd sizes working (28 → 14 → 7 → 4 → 2, where PyTorch would floor 7 to 3).

Initialisation (``init="reference"``) is NNI's ``_initialize_weights`` (from network
slimming): convolution kernels N(0, 2/fan_out) with fan_out = out_channels·9, the
convolutions' BatchNorm γ = 0.5 and β = 0, the classifier's BatchNorm γ = 1, Dense kernels
N(0, 0.01²) with zero biases. ``init="torch"`` is PyTorch's layer default (U(±1/sqrt(fan_in))
kernels and biases, γ = 1); ``init="keras"`` is the pre-issue-19 zoo (Keras' defaults).
See :mod:`kprune.models.initializers`.
"""

from __future__ import annotations

import keras

from kprune.models import layers as zoo_layers
from kprune.models.initializers import check_scheme
from kprune.models.registry import register, scale

CFG = {
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512],
    19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512],
}


def vgg(depth, input_shape=(32, 32, 3), num_classes=10, width=1.0, hidden_units=None, name=None, init="reference"):
    """Build a CIFAR VGG with BatchNorm.

    Args:
        depth: 16 or 19.
        input_shape: ``(height, width, channels)``, default ``(32, 32, 3)``. Pools use
            ``same`` padding, so inputs down to 1x1 work (28x28 → 14, 7, 4, 2).
        num_classes: output units, default 10.
        width: multiplier on every convolution's filter count.
        hidden_units: units of the classifier's hidden Dense; default ``None`` means
            ``scale(512, width)``. Pass 512 to keep NNI's classifier while the
            convolutions are thinner (that is what filter pruning of the convs gives).
        name: model name, default ``f"vgg{depth}"``.
        init: ``"reference"`` (default, NNI's), ``"torch"`` or ``"keras"``; see the module docstring.

    Returns:
        A functional ``keras.Model``; layers are named ``conv1`` … ``conv13``, ``bn1`` …,
        ``relu1`` …, ``pool1`` …, ``avgpool``, ``fc1``, ``fc1_bn``, ``fc1_relu``,
        ``predictions``.

    Example:
        >>> vgg(16).count_params()
        14997194
    """
    check_scheme(init)
    gamma = 0.5 if init == "reference" else 1.0
    inputs = keras.Input(shape=tuple(input_shape), name="input")
    x = inputs
    conv_i = pool_i = 0
    for v in CFG[depth]:
        if v == "M":
            pool_i += 1
            x = keras.layers.MaxPooling2D(2, padding="same", name=f"pool{pool_i}")(x)
            continue
        conv_i += 1
        x = zoo_layers.conv2d(x, scale(v, width), 3, 1, f"conv{conv_i}", init=init, reference="kaiming_normal_fan_out")
        x = keras.layers.BatchNormalization(epsilon=1e-5, gamma_initializer=keras.initializers.Constant(gamma),
                                            name=f"bn{conv_i}")(x)
        x = keras.layers.ReLU(name=f"relu{conv_i}")(x)
    x = keras.layers.GlobalAveragePooling2D(name="avgpool")(x)
    units = scale(512, width) if hidden_units is None else int(hidden_units)
    x = zoo_layers.dense(x, units, "fc1", init=init, reference="normal_0.01")
    x = keras.layers.BatchNormalization(epsilon=1e-5, name="fc1_bn")(x)
    x = keras.layers.ReLU(name="fc1_relu")(x)
    outputs = zoo_layers.dense(x, num_classes, "predictions", init=init, reference="normal_0.01")
    return keras.Model(inputs, outputs, name=name or f"vgg{depth}")


@register("vgg16")
def vgg16(input_shape=(32, 32, 3), num_classes=10, width=1.0, hidden_units=None, init="reference"):
    """CIFAR VGG-16 with BatchNorm (13 convs). See :func:`vgg` for the arguments.

    Example:
        >>> vgg16().count_params()
        14997194
    """
    return vgg(16, input_shape, num_classes, width, hidden_units, init=init)


@register("vgg19")
def vgg19(input_shape=(32, 32, 3), num_classes=10, width=1.0, hidden_units=None, init="reference"):
    """CIFAR VGG-19 with BatchNorm (16 convs). See :func:`vgg` for the arguments.

    Example:
        >>> len([l for l in vgg19().layers if l.name.startswith("conv")])
        16
    """
    return vgg(19, input_shape, num_classes, width, hidden_units, init=init)
