"""Prune and fine-tune saved ResNet-20s in PyTorch alone: is the random-pruning gap TensorFlow's? (issue 19)

``tp_lockstep.py --save DIR`` keeps three ResNet-20s trained from the same initial weights on the
same batches: by TensorFlow (``tf``, copied into the PyTorch mirror), by PyTorch (``torch``) and
by PyTorch from weights perturbed by 1e-7 (``torch_perturbed``, the chaos control). This script
gives the three the rest of ``tp_compare``'s protocol in PyTorch alone, so that the training of
the dense model is the only difference: Torch-Pruning's local pruner at the uniform ratio of each
MACs target (found by bisection on ``torch``, the same for all three), BatchNorm recalibrated on
``--bn-batches`` batches, ``--finetune-epochs`` of SGD (lr ``--finetune-lr`` cosine, momentum 0.9,
no weight decay, the same batches for every model), test accuracy. ``random`` runs ``--draws``
draws, the same channels for the three models (Torch-Pruning's random importance after
``torch.manual_seed(draw)``); the other criteria run once.

If ``torch_perturbed`` falls as far below ``torch`` as ``tf`` does, the gap of tp_compare's random
cells is the variance of a chaotic dense training, not TensorFlow; if only ``tf`` falls, TensorFlow's
training makes models that random pruning hurts more.

Usage (after ``tp_lockstep.py --seed 0 --save runs/lockstep``)::

    python benchmarks/tp_probe.py --models runs/lockstep --seed 0 --json benchmarks/results/tp_probe_s0.json
    python benchmarks/tp_probe.py --merge s0.json s1.json s2.json   # the seeds side by side

``--merge`` tests the chaos hypothesis across seeds: if TensorFlow's training were one more sample
of the chaos, the three models of a seed would be exchangeable and ``tf`` the lowest of the three
with probability 1/3 at each seed; it prints how often it is, and the binomial tail of that count.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # benchmarks/

import numpy as np  # noqa: E402

import tp_compare as tc  # noqa: E402
from _results import mean_std_pct, write_json  # noqa: E402

RUNS = ("tf", "torch", "torch_perturbed")


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", help="the folder tp_lockstep.py --save wrote ({run}_s{seed}.pt)")
    p.add_argument("--seed", type=int, default=0, help="which seed's models; also the fine-tuning batch order")
    p.add_argument("--runs", nargs="+", default=list(RUNS), choices=RUNS)
    p.add_argument("--criteria", nargs="+", default=["random", "l1"], choices=("random", "l1", "l2", "fpgm"))
    p.add_argument("--targets", type=float, nargs="+", default=[0.5, 0.7], help="fractions of MACs removed")
    p.add_argument("--draws", type=int, default=5, help="random draws per target (paired across the runs)")
    p.add_argument("--train-images", type=int, default=60000)
    p.add_argument("--test-images", type=int, default=10000)
    p.add_argument("--finetune-epochs", type=int, default=1)
    p.add_argument("--finetune-lr", type=float, default=0.01)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--width", type=float, default=0.5)
    p.add_argument("--bn-batches", type=int, default=20)
    p.add_argument("--bisect-iterations", type=int, default=14)
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads; 0: PyTorch's default")
    p.add_argument("--torch-onednn", default="dense", choices=("dense", "on", "off"),
                   help="as tp_compare's flag; only pruned models are trained here, so 'dense' means off")
    p.add_argument("--json", default=None)
    p.add_argument("--merge", nargs="+", metavar="JSON", help="print the seeds of these JSON files side by side")
    args = p.parse_args(argv)
    if not args.merge and not args.models:
        p.error("--models is required (or --merge JSON ...)")
    return args


def main(argv=None) -> int:
    args = parse(argv)
    if args.merge:
        print(merge([json.load(open(p)) for p in args.merge]))
        return 0
    import torch

    from _torch_resnet import CifarResNet, accuracy, recalibrate_bn

    if args.threads:
        torch.set_num_threads(args.threads)
    tc.torch_onednn(args, dense=False)
    load_before = os.getloadavg()
    xtr, ytr, xte, yte = (torch.from_numpy(a) for a in tc.to_nchw(*tc.load_arrays("train", args.train_images),
                                                                   *tc.load_arrays("test", args.test_images)))
    example = xtr[:1]
    models = {}
    for run in args.runs:
        path = os.path.join(args.models, f"{run}_s{args.seed}.pt")
        if not os.path.exists(path):
            raise SystemExit(f"{path}: not found; write it with tp_lockstep.py --seed {args.seed} --save {args.models}")
        m = CifarResNet(in_channels=xtr.shape[1], width=args.width)
        m.load_state_dict(torch.load(path))
        models[run] = m.eval()
    ref = models.get("torch", next(iter(models.values())))
    bn = [xtr[i] for i in tc.batch_order(len(xtr), args.batch_size, args.seed, "bn", 0)[:args.bn_batches]]
    rows, start = [], time.perf_counter()
    for run, m in models.items():
        print(f"{run:<16} dense test {accuracy(m, xte, yte):.4f}", flush=True)
    for target in args.targets:
        ratio, removed = tc.bisect_ratio(ref, example, target, args.bisect_iterations)
        for crit in args.criteria:
            for draw in range(args.draws if crit == "random" else 1):
                for run, m in models.items():
                    t = time.perf_counter()
                    pruned = tc.tp_prune(copy.deepcopy(m), crit, ratio, example, seed=draw)
                    recalibrate_bn(pruned, bn)
                    row = {"run": run, "target": target, "ratio": ratio, "macs_removed": removed, "criterion": crit,
                           "draw": draw, "accuracy_bn": accuracy(pruned, xte, yte)}
                    tc.torch_train(pruned, xtr, ytr, args, args.seed, "finetune", args.finetune_epochs,
                                   args.finetune_lr, False, 0.0)
                    row.update(accuracy_finetuned=accuracy(pruned, xte, yte), seconds=time.perf_counter() - t)
                    rows.append(row)
                    print(f"{target:.0%} {crit:<6} draw {draw} {run:<16} BN recal. {row['accuracy_bn']:.4f} "
                          f"fine-tuned {row['accuracy_finetuned']:.4f} ({row['seconds']:.0f} s)", flush=True)
    summary = table(rows, args)
    print(summary)
    if args.json:
        write_json(args.json, {"benchmark": "tp_probe", "args": vars(args), "rows": rows, "table": summary,
                               "seconds": time.perf_counter() - start}, load_before)
    return 0


def table(rows, args) -> str:
    """Mean ± std per run, and the paired (same draw) difference to ``torch``, in points."""
    lines = [f"seed {args.seed}, {args.finetune_epochs} fine-tuning epoch(s); test accuracy (%) after fine-tuning, "
             "mean ± std over draws; paired differences to torch in points", "",
             "| target | criterion | " + " | ".join(args.runs) + " | " +
             " | ".join(f"{r} − torch" for r in args.runs if r != "torch") + " |",
             "|---|---|" + "---|" * (2 * len(args.runs) - ("torch" in args.runs))]
    for target in args.targets:
        for crit in args.criteria:
            acc = {r: [x["accuracy_finetuned"] for x in rows if (x["run"], x["target"], x["criterion"]) == (r, target, crit)]
                   for r in args.runs}
            cells = [mean_std_pct(v) for v in acc.values()]
            diffs = []
            for r in args.runs:
                if r == "torch":
                    continue
                if "torch" not in acc:
                    diffs.append("–")
                    continue
                d = [100 * (a - b) for a, b in zip(acc[r], acc["torch"])]
                diffs.append(f"{statistics.fmean(d):+.2f} ± {statistics.stdev(d) if len(d) > 1 else 0:.2f}")
            lines.append(f"| {target:.0%} | {crit} | " + " | ".join(cells) + " | " + " | ".join(diffs) + " |")
    return "\n".join(lines)


def merge(results) -> str:
    """Per seed: each run's mean over draws, the differences to ``torch`` and to the two PyTorch runs' mean,
    and whether ``tf`` is the lowest of the three; then the mean ± std over seeds and the binomial tail."""
    keys = ("target", "criterion")
    cells = sorted({tuple(r[k] for k in keys) for res in results for r in res["rows"]})
    lines = []
    for cell in cells:
        lines += [f"{cell[0]:.0%} MACs removed, {cell[1]}: test accuracy (%) after fine-tuning, mean over draws "
                  "per seed; differences in points", "",
                  "| seed | draws | tf | torch | torch_perturbed | tf − torch | torch_perturbed − torch "
                  "| tf − PyTorch mean | tf lowest |", "|---|---|---|---|---|---|---|---|---|"]
        cols = {k: [] for k in ("tf", "torch", "torch_perturbed", "d_tf", "d_ctl", "d_mean")}
        lowest = 0
        for res in sorted(results, key=lambda r: r["args"]["seed"]):
            rows = [r for r in res["rows"] if tuple(r[k] for k in keys) == cell]
            if not rows:
                continue
            m = {run: 100 * statistics.fmean(r["accuracy_finetuned"] for r in rows if r["run"] == run) for run in RUNS}
            low = m["tf"] < min(m["torch"], m["torch_perturbed"])
            lowest += low
            vals = (m["tf"], m["torch"], m["torch_perturbed"], m["tf"] - m["torch"],
                    m["torch_perturbed"] - m["torch"], m["tf"] - (m["torch"] + m["torch_perturbed"]) / 2)
            for k, v in zip(cols, vals):
                cols[k].append(v)
            lines.append(f"| {res['args']['seed']} | {len(rows) // len(RUNS)} | " + " | ".join(f"{v:.2f}" for v in vals[:3])
                         + " | " + " | ".join(f"{v:+.2f}" for v in vals[3:]) + f" | {'yes' if low else 'no'} |")
        n = len(cols["tf"])
        spread = [(statistics.fmean(v), statistics.stdev(v) if n > 1 else 0.0) for v in cols.values()]
        lines.append("| mean ± std | | " + " | ".join(f"{m:.2f} ± {s:.2f}" for m, s in spread[:3])
                     + " | " + " | ".join(f"{m:+.2f} ± {s:.2f}" for m, s in spread[3:]) + f" | {lowest} of {n} |")
        tail = sum(math.comb(n, j) * (1 / 3) ** j * (2 / 3) ** (n - j) for j in range(lowest, n + 1))
        lines += ["", f"tf the lowest of the three at {lowest} of {n} seeds; if the three were exchangeable "
                  f"(P = 1/3 per seed), P(≥ {lowest} of {n}) = {tail:.3f}", *spread_sources(results, cell), ""]
    return "\n".join(lines).rstrip()


def spread_sources(results, cell) -> list:
    """Where a cell's spread comes from (one-way random effects over the dense models, every run
    of every seed one model): the std between draws on one model, and the std between the models'
    expected accuracies (the variance of the models' means less the draws' share of it). The mean
    over K draws on one model has std sqrt(between² + within² / K), which tells whether more draws
    per dense model or more dense models (seeds) narrow a comparison faster. The three models of a
    seed share their initial weights, so the between-model std is, if anything, an underestimate."""
    models = {}
    for res in results:
        for r in res["rows"]:
            if (r["target"], r["criterion"]) == cell:
                models.setdefault((res["args"]["seed"], r["run"]), []).append(100 * r["accuracy_finetuned"])
    k = {len(v) for v in models.values()}
    if len(k) != 1 or min(k) < 2 or len(models) < 3:
        return []
    k = k.pop()
    within = statistics.fmean(statistics.variance(v) for v in models.values())
    between = max(0.0, statistics.variance(statistics.fmean(v) for v in models.values()) - within / k)
    return [f"spread of one draw's accuracy: between draws on one model {math.sqrt(within):.2f}, between dense "
            f"models {math.sqrt(between):.2f} points ({len(models)} models × {k} draws); the mean over K draws on "
            f"one model has std sqrt({between:.2f} + {within:.2f} / K)"]


if __name__ == "__main__":
    sys.exit(main())
