"""AutoCompress (Liu et al. 2020; NNI's AutoCompressPruner): annealed allocation + ADMM, in rounds.

The budget is reached in ``rounds`` steps. Round ``k`` of ``K`` aims at ``original ×
(limit / original) ** (k / K)`` — every round removes the same fraction ``1 − (limit /
original) ** (1 / K)`` of what is left, NNI's per-round sparsity ``1 − (1 − P) ** (1 / K)``
relative to the remaining model — and does:

1. **allocation** — simulated annealing (:class:`~kprune.search.simulated_annealing.SimulatedAnnealing`,
   with the "larger layers tolerate more pruning" prior) over the *current* pruned model, with
   the previous round's allocation as a floor (pruned channels stay pruned);
2. **ADMM pruning** (:func:`~kprune.search.admm.admm_prune`) toward that allocation, then
   hard pruning;
3. **compaction** — the hard-pruned weights become the base of the next round (masked and
   compacted models compute the same function; ``Search.run`` compacts the final one),
   optionally fine-tuned for ``finetune_steps``.

The last round's allocation meets the budget; the pipeline's ``finetune`` stage does the
long fine-tuning.
"""

from __future__ import annotations

from kprune.config import schema as S
from kprune.search.base import register
from kprune.search.admm import ADMM_FIELDS, admm_prune
from kprune.search.base import Search
from kprune.search.simulated_annealing import SimulatedAnnealing

F = S.Field

_SA_KEYS = ("start_temperature", "stop_temperature", "cool_down_rate", "perturbation_magnitude", "prior",
            "max_evaluations", "proposals_per_step")


@register("autocompress")
class AutoCompress(Search):
    """Rounds of simulated-annealing allocation, ADMM pruning and compaction.

    Args:
        rounds: rounds to reach the budget (default 3, NNI's ``num_iterations``).
        start_temperature, stop_temperature, cool_down_rate, perturbation_magnitude, prior,
            max_evaluations, proposals_per_step: the annealing of each round (as in
            ``simulated_annealing``; defaults 100, 20, 0.9, 0.35, True, None, 1).
        admm_rounds: ADMM iterations per round (default 5).
        rho, rho_growth, training_steps: ADMM's penalty and W-step (as in ``admm``; defaults
            1e-3, 1.0, 100).
        finetune_steps: fine-tuning steps after each round's hard pruning (default 0).
        **common: ``constraint``, ``budget``, ``max_sparsity``... (see :mod:`kprune.search.base`).

    Example:
        >>> result = AutoCompress(constraint="params", budget=0.1, rounds=3).run(model, recipe)
        >>> [rec["tag"] for rec in result.trajectory][:2]
        ['round1:initial', 'round1:perturbation']
    """

    name = "autocompress"
    FIELDS = {
        "rounds": F("int", 3, low=1, doc="rounds to reach the budget"),
        **{k: SimulatedAnnealing.FIELDS[k] for k in _SA_KEYS},
        "admm_rounds": F("int", 5, low=1, doc="ADMM iterations per round"),
        **ADMM_FIELDS,
        "finetune_steps": F("int", 0, low=0, doc="fine-tuning steps after each round's hard pruning"),
    }

    @classmethod
    def check(cls, config, path, lines):
        SimulatedAnnealing.check(config, path, lines)

    def round_limit(self, ctx, k: int) -> float:
        """The resource round ``k`` (1-based) aims at: the same fraction of what is left each round."""
        orig = ctx.original[ctx.constraint]
        if k == self.config["rounds"]:
            return ctx.limit
        return orig * (ctx.limit / orig) ** (k / self.config["rounds"])

    def annealer(self, floor: dict, prefix: str) -> SimulatedAnnealing:
        cfg = self.config
        sa = SimulatedAnnealing(constraint=cfg["constraint"], budget=cfg["budget"], max_sparsity=cfg["max_sparsity"],
                                **{k: cfg[k] for k in _SA_KEYS})
        sa.floor, sa.prefix = floor, prefix
        return sa

    def search(self, ctx) -> dict:
        cfg = self.config
        allocation = {u.name: 0.0 for u in ctx.units}
        history, rec = [], None
        for k in range(1, cfg["rounds"] + 1):
            prefix = f"round{k}:"
            limit = self.round_limit(ctx, k)
            final_limit, ctx.limit = ctx.limit, limit
            try:
                proposal = self.annealer(allocation, prefix).search(ctx)
            finally:
                ctx.limit = final_limit
            allocation = proposal["allocation"]
            admm = admm_prune(ctx, allocation, cfg["admm_rounds"], cfg["rho"], cfg["rho_growth"],
                              cfg["training_steps"], prefix=prefix, seed_offset=10_000 * k)
            rec = self._compact(ctx, allocation, k, prefix)
            history.append({"round": k, "limit": limit, "allocation": allocation, "annealed_score": proposal["score"],
                            "admm": admm["history"], "initial_distance": admm["initial_distance"],
                            "score": rec["score"]})
            ctx.state.update({"round": k, "allocation": allocation})
            ctx.state["extras"] = {"rounds": history}
        return {"allocation": allocation, "score": rec["score"]}

    def _compact(self, ctx, allocation, k, prefix):
        """Hard-prunes the ADMM-trained weights (fine-tuned if asked) into the next round's base."""
        steps = self.config["finetune_steps"]

        def compute():
            model = ctx.builder.build(allocation)
            if steps:
                ctx.finetune_fn(model, steps, ctx.seed + 10_000 * k + 9_999)
            return ctx.builder.snapshot()

        ctx.carry(f"{prefix}pruned", compute)
        rec = ctx.evaluate(allocation, tag=f"{prefix}pruned", info={"round": k, "finetune_steps": steps})
        ctx.accept(rec)
        return rec
