"""Training overhead of kprune's mask wrappers, against plain Keras and TFMOT.

Four variants of one architecture, trained with ``model.fit`` in one process:

* ``keras3``: the plain Keras 3 model;
* ``kprune``: the same model after ``kprune.wrap`` (level criterion, every Conv2D/Dense, target
  ``--sparsity``), masks recomputed by AGP
  (``{name: agp, start_step: 0, end_step: N, frequency: F}``) through ``kprune.PruningCallback``;
* ``tf_keras``: the identical model in legacy tf_keras (TFMOT's own baseline);
* ``tfmot``: that tf_keras model under ``tfmot.sparsity.keras.prune_low_magnitude`` with
  ``PolynomialDecay(0, sparsity, begin_step=0, end_step=N, frequency=F)`` and
  ``UpdatePruningStep``.

F is each of ``--frequency`` (default 1, masks recomputed at **every** step, the worst case,
and 100, TFMOT's default).

N is the total number of training steps each model sees, so masks change at every step of
the benchmark. All four start from the same weights, train on the same Fashion-MNIST batches
(cached in memory) with Adam and ``jit_compile=False``. Each model is first traced by a short
fit; then ``--rounds`` rounds run each variant (in rotating order) for ``--warmup`` +
``--steps`` steps, and steps/s is timed over the last ``--steps`` steps (wall clock between
batch ends, which includes every callback). The table gives the median over rounds and the
ratios of time per step, with min-max over rounds.

Usage::

    python benchmarks/wrap_overhead.py [--arch cnn3 lenet300_100] [--batch-size 128]
        [--rounds 5] [--warmup 10] [--steps 100] [--frequency 1 100]
        [--threads 0] [--profile]

``--profile`` additionally runs cProfile over the kprune variant and prints where the
per-step time outside the compiled train step goes.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import statistics
import sys
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import _compare as C  # noqa: E402


def timer_class(base):
    """A callback class (subclass of ``base``) that records the time at each batch end."""

    class BatchTimer(base):
        def __init__(self):
            super().__init__()
            self.times = []

        def on_train_batch_end(self, batch, logs=None):
            self.times.append(time.perf_counter())

    return BatchTimer


def dataset(batch_size: int, batches: int):
    """Real Fashion-MNIST batches, cached and repeated (identical for every variant)."""
    from kprune.data import load
    return load("fashion_mnist", "train", batch_size=batch_size, shuffle=False,
                take=batch_size * batches).cache().repeat()


def make_variants(arch: str, sparsity: float, total_steps: int, frequency: int):
    import keras
    import tensorflow as tf

    import kprune
    tf_keras, tfmot = C.require_tfmot()

    base = C.build(keras, arch, seed=0)
    plain = C.build(keras, arch, seed=0)
    C.copy_weights(base, plain)
    recipe = {"prune": {"criterion": "level", "granularity": "weight", "scope": "layerwise",
                        "schedule": {"name": "agp", "start_step": 0, "end_step": total_steps,
                                     "frequency": frequency},
                        "config_list": [{"op_types": ["Conv2D", "Dense"], "sparsity": sparsity}]}}
    wrapped = kprune.wrap(base, recipe)
    tk_plain = C.build(tf_keras, arch)
    C.copy_weights(base, tk_plain)
    tk_base = C.build(tf_keras, arch)
    C.copy_weights(base, tk_base)
    sched = tfmot.sparsity.keras.PolynomialDecay(initial_sparsity=0.0, final_sparsity=sparsity,
                                                 begin_step=0, end_step=total_steps,
                                                 frequency=frequency)
    tk_pruned = tfmot.sparsity.keras.prune_low_magnitude(tk_base, pruning_schedule=sched)

    loss3 = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    for m in (plain, wrapped):
        m.compile(keras.optimizers.Adam(1e-3), loss3, jit_compile=False)
    lossk = tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    for m in (tk_plain, tk_pruned):
        m.compile(tf_keras.optimizers.Adam(1e-3), lossk, jit_compile=False)

    T3, Tk = timer_class(keras.callbacks.Callback), timer_class(tf_keras.callbacks.Callback)
    prune_cb = timed_pruning_callback(kprune.PruningCallback)(log_layers=False)
    tfmot_cb = tfmot.sparsity.keras.UpdatePruningStep()
    return {
        "keras3": (plain, T3, []),
        "kprune": (wrapped, T3, [prune_cb]),
        "tf_keras": (tk_plain, Tk, []),
        "tfmot": (tk_pruned, Tk, [tfmot_cb]),
    }, tf


def timed_pruning_callback(base):
    """``base`` (PruningCallback) with the host time of each ``on_train_batch_begin`` recorded."""

    class TimedPruningCallback(base):
        host_s = []

        def on_train_batch_begin(self, batch, logs=None):
            t = time.perf_counter()
            super().on_train_batch_begin(batch, logs)
            self.host_s.append(time.perf_counter() - t)

    return TimedPruningCallback


def run_once(model, timer_cls, extra, ds, steps: int):
    timer = timer_cls()
    model.fit(ds, epochs=1, steps_per_epoch=steps, verbose=0, callbacks=list(extra) + [timer])
    return timer.times


def profile_kprune(model, timer_cls, extra, ds, steps: int) -> str:
    prof = cProfile.Profile()
    prof.enable()
    run_once(model, timer_cls, extra, ds, steps)
    prof.disable()
    buf = io.StringIO()
    stats = pstats.Stats(prof, stream=buf).sort_stats("cumulative")
    stats.print_stats(r"kprune|numpy", 25)
    return buf.getvalue()


def measured_sparsity(name, model) -> float:
    import numpy as np
    if name == "kprune":
        import kprune
        return kprune.sparsity(model)["total"]
    zeros = total = 0
    for w in model.weights:
        if "kernel" in w.name and "mask" not in w.name:
            v = np.asarray(w.numpy())
            zeros += int(np.sum(v == 0))
            total += v.size
    return zeros / total


def bench_arch(arch, frequency, args) -> dict:
    trace_steps = 5
    # every step of the benchmark (profile run included) lies inside the pruning schedule
    total = trace_steps + (args.rounds + int(args.profile)) * (args.warmup + args.steps)
    variants, tf = make_variants(arch, args.sparsity, total, frequency)
    ds = dataset(args.batch_size, 50)
    for name, (model, tcls, extra) in variants.items():  # trace the train functions
        run_once(model, tcls, extra, ds, trace_steps)
    names = list(variants)
    rates = {n: [] for n in names}     # mean steps/s over the timed window, per round
    medians = {n: [] for n in names}   # median step time (ms) over the timed window, per round
    host_ms = []                       # kprune callback host time per timed step (ms), per round
    for r in range(args.rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            model, tcls, extra = variants[name]
            if name == "kprune":
                extra[0].host_s.clear()
            t = run_once(model, tcls, extra, ds, args.warmup + args.steps)
            rates[name].append(args.steps / (t[-1] - t[args.warmup - 1]))
            medians[name].append(1e3 * statistics.median(
                [b - a for a, b in zip(t[args.warmup - 1:-1], t[args.warmup:])]))
            if name == "kprune":
                host_ms.append(1e3 * statistics.fmean(extra[0].host_s[args.warmup:]))
        print(f"  {arch} frequency {frequency} round {r + 1}/{args.rounds}: "
              + ", ".join(f"{n} {rates[n][-1]:.1f}" for n in names), flush=True)
    result = {"arch": arch, "frequency": frequency, "steps_per_s": rates, "median_step_ms": medians,
              "kprune_callback_ms_per_step": host_ms,
              "sparsity_reached": {n: measured_sparsity(n, variants[n][0]) for n in ("kprune", "tfmot")}}
    if args.profile:
        model, tcls, extra = variants["kprune"]
        result["profile"] = profile_kprune(model, tcls, extra, ds, args.warmup + args.steps)
    return result


def ratio_cells(a, b, times: bool):
    """Median over paired rounds of A's time per step over B's, with its min-max.

    ``times``: the lists hold times per step (else rates, steps/s)."""
    ratios = [x / y if times else y / x for x, y in zip(a, b)]
    return f"{statistics.median(ratios):.3f} ({min(ratios):.3f}-{max(ratios):.3f})"


def report(results) -> str:
    """The two Markdown tables: median step time (robust) and mean throughput (amortized)."""
    n4 = ("keras3", "kprune", "tf_keras", "tfmot")
    rows_med, rows_mean = [], []
    for res in results:
        m, r = res["median_step_ms"], res["steps_per_s"]
        host = statistics.median(res["kprune_callback_ms_per_step"])
        rows_med.append([res["arch"], res["frequency"]] + [f"{statistics.median(m[n]):.2f}" for n in n4]
                        + [ratio_cells(m["kprune"], m["keras3"], True), ratio_cells(m["tfmot"], m["tf_keras"], True),
                           ratio_cells(m["kprune"], m["tfmot"], True)])
        rows_mean.append([res["arch"], res["frequency"]] + [f"{statistics.median(r[n]):.1f}" for n in n4]
                         + [ratio_cells(r["kprune"], r["keras3"], False), ratio_cells(r["tfmot"], r["tf_keras"], False),
                            ratio_cells(r["kprune"], r["tfmot"], False), f"{host:.2f}"])
    ratios = ["kprune / keras3", "tfmot / tf_keras", "kprune / tfmot"]
    return "\n".join([
        "Median time per step (ms; robust to preemption, but at frequency > 1 it leaves out the "
        "rare update steps):", "",
        C.table(["model", "frequency"] + [f"{n} ms" for n in n4] + ratios, rows_med), "",
        "Mean throughput over the timed window (steps/s; every step counted, update steps included):", "",
        C.table(["model", "frequency"] + [f"{n} steps/s" for n in n4] + ratios
                + ["kprune callback ms/step"], rows_mean), "",
        "Ratios are of time per step, paired within a round: median over rounds (min-max); < 1 means "
        "the first is faster. 'kprune callback ms/step' is the host time spent in "
        "PruningCallback.on_train_batch_begin per timed step (median over rounds of the mean)."])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--arch", nargs="+", default=["cnn3", "lenet300_100"])
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--sparsity", type=float, default=0.8)
    p.add_argument("--frequency", type=int, nargs="+", default=[1, 100],
                   help="steps between mask updates (1: every step; 100: TFMOT's default)")
    p.add_argument("--threads", type=int, default=0, help="TF intra-op threads (0: TF default)")
    p.add_argument("--profile", action="store_true")
    p.add_argument("--json", default=None, help="also write raw results to this file")
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore")
    import tensorflow as tf
    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    results = [bench_arch(a, f, args) for a in args.arch for f in args.frequency]

    print(f"\nmachine: {C.machine()}")
    print(f"kprune: commit {C.revision()}")
    print(f"settings: batch {args.batch_size}, {args.rounds} rounds x ({args.warmup} warm-up + "
          f"{args.steps} timed steps) per variant, interleaved; AGP/PolynomialDecay from 0 to "
          f"{args.sparsity:.0%} over all the steps a model trains, masks updated every `frequency` "
          f"steps; Adam, jit_compile=False; "
          f"intra-op threads {args.threads or 'TF default'}\n")
    print(report(results))
    for res in results:
        print(f"{res['arch']}, frequency {res['frequency']}: kernel sparsity at the end: kprune {res['sparsity_reached']['kprune']:.3f}, "
              f"tfmot {res['sparsity_reached']['tfmot']:.3f}")
        if "profile" in res:
            print(f"\ncProfile of the kprune variant ({res['arch']}, frequency {res['frequency']}, {args.warmup + args.steps} steps):\n")
            print(res["profile"])
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump({"machine": C.machine(), "kprune_commit": C.revision(), "args": vars(args),
                       "results": [{k: v for k, v in r.items() if k != "profile"} for r in results]},
                      f, indent=1)


if __name__ == "__main__":
    main()
