"""Sensitivity analysis: curves, the smallest threshold that fits, rounds, resume, plot."""

import json

import numpy as np
import pytest
from search_fixtures import PRUNE, RECORD_KEYS, OutputMatch, strip_times, tiny_cnn

import kprune
from kprune import search
from kprune.search.sensitivity import Sensitivity, plot_curves

GRID = [0.25, 0.5, 0.75]
WEIGHTS = {"c1": 4.0, "c2": 1.0, "c3": 2.0}


def filter_score(model):
    """-(4 f_c1 + f_c2 + 2 f_c3), f = fraction of a layer's filters that are all zero."""
    score = 0.0
    for name, w in WEIGHTS.items():
        k = np.asarray(model.get_layer(name).layer.kernel.numpy())
        score -= w * float(np.mean(np.all(k.reshape(-1, k.shape[-1]) == 0, axis=0)))
    return score


def fine_tune_by_scaling(model, steps, seed):
    """A deterministic stand-in for training: scales every weight (zeros stay zero)."""
    for v in model.trainable_variables:
        v.assign(v * (1.0 - 0.01 * (1 + seed % 5)))


@pytest.fixture(scope="module")
def model():
    return tiny_cnn()


def _run(model, **kw):
    evaluator = kw.pop("evaluator", filter_score)
    return search.run(model, PRUNE, evaluator=evaluator, verbose=0, name="sensitivity", grid=GRID, **kw)


def test_curves_and_smallest_threshold(model):
    r = _run(model, constraint="params", budget=0.5)
    (round1,) = r.extras["curves"]
    assert round1["baseline"] == 0.0
    # drop of unit u at sparsity s is WEIGHTS[u] * s (all grid points prune whole filters exactly)
    for u, w in WEIGHTS.items():
        assert {float(s): v for s, v in round1["curves"][u].items()} == pytest.approx({s: -w * s for s in GRID})
    assert r.evaluations == 1 + 3 * 3 + 1  # baseline, 9 single-unit candidates, the final candidate
    # the selection is the first threshold (in increasing drop order) whose allocation fits
    thresholds = sorted({w * s for u, w in WEIGHTS.items() for s in GRID} | {0.0})
    chosen = round1["threshold"]
    assert chosen in thresholds
    expected = {u: max([0.0] + [s for s in GRID if WEIGHTS[u] * s <= chosen]) for u in WEIGHTS}
    assert r.allocation == expected
    assert r.cost["params"] <= 0.5 * r.original["params"] and r.met
    # the previous threshold's allocation does not fit (so the chosen one is the smallest)
    prev = thresholds[thresholds.index(chosen) - 1]
    smaller = {u: max([0.0] + [s for s in GRID if WEIGHTS[u] * s <= prev]) for u in WEIGHTS}
    from kprune.search.cost import CostModel
    from kprune.search.units import find_units
    prune = kprune.Recipe.from_dict({"prune": PRUNE}).prune
    assert CostModel(model, find_units(model, prune), prune).predict(smaller)["params"] > r.limit
    # the least sensitive unit (c2) is pruned the most
    assert r.allocation["c2"] >= r.allocation["c3"] >= r.allocation["c1"]


def test_pick_stops_at_the_first_excess():
    assert Sensitivity.pick({0.2: 0.9, 0.4: 0.8, 0.6: 0.89}, 0.9, 0.05, 0.0) == 0.2
    assert Sensitivity.pick({0.2: 0.7}, 0.9, 0.05, 0.1) == 0.1


def test_flops_budget_met_with_real_scores(model):
    r = _run(model, constraint="flops", budget=0.3, evaluator=OutputMatch(model))
    assert r.met and r.cost["flops"] <= 0.3 * r.original["flops"]
    assert r.cost["flops"] == kprune.count(r.model).flops


def test_rounds_with_fine_tuning_resume_to_the_same_result(model, tmp_path):
    kw = dict(constraint="flops", budget=0.35, rounds=2, finetune=fine_tune_by_scaling)
    full = _run(model, out_dir=tmp_path / "full", evaluator=OutputMatch(model), **kw)
    rounds = full.extras["curves"]
    assert [c["round"] for c in rounds] == [1, 2]
    # round 1 aims at sqrt(0.35) of the original, round 2 at the budget
    assert rounds[0]["limit"] == pytest.approx(full.original["flops"] * 0.35 ** 0.5)
    # round 2 starts from round 1's allocation: no unit goes back
    assert all(full.allocation[u] >= rounds[0]["allocation"][u] for u in WEIGHTS)
    assert [r["tag"] for r in full.trajectory].count("round:1") == 1
    # interrupted inside round 2 (after round 1's fine-tuned state was saved), then resumed
    cut_at = next(i for i, r in enumerate(full.trajectory) if r["tag"] == "baseline:2") + 2
    with pytest.raises(RuntimeError):
        _run(model, out_dir=tmp_path / "cut", evaluator=OutputMatch(model, fail_after=cut_at), **kw)
    assert (tmp_path / "cut" / "state.npz").exists()
    resumed = _run(model, out_dir=tmp_path / "cut", resume=True, evaluator=OutputMatch(model), **kw)
    assert resumed.allocation == full.allocation and resumed.score == pytest.approx(full.score, abs=0)
    assert strip_times(resumed.trajectory) == strip_times(full.trajectory)
    data = json.loads((tmp_path / "cut" / "trajectory.json").read_text())
    assert len(data["trajectory"]) == full.evaluations and all(set(r) >= RECORD_KEYS for r in data["trajectory"])


def test_plot_curves_writes_a_figure(model, tmp_path):
    r = _run(model, constraint="params", budget=0.6)
    fig = plot_curves(r, tmp_path / "curves.png")
    assert (tmp_path / "curves.png").stat().st_size > 1000
    assert len(fig.axes[0].lines) == 3 + 1
