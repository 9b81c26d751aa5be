"""``fpgm``: Filter Pruning via Geometric Median (He et al. 2019).

Filters near the geometric median of a layer's filters are the most replaceable by the
others. As in the paper's implementation (and NNI's FPGMPruner), the distance to the
geometric median is approximated by the sum of Euclidean distances from each filter to all
other filters of the layer:

    score_i = sum_j || F_i - F_j ||_2

Filters with the smallest sum are pruned first.
"""

from __future__ import annotations

import numpy as np

from kprune.criteria.base import register
from kprune.criteria.base import STRUCTURED, Criterion


def distance_sums(kernel: np.ndarray, axis: int) -> np.ndarray:
    """Sum of Euclidean distances from each slice along ``axis`` to every other slice.

    Args:
        kernel: a weight array.
        axis: the axis whose slices are the filters (or input channels).

    Returns:
        A float64 vector of length ``kernel.shape[axis]``.

    Example:
        >>> distance_sums(np.array([[0.0, 3.0], [0.0, 4.0]]), axis=1)
        array([5., 5.])
    """
    f = np.moveaxis(np.asarray(kernel, dtype=np.float64), axis, 0).reshape(kernel.shape[axis], -1)
    sq = np.sum(f * f, axis=1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * f @ f.T, 0.0)
    np.fill_diagonal(d2, 0.0)
    return np.sqrt(d2).sum(axis=1)


@register("fpgm")
class FPGM(Criterion):
    """Sum of distances of each filter to the layer's other filters (He et al. 2019).

    Only structured granularities: ``filter`` (output channels) and ``channel`` (input
    channels). Scores scale with the weights' magnitude, so ``scope: global`` compares
    layers by raw distance sums; the paper prunes layer by layer.

    Example:
        >>> k = np.zeros((1, 5)); k[0] = [0, 1, -1, 2, -2]
        >>> FPGM()(k, axis=1)   # the middle filter (0) is the median: lowest score
        array([ 6.,  7.,  7., 10., 10.])
    """

    name = "fpgm"
    granularities = STRUCTURED
    scores_scale = False
    paper = "He et al. 2019, Filter Pruning via Geometric Median"

    def __call__(self, kernel, axis=None, **stats):
        if axis is None:
            raise ValueError("fpgm scores filters or channels: call it with an axis.")
        return distance_sums(kernel, axis)
