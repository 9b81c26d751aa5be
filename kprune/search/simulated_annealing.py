"""Simulated annealing over sparsity distributions (NNI's SimulatedAnnealingPruner, AutoCompress).

The state is a vector of sparsities, one per unit, kept sorted and assigned by the
"larger layers tolerate more pruning" prior of AutoCompress (Liu et al. 2020): the largest
unit (most parameters) gets the highest sparsity. Every candidate is *rescaled* to the
budget: all sparsities are multiplied by the smallest common factor whose predicted cost
fits (NNI rescales to the target sparsity the same way).

Loop (NNI's parameters and formulas): start at ``start_temperature``; while the temperature
is above ``stop_temperature``, perturb the current sparsities by uniform noise in
``±perturbation_magnitude × T / start_temperature``, clip at 0, sort, rescale, evaluate; accept
when the score improves or with probability ``exp(-|Δscore| / T)`` (Metropolis); keep the best;
multiply the temperature by ``cool_down_rate``. With ``proposals_per_step: k > 1`` each step
draws ``k`` perturbations of the current state, evaluates them as one batch (in parallel with
an executor's workers, ``prune.search.executor``) and the best one faces the Metropolis test.
With ``k = 1`` the number of evaluations is
``1 + ceil(log(stop / start) / log(cool_down_rate))`` (17 with the defaults), or
``max_evaluations`` (``k`` times as many, up to that cap, otherwise).
"""

from __future__ import annotations

import math

import numpy as np

from kprune.config import schema as S
from kprune.errors import RecipeError
from kprune.search.base import register
from kprune.search.base import Search

F = S.Field


@register("simulated_annealing")
class SimulatedAnnealing(Search):
    """Simulated annealing over per-unit sparsities under a budget.

    Args:
        start_temperature: initial temperature (default 100, NNI's).
        stop_temperature: stop when the temperature falls to this (default 20).
        cool_down_rate: temperature multiplier per evaluation, in (0, 1) (default 0.9).
        perturbation_magnitude: initial half-width of the uniform perturbation (default 0.35).
        prior: assign sorted sparsities by unit size, largest unit most pruned (default True).
        max_evaluations: optional cap on annealing evaluations (default None).
        proposals_per_step: perturbations of the current state drawn and evaluated per
            temperature step, as one batch (in parallel with an executor's workers); the best
            of them faces the Metropolis test (default 1: classic annealing).
        **common: ``constraint``, ``budget``, ``max_sparsity``... (see :mod:`kprune.search.base`).

    Example:
        >>> result = SimulatedAnnealing(constraint="flops", budget=0.5).run(model, recipe, evaluator=acc)
    """

    name = "simulated_annealing"
    FIELDS = {
        "start_temperature": F("float", 100.0, check=S.positive, doc="initial temperature"),
        "stop_temperature": F("float", 20.0, check=S.positive, doc="final temperature"),
        "cool_down_rate": F("float", 0.9, low=0.0, high=1.0, high_open=True, check=S.positive,
                            doc="temperature multiplier per step, in (0, 1)"),
        "perturbation_magnitude": F("float", 0.35, check=S.positive, doc="initial perturbation half-width"),
        "prior": F("bool", True, doc="larger units get higher sparsities (AutoCompress)"),
        "max_evaluations": F("int", None, low=1, nullable=True, doc="cap on evaluations"),
        "proposals_per_step": F("int", 1, low=1, doc="perturbations evaluated per temperature step (the best "
                                "one faces the Metropolis test); 1 is classic annealing"),
    }
    #: lowest sparsity per unit (AutoCompress's later rounds: pruned channels stay pruned)
    floor: dict | None = None
    #: prefix of the trajectory tags (AutoCompress's rounds)
    prefix: str = ""

    @classmethod
    def check(cls, config, path, lines):
        if config["stop_temperature"] >= config["start_temperature"]:
            raise RecipeError(f"{path}.stop_temperature", "must be below start_temperature "
                              f"({config['start_temperature']}).", config["stop_temperature"],
                              line=lines.get(f"{path}.stop_temperature"))

    # -- candidate construction -----------------------------------------------------------------
    def _order(self, ctx) -> list:
        """Unit indices from smallest to largest (parameters a unit removes when fully pruned)."""
        full = ctx.original["params"]
        sizes = [full - ctx.cost({u.name: self.config["max_sparsity"]})["params"] for u in ctx.units]
        if not self.config["prior"]:
            return list(range(len(ctx.units)))
        return sorted(range(len(ctx.units)), key=lambda i: (sizes[i], i))

    def _allocation(self, ctx, order, vector) -> dict:
        """Sorted ``vector`` assigned by ``order`` (or position without the prior)."""
        values = np.sort(vector) if self.config["prior"] else vector
        floor = self.floor or {}
        names = [ctx.units[i].name for i in order]
        return {u: max(float(v), float(floor.get(u, 0.0))) for u, v in zip(names, values)}

    def rescale(self, ctx, order, vector, steps: int = 40):
        """The vector times the smallest factor whose allocation fits the budget (None if none)."""
        cap = self.config["max_sparsity"]

        def alloc(a):
            return self._allocation(ctx, order, np.clip(vector * a, 0.0, cap))

        positive = vector[vector > 0]
        if positive.size == 0:
            return None
        hi = cap / float(positive.min())
        if not ctx.within(alloc(hi)):
            return None
        lo = 0.0
        for _ in range(steps):
            mid = (lo + hi) / 2
            if ctx.within(alloc(mid)):
                hi = mid
            else:
                lo = mid
        return np.sort(np.clip(vector * hi, 0.0, cap)) if self.config["prior"] else np.clip(vector * hi, 0.0, cap)

    def _candidate(self, ctx, order, make, tries: int = 100):
        for _ in range(tries):
            vec = self.rescale(ctx, order, make())
            if vec is not None:
                return vec
        return None

    # -- the annealing loop ------------------------------------------------------------------------
    def search(self, ctx) -> dict:
        cfg = self.config
        rng = ctx.rng
        n = len(ctx.units)
        order = self._order(ctx)
        current = self._candidate(ctx, order, lambda: rng.uniform(0.0, 1.0, n))
        if current is None:  # nothing but max_sparsity everywhere can fit: leave it to tightening
            current = np.full(n, cfg["max_sparsity"])
        rec = ctx.evaluate(self._allocation(ctx, order, current), tag=f"{self.prefix}initial")
        ctx.accept(rec)
        cur_score = best_score = rec["score"]
        best = rec["allocation"]
        t, t0 = cfg["start_temperature"], cfg["start_temperature"]
        evaluations = 1
        while t > cfg["stop_temperature"] and (cfg["max_evaluations"] is None or evaluations < cfg["max_evaluations"]):
            magnitude = cfg["perturbation_magnitude"] * t / t0
            base = current
            count = cfg["proposals_per_step"]
            if cfg["max_evaluations"] is not None:
                count = min(count, cfg["max_evaluations"] - evaluations)
            vectors = []
            for _ in range(count):
                vec = self._candidate(ctx, order, lambda: np.clip(base + rng.uniform(-magnitude, magnitude, n), 0.0, None))
                if vec is not None:
                    vectors.append(vec)
            if not vectors:
                t *= cfg["cool_down_rate"]
                continue
            # The step's proposals are independent: one batch (parallel with an executor's workers).
            records = ctx.evaluate_many([{"allocation": self._allocation(ctx, order, vec), "tag": f"{self.prefix}perturbation",
                                          "info": {"temperature": t, "magnitude": magnitude}} for vec in vectors])
            evaluations += len(records)
            pick = max(range(len(records)), key=lambda k: records[k]["score"])
            for k, other in enumerate(records):
                if k != pick:
                    ctx.accept(other, False)
            rec, vec = records[pick], vectors[pick]
            delta = abs(rec["score"] - cur_score)
            u = rng.uniform()
            accepted = rec["score"] > cur_score or u < math.exp(-delta / t)
            if accepted:
                current, cur_score = vec, rec["score"]
            if rec["score"] > best_score:
                best, best_score = rec["allocation"], rec["score"]
            t *= cfg["cool_down_rate"]
            ctx.state.update({"temperature": t, "current": current.tolist(), "current_score": cur_score,
                              "best_score": best_score})
            ctx.accept(rec, accepted)  # writes the checkpoint with the state above
        return {"allocation": best, "score": best_score}
