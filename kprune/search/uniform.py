"""The uniform baseline: every unit at the same sparsity, the smallest that meets the budget.

Not a search in the paper sense — no candidate is scored before the final one — but the
reference every allocating search is compared with (NNI's comparison of L1/L2/FPGM under a
budget): it goes through the same units, criterion, budget tightening and measurement, so
``name: uniform`` in ``prune.search`` is "plain one-shot pruning, sized to the budget".
"""

from __future__ import annotations

from kprune.search.base import register
from kprune.search.base import Search


@register("uniform")
class Uniform(Search):
    """Same sparsity ``s`` for every unit, ``s`` the smallest (to 1e-12) whose cost fits.

    Args:
        **common: ``constraint``, ``budget``, ``max_sparsity``... (see :mod:`kprune.search.base`).

    Example:
        >>> result = Uniform(constraint="params", budget=0.1).run(model, recipe, evaluator=acc)
        >>> len(set(result.allocation.values()))
        1
    """

    name = "uniform"
    FIELDS = {}

    def search(self, ctx) -> dict:
        # all units at 0, tightened by Search.run: s = t * max_sparsity for every unit
        return {"allocation": {u.name: 0.0 for u in ctx.units}, "score": None}
