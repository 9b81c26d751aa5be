"""Exceptions raised by kprune.

Every kprune failure that comes from user input is a :class:`KPruneError`, so callers can
catch one type. Messages follow Keras' style: what was received, what is allowed, and how
to fix it.
"""

from __future__ import annotations


class KPruneError(Exception):
    """Base class of every error kprune raises on purpose."""


class RecipeError(KPruneError, ValueError):
    """A recipe key is unknown, has the wrong type, or holds an impossible value.

    Args:
        path: dotted key path inside the recipe, e.g. ``"prune.config_list[0].sparsity"``.
        message: what is wrong and what is allowed.
        received: the value found (omitted from the message when ``None`` and not given).
        line: line number in the YAML source, when known.
    """

    _MISSING = object()

    def __init__(self, path: str, message: str, received=_MISSING, line: int | None = None):
        self.path = path
        self.received = None if received is RecipeError._MISSING else received
        self.line = line
        where = f"recipe key `{path}`" if path else "recipe"
        if line is not None:
            where += f" (line {line})"
        text = f"{where}: {message}"
        if received is not RecipeError._MISSING:
            text += f" Received: {path.rsplit('.', 1)[-1] or 'value'}={received!r}"
        super().__init__(text)


class UnsupportedLayerError(KPruneError, TypeError):
    """A layer matched by a selector cannot be pruned (or a model cannot be handled)."""


class GraphError(KPruneError):
    """The model graph cannot be analysed or rebuilt safely."""


class DataError(KPruneError):
    """A dataset cannot be loaded (no network and no local copy, unknown name, ...)."""


class ExportError(KPruneError):
    """TFLite conversion or benchmarking failed."""
