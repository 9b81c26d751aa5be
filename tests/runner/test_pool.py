"""The sweep's worker pool: more cells than one worker's lifetime, with one and two workers,
finishes (Python 3.11's ``max_tasks_per_child`` hung after the first worker's last cell), each
worker runs at most ``cells_per_worker`` cells, and Ctrl-C in the parent stops every worker."""

import os
import signal
import time

import pytest

from kprune.runner.pool import CellPool


def _pid(spec):
    return spec, os.getpid()


def _fail_or_pid(spec):
    if spec == 3:
        raise ValueError("cell 3 is broken")
    return spec, os.getpid()


def _sleep(spec):
    time.sleep(60)


def _exists(pid: int, wait: float) -> bool:
    """Whether process ``pid`` still exists (a zombie counts) after up to ``wait`` seconds."""
    deadline = time.time() + wait
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        if time.time() > deadline:
            return True
        time.sleep(0.1)


@pytest.fixture
def watchdog():
    """Fails a test that would hang (instead of hanging the suite)."""
    def alarm(signum, frame):
        raise TimeoutError("the pool hung")
    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(120)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


@pytest.mark.parametrize("jobs", [1, 2])
def test_more_cells_than_a_worker_lifetime_all_finish(jobs, watchdog):
    with CellPool(jobs, cells_per_worker=2) as pool:
        results = [(spec, result, error) for spec, result, error in pool.run(_pid, range(5))]
    assert sorted(spec for spec, _, _ in results) == list(range(5))
    assert all(error is None and result[0] == spec for spec, result, error in results)
    per_worker = {}
    for _, (_, pid), _ in results:
        per_worker[pid] = per_worker.get(pid, 0) + 1
    assert max(per_worker.values()) <= 2
    assert len(per_worker) == pool.workers_started >= 3  # 5 cells, 2 per worker


def test_an_exception_in_one_cell_is_returned_and_the_rest_run(watchdog):
    with CellPool(1, cells_per_worker=8) as pool:
        results = {spec: (result, error) for spec, result, error in pool.run(_fail_or_pid, range(5))}
    assert isinstance(results[3][1], ValueError) and "cell 3" in str(results[3][1])
    assert [s for s, (r, e) in results.items() if e is None] == [0, 1, 2, 4]
    assert pool.workers_started == 1


def test_ctrl_c_terminates_every_worker_at_once(watchdog):
    pool = CellPool(2, cells_per_worker=8)
    procs = []

    def interrupt(signum, frame):
        procs.extend(p for ex in pool._slots if ex for p in ex._processes.values())
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGALRM, interrupt)
    signal.alarm(15)  # long enough for both workers to start their 60 s cells
    t0 = time.time()
    try:
        with pytest.raises(KeyboardInterrupt):
            list(pool.run(_sleep, range(4)))
    finally:
        signal.signal(signal.SIGALRM, old)
    assert len(procs) == 2
    for p in procs:
        p.join(20)
    # by pid, not p.is_alive(): the executor's own thread reaps its workers too, and when it wins
    # that race the Process object never learns the exit code (is_alive() stays True, join returns)
    assert not [p.pid for p in procs if _exists(p.pid, wait=20)]
    assert time.time() - t0 < 40


def test_cells_per_worker_must_be_positive():
    with pytest.raises(ValueError, match="Received: 0"):
        CellPool(1, cells_per_worker=0)
