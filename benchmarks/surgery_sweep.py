"""keras.applications sweep: zero 30 % of channels per group, compact, compare, convert.

For every architecture (``weights=None``, smallest input it accepts, logits output): BN
statistics and affine parameters are randomized, 30 % of every prunable channel group is
zeroed by L1 rank (dependency-aware, as filter masks do), ``compact`` rebuilds the model,
the outputs of both are compared in inference mode, params and MACs must drop, and the
compacted model must convert to TFLite. When the whole sweep runs, the table is written to
``docs/surgery_sweep.md``.

Usage::

    python benchmarks/surgery_sweep.py [--models VGG16 ResNet50 ...]

The table is written to ``docs/surgery_sweep.md`` when every architecture ran; the script
exits 1 if any architecture failed a check. (This bypasses ``wrap`` and ``fit``: it checks the
surgery alone; the user's whole path is covered by the coverage sweep.)
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time

import keras
import numpy as np

# the helpers that zero filters and randomize BatchNorm are shared with the surgery tests
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "graph"))
from surgery_utils import random_filter_zeroing, randomize_batchnorm  # noqa: E402

from kprune.counting import count  # noqa: E402
from kprune.graph import compact, groups  # noqa: E402

SPECS = [
    ("VGG16", 32), ("ResNet50", 32), ("ResNet50V2", 32), ("ResNet101", 32),
    ("MobileNet", 32), ("MobileNetV2", 32), ("MobileNetV3Small", 32),
    ("MobileNetV3Large", 32), ("DenseNet121", 32), ("InceptionV3", 75), ("Xception", 71),
    ("EfficientNetB0", 32), ("EfficientNetV2B0", 32), ("NASNetMobile", 32),
    ("ConvNeXtTiny", 32), ("InceptionResNetV2", 75),
]
ROWS: dict = {}
DOC = os.path.join(os.path.dirname(__file__), "..", "docs", "surgery_sweep.md")


def _sweep_one(name: str, size: int) -> dict:
    keras.utils.set_random_seed(0)
    model = getattr(keras.applications, name)(weights=None, input_shape=(size, size, 3),
                                              classes=10, classifier_activation=None)
    randomize_batchnorm(model, seed=1)
    t0 = time.perf_counter()
    gs = groups(model)
    t_groups = time.perf_counter() - t0
    random_filter_zeroing(model, 0.3, seed=2, groups=gs)
    t0 = time.perf_counter()
    small = compact(model)
    t_compact = time.perf_counter() - t0
    x = np.random.default_rng(3).normal(size=(2, size, size, 3)).astype("float32")
    y0 = keras.ops.convert_to_numpy(model(x, training=False))
    y1 = keras.ops.convert_to_numpy(small(x, training=False))
    diff = float(np.max(np.abs(y0 - y1)))
    scale = max(1.0, float(np.max(np.abs(y0))))
    try:
        before, after = count(model), count(small)
        params = (before.params, after.params)
        macs, count_error = (before.macs, after.macs), None
    except Exception as exc:  # kprune.count cannot handle this graph: params only
        params = (model.count_params(), small.count_params())
        macs, count_error = None, f"{type(exc).__name__}: {exc}"
    import tensorflow as tf

    t0 = time.perf_counter()
    tflite = tf.lite.TFLiteConverter.from_keras_model(small).convert()
    t_tflite = time.perf_counter() - t0
    return dict(name=name, size=size, groups=len(gs), prunable=sum(g.prunable for g in gs),
                params=params, macs=macs, count_error=count_error,
                diff=diff, tol=1e-4 * scale, tflite=len(tflite), t_groups=t_groups,
                t_compact=t_compact, t_tflite=t_tflite, load=os.getloadavg()[0], error=None)


def _check(row: dict) -> list:
    problems = []
    if row["diff"] > row["tol"]:
        problems.append(f"outputs differ by {row['diff']:.2e} > {row['tol']:.2e}")
    if not row["params"][1] < row["params"][0]:
        problems.append("params did not drop")
    if row["macs"] is not None and not row["macs"][1] < row["macs"][0]:
        problems.append("MACs did not drop")
    return problems


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=[n for n, _ in SPECS])
    args = parser.parse_args(argv)
    failed = 0
    for name, size in SPECS:
        if name not in args.models:
            continue
        try:
            row = _sweep_one(name, size)
            problems = _check(row)
        except Exception as exc:  # recorded in the table, then counted as a failure
            row, problems = dict(name=name, size=size, error=f"{type(exc).__name__}: {exc}"[:200]), ["error"]
        ROWS[name] = row
        failed += bool(problems)
        print(name, "FAILED " + "; ".join(problems) if problems else "ok",
              {k: v for k, v in row.items() if k != "name"}, flush=True)
    if len(ROWS) == len(SPECS):
        _write(ROWS)
    return 1 if failed else 0


def _fmt(n: int) -> str:
    return f"{n / 1e6:.2f} M"


def _write(rows: dict) -> None:
    lines = [
        "# Surgery sweep over keras.applications",
        "",
        "Written by `python benchmarks/surgery_sweep.py` "
        f"({datetime.date.today().isoformat()}, keras {keras.__version__}, CPU).",
        "",
        "Each model is built with `weights=None`, `classes=10`, logits output, at the smallest "
        "input size it accepts; BatchNorm gamma/beta/moving statistics are randomized; 30 % of "
        "the channels of every prunable group are zeroed by L1 rank, dependency-aware "
        "(producer filters and biases, BatchNorm gamma and beta, and the consumers that see a "
        "non-zero value); `kprune.compact` rebuilds it; outputs are compared in inference mode "
        "on 2 random inputs (tolerance 1e-4 x max(1, max|output|)); params and MACs come from "
        "`kprune.count` (MACs per example); the compacted model is converted with "
        "`tf.lite.TFLiteConverter.from_keras_model`. Seconds are wall-clock on a "
        f"{os.cpu_count()}-core machine shared with other jobs (1-minute load average up to "
        f"{max(r.get('load', 0.0) for r in rows.values()):.1f} during the run), so they are upper "
        "bounds; TFLite conversion dominates the sweep's run time.",
        "",
        "| architecture | input | groups | prunable | params before | params after | "
        "MACs before | MACs after | max abs diff | groups() s | compact() s | TFLite s | TFLite KB | status |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    notes = []
    for name, _ in SPECS:
        r = rows[name]
        if r.get("error"):
            lines.append(f"| {name} | {r['size']} | | | | | | | | | | | | FAILED: {r['error']} |")
            continue
        ok = r["diff"] <= r["tol"] and r["params"][1] < r["params"][0]
        macs = (_fmt(r["macs"][0]), _fmt(r["macs"][1])) if r["macs"] else ("n/a*", "n/a*")
        if not r["macs"]:
            notes.append(f"\\* {name}: `kprune.count` failed ({r['count_error']}); params "
                         "from `model.count_params()`, MACs not available.")
        lines.append(
            f"| {name} | {r['size']} | {r['groups']} | {r['prunable']} | {_fmt(r['params'][0])} | "
            f"{_fmt(r['params'][1])} | {macs[0]} | {macs[1]} | "
            f"{r['diff']:.1e} | {r['t_groups']:.2f} | {r['t_compact']:.2f} | {r['t_tflite']:.1f} | "
            f"{r['tflite'] // 1024} | {'ok' if ok else 'MISMATCH'} |")
    lines += [""] + notes + [
        "",
        "Why some groups are not prunable (all are reported by `kprune.groups` with a reason): "
        "channels of the model input, channels reaching the model output (the classifier), "
        "and channels normalized over the channel axis by LayerNormalization (ConvNeXt's "
        "residual stream: removing a channel would change the mean and variance), which is why "
        "ConvNeXtTiny loses fewer parameters than the others.",
        "",
    ]
    with open(DOC, "w") as f:
        f.write("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
