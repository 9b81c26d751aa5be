"""Executors: parallel evaluation gives the same search as one process (local processes, Ray)."""

import pytest
from search_fixtures import PRUNE, OutputMatch, scale_weights, strip_times, tiny_cnn

from kprune import search
from kprune.errors import KPruneError, RecipeError
from kprune.search.executor import InProcessExecutor, LocalExecutor, make_executor


@pytest.fixture(scope="module")
def model():
    return tiny_cnn()


def _pair(model, executor, **kw):
    """The same search in this process and with ``executor``: (sequential, parallel) results."""
    runs = []
    for ex in (None, executor):
        runs.append(search.run(model, PRUNE, evaluator=OutputMatch(model), finetune=scale_weights, verbose=0,
                               executor=ex, **kw))
    return runs


def _assert_same(a, b):
    ta, tb = strip_times(a.trajectory), strip_times(b.trajectory)
    assert [r["allocation"] for r in ta] == [r["allocation"] for r in tb]
    assert [r["score"] for r in ta] == pytest.approx([r["score"] for r in tb], rel=1e-6, abs=1e-9)
    assert [(r["tag"], r["accepted"], r["finetune_steps"]) for r in ta] == \
        [(r["tag"], r["accepted"], r["finetune_steps"]) for r in tb]
    assert a.allocation == b.allocation and a.cost == b.cost
    assert a.score == pytest.approx(b.score, rel=1e-6, abs=1e-9)


def test_netadapt_with_finetuning_and_a_carried_base_on_local_processes(model):
    # Three iterations: from the second on, the proposals start from the carried (fine-tuned)
    # base, which the workers must receive; the proposals of an iteration are one batch.
    seq, par = _pair(model, LocalExecutor(workers=2, threads=1), name="netadapt", constraint="params",
                     budget=0.6, step=0.15, finetune_steps=2)
    _assert_same(seq, par)
    iterations = {r["info"]["iteration"] for r in par.trajectory if r["tag"].startswith("proposal")}
    assert len(iterations) >= 2
    assert sum(r["tag"].startswith("proposal") for r in par.trajectory) >= 6


def test_sensitivity_amc_and_annealing_batches_on_local_processes(model):
    executor = LocalExecutor(workers=2, threads=1)
    _assert_same(*_pair(model, executor, name="sensitivity", constraint="params", budget=0.5, grid=[0.25, 0.5, 0.75]))
    seq, par = _pair(model, executor, name="amc", constraint="flops", budget=0.5, episodes=6, warmup=4,
                     parallel_episodes=2, hidden=8, batch_size=4)
    _assert_same(seq, par)
    assert [r["tag"] for r in par.trajectory[:6]] == ["warmup"] * 4 + ["episode"] * 2
    seq, par = _pair(model, executor, name="simulated_annealing", constraint="flops", budget=0.5,
                     proposals_per_step=3, max_evaluations=7)
    _assert_same(seq, par)
    tags = [r["tag"] for r in par.trajectory if r["tag"] != "final"]
    assert tags == ["initial"] + ["perturbation"] * 6
    # Exactly one proposal per step is accepted or not by Metropolis; the others are rejected.
    assert sum(r["accepted"] is False for r in par.trajectory[1:7]) >= 4


def test_proposals_per_step_one_is_classic_annealing(model):
    a = search.run(model, PRUNE, evaluator=OutputMatch(model), verbose=0, name="simulated_annealing",
                   budget=0.5, max_evaluations=5)
    b = search.run(model, PRUNE, evaluator=OutputMatch(model), verbose=0, name="simulated_annealing",
                   budget=0.5, max_evaluations=5, proposals_per_step=1)
    _assert_same(a, b)


def test_resume_with_another_worker_count(model, tmp_path):
    kw = dict(name="sensitivity", constraint="params", budget=0.5, grid=[0.5])
    first = search.run(model, PRUNE, evaluator=OutputMatch(model), verbose=0, out_dir=tmp_path,
                       executor={"name": "local", "workers": 2, "threads": 1}, **kw)

    def refuse(m):
        raise AssertionError("every evaluation should be replayed from the checkpoint")

    again = search.run(model, PRUNE, evaluator=refuse, verbose=0, out_dir=tmp_path, resume=True, **kw)
    assert strip_times(again.trajectory)[:-1] == strip_times(first.trajectory)[:-1]
    assert again.allocation == first.allocation


def test_unpicklable_evaluator_is_a_clear_error(model):
    with pytest.raises(KPruneError, match=r"evaluator must be picklable.*lambda"):
        search.run(model, PRUNE, evaluator=lambda m: 0.0, verbose=0, name="sensitivity", grid=[0.5],
                   executor={"name": "local", "workers": 2})


def test_executor_config_errors_and_defaults():
    assert isinstance(make_executor({}), InProcessExecutor)
    local = make_executor({"workers": 3, "threads": 2})
    assert isinstance(local, LocalExecutor) and (local.workers, local.threads) == (3, 2)
    with pytest.raises(RecipeError, match=r"prune\.search\.executor\.workers.*>= 1.*workers=0"):
        make_executor({"workers": 0})
    with pytest.raises(RecipeError, match=r"prune\.search\.executor\.name.*'local', 'ray'.*name='dask'"):
        make_executor({"name": "dask"})
    with pytest.raises(RecipeError, match=r"prune\.search\.executor\.nodes"):
        search.validate({"name": "sensitivity", "executor": {"nodes": 2}})


def test_ray_gives_the_same_search(model):
    ray = pytest.importorskip("ray")
    from kprune.search.executor import RayExecutor

    # A machine where Ray cannot run at all (a sandbox) is a skip that says why, not a failure
    # of kprune; otherwise RayExecutor starts (and stops) its own local Ray below.
    try:
        ray.init(include_dashboard=False, log_to_driver=False, num_cpus=1)
    except Exception as exc:  # Ray raises many types when the environment forbids it
        pytest.skip(f"a local Ray cannot start on this machine: {type(exc).__name__}: {exc}")
    ray.shutdown()

    # A closure evaluator and fine-tuning: Ray ships them with cloudpickle. Two NetAdapt
    # iterations: the second batch starts from a carried base shared through Ray's object store.
    match = OutputMatch(model)
    kw = dict(name="netadapt", constraint="params", budget=0.75, step=0.15, finetune_steps=1)
    seq = search.run(model, PRUNE, evaluator=match, finetune=scale_weights, verbose=0, **kw)

    def finetune(m, n, s):
        import os
        # The Ray that RayExecutor starts runs its actors at the driver's priority (Ray's
        # default niceness 15 starves them under any other load).
        assert os.nice(0) == 0, f"the Ray actor runs at niceness {os.nice(0)}"
        return scale_weights(m, n, s)

    par = search.run(model, PRUNE, evaluator=lambda m: match(m), finetune=finetune,
                     verbose=0, executor=RayExecutor(workers=2, threads=1), **kw)
    _assert_same(seq, par)
    assert len({r["info"]["iteration"] for r in par.trajectory if r["tag"].startswith("proposal")}) == 2
    assert not ray.is_initialized()  # the executor stopped the Ray it started
