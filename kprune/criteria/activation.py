"""Activation criteria: ``apoz`` (Hu et al. 2016) and ``mean_activation`` (Molchanov et al. 2017).

Both read the post-activation output of each pruned layer on a few batches, collected by
:func:`kprune.pruning.statistics.collect_activations` in inference mode. They score output channels
only (``filter`` granularity).
"""

from __future__ import annotations

import numpy as np

from kprune.criteria.base import register
from kprune.criteria.base import Criterion, require


def _per_channel(kernel, axis, values, name):
    if axis is None:
        raise ValueError(f"{name} scores output channels: call it with the filter axis.")
    values = np.asarray(values, dtype=np.float64)
    if values.shape[0] != np.shape(kernel)[axis]:
        raise ValueError(f"{name}: {values.shape[0]} activation channels for a kernel with "
                         f"{np.shape(kernel)[axis]} filters along axis {axis}.")
    return values


@register("apoz")
class APoZ(Criterion):
    """1 − APoZ: one minus the Average Percentage of Zeros of each output channel.

    APoZ_c = (# zeros in channel c over all positions and samples) / (# values of channel c),
    measured after the activation that follows the layer. A channel that is mostly zero is
    unimportant, so low APoZ = important, and the score is ``1 − APoZ``.

    Example:
        >>> from kprune.pruning.statistics import ActivationStats
        >>> s = ActivationStats(zeros=np.array([1., 3.]), total=np.array([2., 1.]), count=4)
        >>> APoZ()(np.zeros((3, 2)), axis=1, activations=s)
        array([0.75, 0.25])
    """

    name = "apoz"
    granularities = ("filter",)
    needs = ("activations",)
    paper = "Hu et al. 2016, Network Trimming (APoZ)"

    def __call__(self, kernel, axis=None, **stats):
        act = require(stats, "activations", self.name)
        return 1.0 - _per_channel(kernel, axis, act.apoz, self.name)


@register("mean_activation")
class MeanActivation(Criterion):
    """Mean post-activation value of each output channel (Molchanov et al. 2017, NNI).

    Example:
        >>> from kprune.pruning.statistics import ActivationStats
        >>> s = ActivationStats(zeros=np.array([1., 3.]), total=np.array([2., 1.]), count=4)
        >>> MeanActivation()(np.zeros((3, 2)), axis=1, activations=s)
        array([0.5 , 0.25])
    """

    name = "mean_activation"
    granularities = ("filter",)
    needs = ("activations",)
    paper = "Molchanov et al. 2017, Pruning CNNs for Resource Efficient Inference (mean activation)"

    def __call__(self, kernel, axis=None, **stats):
        act = require(stats, "activations", self.name)
        return _per_channel(kernel, axis, act.mean, self.name)
