"""kprune's TensorFlow training and PyTorch's, in lockstep from the same weights (issue 19).

``tp_transfer.py`` found that Torch-Pruning's own random pruning falls as low as kprune's on a
ResNet-20 that TensorFlow trained — from PyTorch's initial weights too — while both prune
PyTorch-trained models equally well. This script follows the two trainings step by step and
then probes the trained models for what random pruning depends on. From one set of initial
weights (the PyTorch mirror of ``_torch_resnet.py`` at ``--seed``, copied into kprune's zoo
ResNet-20) it trains, on the same batches with the same PyTorch SGD update (``tp_compare``'s
protocol):

* ``tf``: kprune's model in TensorFlow (``tp_compare.keras_trainer``);
* ``torch``: the PyTorch mirror;
* ``torch_perturbed``: the PyTorch mirror from the same weights times ``1 + 1e-7·N(0, 1)``, a
  float32-rounding-sized change — the control: how far two PyTorch runs drift apart by chaos alone.

After steps 1, 2, 5, 10, 20, 50 and every ``--every`` steps it records, over the trainable
weights, the relative distance ``‖w − w_torch‖ / ‖w_torch‖`` of the other two. At the end, all
three models are evaluated in PyTorch (TensorFlow's weights copied into the mirror): test
accuracy, BatchNorm scale statistics, and a random-pruning probe: ``--draws`` random draws,
each zeroing (γ = β = 0) a random ``--drop`` share of every BatchNorm layer's channels, the same
draws for all three models, BatchNorm recalibrated on 20 batches, accuracy on the test images.
If ``tf`` drifts from ``torch`` no faster than ``torch_perturbed`` does but its probe is
systematically lower, TensorFlow's training differs in more than rounding.

Usage::

    python benchmarks/tp_lockstep.py --seed 0 --json benchmarks/results/tp_lockstep_s0.json [--save DIR]
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # benchmarks/
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

import numpy as np  # noqa: E402

import tp_compare as tc  # noqa: E402
import tp_transfer as tt  # noqa: E402
from _results import write_json  # noqa: E402

RUNS = ("tf", "torch", "torch_perturbed")


def flat(tmodel) -> np.ndarray:
    """Every trainable parameter of a PyTorch mirror, as one float64 vector."""
    return np.concatenate([t.detach().double().numpy().ravel() for t in tmodel.parameters()])


def bn_stats(tmodel) -> dict:
    from _torch_resnet import batchnorms
    gammas = [m.weight.detach().abs().numpy() for m in batchnorms(tmodel)]
    allg = np.concatenate(gammas)
    small = sum(int((g < 0.1 * np.median(g)).sum()) for g in gammas)
    cv = statistics.fmean(float(g.std() / g.mean()) for g in gammas)
    return {"gamma_abs_median": float(np.median(allg)), "gamma_abs_p10": float(np.quantile(allg, 0.1)),
            "gamma_abs_p90": float(np.quantile(allg, 0.9)), "gamma_small_share": small / len(allg),
            "gamma_cv_mean": cv}


def drop_probe(tmodel, draws, calib, x, y) -> list:
    """Accuracy after each draw's channels are zeroed (γ = β = 0) and BatchNorm recalibrated."""
    import torch

    from _torch_resnet import accuracy, batchnorms, recalibrate_bn
    out = []
    for draw in draws:
        m = copy.deepcopy(tmodel)
        with torch.no_grad():
            for bn, idx in zip(batchnorms(m), draw):
                bn.weight[idx] = 0.0
                bn.bias[idx] = 0.0
        recalibrate_bn(m, calib)
        out.append(accuracy(m, x, y))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-images", type=int, default=60000)
    p.add_argument("--test-images", type=int, default=10000)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--width", type=float, default=0.5)
    p.add_argument("--every", type=int, default=100, help="steps between two distance measurements")
    p.add_argument("--draws", type=int, default=10)
    p.add_argument("--drop", type=float, default=0.5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--save", default=None, help="folder for the three trained models' PyTorch state dicts")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)

    import keras
    import tensorflow as tf
    import torch

    import kprune
    from _torch_resnet import CifarResNet, accuracy, batchnorms

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    xtr, ytr = tc.load_arrays("train", args.train_images)
    xte, yte = tc.load_arrays("test", args.test_images)
    ttr, tytr = torch.from_numpy(np.ascontiguousarray(xtr.transpose(0, 3, 1, 2))), torch.from_numpy(ytr)
    tte, tyte = torch.from_numpy(np.ascontiguousarray(xte.transpose(0, 3, 1, 2))), torch.from_numpy(yte)

    torch.manual_seed(args.seed)
    models = {"torch": CifarResNet(in_channels=xtr.shape[-1], width=args.width, init="reference")}
    models["torch_perturbed"] = copy.deepcopy(models["torch"])
    gen = torch.Generator().manual_seed(args.seed + 1000)
    with torch.no_grad():
        for prm in models["torch_perturbed"].parameters():
            prm.mul_(1.0 + 1e-7 * torch.randn(prm.shape, generator=gen))
    keras.utils.set_random_seed(args.seed)
    kmodel = kprune.models.get("resnet20", input_shape=xtr.shape[1:], num_classes=10, width=args.width)
    tt.torch_to_keras(models["torch"], kmodel)
    mirror = copy.deepcopy(models["torch"])  # receives TensorFlow's weights for measuring

    kstep = tc.keras_trainer(kmodel, 0.9, True, args.weight_decay)
    opts = {k: torch.optim.SGD(models[k].parameters(), lr=args.lr, momentum=0.9, nesterov=True,
                               weight_decay=args.weight_decay) for k in ("torch", "torch_perturbed")}
    total = args.epochs * -(-len(xtr) // args.batch_size)
    trace, t = [], 0
    start = time.perf_counter()

    def measure():
        ref = flat(models["torch"])
        norm = np.linalg.norm(ref)
        row = {"step": t, "tf": float(np.linalg.norm(flat(tt.keras_to_torch(kmodel, mirror)) - ref) / norm),
               "torch_perturbed": float(np.linalg.norm(flat(models["torch_perturbed"]) - ref) / norm)}
        trace.append(row)
        print(f"step {t:>5}: relative distance to torch — tf {row['tf']:.2e}, "
              f"torch_perturbed {row['torch_perturbed']:.2e} ({time.perf_counter() - start:.0f} s)", flush=True)

    measure()
    for m in models.values():
        m.train()
    for epoch in range(args.epochs):
        for idx in tc.batch_order(len(xtr), args.batch_size, args.seed, "train", epoch):
            lr = tc.cosine(args.lr, t, total)
            kstep(xtr[idx], ytr[idx], lr)
            for k, opt in opts.items():
                for group in opt.param_groups:
                    group["lr"] = lr
                opt.zero_grad(set_to_none=True)
                torch.nn.functional.cross_entropy(models[k](ttr[idx]), tytr[idx]).backward()
                opt.step()
            t += 1
            if t in (1, 2, 5, 10, 20, 50) or t % args.every == 0 or t == total:
                for m in models.values():
                    m.eval()
                measure()
                for m in models.values():
                    m.train()
    for m in models.values():
        m.eval()
    models["tf"] = tt.keras_to_torch(kmodel, mirror)
    print(f"TensorFlow model vs its PyTorch copy, test logits max diff {tt.logits_diff(kmodel, mirror, xte[:256]):.1e}")

    if args.save:
        os.makedirs(args.save, exist_ok=True)
        for k in RUNS:
            torch.save(models[k].state_dict(), os.path.join(args.save, f"{k}_s{args.seed}.pt"))
    rng = np.random.default_rng([args.seed, 7])
    widths = [bn.num_features for bn in batchnorms(models["torch"])]
    draws = [[rng.permutation(w)[:int(round(args.drop * w))] for w in widths] for _ in range(args.draws)]
    calib = [ttr[i:i + args.batch_size] for i in range(0, 20 * args.batch_size, args.batch_size)]
    summary = {}
    for k in RUNS:
        probe = drop_probe(models[k], draws, calib, tte, tyte)
        summary[k] = {"accuracy": accuracy(models[k], tte, tyte), **bn_stats(models[k]), "probe": probe,
                      "probe_mean": statistics.fmean(probe)}
        s = summary[k]
        print(f"{k:<16} test {s['accuracy']:.4f} | |gamma| p10/median/p90 {s['gamma_abs_p10']:.3f}/"
              f"{s['gamma_abs_median']:.3f}/{s['gamma_abs_p90']:.3f}, share < 0.1 median {s['gamma_small_share']:.3f},"
              f" mean CV {s['gamma_cv_mean']:.3f} | random {args.drop:.0%} drop + BN recal.: "
              f"{s['probe_mean']:.4f} ± {statistics.stdev(probe):.4f}", flush=True)
    paired = [a - b for a, b in zip(summary["tf"]["probe"], summary["torch"]["probe"])]
    control = [a - b for a, b in zip(summary["torch_perturbed"]["probe"], summary["torch"]["probe"])]
    print(f"probe, paired by draw: tf − torch {statistics.fmean(paired):+.4f}, "
          f"torch_perturbed − torch {statistics.fmean(control):+.4f}")
    if args.json:
        write_json(args.json, {"benchmark": "tp_lockstep", "args": vars(args), "trace": trace, "summary": summary,
                               "seconds": time.perf_counter() - start}, load_before)
    return 0


if __name__ == "__main__":
    sys.exit(main())
