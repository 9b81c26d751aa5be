"""The search context: evaluations, trajectory, checkpoints, resume and progress.

Every algorithm talks to the model only through :class:`SearchContext`: it asks for a
candidate's predicted cost (:meth:`~SearchContext.cost`, cheap) and for its score
(:meth:`~SearchContext.evaluate`, expensive). Each evaluation is appended to the trajectory
and a checkpoint (``checkpoint.json``, atomic) is written after it.

Resume works by *replay*: the algorithm runs again from the start with the same seed, and
the first ``k`` evaluations are answered from the checkpoint instead of being recomputed
(their allocations are checked to be the same, and so is the random generator's state at
each of them). Because an algorithm's decisions depend only on its seed and on the answers
it gets, the resumed run reproduces the uninterrupted one exactly. Weight states an
algorithm carries between iterations (NetAdapt's fine-tuned model) are saved with
:meth:`~SearchContext.save_state` into ``state.npz`` and found again on replay.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np

from kprune.errors import KPruneError
from kprune.io import atomic_write_bytes, atomic_write_json

CHECKPOINT = "checkpoint.json"
STATE = "state.npz"
VERSION = 1


class CheckpointMismatch(KPruneError):
    """A resumed search asked for a different candidate than the checkpoint recorded."""


class SearchContext:
    """What a search algorithm may do: predict costs, evaluate candidates, keep state.

    Args:
        builder: a :class:`~kprune.search.candidates.CandidateBuilder`.
        cost_model: a :class:`~kprune.search.cost.CostModel`.
        constraint: ``"params"``, ``"flops"`` or ``"latency"``.
        limit: the absolute budget (same unit as the predicted cost).
        evaluator: ``callable(model) -> float`` (higher is better).
        finetune: ``callable(model, steps, seed)`` or None.
        seed: the search's seed (the generator :attr:`rng` is seeded with it).
        out_dir: folder for ``checkpoint.json`` and ``state.npz`` (None: nothing written).
        resume: replay the checkpoint found in ``out_dir``.
        header: what the checkpoint must match on resume (algorithm config, units, budget).
        verbose: 0 hides the progress bar.
        executor: a started :class:`~kprune.search.executor.Executor` for :meth:`evaluate_many`
            (None: everything is evaluated in this process).
        recalibrate: ``callable(model)`` run on every candidate right after it is built
            (BatchNorm recalibration), or None.
    """

    def __init__(self, builder, cost_model, constraint: str, limit: float, evaluator, finetune=None,
                 seed: int = 0, out_dir=None, resume: bool = False, header: dict | None = None, verbose: int = 1,
                 executor=None, recalibrate=None):
        self.builder = builder
        self.cost_model = cost_model
        self.units = builder.units
        self.constraint = constraint
        self.limit = float(limit)
        self.evaluator = evaluator
        self.finetune_fn = finetune
        self.seed = int(seed)
        self.rng = np.random.default_rng(self.seed)
        self.out_dir = None if out_dir is None else os.fspath(out_dir)
        self.header = header or {}
        self.trajectory: list = []
        self.state: dict = {}
        self._cached: list = []
        self._states: dict = {}
        self._t0 = time.time()
        self.executor = executor
        self.recalibrate = recalibrate
        self.best_state = None
        self._shared = None
        if resume:
            self._load()
        self._bar = _progress(verbose, (self.header.get("algorithm") or {}).get("name", "search"))

    # -- costs ---------------------------------------------------------------------------------
    def cost(self, allocation: dict) -> dict:
        """Predicted ``{"params", "flops"[, "latency"]}`` of a candidate (no model built)."""
        return self.cost_model.predict(allocation)

    def resource(self, allocation: dict) -> float:
        """The predicted cost under the search's constraint."""
        return float(self.cost(allocation)[self.constraint])

    def within(self, allocation: dict) -> bool:
        """Whether the predicted cost is at or under the budget."""
        return self.resource(allocation) <= self.limit * (1 + 1e-12)

    @property
    def original(self) -> dict:
        return self.cost_model.original

    # -- evaluations ---------------------------------------------------------------------------
    @property
    def replaying(self) -> bool:
        """True while answers come from the checkpoint."""
        return len(self.trajectory) < len(self._cached)

    def evaluate(self, allocation: dict, tag: str = "", finetune_steps: int = 0, info: dict | None = None) -> dict:
        """Scores a candidate in this process and records it; returns its trajectory record.

        Args:
            allocation: ``{unit_name: sparsity}``.
            tag: what the candidate is (``"perturbation"``, ``"proposal:conv1"``...).
            finetune_steps: short fine-tuning before scoring (needs a finetune function).
            info: extra JSON-friendly data stored with the record.

        Returns:
            The record ``{"index", "tag", "allocation", "cost", "score", "accepted", ...}``;
            ``record["replayed"]`` is True when it came from the checkpoint (no model built).
        """
        allocation = self._normalise(allocation)
        replayed = self._replay(allocation)
        if replayed is not None:
            return replayed
        score = self._score_here(allocation, finetune_steps, len(self.trajectory))
        return self._record(allocation, tag, finetune_steps, info, score)

    def evaluate_many(self, requests: list, keep_best: bool = False) -> list:
        """Scores independent candidates, in parallel when the search has an executor with workers.

        The records are exactly those of calling :meth:`evaluate` on each request in order
        (same indices, fine-tuning seeds and scores), whatever the executor.

        Args:
            requests: dicts with ``allocation`` and optionally ``tag``, ``finetune_steps``, ``info``.
            keep_best: keep the weights of the best-scoring new candidate in :attr:`best_state`
                (only when it was evaluated in this process; None otherwise).

        Returns:
            The records, in request order.
        """
        self.best_state = None
        reqs = [dict(r, allocation=self._normalise(r["allocation"])) for r in requests]
        records, pending = [], []
        for req in reqs:  # the checkpoint answers a prefix of the batch
            if pending or (rec := self._replay(req["allocation"])) is None:
                pending.append(req)
            else:
                records.append(rec)
        if not pending:
            return records
        if self.executor is None or self.executor.workers == 1 or len(pending) == 1:
            best = None
            for req in pending:
                rec = self.evaluate(req["allocation"], req.get("tag", ""), req.get("finetune_steps", 0), req.get("info"))
                if keep_best and (best is None or rec["score"] > best):
                    best, self.best_state = rec["score"], self.builder.snapshot()
                records.append(rec)
            return records
        start = len(self.trajectory)
        tasks = [{"allocation": req["allocation"], "finetune_steps": int(req.get("finetune_steps", 0)),
                  "seed": self.seed + start + i} for i, req in enumerate(pending)]
        self._check_finetune([t["finetune_steps"] for t in tasks])
        handle = self._share_base()
        chunk = 2 * self.executor.workers  # a checkpoint after every chunk
        for lo in range(0, len(pending), chunk):
            scores = self.executor.map(tasks[lo:lo + chunk], handle)
            for req, score in zip(pending[lo:lo + chunk], scores):
                records.append(self._record(req["allocation"], req.get("tag", ""), req.get("finetune_steps", 0),
                                            req.get("info"), float(score)))
        return records

    # -- evaluation internals --------------------------------------------------------------------
    def _normalise(self, allocation: dict) -> dict:
        return {u.name: float(allocation.get(u.name, 0.0)) for u in self.units}

    def _replay(self, allocation: dict):
        """The checkpoint's record for the next index (checked), or None past the checkpoint."""
        index = len(self.trajectory)
        if index >= len(self._cached):
            return None
        old = self._cached[index]
        rng_state = _jsonable(self.rng.bit_generator.state)
        if not _same_allocation(old["allocation"], allocation) or old.get("rng") != rng_state:
            raise CheckpointMismatch(
                f"the checkpoint in {self.out_dir} does not match this run at evaluation {index} "
                f"(tag {old.get('tag')!r}): it was written by another model, recipe, seed or code version. "
                "Remove the folder or run without resume.")
        record = dict(old, replayed=True)
        self.trajectory.append(record)
        self._tick(record)
        return record

    def _score_here(self, allocation: dict, finetune_steps: int, index: int) -> float:
        self._check_finetune([finetune_steps])
        return self.builder.score(allocation, self.evaluator, self.finetune_fn, finetune_steps, self.seed + index,
                                  self.recalibrate)

    def _check_finetune(self, steps) -> None:
        if self.finetune_fn is None and any(steps):
            raise KPruneError("finetune_steps > 0 needs fine-tuning data: give the recipe's `data` section "
                              "or pass finetune=callable(model, steps, seed) to kprune.search.run.")

    def _record(self, allocation, tag, finetune_steps, info, score) -> dict:
        record = {"index": len(self.trajectory), "tag": tag, "allocation": allocation, "cost": self.cost(allocation),
                  "score": score, "accepted": None, "finetune_steps": int(finetune_steps),
                  "rng": _jsonable(self.rng.bit_generator.state), "seconds": round(time.time() - self._t0, 3)}
        if info:
            record["info"] = info
        self.trajectory.append(record)
        self.checkpoint()
        self._tick(record)
        return dict(record, replayed=False)

    def _share_base(self):
        """The executor's handle for the builder's current base (shared once per base)."""
        base = self.builder.base
        if base is self.builder.original:
            return None
        if self._shared is None or self._shared[0] is not base:
            self._shared = (base, self.executor.share(base))
        return self._shared[1]

    def accept(self, record: dict, accepted: bool = True) -> None:
        """Marks an evaluated candidate as accepted (or rejected) by the algorithm."""
        self.trajectory[record["index"]]["accepted"] = bool(accepted)
        if not self.replaying:
            self.checkpoint()

    # -- carried weight states -------------------------------------------------------------------
    def save_state(self, key: str, state: list) -> None:
        """Stores a weight snapshot under ``key`` (kept in ``state.npz`` for resume)."""
        self._states = {key: state}
        if self.out_dir is not None and not self.replaying:
            import io
            buf = io.BytesIO()
            np.savez(buf, **{f"{key}__{i}": a for i, a in enumerate(state)})
            atomic_write_bytes(os.path.join(self.out_dir, STATE), buf.getvalue())
            self.checkpoint()

    def load_state(self, key: str):
        """The snapshot saved under ``key`` in this run or the checkpoint, or None."""
        return self._states.get(key)

    def carry(self, key: str, compute) -> None:
        """Makes a weight state the base of later candidates, computing it at most once.

        ``compute() -> snapshot`` runs unless the state is in the checkpoint; while replaying
        a state that was superseded later it is skipped (replayed candidates build nothing).
        """
        state = self.load_state(key)
        if state is None:
            if self.replaying:
                return
            state = compute()
            self.save_state(key, state)
        self.builder.set_base(state)

    # -- checkpoint files ------------------------------------------------------------------------
    def checkpoint(self) -> None:
        """Writes ``checkpoint.json`` (header, trajectory, generator and algorithm state)."""
        if self.out_dir is None:
            return
        atomic_write_json(os.path.join(self.out_dir, CHECKPOINT), {
            "version": VERSION, **self.header, "trajectory": self.trajectory,
            "rng": _jsonable(self.rng.bit_generator.state), "algorithm_state": self.state,
            "saved_states": sorted(self._states)})

    def _load(self):
        if self.out_dir is None:
            raise KPruneError("resume=True needs out_dir (the folder holding checkpoint.json).")
        path = os.path.join(self.out_dir, CHECKPOINT)
        if not os.path.exists(path):
            return
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        for key, value in self.header.items():
            if json.loads(json.dumps(value)) != data.get(key):
                raise KPruneError(f"resume: {path} was written with a different `{key}` "
                                  f"({data.get(key)!r}, now {value!r}). Use the same settings or a new out_dir.")
        self._cached = list(data.get("trajectory", []))
        state_path = os.path.join(self.out_dir, STATE)
        if data.get("saved_states") and os.path.exists(state_path):
            with np.load(state_path) as z:
                for key in data["saved_states"]:
                    arrays = sorted(((int(k.rsplit("__", 1)[1]), z[k]) for k in z.files if k.startswith(key + "__")))
                    self._states[key] = [a for _, a in arrays]

    def close(self):
        if self._bar is not None:
            self._bar.close()

    def _tick(self, record):
        if self._bar is not None:
            self._bar.update(1)
            self._bar.set_postfix(score=f"{record['score']:.4f}",
                                  **{self.constraint: f"{record['cost'][self.constraint]:.4g}"})


def _progress(verbose, name):
    if not verbose:
        return None
    from tqdm.auto import tqdm
    return tqdm(desc=f"search:{name}", unit="eval", leave=True)


def _same_allocation(a: dict, b: dict) -> bool:
    return set(a) == set(b) and all(abs(float(a[k]) - float(b[k])) <= 1e-12 for k in a)


def _jsonable(obj):
    return json.loads(json.dumps(obj, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))
