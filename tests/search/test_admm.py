"""ADMM: the penalty drives pruned weights to zero, budgets, granularities, seeds, resume, trajectory."""

import keras
import pytest
from search_fixtures import PRUNE, Distill, OutputMatch, resume_after_cut, saved_trajectory, strip_times, tiny_cnn

import kprune
from kprune import search
from kprune.search.admm import AdmmPenalty

ADMM = {"name": "admm", "rounds": 3, "rho": 1.0, "training_steps": 8}


@pytest.fixture(scope="module")
def model():
    return tiny_cnn()


def _run(model, **kw):
    evaluator = kw.pop("evaluator", None) or OutputMatch(model)
    finetune = kw.pop("finetune", None) or Distill(model)
    prune = kw.pop("prune", PRUNE)
    return search.run(model, prune, evaluator=evaluator, finetune=finetune, verbose=0, **{**ADMM, **kw})


@pytest.fixture(scope="module")
def flops_run(model, tmp_path_factory):
    out = tmp_path_factory.mktemp("admm")
    return _run(model, out_dir=out, constraint="flops", budget=0.5), out


def test_penalty_value():
    p = AdmmPenalty(keras.Variable([1.0, 1.0]), keras.Variable(2.0), inner=lambda x: keras.ops.sum(x))
    q = AdmmPenalty(keras.Variable([1.0, 1.0]), keras.Variable(2.0), on=keras.Variable(0.0))
    assert float(q(keras.ops.convert_to_tensor([0.0, 3.0]))) == 0.0
    assert float(p(keras.ops.convert_to_tensor([0.0, 3.0]))) == pytest.approx(0.5 * 2 * (1 + 4) + 3)


def test_pruned_weights_shrink_toward_the_structure(flops_run):
    r, _ = flops_run
    hist = r.extras["admm"]["history"]
    initial = r.extras["admm"]["initial_distance"]
    distances = [h["distance"] for h in hist]
    # ||W - Z||: the part hard pruning removes shrinks far below the trained model's
    assert initial > 1.0 and distances[0] < initial
    assert all(b < a for a, b in zip(distances, distances[1:])) and distances[-1] < 0.25 * initial
    # and the hard-pruned candidate gets closer to the dense model
    scores = [h["score"] for h in hist]
    assert scores[-1] > scores[0]
    assert [rec["tag"] for rec in r.trajectory] == ["admm:0", "admm:1", "admm:2"]


def test_penalty_matters(model):
    # with a negligible rho the same training leaves the pruned weights where they were
    r = _run(model, constraint="flops", budget=0.5, rho=1e-6)
    assert r.extras["admm"]["history"][-1]["distance"] > 0.6 * r.extras["admm"]["initial_distance"]


def test_flops_budget_met_and_uniform_allocation(flops_run):
    r, _ = flops_run
    c = kprune.count(r.model)
    assert r.met and r.cost == {"params": c.params, "flops": c.flops}
    assert r.cost["flops"] <= 0.5 * r.original["flops"]
    assert len(set(r.allocation.values())) == 1
    assert r.score == r.trajectory[-1]["score"]


def test_params_budget_with_a_given_allocation(model):
    r = _run(model, constraint="params", budget=0.6, allocation={"c1": 0.0, "c2": 0.5, "c3": 0.4})
    assert r.met and r.cost["params"] <= 0.6 * r.original["params"]
    assert r.cost["params"] == kprune.count(r.model).params
    assert r.allocation == {"c1": 0.0, "c2": 0.5, "c3": 0.4}  # it fits: used as given


def test_weight_granularity(model):
    prune = {**PRUNE, "granularity": "weight"}
    r = _run(model, prune=prune, constraint="params", budget=0.5)
    assert r.met and r.cost["params"] <= 0.5 * r.original["params"]
    assert r.cost["params"] == kprune.count(r.model).nonzero_params
    hist = r.extras["admm"]["history"]
    assert hist[-1]["distance"] < 0.5 * r.extras["admm"]["initial_distance"]


def test_reproducible_with_a_seed(model, flops_run):
    again = _run(model, constraint="flops", budget=0.5)
    full = flops_run[0]
    assert strip_times(again.trajectory) == strip_times(full.trajectory)
    assert again.extras == full.extras and again.score == full.score


def test_resume_after_interruption(model, flops_run, tmp_path):
    full = flops_run[0]
    saved, resumed, fresh, trainer = resume_after_cut(_run, model, tmp_path, 2, constraint="flops", budget=0.5)
    assert saved["saved_states"] == ["admm:2"]
    assert fresh.calls == 1 and trainer.calls == []  # round 2's trained state came from state.npz
    assert strip_times(resumed.trajectory) == strip_times(full.trajectory)
    assert resumed.score == full.score and resumed.extras == full.extras


def test_trajectory_json_is_complete(flops_run):
    r, out = flops_run
    assert r.evaluations == 3
    for i, rec in enumerate(saved_trajectory(out, "admm", 3)):
        assert rec["accepted"] is True
        assert rec["info"]["round"] == i and rec["info"]["rho"] == 1.0 and "distance" in rec["info"]


def test_recipe_keys_are_validated():
    with pytest.raises(kprune.RecipeError, match="prune.search.allocation"):
        search.get({"name": "admm", "allocation": {"c1": 1.5}})
    with pytest.raises(kprune.RecipeError, match="prune.search.rho_growth"):
        search.get({"name": "admm", "rho_growth": 0.5})
    assert search.get({"name": "admm"}).get_config()["rounds"] == 5
