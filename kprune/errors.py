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


class NonFiniteWeightsError(KPruneError, ValueError):
    """A weight that is scored or compacted holds NaN or Inf values (see :func:`require_finite`)."""


def require_finite(value, layer: str, weight: str, action: str):
    """Raises :class:`NonFiniteWeightsError` when ``value`` holds NaN or Inf; returns it otherwise.

    A NaN filter would rank first under every criterion (``nan > x`` decides nothing) and be
    kept, and an all-NaN layer would be left unpruned, silently; compaction would copy the
    NaNs into the smaller model. Called where the Pruner reads a kernel to score it and where
    ``compact`` reads a layer's weights.

    Args:
        value: the weight (array-like).
        layer: the layer's name, for the message.
        weight: the weight's name (``kernel``, ``gamma``...), for the message.
        action: what was about to happen (``scored``, ``compacted``), for the message.
    """
    import numpy as np
    arr = np.asarray(value)
    if arr.dtype.kind in "fc" and not np.isfinite(arr).all():
        nan, inf = int(np.isnan(arr).sum()), int(np.isinf(arr).sum())
        raise NonFiniteWeightsError(
            f"layer `{layer}` weight `{weight}` cannot be {action}: it holds {nan} NaN and {inf} Inf value(s) "
            f"of {arr.size}. Received: a non-finite weight (training diverged, or the model file is damaged). "
            "Fix: lower the learning rate or clip gradients and retrain, or load an earlier checkpoint.")
    return value
