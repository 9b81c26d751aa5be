"""``compare(sweep, out_dir)``: run a sweep's cells (in parallel processes), resume, summarize.

Layout of ``out_dir``::

    sweep.json                          the validated sweep (base recipe expanded)
    dense/seed-S/                       the dense model of seed S (trained once, shared)
    cells/PRUNER/KIND-VALUE/seed-S/     one pipeline run per cell: result.json, model.keras, ...
    cells/uniform-width/KIND-VALUE/seed-S/
    cells/scratch-PRUNER/KIND-VALUE/seed-S/
    compare.json                        status of every cell (done, skipped with reason, failed)
    summary.md, summary.csv             mean ± std over seeds per (pruner, target)

Cells run in three phases — dense models, then pruners and uniform-width models, then the
scratch models (which need their pruned architecture) — each over a pool of ``jobs``
worker processes (``spawn``; see :mod:`kprune.runner.pool`). A cell whose
``result.json`` is complete is skipped; a cell that stopped part-way is resumed from its
checkpoints (``kprune.runner.pipeline``'s resume). A failed cell is recorded with its traceback
(``error.txt``) and does not stop the others. Ctrl-C stops every worker at once;
``compare.json`` then lists the cells finished so far (the others as ``interrupted``) and
the next run resumes.
"""

from __future__ import annotations

import json
import logging
import os
import time
from concurrent.futures.process import BrokenProcessPool

from kprune.errors import KPruneError
from kprune.runner.cells import read_result, run_cell
from kprune.runner.pool import CellPool
from kprune.runner.sweep import Sweep, cell_recipe, no_prune
from kprune.io import atomic_write_json

log = logging.getLogger("kprune")

BROKEN = ("a worker process died (killed for lack of memory? or, from a Python script, compare() was called "
          "outside an `if __name__ == \"__main__\":` block, which spawned workers re-run)")


def target_label(kind: str, value: float) -> str:
    """Folder-safe label of a target, e.g. ``sparsity-0.5``."""
    return f"{kind}-{value:g}"


def plan(sweep: Sweep, out_dir: str, resume: bool = True) -> list:
    """The cells of a sweep as specs for :func:`kprune.runner.cells.run_cell`, in phase order.

    Returns:
        A list of three lists (dense, pruners + uniform-width, scratch).
    """
    out_dir = os.path.abspath(os.fspath(out_dir))
    base = sweep.recipe._raw
    common = {"sweep": sweep.name, "base": base, "resume": resume}
    dense, middle, scratch = [], [], []
    for seed in sweep.seeds:
        d_out = os.path.join(out_dir, "dense", f"seed-{seed}")
        data = no_prune(base)
        data["seed"] = int(seed)
        dense.append(dict(common, id=f"dense/seed-{seed}", role="dense", name="dense", target=None, seed=seed,
                          out=d_out, recipe=data))
        d_model = os.path.join(d_out, "dense.keras")
        for kind, value in sweep.targets:
            label = target_label(kind, value)
            for p in sweep.pruners:
                out = os.path.join(out_dir, "cells", p["name"], label, f"seed-{seed}")
                recipe = cell_recipe(sweep.recipe, p, kind, value, seed, dense_path=d_model)
                middle.append(dict(common, id=f"{p['name']}/{label}/seed-{seed}", role="prune", name=p["name"],
                                   baseline=bool(p.get("baseline")), target=[kind, value], seed=seed, out=out,
                                   recipe=recipe, dense_out=d_out))
            if sweep.baselines["uniform_width"]:
                out = os.path.join(out_dir, "cells", "uniform-width", label, f"seed-{seed}")
                middle.append(dict(common, id=f"uniform-width/{label}/seed-{seed}", role="uniform-width",
                                   name="uniform-width", target=[kind, value], seed=seed, out=out, dense_out=d_out,
                                   match=sweep.baselines["match"]))
            if sweep.baselines["scratch"]:
                names = sweep.baselines["scratch_of"] or [p["name"] for p in sweep.pruners if not p.get("baseline")]
                for src in names:
                    name = f"scratch-{src}"
                    out = os.path.join(out_dir, "cells", name, label, f"seed-{seed}")
                    scratch.append(dict(common, id=f"{name}/{label}/seed-{seed}", role="scratch", name=name,
                                        source=src, target=[kind, value], seed=seed, out=out, dense_out=d_out,
                                        source_out=os.path.join(out_dir, "cells", src, label, f"seed-{seed}")))
    return [dense, middle, scratch]


def compare(sweep, out_dir, jobs: int = 1, resume: bool = True, verbose: int = 1, overrides=(),
            cells_per_worker: int | None = None) -> dict:
    """Runs every cell of ``sweep`` into ``out_dir`` and writes the summary table.

    Args:
        sweep: a :class:`Sweep`, a sweep YAML path or text, or a dict.
        out_dir: the results folder (created).
        jobs: worker processes running cells in parallel (default 1). Each uses
            ``sweep.threads`` TensorFlow threads, by default ``cores // jobs``.
        resume: skip finished cells and resume partial ones (default True); False reruns all.
        verbose: 0 prints nothing; 1 one line per cell.
        overrides: ``key.path=value`` strings applied to the base recipe (default none).
        cells_per_worker: cells a worker process runs before a fresh one replaces it
            (default :data:`CELLS_PER_WORKER`).

    Returns:
        ``{"out_dir", "cells": [{"id", "status", ...}], "failed": [...], "summary": path}``,
        also written to ``out_dir/compare.json``.

    Raises:
        RecipeError: for an invalid sweep (before anything runs).
        KPruneError: when ``resume`` meets a finished cell run with a different recipe.
        KeyboardInterrupt: on Ctrl-C, after the workers are stopped and ``compare.json``
            (finished cells, the others ``interrupted``) is written.

    Workers are started with ``spawn``, which imports the calling script again: in a script,
    call ``compare`` under ``if __name__ == "__main__":`` (otherwise the workers die and every
    cell is reported failed with this hint).

    Example:
        >>> from kprune.runner import compare
        >>> if __name__ == "__main__":
        ...     report = compare("recipes/compare/tiny.yaml", "runs/tiny", jobs=2)
    """
    from kprune.runner.results import write_summary

    sweep = Sweep.load(sweep, overrides=overrides)
    if not isinstance(jobs, int) or jobs < 1:
        raise KPruneError(f"jobs must be an integer >= 1. Received: jobs={jobs!r}.")
    out_dir = os.path.abspath(os.fspath(out_dir))
    os.makedirs(out_dir, exist_ok=True)
    atomic_write_json(os.path.join(out_dir, "sweep.json"), sweep.to_dict())
    phases = plan(sweep, out_dir, resume=resume)
    total = sum(len(p) for p in phases)
    threads = sweep.threads or max(1, (os.cpu_count() or 1) // jobs)
    status, done_count, t0 = {}, 0, time.time()

    def report(entry):
        nonlocal done_count
        done_count += 1
        status[entry["id"]] = {k: v for k, v in entry.items() if k != "result"}
        if verbose:
            print(f"[{done_count}/{total}] {_line(entry)} ({time.time() - t0:.0f} s)", flush=True)

    pool = None
    try:
        for phase in phases:
            todo = []
            for spec in phase:
                finished = read_result(spec["out"]) if resume else None
                blocked = _blocked(spec, status)
                if finished is not None:
                    _check_same_recipe(spec)
                    report({"id": spec["id"], "status": "done", "result": finished, "reused": True})
                elif blocked:
                    report({"id": spec["id"], "status": "failed", "error": blocked})
                else:
                    todo.append(spec)
            if not todo:
                continue
            if pool is None:
                pool = CellPool(jobs, cells_per_worker or CELLS_PER_WORKER, initializer=_init, initargs=(threads,))
            for spec, entry, error in pool.run(run_cell, todo):
                if isinstance(error, BrokenProcessPool):
                    entry = {"id": spec["id"], "status": "failed", "error": BROKEN}
                elif error is not None:
                    entry = {"id": spec["id"], "status": "failed", "error": f"{type(error).__name__}: {error}"}
                report(entry)
    except KeyboardInterrupt:
        if pool is not None:
            pool.terminate()
            pool = None
        cells = [status.get(s["id"], {"id": s["id"], "status": "interrupted"}) for phase in phases for s in phase]
        atomic_write_json(os.path.join(out_dir, "compare.json"),
                          {"out_dir": out_dir, "sweep": sweep.name, "jobs": jobs, "threads_per_cell": threads,
                           "seconds": round(time.time() - t0, 1), "interrupted": True, "cells": cells,
                           "failed": [c for c in cells if c["status"] == "failed"], "summary": None})
        raise
    finally:
        if pool is not None:
            pool.close()
    cells = [status[s["id"]] for phase in phases for s in phase]
    failed = [c for c in cells if c["status"] == "failed"]
    summary = write_summary(out_dir)
    out = {"out_dir": out_dir, "sweep": sweep.name, "jobs": jobs, "threads_per_cell": threads,
           "seconds": round(time.time() - t0, 1), "cells": cells, "failed": failed, "summary": summary}
    atomic_write_json(os.path.join(out_dir, "compare.json"), out)
    return out


#: cells a worker runs before it is replaced: TensorFlow and the TFLite converter keep memory
#: that clear_session() does not return (a 2-job CPU sweep grew a worker past 7 GB by cell 47)
CELLS_PER_WORKER = 8


def _init(threads):
    from kprune.runner.cells import init_worker
    init_worker(threads)


def _blocked(spec: dict, status: dict):
    """Why a cell cannot run (its dense model or source cell failed), else None."""
    deps = []
    if spec["role"] != "dense":
        deps.append(f"dense/seed-{spec['seed']}")
    if spec["role"] == "scratch":
        kind, value = spec["target"]
        deps.append(f"{spec['source']}/{target_label(kind, value)}/seed-{spec['seed']}")
    for dep in deps:
        st = status.get(dep, {}).get("status")
        if st == "failed":
            return f"{dep} failed"
        if st == "skipped":
            return f"{dep} was skipped"
    return None


def _check_same_recipe(spec: dict):
    """A finished cell must come from the recipe this sweep gives it now."""
    if spec["role"] not in ("prune", "dense"):
        return
    path = os.path.join(spec["out"], "state.json")
    if not os.path.exists(path):
        return
    from kprune.config.recipe import Recipe
    with open(path, encoding="utf-8") as f:
        stored = json.load(f).get("recipe")
    if stored != Recipe.coerce(spec["recipe"]).to_dict():
        raise KPruneError(f"cell {spec['id']} in {spec['out']} was run with another recipe than the sweep gives it "
                          "now. Use a new output folder, or resume=False (--no-resume) to rerun every cell.")


def _line(entry: dict) -> str:
    if entry["status"] == "done":
        r = entry["result"]
        perf = r["performance"]
        tail = f"finetuned {perf['finetuned']:.4f}, params {r['params']['speedup']:,}, FLOPs {r['flops']['speedup']:,}"
        return f"{entry['id']}: {tail}{' (reused)' if entry.get('reused') else ''}"
    if entry["status"] == "skipped":
        return f"{entry['id']}: skipped ({entry['reason']})"
    return f"{entry['id']}: FAILED {entry['error']}"
