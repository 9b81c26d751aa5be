"""A small ViT on Fashion-MNIST: dense vs 50 % of heads + 50 % of MLP units pruned, vs scratch.

Issue 15, item 5. The model is ``kprune.models.get("vit", input_shape=(28, 28, 1))`` (patch 4 →
49 tokens, dim 64, 4 heads of 16, MLP 128, 4 pre-norm blocks; see :mod:`kprune.models.vit`).
For each seed:

1. **dense**: trained ``--epochs`` over the first ``--train-take`` training images with AdamW
   (``--lr`` peak, linear warm-up over ``--warmup-epochs`` then cosine to 0, decoupled weight
   decay ``--weight-decay``, batch ``--batch-size``, no augmentation).
2. **dense + fine-tune**: a copy of the dense model given the same fine-tuning budget as the
   pruned ones (a reference: how much the extra steps alone are worth).
3. **l1**, **taylor_fo**: on the user's path — ``kprune.wrap`` of a copy of the dense model with
   :func:`recipe` (one-shot, 50 % of the heads of every ``MultiHeadAttention``,
   ``granularity: head``, and 50 % of the units of every ``block*_mlp_up``, ``granularity:
   filter``), ``model.fit`` with ``kprune.PruningCallback`` for ``--finetune-epochs`` (the masks
   are computed at step 0; taylor_fo reads ``--calib-batches`` training batches), then
   ``kprune.compact`` (masked ≡ compacted asserted on a test batch) and
   ``kprune.export.to_tflite`` (TFLite ≡ Keras asserted, TFLite accuracy on the test set).
   Fine-tuning: AdamW, ``--finetune-lr`` cosine to 0, same weight decay, the same batches for
   every variant.
4. **scratch**: the compacted architecture re-initialised (``keras.models.clone_model`` of the
   l1 model: its config, fresh weights from the same initialisers) and trained with the dense
   recipe for ``--epochs + --finetune-epochs`` epochs — the same number of optimizer steps as
   dense training + fine-tuning, i.e. the total training the pruned models received ("Scratch-E"
   of Liu et al. 2019, *Rethinking the value of network pruning*; their "Scratch-B" would give
   the smaller model more epochs for equal FLOPs).

Test accuracy is measured on all 10,000 test images. Params and MACs are ``kprune.count``.
Latency: every variant's fp32 ``.tflite`` is timed against the dense one with
``kprune.export.compare`` (interleaved, LiteRT with XNNPACK, 1 thread, ``--runs`` timed
inferences after ``--warmup``, ``--repeats`` times, median of the per-repeat speedups),
with the process pinned to CPU ``--latency-cpu`` (``os.sched_setaffinity``) for that part
only; the 1-minute load average is recorded beside every comparison.

Results are written atomically after every variant to ``--json`` (``--resume`` keeps the
finished seeds of an earlier run and continues with the others); the tables go to stdout
and, with ``--txt``, to a text file.

Usage::

    python benchmarks/vit_heads.py [--seeds 0 1 2] [--resume]
    python benchmarks/vit_heads.py --quick          # smoke run: 1 seed, tiny data
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # benchmarks/: also when imported by a test
from _results import cpu_model, mean_std_pct

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

CRITERIA = ("l1", "taylor_fo")
DATA_CRITERIA = ("taylor_fo",)
VARIANTS = ("dense", "dense_ft", "l1", "taylor_fo", "scratch")


def recipe(criterion: str, seed: int = 0, heads: float = 0.5, mlp: float = 0.5, calib_batches: int = 10) -> dict:
    """The one-shot recipe: ``heads`` of every attention's heads and ``mlp`` of every MLP's units."""
    return {"prune": {"criterion": criterion, "scope": "layerwise", "schedule": {"name": "oneshot"},
                      "seed": int(seed), "statistics_batches": int(calib_batches),
                      "config_list": [
                          {"op_types": ["MultiHeadAttention"], "granularity": "head", "sparsity": float(heads)},
                          {"op_names_re": [r"block\d+_mlp_up"], "granularity": "filter", "sparsity": float(mlp)}]}}


def host() -> dict:
    """CPU model, core count, versions, the load average."""
    from importlib.metadata import version

    import keras
    import tensorflow as tf
    return {"cpu": cpu_model(), "nproc": os.cpu_count(), "python": platform.python_version(),
            "tensorflow": tf.__version__, "keras": keras.__version__,
            "ai_edge_litert": version("ai-edge-litert"), "loadavg": list(os.getloadavg())}


def steps_per_epoch(take: int, batch_size: int) -> int:
    return -(-take // batch_size)


def adamw(lr, steps, warmup_steps, weight_decay):
    """AdamW with linear warm-up to ``lr`` over ``warmup_steps`` then cosine to 0 at ``steps``."""
    import keras
    if warmup_steps > 0:
        schedule = keras.optimizers.schedules.CosineDecay(0.0, max(1, steps - warmup_steps), alpha=0.0,
                                                          warmup_target=lr, warmup_steps=warmup_steps)
    else:
        schedule = keras.optimizers.schedules.CosineDecay(lr, max(1, steps), alpha=0.0)
    return keras.optimizers.AdamW(schedule, weight_decay=weight_decay)


def compile_model(model, optimizer):
    import keras
    model.compile(optimizer, keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    return model


def copy_of(model):
    import keras
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    return clone


class Study:
    """One seed's runs, sharing data, the dense model and the result file."""

    def __init__(self, args, seed, test, save):
        self.args, self.seed, self.test, self.save = args, seed, test, save
        self.out = {"seed": seed, "variants": {}, "latency": [], "seconds": {}}
        self.files = {}

    def train_data(self, shift):
        from kprune.data import load
        return load("fashion_mnist", "train", batch_size=self.args.batch_size, take=self.args.train_take,
                    seed=self.seed * 1000 + shift)

    def train(self, model, epochs, shift=0):
        import keras
        a = self.args
        keras.utils.set_random_seed(self.seed * 1000 + shift)
        spe = steps_per_epoch(a.train_take, a.batch_size)
        opt = adamw(a.lr, spe * epochs, int(spe * a.warmup_epochs), a.weight_decay)
        compile_model(model, opt).fit(self.train_data(shift), epochs=epochs, verbose=0)
        return model

    def finetune(self, model, callbacks=()):
        """The fine-tuning budget every variant gets: same batches, optimizer and schedule."""
        import keras
        a = self.args
        keras.utils.set_random_seed(self.seed * 1000 + 1)
        spe = steps_per_epoch(a.train_take, a.batch_size)
        compile_model(model, adamw(a.finetune_lr, spe * a.finetune_epochs, 0, a.weight_decay))
        model.fit(self.train_data(1), epochs=a.finetune_epochs, verbose=0, callbacks=list(callbacks))
        return model

    def accuracy(self, model):
        from kprune.models.training import accuracy
        return accuracy(model, self.test)

    def record(self, name, model, seconds, **extra):
        import kprune
        c = kprune.count(model)
        row = {"accuracy": self.accuracy(model), "params": c.params, "macs": c.macs, "seconds": seconds, **extra}
        self.out["variants"][name] = row
        self.save(self.out)
        print(f"seed {self.seed}: {name:<10} acc {row['accuracy']:.4f}  params {c.params:,}  MACs {c.macs:,}  "
              f"({seconds:.0f} s)", flush=True)
        return row

    def export(self, name, model, folder):
        """fp32 TFLite; its outputs equal Keras' on a test batch, its accuracy on the test set."""
        import numpy as np
        from kprune.export import evaluate_tflite, predict_tflite, to_tflite
        path = to_tflite(model, os.path.join(folder, f"vit_{name}_seed{self.seed}.tflite")).path
        x = self.test[0][0][:64]
        np.testing.assert_allclose(predict_tflite(path, x, threads=1), np.asarray(model(x, training=False)),
                                   rtol=1e-4, atol=1e-4)
        self.files[name] = path
        return evaluate_tflite(path, self.test, threads=1)

    def prune(self, crit, dense, calib, folder):
        import numpy as np

        import kprune
        t = time.time()
        wrapped = kprune.wrap(copy_of(dense), recipe(crit, self.seed, self.args.heads, self.args.mlp,
                                                     self.args.calib_batches))
        callback = kprune.PruningCallback(data=calib if crit in DATA_CRITERIA else None)
        self.finetune(wrapped, [callback])
        if callback.pruner.skipped:
            raise RuntimeError(f"{crit}: layers skipped by the pruner: {callback.pruner.skipped}")
        masked_acc = self.accuracy(wrapped)
        small = kprune.compact(wrapped)
        x = self.test[0][0][:256]
        np.testing.assert_allclose(np.asarray(small(x, training=False)), np.asarray(wrapped(x, training=False)),
                                   rtol=1e-5, atol=1e-5)  # masked ≡ compacted
        arch = {"heads": [small.get_layer(f"block{i}_attn").num_heads for i in range(1, self.args.depth + 1)],
                "mlp_units": [small.get_layer(f"block{i}_mlp_up").units for i in range(1, self.args.depth + 1)]}
        tfl = self.export(crit, small, folder)
        self.record(crit, small, time.time() - t, accuracy_masked=masked_acc, accuracy_tflite=tfl, **arch)
        return small

    def latency(self):
        """Each variant's TFLite file against the dense one, interleaved, pinned to one CPU."""
        from kprune.export import compare
        a = self.args
        pinned = None
        try:
            before = os.sched_getaffinity(0)
            os.sched_setaffinity(0, {a.latency_cpu})
            pinned = a.latency_cpu
        except (AttributeError, OSError):
            before = None
        try:
            for name in ("l1", "taylor_fo", "scratch"):
                for repeat in range(a.repeats):
                    c = compare(self.files["dense"], self.files[name], threads=1, runs=a.runs, warmup=a.warmup)
                    row = {"variant": name, "repeat": repeat, "dense_ms": c.a.median_ms, "ms": c.b.median_ms,
                           "speedup": c.speedup, "cpu": pinned, "loadavg": list(os.getloadavg())}
                    self.out["latency"].append(row)
                    print(f"seed {self.seed}: latency dense {c.a.median_ms:.4f} ms  {name} {c.b.median_ms:.4f} ms  "
                          f"speedup {c.speedup:.3f}  (CPU {pinned}, load {row['loadavg'][0]:.2f})", flush=True)
        finally:
            if before is not None:
                os.sched_setaffinity(0, before)
        self.save(self.out)

    def run(self, folder):
        import keras

        import kprune
        from kprune.data import calibration_batches
        a = self.args
        t = time.time()
        keras.utils.set_random_seed(self.seed)
        dense = kprune.models.get("vit", input_shape=(28, 28, 1), num_classes=10, depth=a.depth)
        self.train(dense, a.epochs)
        tfl = self.export("dense", dense, folder)
        self.record("dense", dense, time.time() - t, accuracy_tflite=tfl)
        t = time.time()
        self.record("dense_ft", self.finetune(copy_of(dense)), time.time() - t)
        calib = calibration_batches(self.train_data(7), a.calib_batches)
        small = None
        for crit in CRITERIA:
            small = self.prune(crit, dense, calib, folder)
        t = time.time()
        keras.utils.set_random_seed(self.seed + 100)
        scratch = keras.models.clone_model(small)  # the compacted architecture, fresh weights
        self.train(scratch, a.epochs + a.finetune_epochs, shift=2)
        tfl = self.export("scratch", scratch, folder)
        self.record("scratch", scratch, time.time() - t, accuracy_tflite=tfl)
        t = time.time()
        self.latency()
        self.out["seconds"]["latency"] = time.time() - t
        self.out["done"] = True
        self.save(self.out)
        return self.out


def summarize(seeds) -> list[dict]:
    """Per variant: accuracy mean ± std over seeds, counts, latency and speedup vs dense."""
    rows = []
    dense_macs = seeds[0]["variants"]["dense"]["macs"]
    for name in VARIANTS:
        runs = [s["variants"][name] for s in seeds if name in s["variants"]]
        if not runs:
            continue
        lat = [r for s in seeds for r in s["latency"] if r["variant"] == name]
        # per seed: median over repeats of the interleaved speedup; then mean over seeds
        per_seed = [statistics.median([r["speedup"] for r in s["latency"] if r["variant"] == name])
                    for s in seeds if any(r["variant"] == name for r in s["latency"])]
        dense_ms = [r["dense_ms"] for s in seeds for r in s["latency"]]
        row = {"variant": name, "accuracies": [r["accuracy"] for r in runs], "params": runs[0]["params"],
               "macs": runs[0]["macs"], "mac_reduction": dense_macs / runs[0]["macs"]}
        if name in ("dense", "dense_ft"):
            row.update(ms=statistics.median(dense_ms) if dense_ms else None, speedup=1.0 if dense_ms else None)
        else:
            row.update(ms=statistics.median([r["ms"] for r in lat]) if lat else None,
                       speedup=statistics.fmean(per_seed) if per_seed else None,
                       speedup_std=statistics.stdev(per_seed) if len(per_seed) > 1 else 0.0)
        if row["speedup"] is not None:
            row["speedup_per_mac_reduction"] = row["speedup"] / row["mac_reduction"]
        rows.append(row)
    return rows


LABELS = {"dense": "dense", "dense_ft": "dense + same fine-tune", "l1": "pruned l1 + fine-tune",
          "taylor_fo": "pruned taylor_fo + fine-tune", "scratch": "compacted arch. from scratch"}


def table(results) -> str:
    seeds = [s for s in results["seeds"] if s.get("done")]
    if not seeds:
        return "(no finished seed)"
    rows = summarize(seeds)
    n_test = results["settings"]["test_take"]
    header = (f"{len(seeds)} seeds ({', '.join(str(s['seed']) for s in seeds)}); test accuracy on {n_test:,} "
              "test images, mean ± std; latency: fp32 TFLite, LiteRT + XNNPACK, 1 thread, median ms; speedup: "
              "dense ms ÷ variant ms, interleaved, mean over seeds of the median of repeats")
    columns = ("| variant | test acc. (%) | params | MACs | TFLite ms | speedup vs dense | MAC reduction | "
               "speedup ÷ MAC reduction |")
    lines = [header, "", columns, "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ms = f"{r['ms']:.4f}" if r.get("ms") is not None else "–"
        sp = "–" if r.get("speedup") is None else (
            "1 (reference)" if r["variant"] in ("dense", "dense_ft") else f"{r['speedup']:.3f} ± {r['speedup_std']:.3f}")
        ratio = "–" if r.get("speedup") is None or r["variant"] in ("dense", "dense_ft") else \
            f"{r['speedup_per_mac_reduction']:.3f}"
        lines.append(f"| {LABELS[r['variant']]} | {mean_std_pct(r['accuracies'])} | {r['params']:,} | "
                     f"{r['macs']:,} | {ms} | {sp} | {r['mac_reduction']:.3f} | {ratio} |")
    extra = []
    for name in CRITERIA:
        masked = [s["variants"][name]["accuracy_masked"] for s in seeds]
        tfl = [s["variants"][name]["accuracy_tflite"] for s in seeds]
        extra.append(f"{name}: masked model {mean_std_pct(masked)} %, TFLite {mean_std_pct(tfl)} %; "
                     f"heads per block {seeds[0]['variants'][name]['heads']}, "
                     f"MLP units per block {seeds[0]['variants'][name]['mlp_units']}")
    loads = [r["loadavg"][0] for s in seeds for r in s["latency"]]
    extra.append(f"1-minute load average during the latency runs: {min(loads):.2f}–{max(loads):.2f}")
    return "\n".join(lines + [""] + extra)


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--train-take", type=int, default=60000)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--warmup-epochs", type=float, default=0.5)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--finetune-epochs", type=int, default=1)
    p.add_argument("--finetune-lr", type=float, default=5e-4)
    p.add_argument("--heads", type=float, default=0.5, help="fraction of heads pruned in every attention")
    p.add_argument("--mlp", type=float, default=0.5, help="fraction of units pruned in every MLP")
    p.add_argument("--calib-batches", type=int, default=10)
    p.add_argument("--test-take", type=int, default=10000)
    p.add_argument("--runs", type=int, default=500)
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--latency-cpu", type=int, default=1)
    p.add_argument("--tflite-dir", default="/tmp/kprune_vit_heads")
    p.add_argument("--resume", action="store_true", help="keep the finished seeds of --json and run the others")
    p.add_argument("--quick", action="store_true", help="smoke run: 1 seed, tiny data")
    p.add_argument("--json", default="benchmarks/results/vit_heads.json")
    p.add_argument("--txt", default=None, help="also write the tables here (default: --json with .txt)")
    args = p.parse_args(argv)
    if args.quick:
        args.seeds, args.train_take, args.epochs, args.test_take = [0], 512, 1, 500
        args.calib_batches, args.runs, args.warmup, args.repeats = 2, 20, 5, 1
        args.json = args.json.replace(".json", "_quick.json")
    args.txt = args.txt or args.json[:-len(".json")] + ".txt"
    return args


def main(argv=None) -> int:
    args = parse(argv)
    from kprune.data import calibration_batches, load
    from kprune.io import atomic_write_bytes, atomic_write_json

    start = host()
    print(f"machine: {start}", flush=True)
    t0 = time.time()
    settings = {k: v for k, v in vars(args).items() if k not in ("resume", "json", "txt", "tflite_dir")}
    settings["optimizer"] = "AdamW (keras.optimizers.AdamW), linear warm-up then cosine to 0"
    settings["recipe"] = recipe("<criterion>", 0, args.heads, args.mlp, args.calib_batches)
    results = {"benchmark": "vit_heads", "settings": settings, "machine": start, "seeds": []}
    if args.resume and os.path.exists(args.json):
        with open(args.json) as f:
            old = json.load(f)
        results["seeds"] = [s for s in old.get("seeds", []) if s.get("done") and s["seed"] in args.seeds]
        results["wall_seconds_before_resume"] = old.get("wall_seconds")
        print(f"resume: seeds {[s['seed'] for s in results['seeds']]} already done", flush=True)
    test = calibration_batches(load("fashion_mnist", "test", batch_size=1000, shuffle=False, take=args.test_take),
                               -(-args.test_take // 1000))

    def save(partial=None):
        seeds = [s for s in results["seeds"] if s is not partial] + ([partial] if partial is not None else [])
        atomic_write_json(args.json, dict(results, seeds=seeds, loadavg_now=list(os.getloadavg()),
                                          wall_seconds=time.time() - t0))

    os.makedirs(args.tflite_dir, exist_ok=True)
    for seed in args.seeds:
        if any(s["seed"] == seed for s in results["seeds"]):
            continue
        ts = time.time()
        out = Study(args, seed, test, save).run(args.tflite_dir)
        out["seconds"]["total"] = time.time() - ts
        results["seeds"].append(out)
        save()
        print(f"seed {seed} done in {out['seconds']['total']:.0f} s", flush=True)
    results["loadavg_after"] = list(os.getloadavg())
    save()
    text = table(results)
    print()
    print(text)
    atomic_write_bytes(args.txt, (text + f"\n\nwall time {(time.time() - t0) / 60:.1f} min (this invocation); "
                                  f"load before: {start['loadavg']}; after: {results['loadavg_after']}\n").encode())
    print(f"\nwall time {(time.time() - t0) / 60:.1f} min; raw JSON: {args.json}; tables: {args.txt}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
