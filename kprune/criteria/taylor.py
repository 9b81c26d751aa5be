"""``taylor_fo``: first-order Taylor importance (Molchanov et al. 2019).

The loss change from removing a set S of weights is approximated to first order by
``(sum_{s in S} g_s w_s)^2`` (the paper's Eq. 8, its "group" form for a filter). Scores are
averaged over the ``prune.statistics_batches`` mini-batches, each with its own gradient:

* filter / channel: ``mean_b (sum_{s in filter} g_s^b w_s)^2``,
* weight / n:m / block: ``mean_b (g_s^b w_s)^2`` per weight (blocks average these).

This is the paper's variant on the layer's weights ("Taylor FO on weights"); its other
variant on BatchNorm gates is not implemented separately.
"""

from __future__ import annotations

import numpy as np

from kprune.criteria.base import register
from kprune.criteria.base import Criterion, require


@register("taylor_fo")
class TaylorFO(Criterion):
    """Mean over batches of (Σ g·w)² per filter, or (g·w)² per weight.

    Example:
        >>> from kprune.pruning.statistics import GradientStats
        >>> w = np.array([[1.0, 2.0], [3.0, -1.0]])
        >>> g = np.array([[0.5, 1.0], [1.0, 2.0]])
        >>> s = GradientStats.from_batches(w, [g])
        >>> TaylorFO()(w, axis=1, gradients=s)   # (0.5 + 3)^2, (2 - 2)^2
        array([12.25,  0.  ])
    """

    name = "taylor_fo"
    needs = ("gradients",)
    paper = "Molchanov et al. 2019, Importance Estimation for Neural Network Pruning"

    def __call__(self, kernel, axis=None, **stats):
        grads = require(stats, "gradients", self.name)
        if axis is None:
            return np.asarray(grads.gw2, dtype=np.float64)
        return np.asarray(grads.gw_axis2[axis % np.ndim(kernel)], dtype=np.float64)
