"""The sweep's worker processes: ``jobs`` slots, each recycled after a fixed number of cells.

``concurrent.futures`` can recycle workers itself (``max_tasks_per_child``), but on Python
3.11 an executor using it hangs for ever once a worker reaches its limit while tasks are
still queued (CPython gh-115634: with one worker, the sweep stopped after 8 cells). So
:class:`CellPool` keeps one single-process executor per slot, gives each slot one cell at a
time, and replaces a slot's executor itself after ``cells_per_worker`` cells. Nothing is
ever queued inside an executor, so no version of that bug can bite, and a worker that dies
breaks only its own slot (the cell is reported, the slot restarted).

Workers ignore SIGINT: Ctrl-C reaches the parent alone, which terminates every worker at
once (:meth:`CellPool.terminate`); a cell killed that way resumes from its checkpoints on
the next run.
"""

from __future__ import annotations

import multiprocessing
import signal
from collections import deque
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool


def _init_worker(initializer, initargs):
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    if initializer is not None:
        initializer(*initargs)


class CellPool:
    """``jobs`` worker processes (``spawn``), each replaced after ``cells_per_worker`` cells.

    Args:
        jobs: worker processes (>= 1).
        cells_per_worker: cells one worker process runs before a fresh one replaces it
            (>= 1): TensorFlow keeps memory that ``clear_session()`` does not return.
        initializer: called in each new worker with ``initargs`` (default none).
        initargs: its arguments (default ``()``).

    Example:
        >>> with CellPool(2, cells_per_worker=8) as pool:
        ...     for spec, result, error in pool.run(fn, specs):
        ...         print(spec, result or error)
    """

    def __init__(self, jobs: int, cells_per_worker: int, initializer=None, initargs=()):
        if not isinstance(cells_per_worker, int) or cells_per_worker < 1:
            raise ValueError(f"cells_per_worker must be an integer >= 1. Received: {cells_per_worker!r}.")
        self.jobs = jobs
        self.cells_per_worker = cells_per_worker
        self._init = (initializer, tuple(initargs))
        self._slots = [None] * jobs       # executor of each slot (started when first needed)
        self._served = [0] * jobs         # cells the slot's current worker has run
        self.workers_started = 0

    def _executor(self, i: int) -> ProcessPoolExecutor:
        if self._slots[i] is None or self._served[i] >= self.cells_per_worker:
            if self._slots[i] is not None:
                self._slots[i].shutdown(wait=True)  # idle: its one cell is done
            self._slots[i] = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                                                 initializer=_init_worker, initargs=self._init)
            self._served[i] = 0
            self.workers_started += 1
        return self._slots[i]

    def run(self, fn, specs):
        """Runs ``fn(spec)`` for every spec; yields ``(spec, result, error)`` as each finishes.

        ``error`` is None, or the exception the call raised (:class:`BrokenProcessPool` when the
        worker died; its slot is then restarted). On any exception in the caller (Ctrl-C), all
        workers are terminated at once.
        """
        pending = deque(specs)
        running = {}  # future -> (slot, spec)
        try:
            while pending or running:
                busy = {slot for slot, _ in running.values()}
                for i in range(self.jobs):
                    if pending and i not in busy:
                        spec = pending.popleft()
                        future = self._executor(i).submit(fn, spec)
                        self._served[i] += 1
                        running[future] = (i, spec)
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    i, spec = running.pop(future)
                    result, error = None, future.exception()
                    if error is None:
                        result = future.result()
                    elif isinstance(error, BrokenProcessPool):
                        self._slots[i].shutdown(wait=False)
                        self._slots[i] = None
                    yield spec, result, error
        except BaseException:
            self.terminate()
            raise

    def terminate(self):
        """Kills every worker now (running cells stop; they resume from their checkpoints)."""
        for i, ex in enumerate(self._slots):
            if ex is None:
                continue
            for proc in list((getattr(ex, "_processes", None) or {}).values()):
                if proc.is_alive():
                    proc.terminate()
            ex.shutdown(wait=False, cancel_futures=True)
            self._slots[i] = None

    def close(self):
        """Shuts every worker down after its current cell."""
        for i, ex in enumerate(self._slots):
            if ex is not None:
                ex.shutdown(wait=True)
                self._slots[i] = None

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.terminate()
