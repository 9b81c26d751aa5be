"""AMC: the agent learns a toy problem with a known optimum; budgets, seeds, resume, trajectory."""

import json

import numpy as np
import pytest
from search_fixtures import PRUNE, RECORD_KEYS, OutputMatch, strip_times, tiny_cnn

import kprune
from kprune import search
from kprune.search.amc import AMC
from kprune.search.ddpg import MLP, truncated_normal

FAST = {"name": "amc", "episodes": 12, "warmup": 4, "hidden": 32, "batch_size": 16}


@pytest.fixture(scope="module")
def model():
    return tiny_cnn()


def _run(model, **kw):
    evaluator = kw.pop("evaluator", None) or OutputMatch(model)
    prune = kw.pop("prune", PRUNE)
    return search.run(model, prune, evaluator=evaluator, verbose=0, **{**FAST, **kw})


@pytest.fixture(scope="module")
def flops_run(model, tmp_path_factory):
    out = tmp_path_factory.mktemp("amc")
    return _run(model, out_dir=out, constraint="flops", budget=0.5), out


class Importance:
    """Toy score: ``-Σ importance × pruned fraction`` of each unit's kernel (read from its mask)."""

    weights = {"c1": 4.0, "c2": 2.0, "c3": 0.5}

    def __call__(self, model):
        return -sum(w * float(np.mean(np.asarray(model.get_layer(n).masks["kernel"].numpy()) == 0))
                    for n, w in self.weights.items())


def test_mlp_gradients_match_finite_differences():
    rng = np.random.default_rng(0)
    for sigmoid in (False, True):
        net = MLP([4, 5, 6, 1], rng, sigmoid=sigmoid, init_w=0.5)
        x, g = rng.normal(size=(3, 4)), rng.normal(size=(3, 1))
        _, cache = net.forward(x)
        grads, dx = net.backward(cache, g)
        for p, gp in zip(net.params, grads):
            idx = tuple(int(i) for i in rng.integers(0, p.shape))
            old = p[idx]
            p[idx] = old + 1e-6
            up = np.sum(net(x) * g)
            p[idx] = old - 1e-6
            down = np.sum(net(x) * g)
            p[idx] = old
            assert (up - down) / 2e-6 == pytest.approx(gp[idx], abs=1e-6)
        x2 = x.copy()
        x2[1, 2] += 1e-6
        assert (np.sum(net(x2) * g) - np.sum(net(x) * g)) / 1e-6 == pytest.approx(dx[1, 2], abs=1e-4)


def test_truncated_normal_stays_in_bounds():
    rng = np.random.default_rng(0)
    xs = [truncated_normal(rng, 0.95, 0.5, 0.2, 1.0) for _ in range(200)]
    assert min(xs) >= 0.2 and max(xs) <= 1.0 and truncated_normal(rng, 1.4, 0.0, 0.2, 1.0) == 1.0


def test_agent_learns_the_known_optimum(model):
    # params budget 50 % of the nonzero weights; the toy score is linear in each unit's pruned
    # fraction, so the optimum prunes the least important unit (c3, 2304 kernel weights) as far as
    # the budget needs and keeps the others (c3 also carries the least importance per weight)
    prune = {**PRUNE, "granularity": "weight"}
    r = _run(model, prune=prune, evaluator=Importance(), constraint="params", budget=0.5, episodes=120,
             warmup=20, hidden=64, lr_actor=1e-3, batch_size=32)
    need = r.original["params"] - r.limit                     # weights that must go
    optimum = -0.5 * np.ceil(need) / 2304
    rewards = r.extras["amc"]["rewards"]
    assert len(rewards) == 120
    random_mean, last_mean = np.mean(rewards[:20]), np.mean(rewards[-20:])
    assert random_mean < optimum - 1.5                        # random policies are far off
    assert last_mean > random_mean + 1.5 and last_mean > optimum - 0.05
    assert r.score >= optimum - 0.02 and r.allocation["c3"] > 0.8 > 0.05 > max(r.allocation["c1"], r.allocation["c2"])
    assert r.met and r.cost["params"] <= r.limit


def test_every_episode_meets_the_budget(flops_run):
    r, _ = flops_run
    assert r.met and r.cost["flops"] <= 0.5 * r.original["flops"] and r.cost["flops"] == kprune.count(r.model).flops
    assert all(rec["cost"]["flops"] <= r.limit for rec in r.trajectory)  # the action bound
    tags = [rec["tag"] for rec in r.trajectory]
    assert tags == ["warmup"] * 4 + ["episode"] * 8
    assert r.score == max(rec["score"] for rec in r.trajectory)
    best = max(r.trajectory, key=lambda rec: rec["score"])
    assert r.allocation == best["allocation"] and r.extras["amc"]["best_episode"] == best["info"]["episode"]


def test_params_budget(model):
    r = _run(model, constraint="params", budget=0.3)
    assert r.met and r.cost["params"] <= 0.3 * r.original["params"]
    assert all(rec["cost"]["params"] <= r.limit for rec in r.trajectory)


def test_state_embedding_and_bound(model, flops_run):
    r, _ = flops_run
    # actions: preserve ratios in [1 - max_sparsity, 1]; the stored allocation is 1 - action
    for rec in r.trajectory:
        acts = rec["info"]["actions"]
        assert all(0.1 - 1e-12 <= a <= 1.0 for a in acts)
        assert [rec["allocation"][u] for u in ("c1", "c2", "c3")] == pytest.approx([1 - a for a in acts])


def test_reproducible_with_a_seed_and_differs_across_seeds(model, flops_run):
    a = flops_run[0]
    b = _run(model, constraint="flops", budget=0.5)
    assert strip_times(a.trajectory) == strip_times(b.trajectory) and a.allocation == b.allocation
    c = _run(model, constraint="flops", budget=0.5, seed=3)
    assert c.trajectory[0]["allocation"] != a.trajectory[0]["allocation"]


def test_resume_after_interruption(model, flops_run, tmp_path):
    full = flops_run[0]
    with pytest.raises(RuntimeError, match="simulated interruption"):
        _run(model, out_dir=tmp_path, constraint="flops", budget=0.5, evaluator=OutputMatch(model, fail_after=7))
    fresh = OutputMatch(model)
    resumed = _run(model, out_dir=tmp_path, resume=True, constraint="flops", budget=0.5, evaluator=fresh)
    assert fresh.calls == full.evaluations - 7
    assert strip_times(resumed.trajectory) == strip_times(full.trajectory)
    assert resumed.allocation == full.allocation and resumed.score == full.score


def test_trajectory_json_is_complete(flops_run):
    r, out = flops_run
    data = json.loads((out / "trajectory.json").read_text())
    assert data["algorithm"]["name"] == "amc" and len(data["trajectory"]) == r.evaluations == 12
    for i, rec in enumerate(data["trajectory"]):
        assert set(rec) >= RECORD_KEYS and rec["index"] == i and isinstance(rec["accepted"], bool)
        assert rec["info"]["episode"] == i and len(rec["info"]["actions"]) == 3


def test_keys_validated():
    with pytest.raises(kprune.RecipeError, match="prune.search.warmup"):
        search.get({"name": "amc", "episodes": 10, "warmup": 10})
    cfg = AMC().get_config()
    assert (cfg["episodes"], cfg["warmup"], cfg["hidden"], cfg["tau"]) == (400, 100, 300, 0.01)
