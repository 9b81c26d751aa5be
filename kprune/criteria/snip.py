"""``snip``: connection sensitivity at initialization (Lee et al. 2019).

SNIP scores each connection by ``|g ⊙ w|`` computed on **one** mini-batch, before training,
and keeps the top ones over the whole network (the paper normalizes by the sum of all
scores, which changes no ranking). Use it with ``schedule: oneshot`` on an untrained model
and ``scope: global`` as in the paper; ``layerwise`` is allowed. Structured granularities
sum the scores of each filter or block.
"""

from __future__ import annotations

import numpy as np

from kprune.criteria.base import register
from kprune.criteria.base import Criterion, reduce_axis, require


@register("snip")
class SNIP(Criterion):
    """|g ⊙ w| from a single batch (Lee et al. 2019).

    Example:
        >>> from kprune.pruning.statistics import GradientStats
        >>> w = np.array([1.0, -2.0]); s = GradientStats.from_batches(w, [np.array([3.0, 1.0])])
        >>> SNIP()(w, gradients=s)
        array([3., 2.])
    """

    name = "snip"
    needs = ("gradients",)
    batches = 1
    paper = "Lee et al. 2019, SNIP: Single-shot Network Pruning based on Connection Sensitivity"

    def __call__(self, kernel, axis=None, **stats):
        g = require(stats, "gradients", self.name).grad
        s = np.abs(np.asarray(kernel, dtype=np.float64) * g)
        return s if axis is None else s.sum(axis=reduce_axis(s, axis))
