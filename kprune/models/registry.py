"""Name → builder registry of kprune's model zoo, and the shared width rule.

Every zoo builder has the signature
``builder(input_shape, num_classes, width, **kwargs) -> keras.Model`` and registers
itself with :func:`register`. :func:`kprune.models.get` resolves names through this
registry first, then keras.applications, then ``.keras`` paths.
"""

from __future__ import annotations

from typing import Callable

from kprune.errors import KPruneError

_REGISTRY: dict[str, Callable] = {}


def register(name: str) -> Callable[[Callable], Callable]:
    """Register a zoo builder under ``name`` (lower case).

    Args:
        name: the zoo name, e.g. ``"vgg16"``. Names are case-insensitive.

    Returns:
        A decorator that stores the builder and returns it unchanged.

    Example:
        >>> @register("tiny")
        ... def tiny(input_shape, num_classes, width=1.0): ...
    """
    key = name.lower()

    def decorator(fn: Callable) -> Callable:
        if key in _REGISTRY and _REGISTRY[key] is not fn:
            raise KPruneError(
                f"A zoo model named {key!r} is already registered "
                f"({_REGISTRY[key].__module__}.{_REGISTRY[key].__name__}). "
                "Choose another name."
            )
        _REGISTRY[key] = fn
        return fn

    return decorator


def lookup(name: str) -> Callable | None:
    """Return the builder registered under ``name`` (case-insensitive) or ``None``."""
    return _REGISTRY.get(name.lower())


def names() -> list[str]:
    """Return the sorted names of all registered zoo models."""
    return sorted(_REGISTRY)


def scale(channels: int, width: float) -> int:
    """Apply a width multiplier to a channel (or unit) count.

    The rule used by every zoo model: ``max(1, floor(channels * width + 0.5))``, i.e.
    round half up, never below one channel. ``width=1.0`` returns ``channels``.

    Args:
        channels: the channel count of the full-width model.
        width: the multiplier (> 0).

    Returns:
        The scaled channel count.

    Example:
        >>> scale(64, 0.5), scale(6, 0.25), scale(3, 0.1)
        (32, 2, 1)
    """
    return max(1, int(channels * width + 0.5))


def check_width(width) -> float:
    """Validate a width multiplier and return it as a float.

    Raises:
        KPruneError: when ``width`` is not a positive number.
    """
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not width > 0:
        raise KPruneError(
            f"`width` must be a positive number (1.0 = the published model, 0.5 = half "
            f"the channels). Received: width={width!r}"
        )
    return float(width)
