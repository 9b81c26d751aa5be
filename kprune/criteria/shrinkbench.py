"""ShrinkBench's magnitude baselines (Blalock et al. 2020).

ShrinkBench compares every pruning paper against five baselines: ``random`` and these four,
which score each weight by ``|w|`` or ``|w · g|`` and rank either over the whole network
(``global_*``) or inside each layer (``layerwise_*``). The scope is part of the name, so
these criteria fix ``prune.scope`` themselves: a recipe that sets the other scope is an
error. For the global ones, ``sparsity`` in a ``config_list`` entry is the fraction of all
the entry's weights together (``total_sparsity`` is accepted too).

The gradient is the mean gradient of the loss over ``prune.statistics_batches`` batches
(ShrinkBench uses one batch; set ``statistics_batches: 1`` to match exactly).
"""

from __future__ import annotations

import numpy as np

from kprune.criteria.base import register
from kprune.criteria.base import Criterion, reduce_axis, require

_PAPER = "Blalock et al. 2020, What is the State of Neural Network Pruning? (ShrinkBench)"


class _Magnitude(Criterion):
    granularities = ("weight", "block")
    paper = _PAPER

    def __call__(self, kernel, axis=None, **stats):
        s = np.abs(np.asarray(kernel, dtype=np.float64))
        return s if axis is None else s.sum(axis=reduce_axis(s, axis))


class _GradMagnitude(Criterion):
    granularities = ("weight", "block")
    needs = ("gradients",)
    paper = _PAPER

    def __call__(self, kernel, axis=None, **stats):
        g = require(stats, "gradients", self.name).grad
        s = np.abs(np.asarray(kernel, dtype=np.float64) * g)
        return s if axis is None else s.sum(axis=reduce_axis(s, axis))


@register("global_magnitude")
class GlobalMagnitude(_Magnitude):
    """|w| ranked over all selected layers together (ShrinkBench GlobalMagWeight)."""

    name = "global_magnitude"
    scope = "global"


@register("layerwise_magnitude")
class LayerwiseMagnitude(_Magnitude):
    """|w| ranked inside each layer (ShrinkBench LayerMagWeight).

    Example:
        >>> LayerwiseMagnitude()(np.array([-2.0, 1.0]))
        array([2., 1.])
    """

    name = "layerwise_magnitude"
    scope = "layerwise"
    granularities = ("weight", "n:m", "block")


@register("global_gradient_magnitude")
class GlobalGradientMagnitude(_GradMagnitude):
    """|w · g| ranked over all selected layers together (ShrinkBench GlobalMagGrad)."""

    name = "global_gradient_magnitude"
    scope = "global"


@register("layerwise_gradient_magnitude")
class LayerwiseGradientMagnitude(_GradMagnitude):
    """|w · g| ranked inside each layer (ShrinkBench LayerMagGrad)."""

    name = "layerwise_gradient_magnitude"
    scope = "layerwise"
    granularities = ("weight", "n:m", "block")
