"""NetAdapt (Yang et al. 2018): shrink step by step, keep the proposal that scores best.

Iteration ``i`` targets a resource ``R_i = max(limit, R(current) − ΔR_i)`` where the
reduction schedule is ``ΔR_i = step × R(original) × step_decay ** i``. For every unit it
proposes the *smallest* extra pruning of that unit alone (fewest channels removed, by the
recipe's criterion) that brings the predicted resource to ``R_i`` or below — the resource
is predicted exactly for params/FLOPs and with the latency lookup table for latency. Each
proposal is fine-tuned for ``finetune_steps`` (short-term fine-tuning) and scored — the
proposals of an iteration are one batch, evaluated in parallel with an executor's workers
(``prune.search.executor``); the best one becomes the next iteration's model, fine-tuned
weights included (taken from this process, or fine-tuned again here with the same seed when a
worker scored it). It stops when the
budget is met (or no unit can be pruned further). Long-term fine-tuning is the pipeline's
``finetune`` stage.
"""

from __future__ import annotations

import numpy as np

from kprune.config import schema as S
from kprune.search.base import register
from kprune.search.base import Search

F = S.Field


@register("netadapt")
class NetAdapt(Search):
    """NetAdapt's iterative, per-unit proposals under a resource reduction schedule.

    Args:
        step: resource reduction per iteration as a fraction of the original (default 0.05).
        step_decay: multiplier of the reduction per iteration (default 0.98).
        finetune_steps: short-term fine-tuning steps per proposal (default 0).
        max_iterations: cap on iterations (default 100).
        **common: ``constraint``, ``budget``, ``max_sparsity``... (see :mod:`kprune.search.base`).

    Example:
        >>> result = NetAdapt(constraint="latency", budget=0.6).run(model, recipe, evaluator=acc)
    """

    name = "netadapt"
    FIELDS = {
        "step": F("float", 0.05, low=0.0, high=1.0, check=S.positive,
                  doc="resource reduction per iteration (fraction of the original)"),
        "step_decay": F("float", 0.98, low=0.0, high=1.0, check=S.positive,
                        doc="reduction multiplier per iteration"),
        "finetune_steps": F("int", 0, low=0, doc="short-term fine-tuning steps per proposal"),
        "max_iterations": F("int", 100, low=1, doc="cap on iterations"),
    }

    def proposal(self, ctx, allocation: dict, unit, target: float):
        """The smallest sparsity increase of ``unit`` whose predicted resource is ``<= target`` (or None)."""
        cm = ctx.cost_model
        current = allocation[unit.name]
        kept_now = cm.kept(unit, current)
        cap = self.config["max_sparsity"]
        if cm.granularity == "filter":
            options = [n / unit.size for n in range(1, unit.size)]
        else:
            options = list(np.round(np.arange(0.01, 1.0, 0.01), 6))
        for s in options:
            if s <= current or s > cap or cm.kept(unit, s) >= kept_now:
                continue
            candidate = dict(allocation, **{unit.name: float(s)})
            if ctx.resource(candidate) <= target:
                return candidate
        return None

    def search(self, ctx) -> dict:
        cfg = self.config
        orig = ctx.original[ctx.constraint]
        allocation = {u.name: 0.0 for u in ctx.units}
        score = None
        for i in range(cfg["max_iterations"]):
            current = ctx.resource(allocation)
            if current <= ctx.limit:
                break
            target = max(ctx.limit, current - cfg["step"] * orig * cfg["step_decay"] ** i)
            requests = []
            for u in ctx.units:
                candidate = self.proposal(ctx, allocation, u, target)
                if candidate is not None:
                    requests.append({"allocation": candidate, "tag": f"proposal:{u.name}",
                                     "finetune_steps": cfg["finetune_steps"],
                                     "info": {"iteration": i, "unit": u.name, "target": target}})
            if not requests:
                break
            # The proposals are independent: one batch (parallel with an executor's workers).
            records = ctx.evaluate_many(requests, keep_best=True)
            best = max(records, key=lambda rec: rec["score"])  # the first of equals, as sequentially
            best_state = ctx.best_state if not best["replayed"] else None
            for rec in records:
                ctx.accept(rec, rec is best)
            allocation, score = best["allocation"], best["score"]

            def compute(best=best, best_state=best_state):
                if best_state is not None:
                    return best_state
                model = ctx.builder.build(best["allocation"])
                if cfg["finetune_steps"]:
                    ctx.finetune_fn(model, cfg["finetune_steps"], ctx.seed + best["index"])
                return ctx.builder.snapshot()

            ctx.carry(f"iteration:{i}", compute)
            ctx.state.update({"iteration": i + 1, "allocation": allocation, "resource": ctx.resource(allocation)})
        return {"allocation": allocation, "score": score}
