"""Criteria: which units matter. Pure functions of weights (and, for some, statistics).

A criterion is a :class:`Criterion` registered by name. It turns one kernel into scores:
elementwise scores for ``weight``, ``n:m`` and ``block`` granularities, or one score per
index of ``axis`` for ``filter`` (output channels) and ``channel`` (input channels).
Higher score = more important = kept. See ``docs/criteria.md`` for the full table.

Example:
    >>> import numpy as np
    >>> get("l1")(np.array([[1., -2.], [3., 0.]]), axis=1)   # per column
    array([4., 2.])
"""

from kprune.config.registry import CRITERIA as _REGISTRY
from kprune.criteria.base import ALL, ELEMENTWISE, STRUCTURED, Criterion

from kprune.criteria.base import register  # noqa: E402
names = _REGISTRY.names

from kprune.criteria import (activation, fpgm, magnitude, random, shrinkbench, slim,  # noqa: E402,F401
                             snip, taylor)


def get(identifier, path: str = "prune.criterion") -> Criterion:
    """Resolves a criterion name, a ``get_config()`` dict or an instance to a :class:`Criterion`."""
    if isinstance(identifier, Criterion):
        return identifier
    if isinstance(identifier, dict):
        return _REGISTRY.lookup(identifier.get("name"), f"{path}.name").from_config(identifier)
    return _REGISTRY.lookup(identifier, path)()


__all__ = ["Criterion", "get", "names", "register", "ALL", "ELEMENTWISE", "STRUCTURED"]
