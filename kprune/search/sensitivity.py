"""Sensitivity analysis pruning (Han et al. 2015; NNI's SensitivityPruner).

Each unit is pruned *alone* at every sparsity of a grid and the candidate is scored; the
drop from the unpruned score is that unit's sensitivity curve. Given an allowed drop
``δ``, a unit gets the largest grid sparsity reached before its drop first exceeds ``δ``.
The search picks the *smallest* ``δ`` whose allocation fits the budget (it tries each drop
observed, in increasing order), so the least sensitive units are pruned the most.

With ``rounds > 1`` the budget is approached geometrically — round ``r`` of ``R`` aims at
``original × (limit / original) ** (r / R)`` — and after every round but the last the
pruned model is fine-tuned for ``finetune_steps`` and becomes the base of the next round's
analysis (its pruned channels stay pruned; only higher sparsities are tried).

The curves are in ``result.extras["curves"]``; :func:`plot_curves` draws them.
"""

from __future__ import annotations

from kprune.config import schema as S
from kprune.search.base import register
from kprune.search.base import Search, tighten

F = S.Field


def _grid_check(value):
    if not value or any(not 0 < s < 1 for s in value):
        return "must be a non-empty list of sparsities in (0, 1)."
    return None


@register("sensitivity")
class Sensitivity(Search):
    """Per-unit sensitivity curves, then the smallest accuracy-drop threshold that fits.

    Args:
        grid: sparsities tried for each unit (default 0.1, 0.2, ..., 0.9; values above
            ``max_sparsity`` are dropped).
        rounds: analysis rounds (default 1).
        finetune_steps: fine-tuning steps between rounds (default 0).
        **common: ``constraint``, ``budget``, ``max_sparsity``... (see :mod:`kprune.search.base`).

    Example:
        >>> result = Sensitivity(constraint="params", budget=0.3).run(model, recipe, evaluator=acc)
        >>> plot_curves(result, "curves.png")
    """

    name = "sensitivity"
    FIELDS = {
        "grid": F("list", [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9], item=F("float"), check=_grid_check,
                  doc="sparsities tried per unit"),
        "rounds": F("int", 1, low=1, doc="analysis rounds"),
        "finetune_steps": F("int", 0, low=0, doc="fine-tuning steps after each round but the last"),
    }

    def search(self, ctx) -> dict:
        cfg = self.config
        grid = sorted(s for s in set(cfg["grid"]) if s <= cfg["max_sparsity"])
        rounds = cfg["rounds"]
        orig = ctx.original[ctx.constraint]
        base = {u.name: 0.0 for u in ctx.units}
        history = []
        allocation = dict(base)
        for r in range(1, rounds + 1):
            limit = ctx.limit if r == rounds else orig * (ctx.limit / orig) ** (r / rounds)
            rec = ctx.evaluate(base, tag=f"baseline:{r}")
            ctx.accept(rec, False)
            baseline = rec["score"]
            curves = {u.name: {} for u in ctx.units}
            requests = [{"allocation": dict(base, **{u.name: s}), "tag": f"sensitivity:{u.name}",
                         "info": {"round": r, "unit": u.name, "sparsity": s}}
                        for u in ctx.units for s in grid if s > base[u.name]]
            for req, rec in zip(requests, ctx.evaluate_many(requests)):  # independent: one batch
                ctx.accept(rec, False)
                curves[req["info"]["unit"]][req["info"]["sparsity"]] = rec["score"]
            allocation, threshold = self.select(ctx, base, baseline, curves, limit)
            history.append({"round": r, "baseline": baseline, "threshold": threshold, "limit": limit,
                            "curves": {u: {str(s): v for s, v in c.items()} for u, c in curves.items()},
                            "allocation": allocation})
            ctx.state["extras"] = {"curves": history}
            if r < rounds:
                rec = self._advance(ctx, allocation, r)
                ctx.accept(rec)
                base = allocation
        return {"allocation": allocation, "score": None}

    @staticmethod
    def pick(curve: dict, baseline: float, threshold: float, floor: float) -> float:
        """The largest grid sparsity reached before the drop first exceeds ``threshold``.

        Example:
            >>> Sensitivity.pick({0.2: 0.9, 0.4: 0.8, 0.6: 0.85}, 0.9, 0.05, 0.0)
            0.2
        """
        chosen = floor
        for s in sorted(curve):
            if baseline - curve[s] > threshold:
                break
            chosen = s
        return chosen

    def select(self, ctx, base, baseline, curves, limit):
        """The allocation of the smallest threshold that fits ``limit`` (tightened if none does)."""
        drops = sorted({max(0.0, baseline - v) for c in curves.values() for v in c.values()} | {0.0})
        allocation = None
        for threshold in drops:
            allocation = {u: self.pick(curves[u], baseline, threshold, base[u]) for u in base}
            if ctx.resource(allocation) <= limit:
                return allocation, threshold
        # even the largest tried sparsities are over: move everything toward max_sparsity
        return tighten(allocation, ctx.resource, limit, self.config["max_sparsity"]), None

    def _advance(self, ctx, allocation, r):
        steps = self.config["finetune_steps"]

        def compute():
            model = ctx.builder.build(allocation)
            if steps:
                ctx.finetune_fn(model, steps, ctx.seed + 100_000 + r)
            return ctx.builder.snapshot()

        ctx.carry(f"round:{r}", compute)
        return ctx.evaluate(allocation, tag=f"round:{r}", info={"round": r, "finetuned_steps": steps})


def plot_curves(curves, path=None, round_index: int = -1):
    """Plots sensitivity curves (score vs sparsity per unit) with matplotlib.

    Args:
        curves: a :class:`SearchResult` of ``sensitivity``, its ``extras["curves"]`` list,
            or one round's ``{"baseline", "curves"}``.
        path: save the figure there (PNG/PDF/SVG by extension); default None (not saved).
        round_index: which round to draw (default the last).

    Returns:
        The matplotlib Figure.

    Example:
        >>> fig = plot_curves(result, "sensitivity.png")
    """
    import matplotlib
    if path is not None:
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    if hasattr(curves, "extras"):
        curves = curves.extras["curves"]
    if isinstance(curves, list):
        curves = curves[round_index]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for unit, curve in curves["curves"].items():
        xs = sorted(float(s) for s in curve)
        ax.plot(xs, [curve[str(s)] if str(s) in curve else curve[s] for s in xs], marker="o", label=unit)
    ax.axhline(curves["baseline"], color="black", linestyle="--", linewidth=1, label="unpruned")
    ax.set_xlabel("sparsity of the unit alone")
    ax.set_ylabel("score")
    ax.set_title("sensitivity" + (f" (round {curves.get('round')})" if curves.get("round") else ""))
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path)
    return fig
