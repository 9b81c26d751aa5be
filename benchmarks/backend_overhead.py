"""Training overhead of kprune's wrappers on the JAX and PyTorch backends, with TensorFlow beside them.

Keras fixes its backend at import, so each backend runs in its own subprocess (``--worker``).
In each, four variants of one small CNN train with ``model.fit`` on the same Fashion-MNIST
batches (the local copy, read with numpy; the JAX and PyTorch workers cannot import
TensorFlow), from the same initial weights:

* ``plain``: the Keras model;
* ``oneshot``: ``kprune.wrap`` (level criterion, weight granularity, every Conv2D/Dense kernel
  at ``--sparsity``) + ``kprune.PruningCallback``, one-shot: masks set at step 0 (in the
  warm-up epoch), so the timed epochs cost only the wrappers and the mask constraints;
* ``agp_epoch``: AGP from step 0 to the last step, masks recomputed once per epoch;
* ``agp_step``: the same, masks recomputed at every step (the worst case).

Each variant runs ``1 + --epochs`` epochs of ``--steps`` batches; the first (tracing and
compilation) is not timed; seconds per epoch are wall clock from ``on_epoch_begin`` to
``on_epoch_end`` (every callback included). ``--rounds`` rounds run the variants in rotating
order; the table gives the median over all timed epochs and the range, and three ratios to
``plain``: of the medians, paired within each round (median and range over rounds; this one
cancels load that changes between rounds on a shared machine), and of the minima. JAX compiles the train
step with XLA (Keras' default there), PyTorch runs eagerly (Keras' default there: no
``torch.compile``); TensorFlow runs with ``jit_compile=False``, as
``benchmarks/wrap_overhead.py`` does, so that the compiled in-step mask update applies.

Usage::

    python benchmarks/backend_overhead.py [--backends jax torch tensorflow] [--rounds 2] [--epochs 3]
        [--steps 50] [--batch-size 128] [--sparsity 0.8] [--json benchmarks/results/backend_overhead.json]
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

VARIANTS = ("plain", "oneshot", "agp_epoch", "agp_step")


def cnn3(keras):
    L = keras.layers
    x = keras.Input((28, 28, 1))
    h = L.Conv2D(32, 3, activation="relu", name="conv1")(x)
    h = L.MaxPooling2D()(h)
    h = L.Conv2D(64, 3, activation="relu", name="conv2")(h)
    h = L.MaxPooling2D()(h)
    h = L.Conv2D(64, 3, activation="relu", name="conv3")(h)
    h = L.Flatten()(h)
    return keras.Model(x, L.Dense(10, name="fc")(h))


class _NoTensorFlow:
    """A ``sys.meta_path`` finder and loader that makes TensorFlow unimportable (the JAX and
    PyTorch workers run as on a machine without it; Keras would otherwise import it, when
    installed, in ``get_config``). It finds a spec without a file, so ``importlib.util.find_spec``
    probes (PyTorch's dynamo makes one for every library it knows) still succeed, and fails on load."""

    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            import importlib.machinery
            return importlib.machinery.ModuleSpec(name, self)
        return None

    def create_module(self, spec):
        raise ModuleNotFoundError(f"No module named {spec.name!r} (blocked in the {os.environ.get('KERAS_BACKEND')} "
                                  "worker)", name=spec.name)

    def exec_module(self, module):  # never reached
        raise ModuleNotFoundError(module.__name__)


def worker(args) -> dict:
    if args.worker != "tensorflow":
        sys.meta_path.insert(0, _NoTensorFlow())
    import numpy as np
    import keras

    import kprune
    from kprune.data.local import local_arrays

    found = local_arrays("fashion_mnist", "train")
    if found is None:
        raise SystemExit("needs the local Fashion-MNIST copy (/usr/share/datasets/fashion-mnist or KPRUNE_DATA_DIR)")
    n = args.steps * args.batch_size
    x = found[0][:n].astype("float32") / 255.0
    y = found[1][:n].astype("int32")
    total = (1 + args.epochs) * args.steps
    keras.utils.set_random_seed(0)
    initial = cnn3(keras).get_weights()

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds = []

        def on_epoch_begin(self, epoch, logs=None):
            self._t = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self._t)

    def build(variant):
        model = cnn3(keras)
        model.set_weights(initial)
        if variant == "plain":
            return model, []
        schedule = ({"name": "oneshot"} if variant == "oneshot" else
                    {"name": "agp", "start_step": 0, "end_step": total - 1,
                     "frequency": args.steps if variant == "agp_epoch" else 1})
        wrapped = kprune.wrap(model, {"prune": {"criterion": "level", "granularity": "weight", "schedule": schedule,
                                                "config_list": [{"op_types": ["Conv2D", "Dense"],
                                                                 "sparsity": args.sparsity}]}})
        return wrapped, [kprune.PruningCallback()]

    jit = {"jit_compile": False} if keras.backend.backend() == "tensorflow" else {}
    times = {v: [] for v in VARIANTS}
    per_round = {v: [] for v in VARIANTS}  # each round's timed epochs, for paired ratios
    reached = {}
    for r in range(args.rounds):
        order = VARIANTS[r % len(VARIANTS):] + VARIANTS[:r % len(VARIANTS)]
        for variant in order:
            model, callbacks = build(variant)
            model.compile(keras.optimizers.Adam(1e-3),
                          keras.losses.SparseCategoricalCrossentropy(from_logits=True), **jit)
            timer = EpochTimer()
            model.fit(x, y, batch_size=args.batch_size, epochs=1 + args.epochs, shuffle=False, verbose=0,
                      callbacks=callbacks + [timer])
            times[variant] += timer.seconds[1:]
            per_round[variant].append(timer.seconds[1:])
            if variant != "plain":
                reached[variant] = round(float(kprune.sparsity(model)["total"]), 4)
    from _results import backend_versions
    return {"backend": keras.backend.backend(), "keras": keras.__version__, **backend_versions(),
            "jit_compile": model.jit_compile, "seconds_per_epoch": times, "per_round": per_round, "sparsity_reached": reached,
            "tensorflow_imported": "tensorflow" in sys.modules}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--backends", nargs="+", default=["jax", "torch", "tensorflow"], choices=("jax", "torch", "tensorflow"))
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--sparsity", type=float, default=0.8)
    p.add_argument("--json", default=None)
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print("RESULT " + json.dumps(worker(args)))
        return
    load_before = os.getloadavg()
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    results = {"args": {k: v for k, v in vars(args).items() if k != "worker"}, "started": started,
               "machine": {"nproc": os.cpu_count(), "python": platform.python_version()}, "backends": {}}
    for backend in args.backends:
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", backend] + sum(
            ([f"--{k.replace('_', '-')}", str(v)] for k, v in vars(args).items()
             if k in ("rounds", "epochs", "steps", "batch_size", "sparsity")), [])
        t0 = time.perf_counter()
        out = subprocess.run(cmd, env=dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2"),
                             capture_output=True, text=True)
        line = next((l for l in out.stdout.splitlines() if l.startswith("RESULT ")), None)
        if out.returncode != 0 or line is None:
            raise SystemExit(f"{backend} worker failed:\n{out.stderr[-4000:]}")
        got = json.loads(line[len("RESULT "):])
        got["wall_s"] = round(time.perf_counter() - t0, 1)
        results["backends"][backend] = got
    print(f"started {started}; {args.rounds} rounds x {args.epochs} timed epochs of {args.steps} batches of "
          f"{args.batch_size}; level/weight at {args.sparsity}\n")
    print("| backend | variant | s/epoch (median) | min-max | / plain (medians) | / plain (paired by round: "
          "median, min-max) | / plain (minima) | sparsity reached |")
    print("|---|---|---|---|---|---|---|---|")
    for backend, got in results["backends"].items():
        base = statistics.median(got["seconds_per_epoch"]["plain"])
        base_min = min(got["seconds_per_epoch"]["plain"])
        got["median"], got["paired_ratio"] = {}, {}
        for v in VARIANTS:
            s = got["seconds_per_epoch"][v]
            med = statistics.median(s)
            # the same round's plain fit ran minutes apart at most: the ratio of the two medians
            ratios = [statistics.median(a) / statistics.median(b)
                      for a, b in zip(got["per_round"][v], got["per_round"]["plain"])]
            got["median"][v], got["paired_ratio"][v] = med, ratios
            print(f"| {backend} | {v} | {med:.3f} | {min(s):.3f}-{max(s):.3f} | {med / base:.2f} | "
                  f"{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f}) | {min(s) / base_min:.2f} | "
                  f"{got['sparsity_reached'].get(v, '-')} |")
    for backend, got in results["backends"].items():
        print(f"\n{backend}: keras {got['keras']}, jit_compile={got['jit_compile']}, "
              f"tensorflow imported: {got['tensorflow_imported']}, worker wall {got['wall_s']} s"
              + "".join(f", {k} {got[k]}" for k in ("jax", "torch", "tensorflow") if k in got))
    if args.json:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from _results import write_json
        write_json(args.json, results, load_before)


if __name__ == "__main__":
    main()
