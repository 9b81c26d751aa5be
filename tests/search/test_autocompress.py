"""AutoCompress: progressive rounds of annealing + ADMM + compaction; budgets, seeds, resume."""

import pytest
from search_fixtures import PRUNE, Distill, OutputMatch, resume_after_cut, saved_trajectory, strip_times, tiny_cnn

import kprune
from kprune import search

AC = {"name": "autocompress", "rounds": 2, "start_temperature": 10.0, "stop_temperature": 5.0,
      "cool_down_rate": 0.6, "admm_rounds": 2, "rho": 1.0, "training_steps": 8}


@pytest.fixture(scope="module")
def model():
    return tiny_cnn()


def _run(model, **kw):
    evaluator = kw.pop("evaluator", None) or OutputMatch(model)
    finetune = kw.pop("finetune", None) or Distill(model)
    return search.run(model, PRUNE, evaluator=evaluator, finetune=finetune, verbose=0, **{**AC, **kw})


@pytest.fixture(scope="module")
def params_run(model, tmp_path_factory):
    out = tmp_path_factory.mktemp("ac")
    return _run(model, out_dir=out, constraint="params", budget=0.36), out


def test_rounds_reach_the_budget_progressively(params_run):
    r, _ = params_run
    orig = r.original["params"]
    rounds = r.extras["rounds"]
    assert [h["round"] for h in rounds] == [1, 2]
    # round 1 aims at sqrt(0.36) = 60 % of the params (40 % removed, then 40 % of the rest)
    assert rounds[0]["limit"] == pytest.approx(0.6 * orig) and rounds[1]["limit"] == pytest.approx(0.36 * orig)
    tags = [rec["tag"] for rec in r.trajectory]
    # per round: 1 + 2 annealing steps (10 -> 6 -> 3.6 < 5 stops), 2 ADMM rounds, the compacted round
    per_round = ["initial", "perturbation", "perturbation", "admm:0", "admm:1", "pruned"]
    assert tags == [f"round{k}:{t}" for k in (1, 2) for t in per_round]
    for k, h in enumerate(rounds, 1):
        recs = [rec for rec in r.trajectory if rec["tag"].startswith(f"round{k}:")]
        # every annealed candidate fits its round's limit; the chosen one is the best of them
        annealed = [rec for rec in recs if rec["tag"].endswith(("initial", "perturbation"))]
        assert all(rec["cost"]["params"] <= h["limit"] for rec in annealed)
        assert h["allocation"] == max(annealed, key=lambda rec: rec["score"])["allocation"]
        assert all(rec["allocation"] == h["allocation"] for rec in recs[3:])
    # round 2 never revives what round 1 pruned
    assert all(rounds[1]["allocation"][u] >= rounds[0]["allocation"][u] for u in rounds[0]["allocation"])
    assert r.allocation == rounds[1]["allocation"] and r.score == r.trajectory[-1]["score"]


def test_admm_shrinks_the_pruned_part_each_round(params_run):
    for h in params_run[0].extras["rounds"]:
        assert h["admm"][-1]["distance"] < 0.5 * h["initial_distance"]


def test_params_budget_met(params_run):
    r, _ = params_run
    assert r.met and r.cost["params"] <= 0.36 * r.original["params"]
    assert r.cost == {"params": kprune.count(r.model).params, "flops": kprune.count(r.model).flops}


def test_flops_budget_met_with_fine_tuning(model):
    trainer = Distill(model)
    r = _run(model, constraint="flops", budget=0.4, rounds=1, finetune_steps=4, finetune=trainer)
    assert r.met and r.cost["flops"] <= 0.4 * r.original["flops"]
    assert r.trajectory[-1]["tag"] == "round1:pruned" and r.trajectory[-1]["info"]["finetune_steps"] == 4
    assert len(trainer.calls) == 3  # two ADMM W-steps and the fine-tuning


def test_reproducible_with_a_seed(model, params_run):
    again = _run(model, constraint="params", budget=0.36)
    assert strip_times(again.trajectory) == strip_times(params_run[0].trajectory)
    assert again.allocation == params_run[0].allocation and again.score == params_run[0].score


def test_resume_inside_the_second_round(model, params_run, tmp_path):
    full = params_run[0]
    saved, resumed, fresh, trainer = resume_after_cut(_run, model, tmp_path, 8, constraint="params", budget=0.36)
    assert saved["saved_states"] == ["round1:pruned"]
    assert fresh.calls == full.evaluations - 8 and len(trainer.calls) == 2  # only round 2's ADMM trains
    assert strip_times(resumed.trajectory) == strip_times(full.trajectory)
    assert resumed.allocation == full.allocation and resumed.score == full.score


def test_trajectory_json_is_complete(params_run):
    r, out = params_run
    assert r.evaluations == 12
    for rec in saved_trajectory(out, "autocompress", 12):
        assert isinstance(rec["accepted"], bool)


def test_keys_validated():
    with pytest.raises(kprune.RecipeError, match="prune.search.stop_temperature"):
        search.get({"name": "autocompress", "start_temperature": 1.0, "stop_temperature": 2.0})
    cfg = search.get({"name": "autocompress"}).get_config()
    assert cfg["rounds"] == 3 and cfg["admm_rounds"] == 5 and cfg["start_temperature"] == 100.0
