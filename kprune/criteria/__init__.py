"""Criteria: which units matter. Pure functions of weights (and, for some, statistics).

A criterion is a :class:`Criterion` registered by name. It turns one kernel into scores:
elementwise scores for ``weight`` granularity, or one score per output channel along
``axis`` for ``filter`` granularity. Higher score = more important = kept.

Example:
    >>> import numpy as np
    >>> get("l1")(np.array([[1., -2.], [3., 0.]]), axis=1)   # per column
    array([4., 2.])
"""

from kprune.registry import Registry
from kprune.criteria.base import Criterion

_REGISTRY = Registry("criterion")
register = _REGISTRY.register
names = _REGISTRY.names

from kprune.criteria import magnitude  # noqa: E402,F401  (registration)


def get(identifier, path: str = "prune.criterion") -> Criterion:
    """Resolves a criterion name (or instance) to a :class:`Criterion` instance."""
    if isinstance(identifier, Criterion):
        return identifier
    return _REGISTRY.lookup(identifier, path)()
