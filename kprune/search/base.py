"""The :class:`Search` base class: shared keys, the run loop and meeting the budget.

A search algorithm subclasses :class:`Search`, declares its own recipe keys in ``FIELDS``
(validated with the common keys below, errors name the key path) and implements
:meth:`Search.search`, which explores allocations through a
:class:`~kprune.search.context.SearchContext` and returns its best one. :meth:`Search.run`
does the rest: units, cost model, evaluator, checkpoints, and the final step that makes the
budget a guarantee — the allocation is tightened (every unit moved toward
``max_sparsity`` by the smallest common fraction) until the predicted cost fits, the
candidate is built and compacted, its cost *measured*, and tightened again if the
measurement is over.

Common keys (``prune.search``): ``name``, ``constraint`` (params | flops | latency, default
flops), ``budget`` (fraction in (0, 1] or absolute > 1, default 0.5), ``max_sparsity``
(0.9), ``eval_take`` (validation examples of the default evaluator, 1000), ``seed`` (null:
``prune.seed``), ``latency`` (``threads``, ``runs``, ``warmup``, ``grid``, ``tolerance``,
``statistic``, ``cache``), ``executor`` (``name``: local | ray, ``workers``, ``threads``,
``address``, ``num_gpus``: where batches of independent candidates are evaluated, see
:mod:`kprune.search.executor`; it never changes the result, and a resumed search may use
another executor).
"""

from __future__ import annotations

import abc
import logging
import os
import time

from kprune.config import schema as S
from kprune.config.recipe import Recipe
from kprune.config.registry import SEARCHES
from kprune.errors import KPruneError, RecipeError
from kprune.export.latency_table import latency_table
from kprune.search.candidates import CandidateBuilder
from kprune.search.context import SearchContext
from kprune.search.cost import CostModel, measure, resolve_budget
from kprune.search.evaluation import (
    default_evaluator,
    default_finetune,
    default_recalibration,
)
from kprune.search.executor import EXECUTOR, Job, make_executor
from kprune.search.result import SearchResult
from kprune.search.units import allocation_recipe, find_units, layer_allocation
from kprune.wrappers.wrap import is_wrapped

#: decorator registering a member of the family by name
register = SEARCHES.register

log = logging.getLogger("kprune")
F = S.Field


def _positive(value):
    return None if value > 0 else "must be > 0 (a fraction in (0, 1] or an absolute value > 1)."


def _grid_check(value):
    if not value or any(not 0 < f <= 1 for f in value):
        return "must be a non-empty list of fractions in (0, 1]."
    return None


LATENCY = S.Section({
    "threads": F("int", 1, low=1, doc="interpreter threads for the table and the final benchmark"),
    "runs": F("int", 30, low=1, doc="timed runs per measurement"),
    "warmup": F("int", 5, low=0, doc="untimed runs per measurement"),
    "grid": F("list", [0.25, 0.5, 1.0], item=F("float"), check=_grid_check,
              doc="channel fractions measured by the lookup table"),
    "tolerance": F("float", 0.05, low=0.0, doc="relative slack for the measured latency"),
    "statistic": F("str", "min", choices=("min", "median")),
    "cache": F("str", None, nullable=True, doc="lookup table JSON cache (default out_dir/latency_table.json)"),
}, doc="latency lookup table and benchmark settings")

COMMON = {
    "name": F("str", S.REQUIRED, doc="search algorithm"),
    "constraint": F("str", "flops", choices=("params", "flops", "latency"), doc="the budgeted resource"),
    "budget": F("float", 0.5, check=_positive, doc="fraction of the original (<= 1) or absolute value (> 1)"),
    "max_sparsity": F("float", 0.9, low=0.0, high=1.0, high_open=True, doc="most any unit may be pruned"),
    "eval_take": F("int", 1000, low=1, nullable=True, doc="validation examples for the default evaluator"),
    "seed": F("int", None, nullable=True, doc="search seed (default prune.seed)"),
    "recalibrate_bn": F("int", None, low=0, nullable=True,
                        doc="BatchNorm recalibration batches for each candidate before scoring (null: prune.recalibrate_bn)"),
    "latency": F("dict", {}, section=LATENCY),
    "executor": F("dict", {}, section=EXECUTOR),
}


class Search(abc.ABC):
    """Base class of the sparsity searches (see the module docstring).

    Args:
        **config: the algorithm's keys (common keys included); validated like a recipe.

    Example:
        >>> sa = kprune.search.get({"name": "simulated_annealing", "constraint": "params", "budget": 0.3})
        >>> result = sa.run(model, recipe, evaluator=my_accuracy, out_dir="runs/sa")
    """

    name = None
    FIELDS: dict = {}

    @classmethod
    def schema(cls) -> S.Section:
        return S.Section({**COMMON, **cls.FIELDS})

    @classmethod
    def check(cls, config: dict, path: str, lines: dict) -> None:
        """Cross-key checks; subclasses raise RecipeError naming the key path."""

    def __init__(self, **config):
        config = {"name": self.name, **config}
        self.config = S.validate_section(config, self.schema(), "prune.search")
        self.check(self.config, "prune.search", {})

    def get_config(self) -> dict:
        return dict(self.config)

    @classmethod
    def from_config(cls, config: dict) -> "Search":
        return cls(**{k: v for k, v in config.items() if k != "name"})

    @abc.abstractmethod
    def search(self, ctx) -> dict:
        """Explores allocations through ``ctx``; returns ``{"allocation": ..., "score": float or None}``.

        ``score`` is the evaluator's score of exactly that allocation built from the
        builder's current base (None: the run evaluates it once more).
        """

    # -- the run loop ---------------------------------------------------------------------------
    def run(self, model, recipe, evaluator=None, out_dir=None, resume: bool = False, finetune=None,
            verbose: int = 1, executor=None):
        """Searches an allocation for ``model`` under the recipe and returns a SearchResult.

        Args:
            model: the trained dense model (plain Keras, Functional or Sequential).
            recipe: a Recipe, a recipe dict, a YAML path, or a bare ``prune`` section dict.
            evaluator: ``callable(model) -> float``, higher is better; it receives the
                masked (wrapped) candidate, which is reused afterwards, so it must not keep
                it. Default: accuracy on ``eval_take`` validation examples of ``recipe.data``.
            out_dir: folder for ``checkpoint.json``, ``trajectory.json``, ``search.json``,
                ``search_model.keras`` (and the latency table). Default None (nothing written).
            resume: continue from the checkpoint in ``out_dir``. Default False.
            finetune: ``callable(model, steps, seed)`` for ``finetune_steps``; default trains
                on ``recipe.data`` with the recipe's fine-tuning optimizer.
            verbose: 0 hides the progress bar. Default 1.
            executor: an :class:`~kprune.search.executor.Executor` instance; default: the one
                ``prune.search.executor`` describes (in this process unless ``workers > 1``).

        Returns:
            :class:`kprune.search.SearchResult`.
        """

        t0 = time.time()
        recipe = coerce_recipe(recipe)
        cfg = self.config
        if is_wrapped(model):
            raise KPruneError(f"kprune.search takes the dense model, but `{model.name}` is wrapped; pass "
                              "kprune.strip(model) (or the model before kprune.wrap).")
        if out_dir is not None:
            os.makedirs(out_dir, exist_ok=True)
        prune = recipe.prune
        units = find_units(model, prune)
        table = self._latency_table(model, out_dir) if cfg["constraint"] == "latency" else None
        if table is not None and prune["granularity"] != "filter":
            raise RecipeError("prune.search.constraint", "latency needs `prune.granularity: filter` (zeroed "
                              "weights do not make a TFLite model faster).", "latency")
        cost_model = CostModel(model, units, prune, table)
        kind = cfg["constraint"]
        limit = resolve_budget(kind, cfg["budget"], cost_model.original[kind])
        builder = CandidateBuilder(model, prune, units)
        recal = cfg["recalibrate_bn"] if cfg["recalibrate_bn"] is not None else prune.get("recalibrate_bn", 0)
        executor = make_executor(executor if executor is not None else cfg["executor"])
        if executor.workers > 1:
            executor.start(self._job(model, recipe, units, evaluator, finetune, recal))
        evaluator = evaluator or default_evaluator(recipe, cfg["eval_take"])
        finetune = finetune or default_finetune(recipe)
        seed = cfg["seed"] if cfg["seed"] is not None else prune["seed"]
        algorithm = {k: v for k, v in self.get_config().items() if k != "executor"}  # may change on resume
        header = {"algorithm": algorithm, "units": [u.name for u in units], "constraint": kind,
                  "limit": limit, "seed": seed}
        try:
            ctx = SearchContext(builder, cost_model, kind, limit, evaluator, finetune, seed, out_dir, resume,
                                header, verbose, executor=executor, recalibrate=default_recalibration(recipe, recal))
            try:
                proposal = self.search(ctx)
                result = self._finish(ctx, proposal, recipe, t0)
            finally:
                ctx.close()
        finally:
            executor.close()
        if out_dir is not None:
            result.save(out_dir)
        return result

    def _job(self, model, recipe, units, evaluator, finetune, recalibrate_bn=0):
        """What the executor's workers need: the model as .keras bytes, the recipe, the callables."""
        import tempfile

        with tempfile.TemporaryDirectory(prefix="kprune_job_") as folder:
            path = os.path.join(folder, "model.keras")
            try:
                model.save(path)
            except Exception as exc:
                raise KPruneError(f"prune.search.executor: workers get the model as a .keras file, but `{model.name}` "
                                  f"cannot be saved ({type(exc).__name__}: {exc}). Use workers: 1.") from exc
            with open(path, "rb") as f:
                data = f.read()
        return Job(model=data, prune=recipe.prune, units=[u.name for u in units], recipe=recipe.to_dict(),
                   eval_take=self.config["eval_take"], evaluator=evaluator, finetune=finetune,
                   recalibrate_bn=int(recalibrate_bn or 0))

    def _latency_table(self, model, out_dir):
        lat = self.config["latency"]
        cache = lat["cache"] or (os.path.join(out_dir, "latency_table.json") if out_dir else None)
        return latency_table(model, channel_grid=lat["grid"], threads=lat["threads"], runs=lat["runs"],
                             warmup=lat["warmup"], cache=cache, statistic=lat["statistic"])

    def _finish(self, ctx, proposal: dict, recipe, t0):
        """Tightens to the budget, builds, measures (and re-tightens) the final candidate."""

        cfg = self.config
        kind, limit = ctx.constraint, ctx.limit
        tol = cfg["latency"]["tolerance"] if kind == "latency" else 0.0
        allocation = dict(proposal["allocation"])
        score = proposal.get("score")
        target = limit
        kinds = ("params", "flops", "latency") if kind == "latency" else ("params", "flops")
        settings = {k: cfg["latency"][k] for k in ("threads", "runs", "warmup", "statistic")}
        met = False
        for attempt in range(5):
            tight = tighten(allocation, ctx.resource, target, cfg["max_sparsity"])
            if tight != allocation or score is None:
                allocation = tight
                final = ctx.evaluate(allocation, tag="final")
                ctx.accept(final)
                score = final["score"]
                built = not final["replayed"]  # a checkpoint's answer built nothing
            else:
                built = False
            if not built:
                ctx.builder.build(allocation)
                if ctx.recalibrate is not None:
                    ctx.recalibrate(ctx.builder.wrapped)
            small = ctx.builder.compact()
            cost = measure(small, kinds, ctx.builder.prune["granularity"], settings)
            if cost[kind] <= limit * (1 + tol):
                met = True
                break
            log.info("search: measured %s %.6g is over the budget %.6g; tightening", kind, cost[kind], limit)
            target = target * limit / cost[kind] * (1 - 1e-3)
        if not met:
            msg = (f"the searched model's measured {kind} {cost[kind]:.6g} stays over the budget {limit:.6g} "
                   f"(tolerance {tol:.0%}) after re-tightening")
            if kind != "latency":
                raise KPruneError(msg + "; this is a bug in the cost model, please report it.")
            log.warning("%s; the result has met=False.", msg)
        units = ctx.units
        return SearchResult(
            algorithm=self.get_config(), allocation=allocation, layer_allocation=layer_allocation(units, allocation),
            recipe=allocation_recipe(ctx.builder.prune, units, allocation), model=small, pruned=ctx.builder.wrapped,
            cost=cost, predicted=ctx.cost(allocation), original=dict(ctx.original), constraint=kind,
            budget=cfg["budget"], limit=limit, tolerance=tol, met=met, score=float(score),
            trajectory=[{k: v for k, v in r.items() if k != "replayed"} for r in ctx.trajectory],
            extras=dict(ctx.state.get("extras", {})), seconds=round(time.time() - t0, 2))


def tighten(allocation: dict, resource, limit: float, max_sparsity: float, steps: int = 40) -> dict:
    """Moves every unit toward ``max_sparsity`` by the smallest common fraction that fits.

    Args:
        allocation: ``{unit: sparsity}``.
        resource: ``callable(allocation) -> predicted cost``.
        limit: the absolute budget.
        max_sparsity: the ceiling of every unit.
        steps: bisection steps (default 40).

    Returns:
        ``allocation`` itself when it fits, else ``{u: s + t (max(s, max_sparsity) - s)}`` with
        the smallest ``t`` (to bisection precision) whose cost is ``<= limit``.

    Raises:
        KPruneError: even ``t = 1`` is over the budget.

    Example:
        >>> tighten({"a": 0.0}, lambda a: 100 * (1 - a["a"]), 40, 0.9)["a"] >= 0.6
        True
    """
    if resource(allocation) <= limit:
        return dict(allocation)

    def at(t):
        return {u: s + t * (max(s, max_sparsity) - s) for u, s in allocation.items()}

    floor = resource(at(1.0))
    if floor > limit:
        raise KPruneError(f"the budget cannot be met: with every unit at max_sparsity={max_sparsity} the "
                          f"cost is {floor:.6g}, over the limit {limit:.6g}. Raise the budget, raise "
                          "prune.search.max_sparsity, or select more layers in prune.config_list.")
    lo, hi = 0.0, 1.0
    for _ in range(steps):
        mid = (lo + hi) / 2
        if resource(at(mid)) <= limit:
            hi = mid
        else:
            lo = mid
    return at(hi)


def coerce_recipe(recipe):
    """A Recipe from a Recipe, a recipe dict, a YAML path, or a bare ``prune`` section."""
    if isinstance(recipe, dict) and "prune" not in recipe and (
            "config_list" in recipe or "criterion" in recipe or "granularity" in recipe):
        recipe = {"prune": recipe}
    return Recipe.coerce(recipe)
