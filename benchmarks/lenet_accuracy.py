"""Accuracy of AGP level pruning, kprune vs TFMOT, on LeNet-300-100 / Fashion-MNIST.

For each seed:

1. ``kprune.models.lenet300_100`` (Keras 3) is trained dense for ``--pretrain-epochs`` with
   Adam; these weights are the common starting point of every variant below.
2. Each variant then trains ``--epochs`` more epochs from those weights with a fresh Adam
   (same learning rate, batch size and batch order: every run reads a freshly built
   ``kprune.data.load("fashion_mnist", "train", seed=seed + 1)``, whose shuffles are a
   function of the seed only):

   * ``dense (keras3)`` and ``dense (tf_keras)``: no pruning (the same budget, and a check that
     the two Keras versions train alike);
   * ``kprune s``: ``kprune.wrap`` with the level criterion on the three Dense layers at
     sparsity ``s`` and ``schedule: {name: agp, start_step: 0, end_step: K, frequency: F}``,
     trained with ``kprune.PruningCallback``;
   * ``tfmot s``: the identical tf_keras model (weights copied layer by layer) under
     ``prune_low_magnitude(PolynomialDecay(0, s, begin_step=0, end_step=K, frequency=F))``
     with ``UpdatePruningStep`` (power 3 in both, Zhu & Gupta's cubic schedule).

   K is ``--prune-epochs`` epochs of steps rounded down to a multiple of F, so the last
   ``--epochs - --prune-epochs`` epochs fine-tune at the final sparsity.
3. Test accuracy is measured on the 10,000 test images, and the kernel sparsity of the three
   Dense layers is checked on the stripped models.

The table gives mean ± sample std over the seeds; raw numbers go to ``--json``.

Usage::

    python benchmarks/lenet_accuracy.py [--seeds 0 1 2] [--pretrain-epochs 5] [--epochs 8]
        [--prune-epochs 5] [--frequency 100] [--sparsities 0.9 0.95] [--batch-size 128]
        [--lr 0.001] [--json benchmarks/results/lenet_accuracy.json]
    python benchmarks/lenet_accuracy.py --pool A.json B.json ...

``--pool`` trains nothing: it reads the raw results of earlier runs with the same settings
(different seeds) and prints the table over all their seeds, with the paired differences
kprune − TFMOT, their standard error and 95 % t-interval, and the same for the two dense runs
(the framework noise floor).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import _compare as C  # noqa: E402
from _results import paired  # noqa: E402

TRAIN_SIZE = 60000


def train_data(args, seed):
    from kprune.data import load
    return load("fashion_mnist", "train", batch_size=args.batch_size, seed=seed)


def test_data(args):
    from kprune.data import load
    return load("fashion_mnist", "test", batch_size=1000, shuffle=False)


def kernel_sparsity(layers) -> float:
    """Fraction of zeros over the kernels of the given (plain) Dense layers."""
    import numpy as np
    zeros = total = 0
    for layer in layers:
        k = np.asarray(layer.get_weights()[0])
        zeros += int(np.sum(k == 0))
        total += k.size
    return zeros / total


def compile3(model, args):
    import keras
    model.compile(keras.optimizers.Adam(args.lr),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"], jit_compile=False)
    return model


def compilek(model, args):
    import tf_keras
    model.compile(tf_keras.optimizers.Adam(args.lr),
                  tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"], jit_compile=False)
    return model


def run_seed(seed, args, end_step) -> dict:
    import keras

    import kprune
    from kprune.models.lenet import lenet300_100
    tf_keras, tfmot = C.require_tfmot()

    keras.utils.set_random_seed(seed)
    base = compile3(lenet300_100((28, 28, 1), 10), args)
    t0 = time.time()
    base.fit(train_data(args, seed), epochs=args.pretrain_epochs, verbose=0)
    pre_acc = base.evaluate(test_data(args), verbose=0)[1]
    print(f"seed {seed}: dense pre-training {args.pretrain_epochs} epochs -> test accuracy "
          f"{pre_acc:.4f} ({time.time() - t0:.0f} s)", flush=True)
    out = {"pretrained": pre_acc}
    dense_names = ["fc1", "fc2", "predictions"]

    def fresh3():
        m = lenet300_100((28, 28, 1), 10)
        m.set_weights(base.get_weights())
        return m

    def freshk():
        m = C.build(tf_keras, "lenet300_100")
        C.copy_weights(base, m)
        return m

    def finish(name, acc, sparsity, t):
        out[name] = {"accuracy": acc, "sparsity": sparsity}
        print(f"seed {seed}: {name:<16} test accuracy {acc:.4f}, kernel sparsity {sparsity:.4f} "
              f"({time.time() - t:.0f} s)", flush=True)

    data_seed = seed + 1
    t = time.time()
    m = compile3(fresh3(), args)
    m.fit(train_data(args, data_seed), epochs=args.epochs, verbose=0)
    finish("dense (keras3)", m.evaluate(test_data(args), verbose=0)[1],
           kernel_sparsity([m.get_layer(n) for n in dense_names]), t)

    t = time.time()
    m = compilek(freshk(), args)
    m.fit(train_data(args, data_seed), epochs=args.epochs, verbose=0)
    finish("dense (tf_keras)", m.evaluate(test_data(args), verbose=0)[1],
           kernel_sparsity([m.get_layer(n) for n in dense_names]), t)

    for s in args.sparsities:
        t = time.time()
        m = compile3(kprune.wrap(fresh3(), C.agp_level_recipe(s, end_step, args.frequency)), args)
        m.fit(train_data(args, data_seed), epochs=args.epochs, verbose=0,
              callbacks=[kprune.PruningCallback(log_layers=False)])
        acc = m.evaluate(test_data(args), verbose=0)[1]
        stripped = kprune.strip(m)
        finish(f"kprune {s:g}", acc, kernel_sparsity([stripped.get_layer(n) for n in dense_names]), t)

        t = time.time()
        m = compilek(C.tfmot_polynomial(tfmot, freshk(), s, end_step, args.frequency), args)
        m.fit(train_data(args, data_seed), epochs=args.epochs, verbose=0,
              callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])
        acc = m.evaluate(test_data(args), verbose=0)[1]
        stripped = tfmot.sparsity.keras.strip_pruning(m)
        finish(f"tfmot {s:g}", acc, kernel_sparsity([stripped.get_layer(n) for n in dense_names]), t)
    return out


def report(runs, seeds, sparsities):
    """Prints the accuracy table over ``seeds`` and the paired differences."""
    names = [n for n in runs[seeds[0]] if n != "pretrained"]
    pre = C.mean_std([runs[s]["pretrained"] for s in seeds])
    rows = [["dense after pre-training", "0", f"{100 * pre[0]:.2f} ± {100 * pre[1]:.2f}"]]
    for n in names:
        acc = C.mean_std([runs[s][n]["accuracy"] for s in seeds])
        sp = C.mean_std([runs[s][n]["sparsity"] for s in seeds])
        rows.append([n, f"{sp[0]:.4f}", f"{100 * acc[0]:.2f} ± {100 * acc[1]:.2f}"])
    print(C.table(["variant", "kernel sparsity", f"test accuracy % (mean ± std, {len(seeds)} seeds)"], rows))
    print()
    acc = {k: {name: 100 * run[name]["accuracy"] for name in names} for k, run in runs.items()}
    for s in sparsities:
        diffs = [acc[k][f"kprune {s:g}"] - acc[k][f"tfmot {s:g}"] for k in seeds]
        print(f"kprune - tfmot at {s:g}, points: {paired(diffs)}")
    diffs = [acc[k]["dense (keras3)"] - acc[k]["dense (tf_keras)"] for k in seeds]
    print(f"dense keras3 - dense tf_keras (noise floor), points: {paired(diffs)}")
    for s in sparsities:  # each library's loss against its own framework's dense run
        diffs = [(acc[k][f"kprune {s:g}"] - acc[k]["dense (keras3)"]) - (acc[k][f"tfmot {s:g}"] - acc[k]["dense (tf_keras)"])
                 for k in seeds]
        print(f"(kprune {s:g} - dense keras3) - (tfmot {s:g} - dense tf_keras), points: {paired(diffs)}")


def pool(files):
    """Merges the ``runs`` of several raw-result files whose settings match (seeds aside)."""
    merged, first, seeds = {}, None, []
    for path in files:
        with open(path) as f:
            data = json.load(f)
        key = {k: v for k, v in data["args"].items() if k not in ("seeds", "json", "pool")}
        if first is None:
            first = (path, key, data)
        elif key != first[1]:
            raise SystemExit(f"{path}: settings {key} differ from {first[0]}'s {first[1]}")
        for seed, run in data["runs"].items():
            if seed in merged:
                raise SystemExit(f"{path}: seed {seed} is already in another file")
            merged[seed] = run
            seeds.append(seed)
        print(f"{path}: seeds {sorted(int(k) for k in data['runs'])}, kprune commit {data.get('kprune_commit', 'not recorded')}, "
              f"{data['machine']}")
    print(f"\nsettings: {first[2]['settings'].split('; seeds')[0]}; seeds {sorted(int(k) for k in seeds)}\n")
    report(merged, seeds, first[1]["sparsities"])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--pretrain-epochs", type=int, default=5)
    p.add_argument("--epochs", type=int, default=8, help="pruning + fine-tuning epochs")
    p.add_argument("--prune-epochs", type=float, default=5, help="epochs over which AGP ramps up")
    p.add_argument("--frequency", type=int, default=100, help="steps between mask updates")
    p.add_argument("--sparsities", type=float, nargs="+", default=[0.9, 0.95])
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--json", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                  "results", "lenet_accuracy.json"))
    p.add_argument("--pool", nargs="+", metavar="JSON", help="only pool these raw-result files (trains nothing)")
    args = p.parse_args(argv)
    if args.pool:
        return pool(args.pool)
    if args.prune_epochs > args.epochs:
        raise SystemExit(f"--prune-epochs ({args.prune_epochs}) must not exceed --epochs ({args.epochs})")
    warnings.filterwarnings("ignore")
    steps_per_epoch = math.ceil(TRAIN_SIZE / args.batch_size)
    end_step = int(args.prune_epochs * steps_per_epoch) // args.frequency * args.frequency
    if end_step <= 0:
        raise SystemExit("the pruning ramp is shorter than one update; raise --prune-epochs or lower --frequency")

    start = time.time()
    runs = {seed: run_seed(seed, args, end_step) for seed in args.seeds}
    settings = (f"LeNet-300-100 (266,610 params), Fashion-MNIST (60k train / 10k test, pixels in [0, 1], "
                f"no augmentation); Adam lr {args.lr}, batch {args.batch_size} ({steps_per_epoch} steps/epoch); "
                f"{args.pretrain_epochs} dense pre-training epochs shared by all variants, then {args.epochs} "
                f"epochs per variant with a fresh optimizer; AGP / PolynomialDecay 0 -> s (power 3) from step 0 "
                f"to step {end_step} every {args.frequency} steps, on the kernels of fc1, fc2 and predictions "
                f"(layerwise); seeds {args.seeds}; wall time {time.time() - start:.0f} s")
    print(f"\nmachine: {C.machine()}")
    print(f"kprune: commit {C.revision()}")
    print(f"settings: {settings}\n")
    report(runs, args.seeds, args.sparsities)
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump({"machine": C.machine(), "kprune_commit": C.revision(), "settings": settings, "args": vars(args),
                       "end_step": end_step, "runs": {str(k): v for k, v in runs.items()}}, f, indent=1)
        print(f"raw results: {args.json}")


if __name__ == "__main__":
    main()
