"""Time ``kprune.groups`` and ``kprune.compact`` on keras.applications models at 224x224.

Each model (``weights=None``) gets dependency-aware L1 filter zeroing of 30 % of every
prunable channel group (what filter masks do), then ``groups(model)`` and
``compact(model)`` are timed (best of ``--repeats`` runs, wall clock). The compacted model is
checked against the masked one on one random image.

Usage::

    python benchmarks/surgery_time.py [--models ResNet50 EfficientNetB0] [--repeats 3] [--out FILE.json]

Prints a markdown table and writes the rows, the host and the 1-minute load average before
and after to ``--out`` (default ``benchmarks/results/surgery_time.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from kprune.graph.analysis import groups  # noqa: E402
from kprune.graph.masks import zero_channels  # noqa: E402
from kprune.graph.surgery import compact  # noqa: E402


def zero_l1(model, fraction: float, gs) -> None:
    """Zero the ``fraction`` lowest-L1 channels of every prunable group (dependency-aware)."""
    for g in gs:
        if not g.prunable or g.size < 2:
            continue
        score = np.zeros(g.size)
        for m in g.producers:
            rows = np.moveaxis(keras.ops.convert_to_numpy(m.variable()), m.axis, 0)[m.index]
            score += np.abs(rows.reshape(g.size, -1)).sum(axis=1)
        n = min(int(round(fraction * g.size)), g.size - 1)
        keep = np.ones(g.size, bool)
        keep[np.argsort(score)[:n]] = False
        zero_channels(g, keep)


def best_of(fn, repeats: int):
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["ResNet50", "EfficientNetB0"])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results/surgery_time.json")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    rows = []
    print(f"# host: {platform.processor() or platform.machine()}, cpus visible: {os.cpu_count()}, "
          f"keras {keras.__version__}, python {platform.python_version()}, "
          f"1-min load average at start: {os.getloadavg()[0]:.1f}")
    print("| model | input | layers | groups | prunable | groups() s | compact() s | params before | params after | max abs diff | max abs output |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name in args.models:
        model = getattr(keras.applications, name)(weights=None, input_shape=(args.size, args.size, 3),
                                                  classifier_activation=None)
        gs = groups(model)
        zero_l1(model, 0.3, gs)
        t_groups, gs = best_of(lambda: groups(model), args.repeats)
        t_compact, small = best_of(lambda: compact(model), args.repeats)
        x = np.random.default_rng(0).normal(size=(1, args.size, args.size, 3)).astype("float32")
        y0 = keras.ops.convert_to_numpy(model(x, training=False))
        diff = float(np.max(np.abs(y0 - keras.ops.convert_to_numpy(small(x, training=False)))))
        print(f"| {name} | {args.size}x{args.size} | {len(model.layers)} | {len(gs)} | "
              f"{sum(g.prunable for g in gs)} | {t_groups:.2f} | {t_compact:.2f} | "
              f"{model.count_params():,} | {small.count_params():,} | {diff:.2e} | "
              f"{float(np.max(np.abs(y0))):.2e} |", flush=True)
        rows.append({"model": name, "input": args.size, "layers": len(model.layers), "groups": len(gs),
                     "prunable": sum(g.prunable for g in gs), "groups_s": t_groups, "compact_s": t_compact,
                     "params_before": model.count_params(), "params_after": small.count_params(), "max_abs_diff": diff})
    load_after = os.getloadavg()
    print(f"\n1-minute load average before/after: {load_before[0]:.2f} / {load_after[0]:.2f}")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as handle:
        json.dump({"args": vars(args), "host": {"machine": platform.machine(), "cpus": os.cpu_count(),
                   "keras": keras.__version__, "python": platform.python_version()},
                   "loadavg_before": load_before, "loadavg_after": load_after, "rows": rows}, handle, indent=1)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
