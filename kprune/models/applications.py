"""Build any ``keras.applications`` model by name (offline: ``weights=None``)."""

from __future__ import annotations

import inspect

import keras

from kprune.errors import KPruneError

PREFIX = "keras.applications."


def available() -> dict[str, callable]:
    """Return ``{name: builder}`` for every model constructor in ``keras.applications``.

    Constructors are the public callables whose names start with an upper-case letter
    (``ResNet50``, ``MobileNetV2``, ``EfficientNetB0``, ...); the lower-case entries are
    sub-modules and are skipped.

    Example:
        >>> "ResNet50" in available()
        True
    """
    out = {}
    for attr in dir(keras.applications):
        fn = getattr(keras.applications, attr)
        if attr[:1].isupper() and callable(fn):
            out[attr] = fn
    return out


def resolve(name: str, case_sensitive: bool = False) -> str | None:
    """Return the keras.applications constructor name that ``name`` refers to, or ``None``.

    Args:
        name: ``"ResNet50"``, ``"resnet50"`` or ``"keras.applications.ResNet50"``.
        case_sensitive: when ``True`` only an exact spelling matches (default ``False``).

    Example:
        >>> resolve("keras.applications.mobilenetv2")
        'MobileNetV2'
    """
    if name.lower().startswith(PREFIX):
        name = name[len(PREFIX):]
    table = available()
    if name in table:
        return name
    if case_sensitive:
        return None
    lowered = {k.lower(): k for k in table}
    return lowered.get(name.lower())


def build(name: str, input_shape, num_classes: int, width: float = 1.0, **kwargs) -> keras.Model:
    """Build ``keras.applications.<name>`` with random weights.

    Args:
        name: a constructor name accepted by :func:`resolve`.
        input_shape: ``(height, width, channels)``; the application's own minimum size
            rules apply (e.g. 32x32 for ResNet50).
        num_classes: passed as ``classes`` (with ``include_top=True``).
        width: passed as ``alpha`` to the models that have one (MobileNet, MobileNetV2,
            MobileNetV3*); any other value than 1.0 is an error for models without it.
        **kwargs: further keyword arguments for the constructor (e.g.
            ``classifier_activation=None``).

    Returns:
        The ``keras.Model`` (``weights=None``; nothing is downloaded).

    Raises:
        KPruneError: unknown name, unsupported ``width``, or arguments the constructor
            rejects.

    Example:
        >>> build("MobileNet", (32, 32, 3), 10).name
        'mobilenet_1.00_32'
    """
    resolved = resolve(name)
    if resolved is None:
        raise KPruneError(f"{name!r} is not a keras.applications model. Allowed: {sorted(available())}")
    fn = available()[resolved]
    params = inspect.signature(fn).parameters
    call = {"weights": None, "input_shape": tuple(input_shape), "classes": int(num_classes)}
    if "include_top" in params:
        call["include_top"] = True
    if width != 1.0:
        if "alpha" not in params:
            raise KPruneError(
                f"keras.applications.{resolved} has no width multiplier (`alpha`); only MobileNet-"
                f"style models accept `width`. Received: width={width!r}. Use width=1.0."
            )
        call["alpha"] = width
    call.update(kwargs)
    try:
        return fn(**call)
    except (ValueError, TypeError) as err:
        raise KPruneError(
            f"keras.applications.{resolved} could not be built with input_shape="
            f"{tuple(input_shape)!r}, num_classes={num_classes!r}, width={width!r}, "
            f"extra arguments {sorted(kwargs)}: {err}"
        ) from err
