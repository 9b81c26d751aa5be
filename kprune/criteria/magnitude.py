"""Magnitude criteria: ``level`` (|w|, fine-grained), ``l1`` and ``l2`` filter norms."""

from __future__ import annotations

import numpy as np

from kprune.criteria import register
from kprune.criteria.base import Criterion


def _others(x: np.ndarray, axis: int) -> tuple:
    axis = axis % x.ndim
    return tuple(i for i in range(x.ndim) if i != axis)


@register("level")
class Level(Criterion):
    """|w| per weight (Han et al. 2015); for filters, the L1 norm is its natural extension."""

    name = "level"
    granularities = ("weight",)

    def __call__(self, kernel, axis=None, **stats):
        return np.abs(kernel)


@register("l1")
class L1(Criterion):
    """L1 norm of each filter (Li et al. 2017, NNI's L1NormPruner); |w| per weight."""

    name = "l1"

    def __call__(self, kernel, axis=None, **stats):
        if axis is None:
            return np.abs(kernel)
        return np.sum(np.abs(kernel), axis=_others(kernel, axis))


@register("l2")
class L2(Criterion):
    """L2 norm of each filter (NNI's L2NormPruner); |w| per weight."""

    name = "l2"

    def __call__(self, kernel, axis=None, **stats):
        if axis is None:
            return np.abs(kernel)
        return np.sqrt(np.sum(np.square(kernel), axis=_others(kernel, axis)))
