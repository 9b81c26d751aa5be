"""LeNet-5 and LeNet-300-100, the small models of the classic pruning papers."""

from __future__ import annotations

import keras

from kprune.models.registry import register, scale


@register("lenet5")
def lenet5(input_shape=(28, 28, 1), num_classes=10, width=1.0):
    """LeNet-5: conv-pool-conv-pool, then Dense 120-84-classes.

    ``conv1`` (6 filters, 5x5, ``same`` padding) → max-pool 2 → ``conv2`` (16 filters,
    5x5, ``valid``) → max-pool 2 → flatten → ``fc1`` (120) → ``fc2`` (84) →
    ``predictions``. ReLU activations. On 28x28 inputs the flattened size is 16*5*5=400,
    as in the original.

    Args:
        input_shape: ``(height, width, channels)``, default ``(28, 28, 1)``.
        num_classes: output units, default 10.
        width: multiplier on 6, 16, 120 and 84 (see :func:`kprune.models.registry.scale`).

    Returns:
        A functional ``keras.Model`` named ``"lenet5"`` (logits, no softmax).

    Example:
        >>> model = lenet5((28, 28, 1), 10)
    """
    inputs = keras.Input(shape=tuple(input_shape), name="input")
    x = keras.layers.Conv2D(scale(6, width), 5, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.MaxPooling2D(2, name="pool1")(x)
    x = keras.layers.Conv2D(scale(16, width), 5, activation="relu", name="conv2")(x)
    x = keras.layers.MaxPooling2D(2, name="pool2")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(scale(120, width), activation="relu", name="fc1")(x)
    x = keras.layers.Dense(scale(84, width), activation="relu", name="fc2")(x)
    outputs = keras.layers.Dense(num_classes, name="predictions")(x)
    return keras.Model(inputs, outputs, name="lenet5")


@register("lenet300_100")
def lenet300_100(input_shape=(28, 28, 1), num_classes=10, width=1.0):
    """LeNet-300-100: Flatten → Dense 300 → Dense 100 → Dense classes (ReLU).

    Args:
        input_shape: any shape; it is flattened. Default ``(28, 28, 1)``.
        num_classes: output units, default 10.
        width: multiplier on 300 and 100.

    Returns:
        A functional ``keras.Model`` named ``"lenet300_100"`` (logits).

    Example:
        >>> lenet300_100((28, 28, 1), 10).count_params()
        266610
    """
    inputs = keras.Input(shape=tuple(input_shape), name="input")
    x = keras.layers.Flatten(name="flatten")(inputs)
    x = keras.layers.Dense(scale(300, width), activation="relu", name="fc1")(x)
    x = keras.layers.Dense(scale(100, width), activation="relu", name="fc2")(x)
    outputs = keras.layers.Dense(num_classes, name="predictions")(x)
    return keras.Model(inputs, outputs, name="lenet300_100")
