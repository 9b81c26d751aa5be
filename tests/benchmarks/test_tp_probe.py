"""benchmarks/tp_probe.py --merge: the spread of a cell split into draws on one model and dense models."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))

import tp_probe  # noqa: E402


def _results(accuracies):
    """{seed: {run: [accuracy per draw]}} as tp_probe's JSON results."""
    return [{"args": {"seed": seed}, "rows": [{"run": run, "target": 0.7, "criterion": "random", "draw": d,
                                                 "accuracy_finetuned": a / 100} for run, acc in runs.items()
                                                for d, a in enumerate(acc)]}
            for seed, runs in accuracies.items()]


def test_spread_sources_separates_draws_from_models():
    # Within every model the draws are m - 1, m, m + 1 (variance 1); the model means 84, 86, 88, 90
    # have variance 6.67, of which the draws' share is 1 / 3: between-model variance 6.33.
    results = _results({0: {"tf": [83, 84, 85], "torch": [85, 86, 87]}, 1: {"tf": [87, 88, 89], "torch": [89, 90, 91]}})
    (line,) = tp_probe.spread_sources(results, (0.7, "random"))
    assert "between draws on one model 1.00, between dense models 2.52 points (4 models × 3 draws)" in line
    assert "sqrt(6.33 + 1.00 / K)" in line


def test_spread_sources_needs_several_draws_per_model():
    assert tp_probe.spread_sources(_results({0: {"tf": [85], "torch": [86]}, 1: {"tf": [84], "torch": [87]}}),
                                   (0.7, "random")) == []
