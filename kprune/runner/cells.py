"""One cell of a comparison: a pipeline run in a worker process, and its ``result.json``.

A cell is a plain dict (``spec``) so that it crosses process boundaries:
``{"role", "name", "target", "seed", "out", "recipe", "resume", ...}`` with ``role`` one of

* ``dense`` — train the base model once per seed (the pipeline with pruning turned off);
* ``prune`` — a pruner on a copy of the seed's dense model (``model.name`` = its ``.keras``,
  ``train.epochs: 0``), then the common fine-tuning budget;
* ``uniform-width`` — the zoo model at the matched width, trained for ``train.epochs +
  finetune.epochs`` (the total budget of a pruned model);
* ``scratch`` — a pruned cell's compacted architecture re-initialized and trained for the
  same total budget.

:func:`run_cell` writes the pipeline's files into ``out`` and completes its ``result.json``
with ``cell`` (sweep, pruner, role, target, seed); for the two trained baselines the
``original`` entries are rewritten to the seed's dense model so that every cell reads as
NNI's ``original → speedup``.
"""

from __future__ import annotations

import json
import logging
import os
import time
import traceback

from kprune.io import atomic_write_bytes, atomic_write_json

log = logging.getLogger("kprune")


def init_worker(threads: int):
    """Pool initializer: TensorFlow threads per cell, GPU memory growth, quiet logs."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    try:
        tf.config.threading.set_intra_op_parallelism_threads(int(threads))
        tf.config.threading.set_inter_op_parallelism_threads(int(threads))
    except RuntimeError:  # already initialized (in-process use): keep its settings
        pass
    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:
            pass


def read_result(out: str):
    """The finished cell's result in ``out`` (None when the cell has not finished)."""
    path = os.path.join(out, "result.json")
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        result = json.load(f)
    return result if "cell" in result else None


def run_cell(spec: dict) -> dict:
    """Runs one cell (in a worker process) and returns ``{"id", "status", "result" | "error"}``.

    ``seconds`` is wall time, ``cpu_seconds`` the worker's CPU time (every thread; on a shared
    machine it is the better measure of a cell's cost). Status ``done`` (ran now),
    ``skipped`` (not applicable, with ``reason``) or ``failed``
    (the traceback is also written to ``out/error.txt``). Exceptions never escape: one failed
    cell must not stop the sweep.
    """
    t0, c0 = time.time(), time.process_time()
    out = spec["out"]
    try:
        import keras
        keras.backend.clear_session()
        role = spec["role"]
        if role == "uniform-width":
            recipe, extra = _uniform_width_recipe(spec)
        elif role == "scratch":
            recipe, extra = _scratch_recipe(spec)
        else:
            recipe, extra = spec["recipe"], {}
        if recipe is None:
            return {"id": spec["id"], "status": "skipped", "reason": extra["reason"]}
        from kprune.runner import pipeline
        resume = spec["resume"] and os.path.exists(os.path.join(out, "state.json"))
        result = pipeline.run(recipe, out, resume=resume, verbose=0)
        result = finalize(result, spec, extra)
        atomic_write_json(os.path.join(out, "result.json"), result)
        if os.path.exists(os.path.join(out, "error.txt")):
            os.unlink(os.path.join(out, "error.txt"))
        return {"id": spec["id"], "status": "done", "result": result, "seconds": round(time.time() - t0, 1),
                "cpu_seconds": round(time.process_time() - c0, 1)}
    except Exception as e:  # noqa: BLE001 - recorded and reported by compare()
        text = traceback.format_exc()
        os.makedirs(out, exist_ok=True)
        atomic_write_bytes(os.path.join(out, "error.txt"), text.encode())
        return {"id": spec["id"], "status": "failed", "error": f"{type(e).__name__}: {e}",
                "seconds": round(time.time() - t0, 1)}


def finalize(result: dict, spec: dict, extra: dict) -> dict:
    """Adds the cell's identity; rewrites a trained baseline's ``original`` to the dense model."""
    result = dict(result)
    kind, value = spec["target"] if spec["target"] else (None, None)
    result["cell"] = {"sweep": spec["sweep"], "pruner": spec["name"], "role": spec["role"],
                      "baseline": spec["role"] != "prune" or spec.get("baseline", False),
                      "target": {"kind": kind, "value": value}, "seed": spec["seed"]}
    result["seed"] = spec["seed"]
    if spec["role"] in ("uniform-width", "scratch"):
        dense = read_result(spec["dense_out"])
        own = result["performance"]["finetuned"]
        result["performance"] = {"original": dense["performance"]["finetuned"], "pruned": None,
                                 "speedup": result["performance"]["speedup"], "finetuned": own}
        for key in ("params", "flops", "macs"):
            result[key] = dict(result[key], original=dense[key]["original"])
        if result.get("latency_ms") and dense.get("latency_ms"):
            result["latency_ms"] = {t: dict(v, original=dense["latency_ms"].get(t, {}).get("original"))
                                    for t, v in result["latency_ms"].items()}
        if result.get("tflite_bytes") and dense.get("tflite_bytes"):
            result["tflite_bytes"] = dict(result["tflite_bytes"], original=dense["tflite_bytes"]["original"])
        result["baseline"] = extra
    return result


def _total_budget_recipe(base_raw: dict, seed: int, model: dict) -> dict:
    """A no-prune recipe that trains ``model`` for ``train.epochs + finetune.epochs`` epochs."""
    from kprune.runner.sweep import no_prune
    from kprune.config.recipe import Recipe
    base = Recipe(base_raw)
    epochs = base.train["epochs"] + base.finetune["epochs"]
    data = no_prune(base_raw)
    data["seed"] = int(seed)
    data["model"] = model
    data["train"] = dict(base_raw.get("train") or {}, epochs=epochs)
    return data


def _uniform_width_recipe(spec: dict):
    import keras

    from kprune import data
    from kprune.counting.counter import count
    from kprune.runner import baselines
    from kprune.models.registry import lookup
    from kprune.config.recipe import Recipe

    base = Recipe(spec["base"])
    m = dict(base.model)
    kind, value = spec["target"]
    if lookup(m["name"]) is None:
        return None, {"reason": f"model `{m['name']}` is not a zoo model with a width multiplier"}
    if kind == "latency":
        return None, {"reason": "a latency target has no width to match without measuring every width"}
    if base.prune["granularity"] != "filter" and kind == "sparsity":
        return None, {"reason": f"granularity `{base.prune['granularity']}` keeps every channel"}
    info = data.info(base.data["name"])
    shape = m["input_shape"] or list(info.input_shape)
    classes = m["num_classes"] or info.num_classes
    dense = keras.saving.load_model(os.path.join(spec["dense_out"], "dense.keras"))
    if kind == "sparsity":
        measure = spec["match"]
        reference = baselines.sparsity_reference(dense, spec["base"], value, measure)
    else:
        measure = kind
        full = count(dense)
        total = full.params if kind == "params" else full.flops
        reference = value * total if value <= 1 else value
    width, achieved = baselines.match_width(m["name"], shape, classes, m["width"], measure, reference)
    model = dict(spec["base"].get("model") or {}, name=m["name"], width=width)
    extra = {"kind": "uniform-width", "width": width, "matched": measure, "reference": reference,
             "achieved": achieved}
    return _total_budget_recipe(spec["base"], spec["seed"], model), extra


def _scratch_recipe(spec: dict):
    import keras

    from kprune.runner import baselines
    from kprune.io import save_model_atomic

    source = read_result(spec["source_out"])
    if source is None:
        return None, {"reason": f"its pruned cell {spec['source_out']} did not finish"}
    if source.get("compact_method") != "compact":
        return None, {"reason": "the pruned cell kept every channel (fine-grained sparsity): no smaller architecture"}
    init = os.path.join(spec["out"], "init.keras")
    if not os.path.exists(init):
        pruned = keras.saving.load_model(os.path.join(spec["source_out"], "model.keras"))
        save_model_atomic(baselines.reinitialized(pruned, spec["seed"]), init)
    extra = {"kind": "scratch", "of": spec["source"], "architecture": os.path.join(spec["source_out"], "model.keras")}
    return _total_budget_recipe(spec["base"], spec["seed"], {"name": os.path.abspath(init)}), extra
