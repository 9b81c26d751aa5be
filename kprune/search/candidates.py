"""Build pruned candidates from allocations, fast, on one reusable wrapped model.

The model is wrapped once with :func:`kprune.search.units.allocation_recipe` (one
``config_list`` entry per unit). A candidate is built by restoring a weight state (the
original weights with all-ones masks, or a later *base* such as NetAdapt's fine-tuned
model), writing each unit's sparsity into its wrappers' targets and calling
:meth:`kprune.Pruner.prune_now` — the same path ``kprune.wrap`` + ``Pruner`` takes for a
recipe, so the search's candidates are exactly what the recipe of the allocation builds.
"""

from __future__ import annotations

import numpy as np

from kprune.graph.surgery import compact
from kprune.pruning.pruner import Pruner
from kprune.search.units import allocation_recipe, check_allocation
from kprune.wrappers.wrap import strip, wrap


class CandidateBuilder:
    """One wrapped copy of the model whose masks are reset and re-pruned per candidate.

    Args:
        model: the plain original model (unchanged).
        prune: the recipe's validated ``prune`` section.
        units: the search units.

    Attributes:
        wrapped: the wrapped model holding the current candidate (it is overwritten by the
            next :meth:`build`; evaluators must not keep it).
        base: the weight state candidates start from (see :meth:`set_base`).

    Example:
        >>> builder = CandidateBuilder(model, recipe.prune, units)
        >>> pruned = builder.build({"conv1": 0.5})   # masks applied, same shapes
        >>> small = builder.compact()                # filters removed
    """

    def __init__(self, model, prune: dict, units: list):
        self.prune = prune
        self.units = list(units)
        self.wrapped = wrap(model, allocation_recipe(prune, self.units, {}))
        self.pruner = Pruner(self.wrapped)
        by_name = {w.name: w for w in self.pruner.active}
        self._wrappers = {u.name: [by_name[n] for n in u.layers if n in by_name] for u in self.units}
        self.base = self.snapshot()
        self.original = self.base

    def snapshot(self) -> list:
        """A copy of every variable of the wrapped model (weights, masks, statistics)."""
        return [np.array(v.numpy()) for v in self.wrapped.weights]

    def restore(self, state: list) -> None:
        """Writes a :meth:`snapshot` back."""
        for v, value in zip(self.wrapped.weights, state):
            v.assign(value)

    def set_base(self, state: list | None = None) -> None:
        """Candidates start from ``state`` from now on (default: the current weights)."""
        self.base = self.snapshot() if state is None else state

    def build(self, allocation: dict, from_state: list | None = None):
        """Prunes the wrapped model to ``allocation`` starting from the base state.

        Args:
            allocation: ``{unit_name: sparsity}``; missing units get 0.0 (or keep what the base
                already pruned: hard pruning never revives a channel).
            from_state: start from this snapshot instead of :attr:`base`.

        Returns:
            The wrapped model (masks applied).
        """
        check_allocation(self.units, allocation)
        self.restore(self.base if from_state is None else from_state)
        for u in self.units:
            for w in self._wrappers[u.name]:
                w.spec["sparsity"] = float(allocation.get(u.name, 0.0))
        self.pruner.prune_now()
        return self.wrapped

    def score(self, allocation: dict, evaluator, finetune=None, steps: int = 0, seed: int = 0,
              recalibrate=None, from_state: list | None = None) -> float:
        """Builds a candidate, recalibrates it, fine-tunes it ``steps`` steps, and scores it.

        The one definition of a candidate's score, in the search's process and in executor
        workers alike (so both give the same number).
        """
        model = self.build(allocation, from_state)
        if recalibrate is not None:
            recalibrate(model)
        if steps:
            finetune(model, int(steps), int(seed))
        return float(evaluator(model))

    def compact(self):
        """The current candidate as a plain model: filters removed (filter) or masks baked (weight)."""

        if self.prune["granularity"] == "filter":
            return compact(self.wrapped)
        return strip(self.wrapped)
