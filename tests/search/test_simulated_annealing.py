"""Simulated annealing: budgets met, NNI's schedule, the size prior, seeds, resume, trajectory."""

import json
import math

import pytest
from search_fixtures import PRUNE, RECORD_KEYS, OutputMatch, strip_times, tiny_cnn

import kprune
from kprune import search

SA = {"name": "simulated_annealing", "start_temperature": 10.0, "stop_temperature": 5.0, "cool_down_rate": 0.8}


@pytest.fixture(scope="module")
def model():
    return tiny_cnn()


@pytest.fixture(scope="module")
def default_run(model, tmp_path_factory):
    out = tmp_path_factory.mktemp("sa_default")
    return _run(model, out_dir=out), out


def _run(model, **kw):
    evaluator = kw.pop("evaluator", None) or OutputMatch(model)
    return search.run(model, PRUNE, evaluator=evaluator, verbose=0, **{**SA, **kw})


@pytest.mark.parametrize("constraint,budget", [("params", 0.4), ("flops", 0.3)])
def test_budget_is_met(model, constraint, budget):
    r = _run(model, constraint=constraint, budget=budget)
    c = kprune.count(r.model)
    assert r.met and r.cost == {"params": c.params, "flops": c.flops}
    assert r.cost[constraint] <= budget * r.original[constraint]
    # candidates are rescaled to the budget: every evaluated one fits, and sits close to it
    for rec in r.trajectory:
        assert rec["cost"][constraint] <= r.limit
        assert rec["cost"][constraint] >= 0.8 * r.limit


def test_schedule_has_nnis_number_of_steps(default_run):
    r, _ = default_run
    # 10 * 0.8^k > 5 for k = 0..3: one initial + 4 perturbations
    steps = math.ceil(math.log(5.0 / 10.0) / math.log(0.8))
    assert steps == 4 and r.evaluations == 1 + steps
    assert r.trajectory[0]["tag"] == "initial" and r.trajectory[0]["accepted"] is True
    temps = [rec["info"]["temperature"] for rec in r.trajectory[1:]]
    assert temps == pytest.approx([10.0, 8.0, 6.4, 5.12])
    assert r.score == max(rec["score"] for rec in r.trajectory)


def test_prior_gives_larger_units_more_sparsity(default_run):
    r, _ = default_run
    # parameters a unit's channels carry: c1 27*8 + 8 + 4*8 (bn) + 9*8*16 (c2 input) = 1408,
    # c3 9*16*16 + 16 + 16*4 (fc input) = 2384, c2 9*8*16 + 16 + 9*16*16 (c3 input) = 3472
    for rec in r.trajectory:
        a = rec["allocation"]
        assert a["c1"] <= a["c3"] <= a["c2"]


def test_reproducible_with_seed_and_differs_across_seeds(model, default_run):
    a, b = default_run[0], _run(model, seed=0)
    assert strip_times(a.trajectory) == strip_times(b.trajectory) and a.allocation == b.allocation
    c = _run(model, seed=4)
    assert c.trajectory[0]["allocation"] != a.trajectory[0]["allocation"]


def test_resume_after_interruption_gives_the_same_result(model, default_run, tmp_path):
    full = default_run[0]
    with pytest.raises(RuntimeError, match="simulated interruption"):
        _run(model, out_dir=tmp_path / "cut", evaluator=OutputMatch(model, fail_after=3))
    saved = json.loads((tmp_path / "cut" / "checkpoint.json").read_text())
    assert len(saved["trajectory"]) == 3 and saved["algorithm_state"]["temperature"] == pytest.approx(6.4)
    fresh = OutputMatch(model)
    resumed = _run(model, out_dir=tmp_path / "cut", resume=True, evaluator=fresh)
    assert fresh.calls == full.evaluations - 3
    assert resumed.allocation == full.allocation and resumed.score == full.score
    assert strip_times(resumed.trajectory) == strip_times(full.trajectory)


def test_resume_refuses_other_settings(model, tmp_path):
    with pytest.raises(RuntimeError):
        _run(model, out_dir=tmp_path, evaluator=OutputMatch(model, fail_after=1))
    with pytest.raises(kprune.KPruneError, match="different `algorithm`"):
        _run(model, out_dir=tmp_path, resume=True, perturbation_magnitude=0.1)


def test_trajectory_json_is_complete(default_run):
    r, out = default_run
    data = json.loads((out / "trajectory.json").read_text())
    assert data["algorithm"]["name"] == "simulated_annealing" and data["constraint"] == "flops"
    assert len(data["trajectory"]) == r.evaluations
    for i, rec in enumerate(data["trajectory"]):
        assert set(rec) >= RECORD_KEYS and rec["index"] == i
        assert set(rec["allocation"]) == {"c1", "c2", "c3"} and set(rec["cost"]) == {"params", "flops"}
        assert isinstance(rec["accepted"], bool)


def test_from_recipe_search_section(model):
    recipe = {"prune": {**PRUNE, "search": {**SA, "constraint": "params", "budget": 0.5}}}
    r = search.run(model, recipe, evaluator=OutputMatch(model), verbose=0)
    assert r.algorithm["start_temperature"] == 10.0 and r.cost["params"] <= 0.5 * r.original["params"]
