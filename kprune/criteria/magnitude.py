"""Magnitude criteria: ``level`` (|w|, fine-grained), ``l1`` and ``l2`` filter norms."""

from __future__ import annotations

import numpy as np

from kprune.criteria.base import register
from kprune.criteria.base import ELEMENTWISE, Criterion, reduce_axis


@register("level")
class Level(Criterion):
    """|w| per weight (Han et al. 2015).

    Example:
        >>> Level()(np.array([1.0, -3.0]))
        array([1., 3.])
    """

    name = "level"
    granularities = ELEMENTWISE
    paper = "Han et al. 2015, Learning both Weights and Connections"

    def __call__(self, kernel, axis=None, **stats):
        return np.abs(kernel)


@register("l1")
class L1(Criterion):
    """L1 norm of each filter (Li et al. 2017, NNI's L1NormPruner); |w| per weight.

    Example:
        >>> L1()(np.array([[1.0, -2.0], [3.0, 0.0]]), axis=1)
        array([4., 2.])
    """

    name = "l1"
    paper = "Li et al. 2017, Pruning Filters for Efficient ConvNets"

    def __call__(self, kernel, axis=None, **stats):
        if axis is None:
            return np.abs(kernel)
        return np.sum(np.abs(kernel), axis=reduce_axis(kernel, axis))


@register("l2")
class L2(Criterion):
    """L2 norm of each filter (NNI's L2NormPruner); |w| per weight.

    Example:
        >>> L2()(np.array([[3.0], [4.0]]), axis=1)
        array([5.])
    """

    name = "l2"
    paper = "NNI L2NormPruner (filter L2 norm)"
    group_power = 2

    def __call__(self, kernel, axis=None, **stats):
        if axis is None:
            return np.abs(kernel)
        return np.sqrt(np.sum(np.square(kernel), axis=reduce_axis(kernel, axis)))
