"""Coverage on the user's path: every keras.applications builder and hand-built models, through
``wrap → fit with PruningCallback → compact → to_tflite``.

For each model (``weights=None``, the smallest input it accepts, logits): BatchNorm statistics
and affine parameters are randomized (so stale-statistics bugs show), every prunable layer is
wrapped for dependency-aware L1 filter pruning with AGP to 50 % over one epoch of random data
(``--steps`` batches of 2), ``fit`` runs with ``kprune.PruningCallback``, ``kprune.compact``
removes the pruned channels, and the compacted model must compute the masked model's outputs
(relative 1e-5), convert with ``kprune.export.to_tflite`` and give the same outputs in LiteRT
(relative 1e-4), with params and MACs lower than the dense model's.

Usage::

    python benchmarks/coverage.py [--models NAME ...] [--hand-built-only] [--steps 4] [--no-tflite] [--resume]

Writes ``benchmarks/results/coverage.json`` after every model (``--resume`` continues a
sweep) and ``docs/coverage.md`` once every model has a row; exits 1 if any model failed.
"""

from __future__ import annotations

import argparse
import datetime
import inspect
import json
import os
import platform
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "graph"))
from _coverage_models import HAND_BUILT  # noqa: E402
from surgery_utils import randomize_batchnorm  # noqa: E402

import kprune  # noqa: E402
from kprune.io import atomic_write_json  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DOC = os.path.join(HERE, "..", "docs", "coverage.md")
OUT = os.path.join(HERE, "results", "coverage.json")
#: smallest input size some builders accept
# EfficientNetV2L at 32 px trains to NaN in plain Keras with batch 2 (no kprune involved: its last
# stages see one pixel per sample, so BatchNorm normalizes over 2 values); 64 px trains finitely
MIN_SIZE = {"InceptionV3": 75, "InceptionResNetV2": 75, "Xception": 71, "EfficientNetV2L": 64}
PRUNABLE = ["Conv1D", "Conv2D", "Conv3D", "Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose",
            "SeparableConv1D", "SeparableConv2D", "Dense"]


def application_names() -> list:
    """Every model builder in ``keras.applications`` of the installed Keras."""
    names = []
    for name in dir(keras.applications):
        fn = getattr(keras.applications, name)
        if name[:1].isupper() and callable(fn) and "weights" in inspect.signature(fn).parameters:
            names.append(name)
    return sorted(names)


def build(name: str):
    if name in HAND_BUILT:
        return HAND_BUILT[name]()
    size = MIN_SIZE.get(name, 32)
    return getattr(keras.applications, name)(weights=None, input_shape=(size, size, 3), classes=10,
                                             classifier_activation=None)


def recipe(steps: int) -> dict:
    return {"prune": {"criterion": "l1", "granularity": "filter", "dependency_aware": True,
                      "schedule": {"name": "agp", "start_step": 0, "end_step": max(steps - 1, 0),
                                   "frequency": 1},
                      "round_to": 1,  # the rows were measured with exact counts (the default until 2026-12-05)
                      "config_list": [{"op_types": PRUNABLE, "sparsity": 0.5}]}}


def _random_like(tensors, n, rng):
    return keras.tree.map_structure(
        lambda t: rng.normal(size=(n,) + tuple(t.shape[1:])).astype("float32"), tensors)


def _flat(x):
    return [np.asarray(keras.ops.convert_to_numpy(v)) for v in keras.tree.flatten(x)]


def _rel(a, b) -> float:
    """Largest relative difference; a non-finite value anywhere is an infinite difference."""
    if not all(np.all(np.isfinite(x)) and np.all(np.isfinite(y)) for x, y in zip(a, b)):
        return float("inf")
    return float(max(np.max(np.abs(x - y)) / max(1.0, float(np.max(np.abs(x)))) for x, y in zip(a, b)))


def _tflite_outputs(path, model, x):
    """LiteRT outputs of ``path`` on ``x``, matched to the Keras outputs by name."""
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=path).get_signature_runner()
    names = [t._keras_history.operation.name for t in keras.tree.flatten(model.inputs)]
    feeds = dict(zip(sorted(runner.get_input_details()), keras.tree.flatten(x))) \
        if not set(names) <= set(runner.get_input_details()) else dict(zip(names, keras.tree.flatten(x)))
    out = runner(**feeds)
    return out


def check_user_path(model, steps: int = 4, tflite: bool = True, seed: int = 0) -> dict:
    """Runs one model through the user's path; returns a row of measurements (no asserts)."""
    t0 = time.perf_counter()
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    randomize_batchnorm(model, seed=seed + 1)
    dense = kprune.count(model)
    wrapped = kprune.wrap(model, recipe(steps))
    x = _random_like(model.inputs if not isinstance(model.input, dict) else model.input, 2 * steps, rng)
    y = _random_like(model.outputs if not isinstance(model.output, dict) else model.output, 2 * steps, rng)
    # small, clipped steps: random targets must not blow up a deep net with randomized BatchNorm
    wrapped.compile(optimizer=keras.optimizers.SGD(1e-4, clipnorm=1.0), loss="mse")
    callback = kprune.PruningCallback()
    wrapped.fit(x, y, batch_size=2, epochs=1, verbose=0, callbacks=[callback])
    gs = kprune.groups(wrapped)
    small = kprune.compact(wrapped)
    probe = keras.tree.map_structure(lambda a: a[:2], x)
    ref = _flat(wrapped(probe, training=False))
    got = _flat(small(probe, training=False))
    after = kprune.count(small)
    row = dict(groups=len(gs), prunable=sum(g.prunable for g in gs),
               params=(dense.params, after.params), macs=(dense.macs, after.macs),
               diff=_rel(ref, got), skipped=dict(callback.pruner.skipped), tflite=None, tflite_diff=None)
    if tflite:
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "m.tflite")
            res = kprune.export.to_tflite(small, path)
            outs = _tflite_outputs(path, small, keras.tree.map_structure(lambda a: a[:1], probe))
            ref1 = [r[:1] for r in got]
            # LiteRT names outputs output_0...; match each Keras output to its TFLite output
            cands = [np.asarray(v) for v in outs.values()]
            diffs = []
            for r in ref1:
                same = [c for c in cands if c.shape == r.shape]
                diffs.append(min(_rel([r], [c]) for c in same) if same else float("inf"))
            row["tflite"], row["tflite_diff"] = res.size_bytes if hasattr(res, "size_bytes") else os.path.getsize(path), max(diffs)
    row["seconds"] = time.perf_counter() - t0
    return row


def problems(row: dict, tflite: bool = True) -> list:
    out = []
    if row.get("error"):
        return [row["error"]]
    if row["diff"] > 1e-5:
        out.append(f"compacted differs from masked by {row['diff']:.1e}")
    if not row["params"][1] < row["params"][0]:
        out.append("params did not drop")
    if not row["macs"][1] < row["macs"][0]:
        out.append("MACs did not drop")
    if tflite and not (row["tflite_diff"] is not None and row["tflite_diff"] <= 1e-4):
        out.append(f"TFLite output differs ({row['tflite_diff']})")
    return out


def _fmt(n) -> str:
    return f"{n / 1e6:.2f} M" if n >= 1e5 else f"{n / 1e3:.1f} k"


def write_doc(rows: dict, steps: int) -> None:
    ok = sum(not r["problems"] for r in rows.values())
    lines = [
        "# Coverage: every model through the user's path",
        "",
        f"Written by `python benchmarks/coverage.py` ({datetime.date.today().isoformat()}, keras "
        f"{keras.__version__}, {platform.machine()}, {os.cpu_count()} cores). **{ok} of {len(rows)} models "
        "pass.**",
        "",
        "Input 32×32×3, except "
        + ", ".join(f"{k} {v}×{v}" for k, v in MIN_SIZE.items()) + " (the smallest the first three "
        "accept; EfficientNetV2L trains to NaN at 32×32 with batch 2 in plain Keras, without kprune). "
        "Each model: BatchNorm statistics randomized; `kprune.wrap` with dependency-aware L1 filter "
        f"pruning of every Conv/Dense layer, AGP to 50 % over one epoch of random data ({steps} "
        "batches of 2); `model.fit` with `kprune.PruningCallback`; `kprune.compact`; outputs of the "
        "compacted model against the masked one (max relative diff, must be ≤ 1e-5); "
        "`kprune.export.to_tflite` and the LiteRT output against Keras (≤ 1e-4); params and MACs "
        "(`kprune.count`) must drop. Layers selected but not pruned are listed with kprune's reason "
        "(typically: channels reaching the model output, or normalized over channels by "
        "LayerNormalization). Seconds include the TFLite conversion.",
        "",
        "| model | groups prunable/total | params before → after | MACs before → after | max diff | "
        "TFLite diff | seconds | status |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        if r.get("error"):
            lines.append(f"| {name} | | | | | | | FAILED: {r['error'][:160]} |")
            continue
        status = "ok" if not r["problems"] else "FAILED: " + "; ".join(r["problems"])
        td = "-" if r["tflite_diff"] is None else f"{r['tflite_diff']:.1e}"
        lines.append(f"| {name} | {r['prunable']}/{r['groups']} | {_fmt(r['params'][0])} → {_fmt(r['params'][1])} "
                     f"| {_fmt(r['macs'][0])} → {_fmt(r['macs'][1])} | {r['diff']:.1e} | {td} | "
                     f"{r['seconds']:.0f} | {status} |")
    with open(DOC, "w") as f:
        f.write("\n".join(lines) + "\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*")
    parser.add_argument("--hand-built-only", action="store_true")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--no-tflite", action="store_true")
    parser.add_argument("--resume", action="store_true", help="keep the rows already in the results file")
    args = parser.parse_args(argv)
    names = list(HAND_BUILT) + ([] if args.hand_built_only else application_names())
    wanted = args.models or names
    rows = {}
    if args.resume and os.path.exists(OUT):
        with open(OUT) as f:
            rows = {k: v for k, v in json.load(f)["rows"].items() if k in names}
    for name in names:
        if name not in wanted or name in rows:
            continue
        t0 = time.perf_counter()
        try:
            row = check_user_path(build(name), args.steps, tflite=not args.no_tflite)
        except Exception as exc:  # reported in the table
            row = dict(error=f"{type(exc).__name__}: {exc}".replace("\n", " ")[:400],
                       seconds=time.perf_counter() - t0)
        row["problems"] = problems(row, not args.no_tflite)
        rows[name] = row
        print(f"{name:24s} {'ok' if not row['problems'] else 'FAILED ' + '; '.join(row['problems'])} "
              f"({row['seconds']:.0f} s)", flush=True)
        keras.backend.clear_session()
        os.makedirs(os.path.dirname(OUT), exist_ok=True)  # after every model: a long sweep resumes
        atomic_write_json(OUT, {"steps": args.steps, "keras": keras.__version__, "rows": rows})
    if set(rows) == set(names):
        write_doc({n: rows[n] for n in names}, args.steps)
    failed = sum(bool(r["problems"]) for r in rows.values())
    print(f"{len(rows) - failed} of {len(rows)} pass")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
