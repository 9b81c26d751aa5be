"""Where a search's candidate evaluations run: this process, local worker processes, or Ray.

Searches hand independent candidates to :meth:`SearchContext.evaluate_many
<kprune.search.context.SearchContext.evaluate_many>` in batches (NetAdapt's proposals of one
iteration, a sensitivity round's single-unit candidates, AMC's warm-up episodes, simulated
annealing's ``proposals_per_step``). An :class:`Executor` scores a batch and returns the scores
in order. Each evaluation depends only on the candidate's allocation, the weight state it
starts from and its fine-tuning seed (``search seed + evaluation index``), so every executor
and any number of workers give the same trajectory, allocation and result for a seed.

Configured by ``prune.search.executor`` (or ``kprune.search.run(..., executor=...)``):

* ``name: local`` (default) — ``workers: 1`` evaluates in this process; ``workers: N > 1``
  starts N local worker processes (``spawn``; each loads the model once and keeps it).
* ``name: ray`` — N Ray actors on the cluster at ``address`` (null: a local Ray), each with
  ``threads`` CPUs and ``num_gpus`` GPUs. Needs ``pip install "kprune[ray]"``.

What travels to the workers, once: the dense model (``.keras`` bytes, loaded with
``safe_mode``), the ``prune`` section, the recipe (for the default evaluator and fine-tuning)
and the evaluator/fine-tuning callables when given — pickled, so for local processes they
must be module-level functions or instances of module-level classes (Ray uses cloudpickle and
also takes closures). The weight state a batch starts from is shared once per change
(NetAdapt's fine-tuned model), as a ``.npz`` file for local processes or a Ray object.

A custom backend subclasses :class:`Executor` (``start``, ``share``, ``map``, ``close``) and is
passed as ``executor=`` to ``kprune.search.run`` or ``Search.run``.
"""

from __future__ import annotations

import abc
import io
import os
import pickle
import sys
import tempfile
from dataclasses import dataclass, field

import numpy as np

from kprune.config import schema as S
from kprune.config.recipe import Recipe
from kprune.errors import KPruneError
from kprune.io import atomic_write_bytes
from kprune.search.candidates import CandidateBuilder
from kprune.search.evaluation import (
    default_evaluator,
    default_finetune,
    default_recalibration,
)
from kprune.search.units import find_units

F = S.Field

EXECUTOR = S.Section({
    "name": F("str", "local", choices=("local", "ray"), doc="local processes or a Ray cluster"),
    "workers": F("int", 1, low=1, doc="parallel evaluations (1 with local: in this process)"),
    "threads": F("int", None, low=1, nullable=True,
                 doc="TensorFlow threads (Ray: CPUs) per worker (default: CPUs // workers)"),
    "address": F("str", None, nullable=True, doc="Ray cluster address (null: start or join a local Ray)"),
    "num_gpus": F("float", 0.0, low=0.0, doc="GPUs per Ray worker"),
}, doc="where candidate evaluations run")


@dataclass
class Job:
    """Everything a worker needs to evaluate candidates (pickled once per worker).

    Attributes:
        model: the dense model as ``.keras`` bytes.
        prune: the validated ``prune`` section.
        units: the unit names the worker must find (checked).
        recipe: the recipe dict (default evaluator and fine-tuning read its ``data``).
        eval_take: validation examples of the default evaluator.
        evaluator, finetune: the user's callables, or None for the recipe's defaults.
        threads: TensorFlow intra-op threads in the worker (None: TensorFlow's default).
        recalibrate_bn: BatchNorm recalibration batches per candidate (0: none).
    """

    model: bytes
    prune: dict
    units: list
    recipe: dict | None = None
    eval_take: int | None = 1000
    evaluator: object = None
    finetune: object = None
    threads: int | None = None
    recalibrate_bn: int = 0
    meta: dict = field(default_factory=dict)


class Worker:
    """Loads the model once, wraps it like the search does, and scores candidates.

    Args:
        job: a :class:`Job`.
    """

    def __init__(self, job: Job):
        if job.threads:
            import tensorflow as tf
            try:
                tf.config.threading.set_intra_op_parallelism_threads(int(job.threads))
                tf.config.threading.set_inter_op_parallelism_threads(1)
            except RuntimeError:  # TensorFlow already initialised in this process
                pass
        import keras

        with tempfile.TemporaryDirectory(prefix="kprune_worker_") as folder:
            path = os.path.join(folder, "model.keras")
            with open(path, "wb") as f:
                f.write(job.model)
            model = keras.saving.load_model(path, compile=False, safe_mode=True)
        units = find_units(model, job.prune)
        if [u.name for u in units] != list(job.units):
            raise KPruneError(f"search worker: the reloaded model has units {[u.name for u in units]}, the "
                              f"search has {list(job.units)}; the model does not survive a .keras round trip.")
        self.builder = CandidateBuilder(model, job.prune, units)
        recipe = None
        if job.evaluator is None or job.finetune is None or job.recalibrate_bn:
            recipe = Recipe.from_dict(job.recipe or {})
        self.evaluator = job.evaluator or default_evaluator(recipe, job.eval_take)
        self.finetune = job.finetune or default_finetune(recipe)
        self.recalibrate = default_recalibration(recipe, job.recalibrate_bn)
        self._state_key = None
        self._state = None

    def run(self, task: dict, state=None) -> float:
        """Scores one candidate: ``task`` holds ``allocation``, ``finetune_steps``, ``seed``."""
        if state is not None and len(state) != len(self.builder.wrapped.weights):
            raise KPruneError(f"search worker: a weight state of {len(state)} arrays does not fit the worker's "
                              f"wrapped model ({len(self.builder.wrapped.weights)} variables).")
        return self.builder.score(task["allocation"], self.evaluator, self.finetune, task["finetune_steps"],
                                  task["seed"], self.recalibrate, from_state=state)

    def run_from_file(self, task: dict, path: str | None) -> float:
        """:meth:`run` with the state read from a ``.npz`` file (cached while it stays the same)."""
        if path is None:
            return self.run(task)
        if path != self._state_key:
            with np.load(path) as z:
                self._state = [z[f"a{i}"] for i in range(len(z.files))]
            self._state_key = path
        return self.run(task, self._state)


class Executor(abc.ABC):
    """Runs batches of candidate evaluations; scores come back in task order.

    Subclasses implement :meth:`start` (receive the :class:`Job`), :meth:`share` (make a weight
    state available to the workers, return a handle), :meth:`map` and :meth:`close`.
    """

    workers: int = 1

    @abc.abstractmethod
    def start(self, job: Job) -> None:
        """Starts the workers for ``job`` (called once, before the first batch)."""

    @abc.abstractmethod
    def share(self, state: list):
        """Makes a weight snapshot available to the workers; returns its handle."""

    @abc.abstractmethod
    def map(self, tasks: list, handle) -> list:
        """Scores of ``tasks`` (dicts: allocation, finetune_steps, seed) from state ``handle`` (None: original)."""

    def close(self) -> None:
        """Stops the workers (called once, at the end of the search)."""

    def check_picklable(self, job: Job) -> None:
        """Raises a clear error when the job cannot travel to a worker."""
        for what in ("evaluator", "finetune"):
            obj = getattr(job, what)
            if obj is None:
                continue
            try:
                pickle.dumps(obj)
            except Exception as exc:  # pickle raises several types
                raise KPruneError(
                    f"prune.search.executor: workers run in other processes, so the {what} must be picklable "
                    f"(a module-level function, or an instance of a module-level class). Received {obj!r}: "
                    f"{type(exc).__name__}: {exc}. Use executor workers: 1, name: ray (cloudpickle), or the "
                    "recipe's default.") from None


class InProcessExecutor(Executor):
    """``local`` with one worker: the search's own process evaluates (nothing is started)."""

    workers = 1

    def start(self, job):
        pass

    def share(self, state):
        return None

    def map(self, tasks, handle):
        raise KPruneError("InProcessExecutor evaluates through the search context; map() is not used.")


class LocalExecutor(Executor):
    """``workers`` local processes (``spawn`` start method), each holding one :class:`Worker`.

    Args:
        workers: processes (>= 2; one worker is :class:`InProcessExecutor`).
        threads: TensorFlow threads per process (default ``os.cpu_count() // workers``).

    Example:
        >>> kprune.search.run(model, recipe, name="sensitivity", executor=LocalExecutor(workers=4))
    """

    def __init__(self, workers: int = 2, threads: int | None = None):
        self.workers = int(workers)
        self.threads = threads or max(1, (os.cpu_count() or 1) // self.workers)
        self._pool = None
        self._folder = None
        self._count = 0

    def start(self, job):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        job.threads = job.threads or self.threads
        self.check_picklable(job)
        self._folder = tempfile.mkdtemp(prefix="kprune_executor_")
        self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                         initializer=_init_local, initargs=(job,))

    def share(self, state):
        self._count += 1
        path = os.path.join(self._folder, f"state_{self._count}.npz")
        buf = io.BytesIO()
        np.savez(buf, **{f"a{i}": np.asarray(a) for i, a in enumerate(state)})
        atomic_write_bytes(path, buf.getvalue())
        return path

    def map(self, tasks, handle):
        from concurrent.futures.process import BrokenProcessPool
        futures = [self._pool.submit(_run_local, task, handle) for task in tasks]
        try:
            return [f.result() for f in futures]
        except BrokenProcessPool as exc:
            raise KPruneError(f"a search worker process failed to start or died ({exc}): its own error is "
                              "printed above (e.g. the recipe has no `data` for the default evaluator, or "
                              "the model cannot be loaded); if it was killed, lower "
                              "prune.search.executor.workers (memory).") from exc

    def close(self):
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        if self._folder is not None:
            import shutil
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None


_WORKER = None


def _init_local(job: Job) -> None:
    global _WORKER
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    _WORKER = Worker(job)


def _run_local(task, path):
    return _WORKER.run_from_file(task, path)


class RayExecutor(Executor):
    """``workers`` Ray actors, each holding one :class:`Worker`.

    Args:
        workers: actors.
        threads: CPUs per actor (also its TensorFlow threads). Default 1.
        address: the cluster (``"auto"``, ``"ray://host:10001"``); None starts or joins a local Ray.
        num_gpus: GPUs per actor. Default 0.
    """

    def __init__(self, workers: int = 2, threads: int | None = None, address: str | None = None,
                 num_gpus: float = 0.0):
        self.workers = int(workers)
        self.threads = threads or 1
        self.address = address
        self.num_gpus = float(num_gpus)
        self._actors = []
        self._started_ray = False

    def start(self, job):
        try:
            import ray
        except ImportError:
            raise KPruneError("prune.search.executor.name: ray needs Ray: pip install \"kprune[ray]\" "
                              "(or use name: local).") from None
        job.threads = job.threads or self.threads
        if not ray.is_initialized():
            # A local Ray's workers see this process's import path (the evaluator's module);
            # on a cluster, install that module on the nodes (or pass a closure).
            env = None if self.address else {"env_vars": {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}}
            # A Ray started here runs its workers at niceness 0, not Ray's default 15: the search
            # is this process's job and it waits on them; at 15 any other load starves them
            # (importing TensorFlow in an actor took 240 s instead of 12 s beside two busy
            # processes on 2 cores). A cluster keeps its own setting.
            starts = not self.address and not os.environ.get("RAY_ADDRESS")
            extra = {"_system_config": {"worker_niceness": 0}} if starts else {}
            ray.init(address=self.address, include_dashboard=False, log_to_driver=False,
                     ignore_reinit_error=True, runtime_env=env, **extra)
            self._started_ray = True
        remote = ray.remote(num_cpus=self.threads, num_gpus=self.num_gpus)(_RayWorker)
        ref = ray.put(job)
        self._actors = [remote.remote(ref) for _ in range(self.workers)]

    def share(self, state):
        import ray
        return ray.put([np.asarray(a) for a in state])

    def map(self, tasks, handle):
        import ray
        # Round-robin over the actors; ray.get keeps the tasks' order.
        refs = [self._actors[i % len(self._actors)].run.remote(task, handle) for i, task in enumerate(tasks)]
        return [float(s) for s in ray.get(refs)]

    def close(self):
        if not self._actors and not self._started_ray:
            return
        import ray
        for actor in self._actors:
            ray.kill(actor)
        self._actors = []
        if self._started_ray:
            ray.shutdown()
            self._started_ray = False


class _RayWorker:
    def __init__(self, job):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        self.worker = Worker(job)

    def run(self, task, state):
        return self.worker.run(task, state)


def make_executor(config) -> Executor:
    """An executor from a validated ``prune.search.executor`` mapping or an instance.

    Example:
        >>> make_executor({"name": "local", "workers": 1}).workers
        1
    """
    if isinstance(config, Executor):
        return config
    config = S.validate_section(dict(config or {}), EXECUTOR, "prune.search.executor")
    if config["name"] == "ray":
        return RayExecutor(config["workers"], config["threads"], config["address"], config["num_gpus"])
    if config["workers"] == 1:
        return InProcessExecutor()
    return LocalExecutor(config["workers"], config["threads"])
