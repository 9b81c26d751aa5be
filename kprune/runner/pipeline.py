"""The whole experiment of a recipe: train or load → prune → fine-tune → compact → count → export.

``run(recipe, out_dir)`` writes into ``out_dir``:

* ``result.json`` — NNI's comparison schema (``performance.original/pruned/finetuned``;
  ``performance.pruned_recalibrated`` with ``prune.recalibrate_bn``,
  ``params.original/speedup``, ``flops.original/speedup``) plus MACs, per-layer sparsity,
  latency, TFLite size and accuracy, seed and timings;
* ``dense.keras`` (the trained dense model), ``model.keras`` (the pruned, compacted model),
  ``model.tflite`` and ``dense.tflite``;
* ``search/`` — with ``prune.search``: the search's checkpoint, ``trajectory.json`` and
  ``search.json`` (the allocation it chose replaces the ``config_list`` targets);
* ``log.jsonl`` — one line per epoch and stage (per-layer sparsity as ``layer_sparsity``;
  the console gets stage headers and ``Epoch k/N`` lines, see :mod:`kprune.runner.progress`);
* ``state.json`` and ``ckpt/`` — checkpoints after every stage and every epoch; with
  ``resume=True`` a run continues where it stopped.

Every file is written atomically, and every step ends with one commit: ``state.json`` is
written last, naming the step's checkpoint (epoch checkpoints carry their epoch in the file
name, ``ckpt/finetune-e2.keras``, and an older one is deleted only after the state naming the
newer one is written) and the length of ``log.jsonl``. A run killed between any two writes
resumes from the last commit: files written after it are ignored or overwritten, log lines
written after it are cut off, and the interrupted step runs again from the same inputs. Each epoch reads a dataset shuffled with ``seed + epoch``,
so a resumed run sees the same batches as an uninterrupted one.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import platform
import time

import keras

from kprune.io import append_jsonl, atomic_write_json, save_model_atomic, truncate_to
from kprune.config.recipe import Recipe
from kprune.errors import RecipeError
from kprune.runner import progress

log = logging.getLogger("kprune")

STAGES = ("train", "prune", "finetune", "compact", "export")


class Run:
    """State of one pipeline run in ``out_dir`` (see the module docstring)."""

    def __init__(self, recipe: Recipe, out_dir: str, resume: bool = False, verbose: int = 1):
        self.recipe = recipe
        self.out = os.fspath(out_dir)
        self.verbose = verbose
        os.makedirs(os.path.join(self.out, "ckpt"), exist_ok=True)
        self.state_path = os.path.join(self.out, "state.json")
        self.state = {"stages": {}, "recipe": recipe.to_dict()}
        if resume and os.path.exists(self.state_path):
            import json
            with open(self.state_path, encoding="utf-8") as f:
                self.state = json.load(f)
            if self.state.get("recipe") != recipe.to_dict():
                from kprune.errors import KPruneError
                raise KPruneError(f"--resume: the recipe differs from the one that started {self.out}. "
                                  "Use the same recipe and --set overrides, or a new --out folder.")
        elif not resume and os.path.exists(os.path.join(self.out, "result.json")):
            log.warning("%s already holds a result; it will be overwritten (use --resume to continue)", self.out)
        # the log holds exactly the lines of the committed steps (see the module docstring)
        truncate_to(self.path("log.jsonl"), self.state.get("log_bytes", 0))
        self.seed = recipe.seed

    # -- bookkeeping ------------------------------------------------------------------------------
    def done(self, stage: str) -> bool:
        return self.state["stages"].get(stage, {}).get("done", False)

    def mark(self, stage: str, **info):
        """Commits a step: records ``info`` under ``stage`` and the log's length in ``state.json``."""
        entry = self.state["stages"].setdefault(stage, {})
        entry.update(info)
        log_path = self.path("log.jsonl")
        self.state["log_bytes"] = os.path.getsize(log_path) if os.path.exists(log_path) else 0
        atomic_write_json(self.state_path, self.state)

    def event(self, **record):
        record = {"time": round(time.time(), 3), **record}
        append_jsonl(os.path.join(self.out, "log.jsonl"), record)

    def path(self, name: str) -> str:
        return os.path.join(self.out, name)

    # -- data and model ---------------------------------------------------------------------------
    def dataset(self, split: str, epoch: int = 0):
        from kprune import data
        d = self.recipe.data
        train = split == "train"
        return data.load(d["name"], split=split, batch_size=d["batch_size"],
                         augment=d["augment"] if train else "none", shuffle=train,
                         seed=self.seed + epoch, data_dir=d["data_dir"],
                         take=d["take"] if train else d["test_take"])

    def build_model(self):
        from kprune import data, models
        m = self.recipe.model
        if m["name"].endswith(".keras"):
            return models.get(m["name"])
        info = data.info(self.recipe.data["name"])
        shape = tuple(m["input_shape"]) if m["input_shape"] else tuple(info.input_shape)
        classes = m["num_classes"] or info.num_classes
        return models.get(m["name"], input_shape=shape, num_classes=classes, width=m["width"])


def _fit_epochs(run: Run, model, section: str, cfg: dict, callbacks=(), make_model=None, teacher=None):
    """Trains epoch by epoch with a checkpoint after each; resumes from the last one.

    With ``teacher`` and ``cfg["distill"]`` (fine-tuning), ``model`` is trained by a
    :class:`kprune.models.distill.Distiller` towards the teacher's logits; the checkpoints hold
    the student and, beside it, the Distiller's optimizer state (``*.optimizer.npz``).
    """
    from kprune.models import training
    epochs = cfg["epochs"]
    info = run.state["stages"].get(section, {})
    start = info.get("epoch", 0)
    if start:  # the checkpoint the committed state names (a later one may exist, uncommitted)
        model = keras.saving.load_model(run.path(info.get("checkpoint", f"ckpt/{section}.keras")))
        log.info("resuming %s at epoch %d", section, start)
    steps = cfg["steps_per_epoch"] or training.steps_in(run.dataset("train"))
    distill = cfg.get("distill") if teacher is not None else None
    # one fit per epoch (per-epoch shuffle seed and checkpoint); EpochProgbar prints "Epoch k/N"
    # of the whole stage and leaves sparsity/<layer> to log.jsonl
    bar = progress.EpochProgbar(epochs)
    if distill:
        trainer, fit_callbacks = _distiller(run, model, teacher, cfg, steps, epochs, info if start else {},
                                            list(callbacks) + [bar])
    else:
        if getattr(model, "optimizer", None) is None or not start:
            training.compile_model(model, cfg, steps, epochs)
        trainer, fit_callbacks = model, list(callbacks) + [bar]
    test = run.dataset("test")
    for epoch in range(start, epochs):
        t0 = time.time()
        hist = trainer.fit(run.dataset("train", epoch=epoch), initial_epoch=epoch, epochs=epoch + 1,
                           steps_per_epoch=cfg["steps_per_epoch"], callbacks=fit_callbacks, shuffle=False,
                           verbose=progress.console_verbose() if run.verbose else 0)
        acc = training.accuracy(model, test)
        metrics = {k: float(v[-1]) for k, v in hist.history.items() if not k.startswith("sparsity/")}
        layers = {k[len("sparsity/"):]: float(v[-1]) for k, v in hist.history.items() if k.startswith("sparsity/")}
        if layers:
            metrics["layer_sparsity"] = layers
        if run.verbose:
            print(f"  test accuracy {acc:.4f}", flush=True)
        run.event(stage=section, epoch=epoch + 1, test_accuracy=acc, seconds=round(time.time() - t0, 2), **metrics)
        ckpt = f"ckpt/{section}-e{epoch + 1}.keras"
        save_model_atomic(model, run.path(ckpt))
        if distill:
            _save_optimizer(trainer.optimizer, run.path(_optimizer_file(ckpt)))
        previous = run.state["stages"].get(section, {}).get("checkpoint")
        skipped = {n: r for cb in callbacks if getattr(cb, "pruner", None) is not None
                   for n, r in cb.pruner.skipped.items()}
        run.mark(section, epoch=epoch + 1, test_accuracy=acc, checkpoint=ckpt,
                 **({"skipped": skipped} if skipped else {}))
        if previous and previous != ckpt:  # only now: the committed state names the new one
            for old in (previous, _optimizer_file(previous)):
                if os.path.exists(run.path(old)):
                    os.unlink(run.path(old))
    return model


def _optimizer_file(checkpoint: str) -> str:
    return checkpoint[:-len(".keras")] + ".optimizer.npz"


def _save_optimizer(optimizer, path):
    import io

    import numpy as np

    from kprune.io import atomic_write_bytes
    store = {}
    optimizer.save_own_variables(store)
    buf = io.BytesIO()
    np.savez(buf, **store)
    atomic_write_bytes(path, buf.getvalue())


def _distiller(run: Run, student, teacher, cfg: dict, steps: int, epochs: int, resumed: dict, callbacks):
    """The compiled Distiller that fine-tunes ``student`` (``finetune.distill``) and the fit's
    callbacks (they see the student); on resume its optimizer state is read back."""
    from kprune.models import distill, training
    kd = cfg["distill"]
    trainer = distill.make_distiller(student, teacher, alpha=kd["alpha"], temperature=kd["temperature"],
                                     optimizer=training.make_optimizer(cfg, steps, epochs))
    if resumed.get("checkpoint"):
        import numpy as np
        with np.load(run.path(_optimizer_file(resumed["checkpoint"]))) as saved:
            store = {k: saved[k] for k in saved.files}
        trainer.optimizer.build(trainer.trainable_variables)
        trainer.optimizer.load_own_variables(store)
    return trainer, distill.student_callbacks(callbacks, student)


def _statistics_data(r: Run):
    """Training batches for criteria that read activations or gradients, else None.

    The batches are drawn once (the training set shuffled with the run's seed) and kept in
    memory, so every mask update reads the same batches whether or not the run was resumed
    (iterating a reshuffling dataset again would give a different order after a restart).
    """
    from kprune import criteria
    prune = r.recipe.prune
    names = {prune["criterion"]} | {e["criterion"] for e in prune["config_list"] if e.get("criterion")}
    used = [criteria.get(n) for n in names]
    if not any({"activations", "gradients"} & set(c.needs) for c in used):
        return None
    n = max([int(prune["statistics_batches"])] + [int(c.batches or 0) for c in used])
    return [batch for batch in r.dataset("train").take(n)]


def run(recipe, out_dir, overrides=(), resume: bool = False, verbose: int = 1) -> dict:
    """Runs a recipe's whole pipeline and returns the result dict (also in ``result.json``).

    Args:
        recipe: a :class:`kprune.Recipe`, dict or YAML path.
        out_dir: output folder (created).
        overrides: ``key.path=value`` strings applied to the recipe.
        resume: continue a run interrupted in ``out_dir`` (default False).
        verbose: 0 silences Keras' per-epoch lines.

    Example:
        >>> result = kprune.runner.pipeline.run("recipes/quickstart.yaml", "runs/quickstart")
    """
    import kprune
    from kprune import counting
    from kprune.models import training
    from kprune.pruning.pruner import Pruner

    recipe = Recipe.coerce(recipe)
    if overrides:
        recipe = recipe.with_overrides(overrides)
    if recipe.export["enabled"] and importlib.util.find_spec("tensorflow") is None:
        # checked before training: the TFLite converter is TensorFlow's
        raise RecipeError("export.enabled", "the export stage converts to TFLite with TensorFlow, which is not "
                          f"installed (Keras runs on {keras.backend.backend()}). Set export.enabled: false "
                          "(--set export.enabled=false) and convert model.keras where TensorFlow is "
                          "installed (kprune-cli export), or pip install tensorflow.", True)
    r = Run(recipe, out_dir, resume=resume, verbose=verbose)
    keras.utils.set_random_seed(recipe.seed)
    t_start = time.time()
    test = r.dataset("test")

    # 1. train (or load) the dense model
    n_stages = 6 if recipe.export["enabled"] else 4
    if r.done("train"):
        progress.stage(1, n_stages, "training", "done before, loaded dense.keras", verbose)
        dense = keras.saving.load_model(r.path("dense.keras"))
    else:
        progress.stage(1, n_stages, "training", f"{recipe.model['name']} on {recipe.data['name']}, "
                       f"{recipe.train['epochs']} epoch(s)", verbose)
        dense = r.build_model()
        if not r.done("prune"):  # fail fast: the selection is checked against the model before training
            _preflight(r, dense, verbose)
        if recipe.train["epochs"] > 0:
            dense = _fit_epochs(r, dense, "train", recipe.train)
        save_model_atomic(dense, r.path("dense.keras"))
        r.mark("train", done=True, test_accuracy=training.accuracy(dense, test))
    original_acc = r.state["stages"]["train"]["test_accuracy"]

    # 2. prune (wrap, and apply one-shot masks now)
    schedule = recipe.prune["schedule"]["name"]
    searched = bool(recipe.prune["search"])
    progress.stage(2, n_stages, "pruning", f"{recipe.prune['criterion']} {recipe.prune['granularity']}, "
                   f"schedule {schedule}" + (" (masks change during fine-tuning)" if schedule != "oneshot"
                                             and not searched else ""), verbose)
    if r.done("prune"):
        pruned = keras.saving.load_model(r.path("ckpt/pruned.keras"))
    else:
        if searched:  # the search's allocation, applied one-shot (see _search)
            pruned = _search(r, dense, resume)
        else:
            pruned = kprune.wrap(dense, recipe)
            if schedule == "oneshot":
                pruner = Pruner(pruned, data=_statistics_data(r))
                pruner.prune_now()
                r.state["stages"].setdefault("prune", {})["skipped"] = _check_skipped(pruner.skipped, pruned)
        pruned_now = schedule == "oneshot" or searched
        pruned_acc = training.accuracy(pruned, test) if pruned_now else None
        recal_acc = _recalibrate(r, pruned, test) if pruned_now else None
        save_model_atomic(pruned, r.path("ckpt/pruned.keras"))
        r.event(stage="prune", test_accuracy=pruned_acc, test_accuracy_recalibrated=recal_acc,
                sparsity=kprune.sparsity(pruned)["total"], layer_sparsity=kprune.sparsity(pruned),
                selected_unit_sparsity=progress.selected_unit_sparsity(pruned))
        r.mark("prune", done=True, test_accuracy=pruned_acc, test_accuracy_recalibrated=recal_acc)
        if verbose and pruned_now:
            print(progress.sparsity_note(pruned, recipe.prune.get("round_to", "auto")))
            print(f"test accuracy right after pruning {pruned_acc:.4f}", flush=True)

    # 3. fine-tune (gradual schedules prune here), with finetune.distill towards the dense model
    kd = recipe.finetune["distill"]
    progress.stage(3, n_stages, "fine-tuning", f"{recipe.finetune['epochs']} epoch(s)" + (
        f", distilled from the dense model (alpha {kd['alpha']:g}, temperature {kd['temperature']:g})"
        if kd else ""), verbose)
    if r.done("finetune"):
        pruned = keras.saving.load_model(r.path("ckpt/finetuned.keras"))
    else:
        if recipe.finetune["epochs"] > 0:
            from kprune.models.distill import frozen_copy
            teacher = frozen_copy(dense) if kd else None  # a copy: dense.keras is saved and exported as is
            pruned = _fit_epochs(r, pruned, "finetune", recipe.finetune, teacher=teacher,
                                 callbacks=[kprune.PruningCallback(data=_statistics_data(r))])
        elif schedule != "oneshot":
            log.warning("schedule `%s` prunes during fine-tuning, but finetune.epochs is 0: nothing pruned",
                        schedule)
        save_model_atomic(pruned, r.path("ckpt/finetuned.keras"))
        r.mark("finetune", done=True, test_accuracy=training.accuracy(pruned, test))
        if verbose and schedule != "oneshot" and not searched:
            print(progress.sparsity_note(pruned, recipe.prune.get("round_to", "auto")), flush=True)
    finetuned_acc = r.state["stages"]["finetune"]["test_accuracy"]

    # 4. compact (filters removed) or strip (fine-grained), then count
    progress.stage(4, n_stages, "compacting", "pruned filters removed (or masks baked in), then counted", verbose)
    if r.done("compact"):
        final = keras.saving.load_model(r.path("model.keras"))
    else:
        structured = any(w.spec and w.spec["granularity"] != "weight" for w in kprune.wrappers.find_wrappers(pruned))
        final = kprune.compact(pruned) if structured else kprune.strip(pruned)
        save_model_atomic(final, r.path("model.keras"))
        r.mark("compact", done=True, test_accuracy=training.accuracy(final, test),
               method="compact" if structured else "strip")
    c0, c1 = counting.count(dense), counting.count(final)
    sparsity = kprune.sparsity(pruned)
    skipped = {**r.state["stages"]["prune"].get("skipped", {}), **r.state["stages"]["finetune"].get("skipped", {})}
    for name, reason in sorted(skipped.items()):
        log.warning("selected layer `%s` was not pruned: %s", name, reason)
    _check_skipped(skipped, pruned)

    result = {
        "name": recipe.name,
        "model": recipe.model["name"], "dataset": recipe.data["name"],
        "criterion": recipe.prune["criterion"], "granularity": recipe.prune["granularity"],
        "schedule": schedule, "seed": recipe.seed,
        "performance": {"original": original_acc, "pruned": r.state["stages"]["prune"]["test_accuracy"],
                        "speedup": r.state["stages"]["compact"]["test_accuracy"], "finetuned": finetuned_acc},
        "params": {"original": c0.params, "speedup": c1.params, "nonzero": c1.nonzero_params},
        "flops": {"original": c0.flops, "speedup": c1.flops, "effective": c1.effective_flops},
        "macs": {"original": c0.macs, "speedup": c1.macs, "effective": c1.effective_macs},
        "sparsity": sparsity,
        "compact_method": r.state["stages"]["compact"]["method"],
        "distill": recipe.finetune["distill"] if recipe.finetune["epochs"] > 0 else None,
        "skipped": skipped,
    }
    if recipe.prune["recalibrate_bn"]:
        result["performance"]["pruned_recalibrated"] = r.state["stages"]["prune"].get("test_accuracy_recalibrated")
    if searched:
        result["search"] = {k: v for k, v in r.state["stages"]["search"].items() if k != "done"}

    # 5. export and benchmark
    if recipe.export["enabled"]:
        if not r.done("export"):
            r.mark("export", done=True, **_export(r, dense, final, test))
        result["export"] = {k: v for k, v in r.state["stages"]["export"].items() if k != "done"}
        result["latency_ms"] = result["export"].get("latency_ms")
        result["tflite_bytes"] = result["export"].get("tflite_bytes")
    result["machine"] = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                         "cpus": os.cpu_count(), "keras_backend": keras.backend.backend()}
    result["seconds"] = round(time.time() - t_start, 1)
    if r.done("result"):  # a finished run resumed: its result stands, the log keeps one `done` line
        return _committed_result(r, result)
    atomic_write_json(r.path("result.json"), result)
    r.event(stage="done", result=result)
    r.mark("result", done=True)
    return result


def _committed_result(r: Run, fallback: dict) -> dict:
    """The ``result.json`` a finished run committed (``fallback`` if it was deleted since)."""
    import json
    try:
        with open(r.path("result.json"), encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        atomic_write_json(r.path("result.json"), fallback)
        return fallback


def _preflight(r: Run, model, verbose) -> None:
    """Checks the recipe's selection against the model before any training (see
    :func:`kprune.pruning.pruner.check_selection`) and says which selected layers will not be pruned."""
    from kprune.pruning.pruner import check_selection
    if r.recipe.prune["search"]:
        return  # a search chooses its own units
    found = check_selection(model, r.recipe)
    if found["skipped"] and verbose:
        print(f"{len(found['skipped'])} of {len(found['selected'])} selected layer(s) will not be pruned:")
        for name, why in sorted(found["skipped"].items()):
            print(f"  {name}: {why}")


def _check_skipped(skipped: dict, model) -> dict:
    """Returns ``skipped``; raises when it holds every selected layer (nothing could be pruned)."""
    import kprune
    from kprune.pruning.pruner import require_something_pruned
    require_something_pruned({w.name for w in kprune.wrappers.find_wrappers(model) if w.spec}, skipped, verb="was")
    return skipped


def _recalibrate(r: Run, pruned, test):
    """With ``prune.recalibrate_bn: N``, re-estimates the pruned model's BatchNorm statistics on
    N training batches (in place) and returns its test accuracy; None when off."""
    from kprune.models import training
    from kprune.pruning.batchnorm import recalibrate_bn
    n = r.recipe.prune["recalibrate_bn"]
    if not n:
        return None
    recalibrate_bn(pruned, r.dataset("train"), batches=n)
    return training.accuracy(pruned, test)


def _search(r: Run, dense, resume: bool):
    """Runs ``prune.search`` on the dense model (checkpointed in ``out/search``) and returns the
    pruned, wrapped candidate it chose (its allocation recipe, one-shot)."""
    from kprune import search

    res = search.run(dense, r.recipe, out_dir=r.path("search"), resume=resume, verbose=r.verbose)
    info = {"algorithm": res.algorithm["name"], "constraint": res.constraint, "budget": res.budget,
            "limit": res.limit, "met": res.met, "cost": res.cost, "score": res.score,
            "evaluations": res.evaluations, "allocation": res.allocation, "seconds": res.seconds}
    r.event(stage="search", **info)
    r.mark("search", done=True, **info)
    return res.pruned


def _export(r: Run, dense, final, test) -> dict:
    from kprune.export.benchmark import compare
    from kprune.export.evaluate import evaluate_tflite
    from kprune.export.tflite import to_tflite

    cfg = r.recipe.export
    quant = cfg["quantize"]
    rep = r.dataset("train") if quant == "int8" else None
    out = {"quantize": quant}
    progress.stage(5, 6, "export", f"TFLite, quantize {quant}, dense and pruned", r.verbose)
    try:
        d = to_tflite(dense, r.path("dense.tflite"), quantize=quant, representative_data=rep)
        p = to_tflite(final, r.path("model.tflite"), quantize=quant, representative_data=rep)
    except Exception as e:  # noqa: BLE001 - recorded, the run's other results are kept
        log.error("TFLite export failed: %s", e)
        return {"error": f"{type(e).__name__}: {e}"}
    out["tflite_bytes"] = {"original": d.bytes, "speedup": p.bytes}
    out["tflite_accuracy"] = {"original": evaluate_tflite(d.path, test),
                              "speedup": evaluate_tflite(p.path, test)}
    bench = cfg["benchmark"]
    progress.stage(6, 6, "benchmark", f"LiteRT on this machine, threads {bench['threads']}, {bench['runs']} runs "
                   f"after {bench['warmup']} warm-up, dense and pruned interleaved", r.verbose)
    lat = {}
    for threads in bench["threads"]:
        cmp = compare(d.path, p.path, threads=threads, runs=bench["runs"], warmup=bench["warmup"])
        lat[str(threads)] = {"original": cmp.a.median_ms, "speedup": cmp.b.median_ms,
                             "ratio": cmp.a.median_ms / cmp.b.median_ms if cmp.b.median_ms else None}
    out["latency_ms"] = lat
    out["benchmark"] = {"runs": bench["runs"], "warmup": bench["warmup"], "threads": bench["threads"],
                        "backend": "litert-host", "statistic": "median"}
    return out
