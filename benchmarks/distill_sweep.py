"""Fine-tuning with and without distillation from the dense model, on the criteria-sweep protocol.

The protocol of BENCHMARKS.md's "Criteria sweep with a longer fine-tuning (2 epochs, cosine)"
(see ``criteria_sweep.py``, whose functions this script reuses), for the L1 criterion. For
each seed:

1. ``resnet20`` (width ``--width``) at 28x28x1 is trained dense once on the first
   ``--train-take`` Fashion-MNIST training images (``--epochs`` epochs, SGD momentum 0.9,
   ``--lr`` cosine to 0, batch ``--batch-size``), exactly as in ``criteria_sweep.py``.
2. For each MACs-removed target, a copy is pruned once with ``l1`` filter pruning,
   dependency-aware, at the uniform sparsity of that target (``--sparsities``; 0.3123 and
   0.4377 remove 49.3 % and 70.7 % of the MACs), compacted, and its BatchNorm statistics are
   re-estimated on ``--bn-batches`` training batches.
3. That one recalibrated model is fine-tuned twice from the same weights with the same
   budget — ``--finetune-epochs`` epochs over the first ``--finetune-take`` training images,
   SGD momentum 0.9, ``--finetune-lr`` cosine to 0 over the budget, the same batch order (the
   same dataset seed) and the same global seed:

   * **plain**: cross-entropy on the labels (``model.fit``), as in the criteria sweep;
   * **distilled**: ``kprune.distill_finetune(student, teacher, ...)`` with the dense model of
     step 1 as the frozen teacher, ``--alpha`` (weight of the labels' loss) and
     ``--temperature`` (Keras' ``keras.distillation.Distiller`` + ``LogitsDistillation``).

Both are evaluated on the first ``--test-take`` test images (all 10,000 by default). The
gain is the paired difference distilled − plain per seed, then mean ± sample std over seeds.

The JSON is written atomically after every fine-tuning; a rerun with the same ``--json``
skips the seeds it holds complete (``--fresh`` starts over). Seeds can also run as separate
invocations (``--seeds 1 --json part1.json``) and be combined with ``--merge``.

Usage::

    python benchmarks/distill_sweep.py [--seeds 0 1 2] [--alpha 0.5] [--temperature 4]
        [--json benchmarks/results/distill_sweep.json] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import criteria_sweep as cs
from _results import mean_std_pct as ms

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def run_seed(seed, args, test, save) -> dict:
    import keras

    import kprune
    from kprune.counting.counter import count
    from kprune.data import calibration_batches, load
    from kprune.models.distill import frozen_copy

    t = time.time()
    keras.utils.set_random_seed(seed)
    dense = kprune.models.get("resnet20", input_shape=(28, 28, 1), num_classes=10, width=args.width)
    train = load("fashion_mnist", "train", batch_size=args.batch_size, take=args.train_take, seed=seed)
    cs.compile_sgd(dense, args.lr, cs.steps_of(args.train_take, args.batch_size, args.epochs)).fit(
        train, epochs=args.epochs, verbose=0)
    dense_acc = cs.evaluate(dense, test)
    dc = count(dense)
    out = {"seed": seed, "dense": {"accuracy": dense_acc, "params": dc.params, "macs": dc.macs,
                                   "seconds": time.time() - t}, "runs": []}
    print(f"seed {seed}: dense {dc.params} params, {dc.macs} MACs, test accuracy {dense_acc:.4f} "
          f"({time.time() - t:.0f} s)", flush=True)
    teacher = frozen_copy(dense)
    bn_batches = calibration_batches(load("fashion_mnist", "train", batch_size=args.batch_size,
                                          take=args.train_take, seed=seed + 11), args.bn_batches)
    steps = cs.steps_of(args.finetune_take, args.batch_size, args.finetune_epochs)

    def finetune(model, distill: bool):
        keras.utils.set_random_seed(seed)
        ft = load("fashion_mnist", "train", batch_size=args.batch_size, take=args.finetune_take, seed=seed + 1)
        optimizer = keras.optimizers.SGD(keras.optimizers.schedules.CosineDecay(args.finetune_lr, steps),
                                         momentum=0.9)
        t = time.time()
        if distill:
            hist = kprune.distill_finetune(model, teacher, ft, epochs=args.finetune_epochs, alpha=args.alpha,
                                           temperature=args.temperature, optimizer=optimizer)
        else:
            model.compile(optimizer, keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                          metrics=["accuracy"], jit_compile=False)
            hist = model.fit(ft, epochs=args.finetune_epochs, verbose=0)
        seconds = time.time() - t
        steps_done = int(optimizer.iterations.numpy())
        return cs.evaluate(model, test), seconds, steps_done, {k: float(v[-1]) for k, v in hist.history.items()}

    for target, sparsity in zip(args.levels, args.sparsities):
        t = time.time()
        small = cs.prune_compact(dense, "l1", sparsity, seed, None, 1)
        c = count(small)
        acc = cs.evaluate(small, test)
        kprune.recalibrate_bn(small, bn_batches, batches=len(bn_batches))
        acc_bn = cs.evaluate(small, test)
        start = small.get_weights()
        row = {"target": target, "sparsity": sparsity, "params": c.params, "macs": c.macs,
               "macs_removed": 1.0 - c.macs / dc.macs, "accuracy_pruned": acc, "accuracy_bn": acc_bn}
        for name, distill in (("plain", False), ("distilled", True)):
            model = keras.models.clone_model(small)
            model.set_weights(start)
            acc_ft, seconds, steps_done, logs = finetune(model, distill)
            row[name] = {"accuracy": acc_ft, "seconds": seconds, "steps": steps_done, "last_epoch": logs}
            save(out, row)
        row["gain"] = row["distilled"]["accuracy"] - row["plain"]["accuracy"]
        row["seconds"] = time.time() - t
        out["runs"].append(row)
        save(out)
        print(f"seed {seed}: target {target:.0%} sparsity {sparsity:.4f} MACs removed {row['macs_removed']:.3f} "
              f"params {c.params}: pruned {acc:.4f}, BN {acc_bn:.4f}, fine-tuned {row['plain']['accuracy']:.4f} "
              f"({row['plain']['seconds']:.0f} s, {row['plain']['steps']} steps), distilled "
              f"{row['distilled']['accuracy']:.4f} ({row['distilled']['seconds']:.0f} s, "
              f"{row['distilled']['steps']} steps), gain {100 * row['gain']:+.2f} points", flush=True)
    return out


def pm(values) -> str:
    """Mean ± sample std of differences in points, signed."""
    values = [100 * v for v in values]
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):+.2f} ± {std:.2f}"


def tables(results) -> str:
    seeds = sorted(results["seeds"], key=lambda s: s["seed"])
    st = results["settings"]
    kd = f"distilled (α {st['alpha']:g}, T {st['temperature']:g}) (%)"
    lines = [(f"dense (teacher): {seeds[0]['dense']['params']:,} params, {seeds[0]['dense']['macs']:,} MACs, "
              f"test accuracy {ms(s['dense']['accuracy'] for s in seeds)} % (seeds {[s['seed'] for s in seeds]})"),
             "",
             (f"| MACs removed (target) | sparsity | MACs removed | params | pruned (%) | + BN recal. (%) | "
              f"fine-tuned (%) | {kd} | gain (points, paired) | seeds |"),
             "|---|---|---|---|---|---|---|---|---|---|"]
    for target in st["levels"]:
        rows = [r for s in seeds for r in s["runs"] if r["target"] == target]
        if not rows:
            continue
        lines.append(
            f"| {target:.0%} | {statistics.fmean(r['sparsity'] for r in rows):.4f} | "
            f"{statistics.fmean(r['macs_removed'] for r in rows):.3f} | {statistics.fmean(r['params'] for r in rows):,.0f} | "
            f"{ms(r['accuracy_pruned'] for r in rows)} | {ms(r['accuracy_bn'] for r in rows)} | "
            f"{ms(r['plain']['accuracy'] for r in rows)} | {ms(r['distilled']['accuracy'] for r in rows)} | "
            f"{pm(r['gain'] for r in rows)} | {len(rows)} |")
    lines += ["", "| seed | target | fine-tuned (%) | distilled (%) | gain (points) | seconds plain / distilled |",
              "|---|---|---|---|---|---|"]
    for s in seeds:
        for r in s["runs"]:
            lines.append(f"| {s['seed']} | {r['target']:.0%} | {100 * r['plain']['accuracy']:.2f} | "
                         f"{100 * r['distilled']['accuracy']:.2f} | {100 * r['gain']:+.2f} | "
                         f"{r['plain']['seconds']:.0f} / {r['distilled']['seconds']:.0f} |")
    return "\n".join(lines)


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    cs.protocol_arguments(p, finetune_take=15000, finetune_epochs=2)
    p.add_argument("--test-take", type=int, default=10000)
    p.add_argument("--bn-batches", type=int, default=20)
    p.add_argument("--levels", type=float, nargs="+", default=[0.5, 0.7])
    p.add_argument("--sparsities", type=float, nargs="+", default=[0.3123, 0.4377],
                   help="uniform L1 filter sparsity of each level (BENCHMARKS.md's bisection)")
    p.add_argument("--alpha", type=float, default=0.5, help="weight of the labels' loss (Keras' student_loss_weight)")
    p.add_argument("--temperature", type=float, default=4.0)
    p.add_argument("--merge", nargs="+", default=None, metavar="JSON", help="combine per-seed files into --json")
    p.add_argument("--fresh", action="store_true", help="ignore seeds already in --json")
    p.add_argument("--quick", action="store_true", help="smoke run: 1 seed, tiny data (never a result)")
    p.add_argument("--json", default="benchmarks/results/distill_sweep.json")
    args = p.parse_args(argv)
    if len(args.sparsities) != len(args.levels):
        p.error("--sparsities needs one value per --levels value")
    if args.quick:
        args.seeds, args.train_take, args.epochs, args.finetune_take, args.test_take, args.bn_batches = (
            [0], 512, 1, 256, 256, 2)
        args.json = args.json.replace(".json", "_quick.json")
    return args


def main(argv=None) -> int:
    args = parse(argv)
    if args.merge:
        return cs.merge(args, tables)
    from kprune.data import calibration_batches, load
    from kprune.io import atomic_write_json

    start = cs.host()
    print(f"machine: {start}", flush=True)
    settings = {k: v for k, v in vars(args).items() if k not in ("json", "merge", "fresh")}
    settings["criterion"] = "l1"
    done = []
    if os.path.exists(args.json) and not args.fresh:
        with open(args.json) as f:
            old = json.load(f)
        keep = {k: v for k, v in old["settings"].items() if k != "seeds"}
        if keep != {k: v for k, v in settings.items() if k != "seeds"}:
            raise SystemExit(f"{args.json} holds a run with other settings; use another --json or --fresh")
        done = [s for s in old["seeds"] if not s.get("partial") and s["seed"] in args.seeds]
        if done:
            print(f"resuming: seeds {[s['seed'] for s in done]} already in {args.json}", flush=True)
    t0 = time.time()
    test = calibration_batches(load("fashion_mnist", "test", batch_size=1000, shuffle=False, take=args.test_take),
                               -(-args.test_take // 1000))
    results = {"benchmark": "distill_sweep", "settings": settings, "machine": start, "seeds": list(done)}

    def save(partial=None, row=None):
        seeds = list(results["seeds"])
        if partial is not None:
            seeds.append(dict(partial, runs=partial["runs"] + ([row] if row is not None else []), partial=True))
        atomic_write_json(args.json, dict(results, seeds=seeds, uptime_after=cs.host()["uptime"],
                                          wall_seconds=time.time() - t0))

    for seed in args.seeds:
        if any(s["seed"] == seed for s in done):
            continue
        results["seeds"].append(run_seed(seed, args, test, save))
        save()
    return cs.finish(results, save, tables, start, t0, args.json)


if __name__ == "__main__":
    sys.exit(main())
