"""NetAdapt: minimal proposals under the reduction schedule, budgets, resume, latency."""

import json

import keras
import pytest
from search_fixtures import PRUNE, RECORD_KEYS, OutputMatch, strip_times, tiny_cnn

import kprune
from kprune import search
from kprune.search.cost import CostModel
from kprune.search.units import find_units

NA = {"name": "netadapt", "step": 0.15, "step_decay": 0.9}


def fine_tune_by_scaling(model, steps, seed):
    """A deterministic stand-in for short-term training (zeros stay zero)."""
    for v in model.trainable_variables:
        v.assign(v * (1.0 - 0.01 * (1 + seed % 7)))


@pytest.fixture(scope="module")
def model():
    return tiny_cnn()


@pytest.fixture(scope="module")
def flops_run(model, tmp_path_factory):
    out = tmp_path_factory.mktemp("na")
    return search.run(model, PRUNE, evaluator=OutputMatch(model), verbose=0, out_dir=out,
                      constraint="flops", budget=0.5, **NA), out


def _iterations(result):
    its = {}
    for rec in result.trajectory:
        if rec["tag"].startswith("proposal:"):
            its.setdefault(rec["info"]["iteration"], []).append(rec)
    return [its[i] for i in sorted(its)]


def test_flops_budget_met_and_schedule_followed(model, flops_run):
    r, _ = flops_run
    assert r.met and r.cost["flops"] <= 0.5 * r.original["flops"]
    assert r.cost["flops"] == kprune.count(r.model).flops
    iterations = _iterations(r)
    orig = r.original["flops"]
    previous = orig
    for i, recs in enumerate(iterations):
        # every unit that can still shrink proposes once, in order; the best proposal is accepted
        units = [rec["info"]["unit"] for rec in recs]
        assert units == sorted(units) and len(set(units)) == len(units)
        best = max(recs, key=lambda rec: rec["score"])
        assert [rec["accepted"] for rec in recs] == [rec is best for rec in recs]
        target = max(r.limit, previous - 0.15 * orig * 0.9 ** i)
        assert recs[0]["info"]["target"] == pytest.approx(target)
        assert all(rec["cost"]["flops"] <= target for rec in recs)
        previous = best["cost"]["flops"]
    assert previous <= r.limit
    assert r.allocation == max(iterations[-1], key=lambda rec: rec["score"])["allocation"]


def test_proposals_are_the_smallest_pruning(model, flops_run):
    r, _ = flops_run
    prune = kprune.Recipe.from_dict({"prune": PRUNE}).prune
    units = {u.name: u for u in find_units(model, prune)}
    cm = CostModel(model, list(units.values()), prune)
    base = {u: 0.0 for u in units}
    checked = 0
    for recs in _iterations(r):
        for rec in recs:
            u = units[rec["info"]["unit"]]
            s = rec["allocation"][u.name]
            # only this unit changed, and pruning one channel fewer would miss the target
            assert {k: v for k, v in rec["allocation"].items() if k != u.name} == {k: v for k, v in base.items() if k != u.name}
            assert cm.kept(u, s) < cm.kept(u, base[u.name])
            if cm.kept(u, s) + 1 < cm.kept(u, base[u.name]):
                one_less = dict(rec["allocation"], **{u.name: s - 1 / u.size})
                assert cm.predict(one_less)["flops"] > rec["info"]["target"]
                checked += 1
        base = next(rec for rec in recs if rec["accepted"])["allocation"]
    assert checked > 0


def test_params_budget_and_trajectory_file(model, flops_run):
    r = search.run(model, PRUNE, evaluator=OutputMatch(model), verbose=0, constraint="params", budget=0.6,
                   name="netadapt", step=0.2)
    assert r.met and r.cost["params"] <= 0.6 * r.original["params"]
    _, out = flops_run
    data = json.loads((out / "trajectory.json").read_text())
    assert len(data["trajectory"]) == flops_run[0].evaluations
    assert all(set(rec) >= RECORD_KEYS for rec in data["trajectory"])


def test_resume_with_short_term_fine_tuning(model, tmp_path):
    kw = dict(constraint="flops", budget=0.5, finetune_steps=2, finetune=fine_tune_by_scaling, **NA)
    full = search.run(model, PRUNE, evaluator=OutputMatch(model), verbose=0, out_dir=tmp_path / "full", **kw)
    assert all(rec["finetune_steps"] == 2 for rec in full.trajectory if rec["tag"].startswith("proposal"))
    again = search.run(model, PRUNE, evaluator=OutputMatch(model), verbose=0, **kw)
    assert strip_times(again.trajectory) == strip_times(full.trajectory)
    cut = len(_iterations(full)[0]) + 2  # inside the second iteration, after the first one's state was saved
    with pytest.raises(RuntimeError):
        search.run(model, PRUNE, evaluator=OutputMatch(model, fail_after=cut), verbose=0, out_dir=tmp_path / "cut", **kw)
    resumed = search.run(model, PRUNE, evaluator=OutputMatch(model), verbose=0, out_dir=tmp_path / "cut",
                         resume=True, **kw)
    assert resumed.allocation == full.allocation and resumed.score == full.score
    assert strip_times(resumed.trajectory) == strip_times(full.trajectory)


def test_latency_budget_measured_within_tolerance(tmp_path):
    keras.utils.set_random_seed(0)
    inp = keras.Input((32, 32, 3), name="x")
    h = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="c1")(inp)
    h = keras.layers.Conv2D(48, 3, padding="same", activation="relu", name="c2")(h)
    h = keras.layers.Conv2D(48, 3, padding="same", activation="relu", name="c3")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    model = keras.Model(inp, keras.layers.Dense(4, name="fc")(h))
    latency = {"runs": 10, "warmup": 2, "grid": [0.5, 1.0], "tolerance": 0.3}
    r = search.run(model, PRUNE, evaluator=OutputMatch(model), verbose=0, out_dir=tmp_path, name="netadapt",
                   constraint="latency", budget=0.6, step=0.2, latency=latency)
    assert (tmp_path / "latency_table.json").exists()
    assert r.original["latency"] > 0 and r.predicted["latency"] <= r.limit
    assert r.cost["latency"] <= r.limit * 1.3 and r.met
    assert r.limit == pytest.approx(0.6 * r.original["latency"])
    assert set(r.cost) == {"params", "flops", "latency"}
