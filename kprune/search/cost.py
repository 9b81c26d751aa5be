"""Resource costs of candidates: params, FLOPs and latency, predicted and measured.

:class:`CostModel` predicts a candidate's cost from its allocation alone, without building
it. With filter granularity a compacted model's parameters and MACs are sums over weight
variables of ``size × Π (kept fraction along each channel axis)``, and every channel axis
of every weight is covered by the channel groups (:mod:`kprune.graph.analysis`), so the prediction
is the count of the compacted model (tests check it against :func:`kprune.count` of
:func:`kprune.compact`). With weight granularity it predicts nonzero parameters and
effective FLOPs. Latency is predicted with a :class:`kprune.export.LatencyTable`
(per-layer lookup) at the candidate's channel counts. The search always *measures* the
returned model (``kprune.count``, and a TFLite benchmark for latency).

Budgets: a value ``0 < budget <= 1`` is a fraction of the original cost, a value ``> 1`` an
absolute one (parameters, FLOPs, or milliseconds).
"""

from __future__ import annotations

import math
import os
import tempfile

import numpy as np

from kprune import counting, graph
from kprune.errors import KPruneError, RecipeError
from kprune.export.benchmark import benchmark
from kprune.export.tflite import to_tflite
from kprune.pruning import allocation as alloc_lib
from kprune.wrappers.prune_wrapper import KERNEL_WEIGHTS
from kprune.wrappers.selectors import flatten_layers

KINDS = ("params", "flops", "latency")


def resolve_budget(kind: str, budget: float, original: float) -> float:
    """The absolute limit for ``budget`` (a fraction when ``<= 1``, else absolute).

    Example:
        >>> resolve_budget("params", 0.5, 1000)
        500.0
    """
    if kind not in KINDS:
        raise RecipeError("prune.search.constraint", f"must be one of {list(KINDS)}.", kind)
    if budget is None or not budget > 0:
        raise RecipeError("prune.search.budget", "must be > 0: a fraction of the original cost in (0, 1] "
                          "or an absolute value > 1.", budget)
    return float(budget) * float(original) if budget <= 1.0 else float(budget)


class CostModel:
    """Predicts params / FLOPs / latency of a pruned candidate from its allocation.

    Args:
        model: the plain original model.
        units: the search units (:func:`kprune.search.units.find_units`).
        prune: the recipe's validated ``prune`` section (granularity, round_to, min_keep).
        table: optional :class:`kprune.export.LatencyTable` for latency predictions.

    Example:
        >>> cm = CostModel(model, units, recipe.prune)
        >>> cm.predict({"conv1": 0.5})["flops"] < cm.original["flops"]
        True
    """

    def __init__(self, model, units: list, prune: dict, table=None):
        self.units = list(units)
        self.granularity = prune["granularity"]
        self.round_to = prune.get("round_to", "auto")
        self.min_keep = int(prune.get("min_keep", 1))
        self.table = table
        counts = counting.count(model)
        self._rows = [(r.name, r.macs, r.effective_macs) for r in counts.per_layer]
        self._base = {"params": counts.params, "nonzero_params": counts.nonzero_params}
        self._layers = {l.name: l for l in flatten_layers(model)}
        # every weight variable: (layer, attr) -> shape
        self._vars = {}
        for name, layer in self._layers.items():
            for v in layer.weights:
                self._vars[(name, _attr(v))] = tuple(int(d) for d in v.shape)
        # channel coverage: (layer, attr, axis) -> [(group id, positions per channel, size)]
        self._cover = {}
        if self.granularity == "filter":
            for g in graph.groups(model):
                for m in g.members:
                    key = (m.layer.name, m.weight, int(m.axis))
                    self._cover.setdefault(key, []).append((int(g.id), int(np.asarray(m.index).shape[1]), int(g.size)))
        self._unit_of_group = {u.group: u for u in self.units}
        self.original = self.predict({})

    # -- channel counts ---------------------------------------------------------------------
    def kept(self, unit, sparsity: float) -> int:
        """Channels (or kernel entries) a unit keeps at ``sparsity``."""
        if self.granularity == "weight":
            return unit.size - alloc_lib.n_pruned(unit.size, sparsity)
        return alloc_lib.kept_channels(unit.size, sparsity, self.round_to, self.min_keep)

    def _fractions(self, allocation: dict) -> dict:
        kept = {u.group: self.kept(u, allocation.get(u.name, 0.0)) for u in self.units}
        out = {}
        for key, entries in self._cover.items():
            shape = self._vars.get(key[:2])
            if shape is None:
                continue
            dim = shape[key[2]]
            covered = sum(size * k for _, k, size in entries)
            alive = dim - covered + sum(kept.get(gid, size) * k for gid, k, size in entries)
            out[key] = alive / dim if dim else 1.0
        return out

    def _var_fraction(self, fractions: dict, layer: str, attr: str) -> float:
        shape = self._vars[(layer, attr)]
        f = 1.0
        for axis in range(len(shape)):
            f *= fractions.get((layer, attr, axis), 1.0)
        return f

    def channels(self, allocation: dict) -> dict:
        """``{layer: (in_channels, out_channels)}`` of the candidate for the latency table's layers."""
        if self.table is None:
            return {}
        fr = self._fractions(allocation)
        out = {}
        for name, entry in self.table.layers.items():
            cin, cout = entry["full"]
            attr = "depthwise_kernel" if entry["class"] == "DepthwiseConv2D" else "kernel"
            shape = self._vars.get((name, attr))
            if shape is None:
                out[name] = (cin, cout)
                continue
            nd = len(shape)
            fin = fr.get((name, attr, nd - 2), 1.0)
            fout = fin if entry["class"] == "DepthwiseConv2D" else fr.get((name, attr, nd - 1), 1.0)
            out[name] = (max(1, int(round(cin * fin))), max(1, int(round(cout * fout))))
        return out

    # -- prediction ---------------------------------------------------------------------------
    def predict(self, allocation: dict) -> dict:
        """Predicted ``{"params", "flops"[, "latency"]}`` of the candidate (latency in ms)."""

        if self.granularity == "weight":
            removed, kernel_frac = 0, {}
            for u in self.units:
                s = allocation.get(u.name, 0.0)
                layer = self._layers[u.layers[0]]
                sizes = [math.prod(self._vars[(layer.name, a)]) for a in KERNEL_WEIGHTS if (layer.name, a) in self._vars]
                pruned = sum(alloc_lib.n_pruned(n, s) for n in sizes)
                removed += pruned
                kernel_frac[layer.name] = 1.0 - pruned / max(1, sum(sizes))
            params = self._base["nonzero_params"] - removed
            macs = sum(eff * kernel_frac.get(name, 1.0) for name, _, eff in self._rows)
            return {"params": int(params), "flops": int(round(2 * macs))}
        fr = self._fractions(allocation)
        params = 0.0
        for (layer, attr), shape in self._vars.items():
            params += math.prod(shape) * self._var_fraction(fr, layer, attr)
        macs = 0.0
        for name, m, _ in self._rows:
            kernels = [(math.prod(self._vars[(name, a)]), self._var_fraction(fr, name, a))
                       for a in KERNEL_WEIGHTS if (name, a) in self._vars]
            total = sum(n for n, _ in kernels)
            macs += m * (sum(n * f for n, f in kernels) / total if total else 1.0)
        out = {"params": int(round(params)), "flops": int(round(2 * macs))}
        if self.table is not None:
            out["latency"] = float(self.table.predict(self.channels(allocation)))
        return out


def _attr(variable) -> str:
    """The attribute name a Keras variable is stored under (``kernel``, ``moving_mean``...)."""
    name = getattr(variable, "name", "")
    return name.split("/")[-1].split(":")[0]


def measure(model, kinds=("params", "flops"), granularity: str = "filter", latency: dict | None = None) -> dict:
    """Measured cost of a built candidate: ``kprune.count`` and, for latency, a TFLite benchmark.

    Args:
        model: the compacted (filter) or stripped (weight) candidate.
        kinds: which costs to measure (``"latency"`` converts and benchmarks).
        granularity: ``"filter"`` counts all parameters and FLOPs; ``"weight"`` counts
            nonzero parameters and effective FLOPs.
        latency: ``{"threads", "runs", "warmup", "statistic"}`` for the benchmark.

    Returns:
        ``{"params": int, "flops": int[, "latency": ms]}``.
    """

    c = counting.count(model)
    out = {"params": int(c.params), "flops": int(c.flops)} if granularity == "filter" else \
        {"params": int(c.nonzero_params), "flops": int(c.effective_flops)}
    if "latency" in kinds:
        if granularity != "filter":
            raise KPruneError("a latency budget needs filter granularity: zeroed weights do not make a "
                              "TFLite model faster. Set prune.granularity: filter.")
        out["latency"] = benchmark_ms(model, latency or {})
    return out


def benchmark_ms(model, settings: dict) -> float:
    """Converts ``model`` to TFLite in a temporary folder and returns its benchmarked latency (ms)."""

    with tempfile.TemporaryDirectory(prefix="kprune_search_") as folder:
        path = to_tflite(model, os.path.join(folder, "candidate.tflite")).path
        report = benchmark(path, threads=settings.get("threads", 1), runs=settings.get("runs", 30),
                           warmup=settings.get("warmup", 5))
    return float(getattr(report, f"{settings.get('statistic', 'min')}_ms"))
