"""One-shot filter pruning of a CIFAR-style ResNet-20 on Fashion-MNIST, every filter criterion.

ShrinkBench's protocol (Blalock et al. 2020): the same initial model, the same fine-tuning
budget, mean ± sample std over seeds. For each seed:

1. ``kprune.models.get("resnet20", input_shape=(28, 28, 1), num_classes=10, width=W)`` is
   trained dense once (SGD with momentum, cosine learning rate, no augmentation) on the
   first ``--train-take`` Fashion-MNIST training images; **every criterion prunes a copy of
   this one model**.
2. For each MACs-removed target (default 30 / 50 / 70 %) and each criterion, a copy is
   wrapped with ``{criterion, granularity: filter, dependency_aware: true}`` on every
   ``Conv2D`` (residual-coupled layers are pruned together), pruned once
   (``Pruner.prune_now``) and compacted (``kprune.compact``). Layerwise criteria all use the
   same uniform per-group sparsity, found once by bisection so that ``kprune.count`` of the
   *compacted* model has the target fraction of MACs removed (the channel counts depend on
   the sparsity only, not on the scores, so every layerwise criterion gets the very same
   architecture). ``slim`` ranks BatchNorm |γ| globally, so it gets its own global sparsity,
   bisected per seed and target to the same MACs.
3. The compacted model is evaluated right after pruning, again after re-estimating the
   BatchNorm moving statistics (cumulative average over ``--bn-batches`` training batches in
   training mode, no weight update), and after the same fine-tuning budget for every
   criterion (``--finetune-epochs`` over ``--finetune-take`` images, SGD, same batch order;
   ``--finetune-schedule cosine`` decays the learning rate to 0 over that budget).

Data criteria (apoz, mean_activation, taylor_fo) read ``--calib-batches`` training batches
via ``kprune.Pruner(model, data=...)``. ``random`` is seeded with the run's seed.
``slim`` here is the |γ| ranking of the common dense model: its training-time penalty
λ·Σ|γ| would need a separately trained dense model, which breaks "same initial model".

Usage::

    python benchmarks/criteria_sweep.py [--seeds 0 1 2] [--width 0.5] [--quick]
        [--json benchmarks/results/criteria_sweep.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # benchmarks/: also when imported by a test
from _results import backend_versions, check_mergeable, cpu_model, mean_std_pct  # noqa: E402

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

CRITERIA = ("l1", "l2", "fpgm", "apoz", "mean_activation", "taylor_fo", "slim", "random")
DATA_CRITERIA = ("apoz", "mean_activation", "taylor_fo")


def host() -> dict:
    """Machine description: CPU model, core count, versions, the Keras backend with its devices
    (JAX's, or PyTorch's CUDA devices) and the current load average. Imports only the backend's
    framework."""
    import keras
    out = {"cpu": cpu_model(), "nproc": os.cpu_count(), "python": platform.python_version(),
           "keras": keras.__version__, "backend": keras.backend.backend(), **backend_versions()}
    if out["backend"] == "jax":
        import jax
        out["devices"] = [str(d.device_kind) for d in jax.devices()]
    elif out["backend"] == "torch":
        import torch
        if torch.cuda.is_available():
            out["devices"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    out["uptime"] = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    return out


def recipe(criterion: str, sparsity: float, seed: int, calib_batches: int) -> dict:
    """The one-shot filter-pruning recipe of one run."""
    return {"prune": {"criterion": criterion, "granularity": "filter", "dependency_aware": True, "round_to": 1,
                      "scope": "global" if criterion == "slim" else "layerwise",
                      "schedule": {"name": "oneshot"}, "seed": int(seed),
                      "statistics_batches": int(calib_batches),
                      "config_list": [{"op_types": ["Conv2D"], "sparsity": float(sparsity)}]}}


def prune_compact(model, criterion, sparsity, seed, calib, calib_batches):
    """Wraps a copy of ``model``, prunes it once and returns the compacted model."""
    import kprune
    wrapped = kprune.wrap(model, recipe(criterion, sparsity, seed, calib_batches))
    kprune.Pruner(wrapped, data=calib if criterion in DATA_CRITERIA else None).prune_now()
    return kprune.compact(wrapped)


def macs_removed(model, dense_macs) -> float:
    from kprune.counting.counter import count
    return 1.0 - count(model).macs / dense_macs


def bisect_sparsity(make, dense_macs, target, iterations=12):
    """The sparsity in [0, 0.99] whose compacted model has MACs removed closest to ``target``.

    MACs removed is a non-decreasing step function of the sparsity; bisection finds the
    smallest sparsity reaching the target, then the closer of it and the last one below wins.
    """
    lo, hi = 0.0, 0.99
    f_lo, f_hi = 0.0, macs_removed(make(hi), dense_macs)
    for _ in range(iterations):
        mid = (lo + hi) / 2
        f = macs_removed(make(mid), dense_macs)
        if f >= target:
            hi, f_hi = mid, f
        else:
            lo, f_lo = mid, f
    return (hi, f_hi) if abs(f_hi - target) <= abs(f_lo - target) else (lo, f_lo)


def steps_of(take: int, batch_size: int, epochs: int) -> int:
    """Optimizer steps of ``epochs`` passes over ``take`` examples."""
    return -(-take // batch_size) * epochs


def compile_sgd(model, lr, steps=None):
    """SGD (momentum 0.9, optional cosine decay over ``steps``) with cross-entropy on logits. The
    step is XLA-compiled on JAX (Keras' default there; eager JAX is too slow to train) and not on
    TensorFlow or PyTorch (the CPU runs in BENCHMARKS.md)."""
    import keras
    if steps:
        lr = keras.optimizers.schedules.CosineDecay(lr, decay_steps=steps)
    model.compile(keras.optimizers.SGD(lr, momentum=0.9),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"], jit_compile=keras.backend.backend() == "jax")
    return model


def evaluate(model, test) -> float:
    """Top-1 accuracy in inference mode, run eagerly on a list of batches (no tracing cost)."""
    from kprune.models.training import accuracy
    return accuracy(model, test)


def run_seed(seed, args, levels, test, save=None) -> dict:
    import keras

    import kprune
    from kprune.counting.counter import count
    from kprune.data import calibration_batches, load

    keras.utils.set_random_seed(seed)
    dense = kprune.models.get("resnet20", input_shape=(28, 28, 1), num_classes=10, width=args.width)
    train = load("fashion_mnist", "train", batch_size=args.batch_size, take=args.train_take, seed=seed)
    steps = steps_of(args.train_take, args.batch_size, args.epochs)
    t = time.time()
    compile_sgd(dense, args.lr, steps).fit(train, epochs=args.epochs, verbose=0)
    dense_acc = evaluate(dense, test)
    dc = count(dense)
    print(f"seed {seed}: dense {dc.params} params, {dc.macs} MACs, test accuracy {dense_acc:.4f} "
          f"({time.time() - t:.0f} s)", flush=True)
    calib = calibration_batches(load("fashion_mnist", "train", batch_size=args.batch_size,
                                     take=args.train_take, seed=seed + 7), args.calib_batches)
    bn_batches = calibration_batches(load("fashion_mnist", "train", batch_size=args.batch_size,
                                          take=args.train_take, seed=seed + 11), args.bn_batches)

    def finetune(model):
        keras.utils.set_random_seed(seed)
        ft = load("fashion_mnist", "train", batch_size=args.batch_size, take=args.finetune_take, seed=seed + 1)
        steps = steps_of(args.finetune_take, args.batch_size, args.finetune_epochs)
        compile_sgd(model, args.finetune_lr, steps if args.finetune_schedule == "cosine" else None).fit(ft, epochs=args.finetune_epochs, verbose=0)
        return evaluate(model, test)

    t = time.time()
    copy = keras.models.clone_model(dense)
    copy.set_weights(dense.get_weights())
    dense_ft = finetune(copy)
    print(f"seed {seed}: dense + same fine-tuning budget -> {dense_ft:.4f} ({time.time() - t:.0f} s)", flush=True)
    out = {"seed": seed, "dense": {"accuracy": dense_acc, "accuracy_finetuned": dense_ft,
                                   "params": dc.params, "macs": dc.macs}, "runs": []}
    for target in args.levels:
        for crit in args.criteria:
            t = time.time()
            if crit == "slim":
                sparsity, _ = bisect_sparsity(
                    lambda s: prune_compact(dense, "slim", s, seed, calib, args.calib_batches),
                    dc.macs, target, args.bisect_iterations)
            else:
                sparsity = levels[target]
            small = prune_compact(dense, crit, sparsity, seed, calib, args.calib_batches)
            c = count(small)
            acc = evaluate(small, test)
            kprune.recalibrate_bn(small, bn_batches, batches=len(bn_batches))
            acc_bn = evaluate(small, test)
            acc_ft = finetune(small)
            row = {"criterion": crit, "target": target, "sparsity": sparsity, "params": c.params,
                   "macs": c.macs, "macs_removed": 1.0 - c.macs / dc.macs, "accuracy_pruned": acc,
                   "accuracy_bn": acc_bn, "accuracy_finetuned": acc_ft, "seconds": time.time() - t}
            out["runs"].append(row)
            if save is not None:
                save(out)
            print(f"seed {seed}: {crit:<16} target {target:.0%} sparsity {sparsity:.4f} MACs removed "
                  f"{row['macs_removed']:.3f} params {c.params}: pruned {acc:.4f}, BN {acc_bn:.4f}, "
                  f"fine-tuned {acc_ft:.4f} ({row['seconds']:.0f} s)", flush=True)
    return out


ms = mean_std_pct


def tables(results) -> str:
    """Markdown tables: dense reference, then one row per (target, criterion)."""
    seeds = results["seeds"]
    lines = ["| model | params | MACs | test acc. (%) | + same fine-tune (%) |", "|---|---|---|---|---|",
             f"| dense | {seeds[0]['dense']['params']:,} | {seeds[0]['dense']['macs']:,} | "
             f"{ms(s['dense']['accuracy'] for s in seeds)} | {ms(s['dense']['accuracy_finetuned'] for s in seeds)} |",
             "",
             "| MACs removed (target) | criterion | sparsity | MACs removed | params | MACs | pruned (%) | "
             "+ BN recal. (%) | fine-tuned (%) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for target in results["settings"]["levels"]:
        for crit in results["settings"]["criteria"]:
            rows = [r for s in seeds for r in s["runs"] if r["criterion"] == crit and r["target"] == target]
            if not rows:
                continue
            sp = statistics.fmean(r["sparsity"] for r in rows)
            lines.append(
                f"| {target:.0%} | {crit} | {sp:.3f} | {statistics.fmean(r['macs_removed'] for r in rows):.3f} | "
                f"{statistics.fmean(r['params'] for r in rows):,.0f} | {statistics.fmean(r['macs'] for r in rows):,.0f} | "
                f"{ms(r['accuracy_pruned'] for r in rows)} | {ms(r['accuracy_bn'] for r in rows)} | "
                f"{ms(r['accuracy_finetuned'] for r in rows)} |")
    return "\n".join(lines)


def protocol_arguments(p, finetune_take: int = 4000, finetune_epochs: int = 1) -> None:
    """The protocol's options (seeds, model width, dense training, fine-tuning), shared with
    ``distill_sweep.py``."""
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--width", type=float, default=0.5)
    p.add_argument("--train-take", type=int, default=15000)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--finetune-take", type=int, default=finetune_take)
    p.add_argument("--finetune-epochs", type=int, default=finetune_epochs)
    p.add_argument("--finetune-lr", type=float, default=0.01)


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    protocol_arguments(p)
    p.add_argument("--finetune-schedule", default="constant", choices=("constant", "cosine"),
                   help="fine-tuning learning rate: constant, or cosine from --finetune-lr to 0")
    p.add_argument("--test-take", type=int, default=3000)
    p.add_argument("--calib-batches", type=int, default=10)
    p.add_argument("--bn-batches", type=int, default=20)
    p.add_argument("--bisect-iterations", type=int, default=8)
    p.add_argument("--levels", type=float, nargs="+", default=[0.3, 0.5, 0.7])
    p.add_argument("--criteria", nargs="+", default=list(CRITERIA))
    p.add_argument("--sparsities", type=float, nargs="+", default=None,
                   help="uniform filter sparsity per level (skips their bisection; e.g. from an earlier run)")
    p.add_argument("--merge", nargs="+", default=None, metavar="JSON",
                   help="combine per-seed result files (written with --seeds S --json F) into --json")
    p.add_argument("--quick", action="store_true", help="smoke run: 1 seed, tiny data, 2 criteria, 1 level")
    p.add_argument("--json", default="benchmarks/results/criteria_sweep.json")
    args = p.parse_args(argv)
    if args.quick:
        args.seeds, args.train_take, args.epochs, args.finetune_take, args.test_take = [0], 512, 1, 256, 256
        args.criteria, args.levels, args.bisect_iterations, args.calib_batches, args.bn_batches = (
            ["l1", "taylor_fo", "slim"], [0.5], 4, 2, 2)
        args.json = args.json.replace(".json", "_quick.json")
    return args


def merge(args, render=None) -> int:
    """Combines per-seed result files into one (the seeds of parallel runs) and prints
    ``render(results)`` (default: this sweep's :func:`tables`)."""
    parts = []
    for path in args.merge:
        with open(path) as f:
            parts.append(json.load(f))
    # parts of one sweep may split its seeds and levels (jax_sweep.sh: one process per seed and level)
    check_mergeable(args.merge, [p["settings"] for p in parts],
                    [p["machine"].get("backend", "tensorflow") for p in parts],  # none recorded before 2026-12-07
                    free=("seeds", "levels", "criteria", "uniform_sparsity"))
    results = dict(parts[0], seeds=[s for p in parts for s in p["seeds"]],
                   machine=[p["machine"] for p in parts], uptime_after=[p.get("uptime_after") for p in parts],
                   wall_seconds=[p.get("wall_seconds") for p in parts], merged_from=list(args.merge))
    # the merged settings hold the union, so that every part's rows are tabled
    settings = results["settings"] = dict(parts[0]["settings"])
    settings["levels"] = sorted({v for p in parts for v in p["settings"]["levels"]})
    if "criteria" in settings:  # criteria_sweep's; distill_sweep, which merges here too, has one criterion
        settings["criteria"] = list(dict.fromkeys(v for p in parts for v in p["settings"]["criteria"]))
        settings["uniform_sparsity"] = {k: v for p in parts for k, v in p["settings"]["uniform_sparsity"].items()}
    settings["seeds"] = sorted({s["seed"] for s in results["seeds"]})
    from kprune.io import atomic_write_json
    atomic_write_json(args.json, results)
    print((render or tables)(results))
    print(f"\nmerged {len(results['seeds'])} seeds from {args.merge} into {args.json}")
    return 0


def main(argv=None) -> int:
    args = parse(argv)
    import kprune
    from kprune.counting.counter import count
    from kprune.data import calibration_batches, load
    from kprune.io import atomic_write_json

    if args.merge:
        return merge(args)
    start = host()
    print(f"machine: {start}", flush=True)
    t0 = time.time()
    # the uniform sparsity per target depends on the architecture only: bisect it once
    shape_model = kprune.models.get("resnet20", input_shape=(28, 28, 1), num_classes=10, width=args.width)
    dense_macs = count(shape_model).macs
    levels = dict(zip(args.levels, args.sparsities)) if args.sparsities else {}
    for target in args.levels:
        if target not in levels:
            levels[target], _ = bisect_sparsity(lambda s: prune_compact(shape_model, "l1", s, 0, None, 1),
                                                dense_macs, target, args.bisect_iterations + 4)
        f = macs_removed(prune_compact(shape_model, "l1", levels[target], 0, None, 1), dense_macs)
        print(f"target {target:.0%} MACs removed: uniform filter sparsity {levels[target]:.4f} removes {f:.4f}",
              flush=True)
    test = calibration_batches(load("fashion_mnist", "test", batch_size=1000, shuffle=False, take=args.test_take),
                               -(-args.test_take // 1000))
    settings = {k: v for k, v in vars(args).items() if k not in ("json", "merge", "sparsities")}
    settings["uniform_sparsity"] = {f"{k:g}": v for k, v in levels.items()}
    results = {"benchmark": "criteria_sweep", "settings": settings, "machine": start, "seeds": []}

    def save(partial=None):
        seeds = results["seeds"] + ([partial] if partial is not None else [])
        os.makedirs(os.path.dirname(args.json) or ".", exist_ok=True)
        atomic_write_json(args.json, dict(results, seeds=seeds, uptime_after=host()["uptime"],
                                          wall_seconds=time.time() - t0))

    for seed in args.seeds:
        results["seeds"].append(run_seed(seed, args, levels, test, save))
    return finish(results, save, tables, start, t0, args.json)


def finish(results: dict, save, tables, start: dict, t0: float, json_path: str) -> int:
    """The sweeps' epilogue (shared with ``distill_sweep.py``): final load and wall time into
    ``results``, saved, the tables and a summary line printed."""
    results["uptime_after"] = host()["uptime"]
    results["wall_seconds"] = time.time() - t0
    save()
    print()
    print(tables(results))
    print(f"\nwall time {results['wall_seconds'] / 60:.1f} min; load before: {start['uptime']}; "
          f"after: {results['uptime_after']}; raw JSON: {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
