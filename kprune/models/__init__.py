"""kprune's model zoo: CIFAR-style classics, any keras.applications model, or a .keras file.

Zoo names (see :func:`names`): ``vgg16``, ``vgg19``, ``resnet18``, ``resnet50``,
``resnet20``, ``resnet56``, ``mobilenetv2``, ``lenet5``, ``lenet300_100``, ``vit``. Every zoo
model is a functional Keras model that accepts any ``input_shape`` and ``num_classes``
and a ``width`` multiplier applied to every channel count as
``max(1, floor(channels * width + 0.5))`` (round half up, at least one channel;
:func:`kprune.models.registry.scale`). Models output logits (no softmax).

Zoo models follow the papers' reference (PyTorch) implementations in two details that
change accuracy (issue 19): strided convolutions pad ``k // 2`` pixels on every side
(``ZeroPadding2D`` + ``valid``, where Keras' ``same`` would pad only the bottom/right;
``strided_padding="same"`` restores that), and weights are initialised as the reference
code does (``init="reference"``; ``"torch"`` for PyTorch's layer defaults, ``"keras"`` for
the zoo before issue 19). Each builder's docstring names its reference scheme; see
:mod:`kprune.models.layers` and :mod:`kprune.models.initializers`.

Name resolution in :func:`get`, first match wins:

1. a string ending in ``.keras`` is loaded with ``keras.saving.load_model`` (safe mode);
2. ``"keras.applications.<Name>"`` (case-insensitive) is a keras.applications model;
3. the exact spelling of a keras.applications constructor (``"ResNet50"``,
   ``"MobileNetV2"``) is that application;
4. the lower-cased name in the zoo (``"resnet50"`` → the CIFAR ResNet-50);
5. any other case-insensitive keras.applications name (``"efficientnetb0"``).
"""

from __future__ import annotations

import os

import keras

from kprune.errors import KPruneError
from kprune.models.registry import lookup, names, register, scale  # noqa: F401
from kprune.models import applications, lenet, mobilenet, resnet, vgg, vit  # noqa: F401  (registers)


def _check_shape(input_shape):
    try:
        shape = tuple(int(d) for d in input_shape)
    except (TypeError, ValueError):
        shape = None
    if not shape or any(d <= 0 for d in shape) or any(
        isinstance(d, bool) or float(d) != int(d) for d in input_shape
    ):
        raise KPruneError(
            "`input_shape` must be a list of positive integers without the batch dimension, "
            f"e.g. [32, 32, 3]. Received: input_shape={input_shape!r}"
        )
    return shape


def get(name, input_shape=(32, 32, 3), num_classes=10, width=1.0, **kwargs) -> keras.Model:
    """Build a model by name, or load one from a ``.keras`` file.

    Args:
        name: a zoo name, a keras.applications name (``"ResNet50"``,
            ``"keras.applications.MobileNetV2"``) or a path ending in ``.keras``. See the
            module docstring for the resolution order.
        input_shape: ``(height, width, channels)``, default ``(32, 32, 3)``. Ignored for
            ``.keras`` files.
        num_classes: output units, default 10. Ignored for ``.keras`` files.
        width: channel multiplier, default 1.0 (``alpha`` for MobileNet applications).
        **kwargs: extra builder arguments: ``init`` (every zoo model), ``strided_padding``
            (ResNets, MobileNetV2), ``hidden_units`` (VGG).

    Returns:
        A ``keras.Model``.

    Raises:
        KPruneError: unknown name, missing file, or invalid arguments.

    Example:
        >>> model = get("resnet20", input_shape=(32, 32, 3), num_classes=10)
        >>> model = get("lenet300_100", input_shape=(28, 28, 1), width=0.5)
    """
    if not isinstance(name, str) or not name:
        raise KPruneError(f"A model name must be a non-empty string. Received: name={name!r}")
    if name.endswith(".keras"):
        if not os.path.isfile(name):
            raise KPruneError(f"Model file not found. Received: name={name!r}. Give an existing .keras file path.")
        import zipfile
        if not zipfile.is_zipfile(name):
            raise KPruneError(f"{name!r} is not a whole .keras archive ({os.path.getsize(name):,} bytes; a .keras "
                              "file is a zip archive): it is truncated or not a Keras model file. Received: "
                              f"name={name!r}. Save the model again with model.save(path).")
        try:
            return keras.saving.load_model(name, safe_mode=True)
        except Exception as err:  # keras raises many types for corrupt or unsafe files
            raise KPruneError(f"Could not load {name!r} with keras.saving.load_model (safe_mode=True): {err}") from err
    from kprune.models.registry import check_width

    width = check_width(width)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise KPruneError(f"`num_classes` must be a positive integer. Received: num_classes={num_classes!r}")
    shape = _check_shape(input_shape)
    if name.lower().startswith(applications.PREFIX) or applications.resolve(name, case_sensitive=True):
        return applications.build(name, shape, num_classes, width, **kwargs)
    builder = lookup(name)
    if builder is not None:
        try:
            return builder(input_shape=shape, num_classes=num_classes, width=width, **kwargs)
        except TypeError as err:
            raise KPruneError(f"Invalid arguments for zoo model {name!r}: {err}. Received: {sorted(kwargs)}") from err
    if applications.resolve(name):
        return applications.build(name, shape, num_classes, width, **kwargs)
    raise KPruneError(
        f"Unknown model name {name!r}. Allowed: the zoo names {names()}, any keras.applications "
        "model name (e.g. 'ResNet50', 'MobileNetV2', 'keras.applications.EfficientNetB0'), "
        "or a path ending in '.keras'."
    )


__all__ = ["get", "names", "register", "scale"]
