"""``SearchResult``: what a search returns and writes (``trajectory.json``, ``search.json``)."""

from __future__ import annotations

import dataclasses
import os

from kprune.io import atomic_write_json, save_model_atomic


@dataclasses.dataclass
class SearchResult:
    """The outcome of a sparsity search.

    Attributes:
        algorithm: the search's config (``{"name": ..., ...}``).
        allocation: ``{unit_name: sparsity}`` (a unit is a channel group named by its first
            producer, or a layer for weight granularity).
        layer_allocation: ``{layer_name: sparsity}`` for every selected layer.
        recipe: a recipe dict (one ``config_list`` entry per unit) that rebuilds the pruned
            model from the dense one with ``kprune.wrap`` + ``Pruner.prune_now``.
        model: the pruned model, compacted (filter) or stripped (weight): plain Keras.
        pruned: the same candidate as a wrapped (masked) model, for fine-tuning.
        cost: measured ``{"params", "flops"[, "latency"]}`` of :attr:`model`.
        predicted: the cost model's prediction for the same allocation.
        original: the dense model's cost (``latency`` predicted = measured full model).
        constraint, budget, limit: the constraint kind, the budget as given and as an
            absolute value; ``tolerance`` is the relative slack allowed (latency only).
        met: whether ``cost[constraint] <= limit * (1 + tolerance)``.
        score: the evaluator's score of the returned candidate.
        trajectory: every evaluated candidate (``index, tag, allocation, cost, score,
            accepted, finetune_steps, rng, seconds``).
        extras: algorithm-specific data (e.g. sensitivity curves).
        seconds: wall time of the search.
    """

    algorithm: dict
    allocation: dict
    layer_allocation: dict
    recipe: dict
    model: object
    pruned: object
    cost: dict
    predicted: dict
    original: dict
    constraint: str
    budget: float
    limit: float
    tolerance: float
    met: bool
    score: float
    trajectory: list
    extras: dict = dataclasses.field(default_factory=dict)
    seconds: float = 0.0

    @property
    def evaluations(self) -> int:
        """Number of evaluated candidates (trajectory length)."""
        return len(self.trajectory)

    def to_dict(self) -> dict:
        """JSON-friendly summary (no models, no trajectory)."""
        return {
            "algorithm": self.algorithm, "allocation": self.allocation, "layer_allocation": self.layer_allocation,
            "constraint": self.constraint, "budget": self.budget, "limit": self.limit, "tolerance": self.tolerance,
            "met": self.met, "cost": self.cost, "predicted": self.predicted, "original": self.original,
            "score": self.score, "evaluations": self.evaluations, "seconds": self.seconds, "recipe": self.recipe,
            "extras": self.extras,
        }

    def save(self, out_dir) -> None:
        """Writes ``trajectory.json``, ``search.json`` and ``search_model.keras`` into ``out_dir`` (atomic)."""
        out_dir = os.fspath(out_dir)
        atomic_write_json(os.path.join(out_dir, "trajectory.json"),
                          {"algorithm": self.algorithm, "constraint": self.constraint, "limit": self.limit,
                           "original": self.original, "trajectory": self.trajectory})
        atomic_write_json(os.path.join(out_dir, "search.json"), self.to_dict())
        save_model_atomic(self.model, os.path.join(out_dir, "search_model.keras"))
