"""LeNet-5 and LeNet-300-100, the small models of the classic pruning papers.

Neither has a strided convolution (2x2 max-pools downsample; ``conv1``'s stride-1 ``same``
5x5 padding is two pixels on every side), so padding matches PyTorch's as it is.

Initialisation (``init="reference"``) is Caffe's ``xavier`` filler of the LeNet examples
that Han et al. (2015) prune: kernels U(±sqrt(3/fan_in)) (LeCun uniform), zero biases.
``init="torch"`` is PyTorch's layer default (U(±1/sqrt(fan_in)) kernels and biases);
``init="keras"`` is the pre-issue-19 zoo (Keras' ``glorot_uniform``). See
:mod:`kprune.models.initializers`.
"""

from __future__ import annotations

import keras

from kprune.models import layers as zoo_layers
from kprune.models.initializers import check_scheme, fans, initializers
from kprune.models.registry import register, scale

_REF = "lecun_uniform"


@register("lenet5")
def lenet5(input_shape=(28, 28, 1), num_classes=10, width=1.0, init="reference"):
    """LeNet-5: conv-pool-conv-pool, then Dense 120-84-classes.

    ``conv1`` (6 filters, 5x5, ``same`` padding) → max-pool 2 → ``conv2`` (16 filters,
    5x5, ``valid``) → max-pool 2 → flatten → ``fc1`` (120) → ``fc2`` (84) →
    ``predictions``. ReLU activations. On 28x28 inputs the flattened size is 16*5*5=400,
    as in the original.

    Args:
        input_shape: ``(height, width, channels)``, default ``(28, 28, 1)``.
        num_classes: output units, default 10.
        width: multiplier on 6, 16, 120 and 84 (see :func:`kprune.models.registry.scale`).
        init: ``"reference"`` (default, Caffe's xavier), ``"torch"`` or ``"keras"``.

    Returns:
        A functional ``keras.Model`` named ``"lenet5"`` (logits, no softmax).

    Example:
        >>> model = lenet5((28, 28, 1), 10)
    """
    check_scheme(init)
    inputs = keras.Input(shape=tuple(input_shape), name="input")
    x = zoo_layers.conv2d(inputs, scale(6, width), 5, 1, "conv1", init=init, reference=_REF, use_bias=True,
                          activation="relu")
    x = keras.layers.MaxPooling2D(2, name="pool1")(x)
    x = keras.layers.Conv2D(scale(16, width), 5, activation="relu", name="conv2",
                            **initializers(init, _REF, *fans(5, x.shape[-1], scale(16, width))))(x)
    x = keras.layers.MaxPooling2D(2, name="pool2")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = zoo_layers.dense(x, scale(120, width), "fc1", init=init, reference=_REF, activation="relu")
    x = zoo_layers.dense(x, scale(84, width), "fc2", init=init, reference=_REF, activation="relu")
    outputs = zoo_layers.dense(x, num_classes, "predictions", init=init, reference=_REF)
    return keras.Model(inputs, outputs, name="lenet5")


@register("lenet300_100")
def lenet300_100(input_shape=(28, 28, 1), num_classes=10, width=1.0, init="reference"):
    """LeNet-300-100: Flatten → Dense 300 → Dense 100 → Dense classes (ReLU).

    Args:
        input_shape: any shape; it is flattened. Default ``(28, 28, 1)``.
        num_classes: output units, default 10.
        width: multiplier on 300 and 100.
        init: ``"reference"`` (default, Caffe's xavier), ``"torch"`` or ``"keras"``.

    Returns:
        A functional ``keras.Model`` named ``"lenet300_100"`` (logits).

    Example:
        >>> lenet300_100((28, 28, 1), 10).count_params()
        266610
    """
    check_scheme(init)
    inputs = keras.Input(shape=tuple(input_shape), name="input")
    x = keras.layers.Flatten(name="flatten")(inputs)
    x = zoo_layers.dense(x, scale(300, width), "fc1", init=init, reference=_REF, activation="relu")
    x = zoo_layers.dense(x, scale(100, width), "fc2", init=init, reference=_REF, activation="relu")
    outputs = zoo_layers.dense(x, num_classes, "predictions", init=init, reference=_REF)
    return keras.Model(inputs, outputs, name="lenet300_100")
