"""Realized TFLite speedup of filter pruning vs a dense width-scaled model of equal MACs.

For each keras.applications model (``weights=None``, 224×224):

1. *pruned*: ``kprune.wrap`` with a uniform recipe — L1 filter pruning, dependency-aware,
   every ``Conv2D``/``Dense`` at the same sparsity (the output ``Dense`` is never pruned),
   with ``round_to`` 1 and 8 — then ``Pruner.prune_now()`` and ``kprune.compact``. The uniform
   sparsity is searched for so that ``kprune.count`` of the *compacted* model has
   about ``--macs`` of the dense MACs.
2. *width*: the same architecture built dense with every channel count scaled by a width
   multiplier ``w`` (MobileNetV2: its own ``alpha``; ResNet50, which has no ``alpha``: its
   keras.applications config with every ``Conv2D`` ``filters`` scaled by ``w`` and rounded to
   a multiple of 8, as ``alpha`` does in MobileNetV2), ``w`` searched for to match the MACs
   of step 1. This is the "practical limit": a network designed at that size.
3. All files are converted to fp32 TFLite (``--quantize`` for fp16/int8); latency is
   measured with ``kprune.export.compare`` (interleaved, median) at each thread count: dense vs pruned,
   dense vs width, and width vs pruned directly. The target of issue 3 is
   speedup(pruned) ≥ 0.9 × speedup(width); the direct width-vs-pruned comparison estimates
   that ratio (width ms ÷ pruned ms).

Usage::

    python benchmarks/realized_speedup.py [--models ResNet50 MobileNetV2] [--threads 1 2] [--runs 60]
    python benchmarks/realized_speedup.py --models MobileNetV2 --size 96 --runs 5   # smoke test

Prints markdown tables and writes every number (settings, channel counts, TFLite op
counts, latency reports, load average) to ``--out`` (JSON).
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import platform
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # benchmarks/: also when imported by a test
from _results import write_json  # noqa: E402

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import kprune  # noqa: E402
from kprune.counting.counter import count  # noqa: E402
from kprune.export import compare, to_tflite  # noqa: E402


def recipe(sparsity: float, round_to) -> dict:
    """The uniform dependency-aware L1 filter pruning recipe at ``sparsity``."""
    return {"prune": {"criterion": "l1", "granularity": "filter", "dependency_aware": True, "round_to": round_to,
                      "schedule": {"name": "oneshot"},
                      "config_list": [{"op_types": ["Conv2D", "Dense"], "sparsity": float(sparsity)}]}}


def prune_compact(model, sparsity: float, round_to: int = 1):
    """Wraps ``model`` (left untouched), prunes once at ``sparsity`` and returns the compacted model."""
    wrapped = kprune.wrap(model, recipe(sparsity, round_to))
    kprune.Pruner(wrapped).prune_now()
    return kprune.compact(wrapped)


def solve(make, macs_of, target: float, x0: float, x_min: float, x_max: float, iterations: int = 8, tol: float = 0.01):
    """Finds a width knob ``x`` (MACs increasing in ``x``) with ``macs_of(make(x))`` within ``tol`` of ``target``.

    MACs of a uniformly thinned network grow about as ``x²``, so steps are taken in ``x²``:
    a multiplicative step ``x·sqrt(target/frac)`` until the target is bracketed, then
    interpolation between the closest points on each side (falling back to bisection).

    Returns ``(model, macs_fraction, x, trace)`` of the closest model seen.
    """
    best, seen, x = None, [], x0
    for _ in range(iterations):
        model = make(x)
        frac = macs_of(model)
        seen.append((x, frac))
        if best is None or abs(frac - target) < abs(best[1] - target):
            best = (model, frac, x)
        if abs(frac - target) < tol:
            break
        below = [p for p in seen if p[1] < target]
        above = [p for p in seen if p[1] > target]
        if below and above:
            (xl, fl), (xh, fh) = max(below), min(above)
            t = (target - fl) / (fh - fl)
            nxt = (xl ** 2 + t * (xh ** 2 - xl ** 2)) ** 0.5
            if not xl < nxt < xh or any(abs(nxt - p[0]) < 1e-4 for p in seen):
                nxt = (xl + xh) / 2
        else:
            nxt = x * (target / frac) ** 0.5
        x = min(max(nxt, x_min), x_max)
    trace = [(round(k, 5), round(f, 5)) for k, f in seen]
    return (*best, trace)


def compact_to_macs(model, target: float = 0.5, round_to: int = 1, iterations: int = 8, tol: float = 0.01):
    """Compacted copy of ``model`` with about ``target`` of its MACs (search on the uniform sparsity).

    Returns ``(small, macs_fraction, sparsity, trace)``; ``trace`` lists (1 − sparsity, MACs kept).
    """
    dense = count(model).macs
    small, frac, kept, trace = solve(lambda x: prune_compact(model, 1.0 - x, round_to), lambda m: count(m).macs / dense,
                                     target, target ** 0.5, 0.05, 1.0, iterations, tol)
    return small, frac, 1.0 - kept, trace


def make_divisible(value: float, divisor: int = 8) -> int:
    """MobileNet's channel rounding: nearest multiple of ``divisor``, never below 90 % of ``value``."""
    out = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return out + divisor if out < 0.9 * value else out


def build(name: str, size: int, width: float = 1.0):
    """keras.applications ``name`` at ``size``×``size``, dense, optionally width-scaled."""
    shape = (size, size, 3)
    if name == "MobileNetV2":
        return keras.applications.MobileNetV2(weights=None, input_shape=shape, alpha=width, classifier_activation=None)
    model = getattr(keras.applications, name)(weights=None, input_shape=shape, classifier_activation=None)
    if width == 1.0:
        return model
    config = model.get_config()
    for layer in config["layers"]:
        layer.pop("build_config", None)  # stored input shapes would pin the old widths
        if layer["class_name"] == "Conv2D":
            layer["config"]["filters"] = make_divisible(layer["config"]["filters"] * width)
    return keras.Model.from_config(config)


def width_to_macs(name: str, size: int, target_macs: int, iterations: int = 10):
    """Dense width-scaled model with MACs closest to ``target_macs``; returns ``(model, macs_fraction, width, trace)``."""
    dense = count(build(name, size)).macs
    target = target_macs / dense
    return solve(lambda w: build(name, size, w), lambda m: count(m).macs / dense, target, target ** 0.5,
                 0.1, 1.0, iterations, tol=0.003)


def conv_filters(model) -> list:
    return [layer.filters for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]


def tflite_ops(path) -> dict:
    """``{op name: count}`` of a ``.tflite`` file (before delegation)."""
    from ai_edge_litert.interpreter import Interpreter
    interp = Interpreter(model_path=path)
    return dict(collections.Counter(op["op_name"] for op in interp._get_ops_details()))


def describe(name, kind, model, dense_macs, path, extra):
    macs = count(model).macs
    multiple8 = sum(f % 8 == 0 for f in conv_filters(model))
    return {"model": name, "variant": kind, "macs": macs, "macs_fraction": macs / dense_macs,
            "mac_reduction": dense_macs / macs, "params": model.count_params(), "tflite": path,
            "conv_filters": conv_filters(model), "conv_filters_multiple_of_8": multiple8,
            "conv_layers": len(conv_filters(model)), "tflite_ops": tflite_ops(path), **extra}


def export(model, path, quantize):
    """Converts with ``quantize``; int8 is calibrated on 64 random images (for latency only)."""
    kwargs = {}
    if quantize == "int8":
        shape = tuple(model.inputs[0].shape[1:])
        kwargs["representative_data"] = np.random.default_rng(0).uniform(0, 1, (64, *shape)).astype("float32")
    return to_tflite(model, path, quantize=quantize, **kwargs).path


def run_model(name, args, folder, results):
    t0 = time.perf_counter()
    dense_model = build(name, args.size)
    dense_macs = count(dense_model).macs
    q = args.quantize
    variants = {"dense": describe(name, "dense", dense_model, dense_macs,
                                  export(dense_model, os.path.join(folder, f"{name}_dense.tflite"), q), {})}
    pruned_macs = []
    for rt in args.round_to:
        small, frac, sparsity, trace = compact_to_macs(dense_model, args.macs, rt)
        path = export(small, os.path.join(folder, f"{name}_pruned_r{rt}.tflite"), q)
        variants[f"pruned r{rt}"] = describe(name, f"pruned r{rt}", small, dense_macs, path,
                                             {"round_to": rt, "sparsity": sparsity, "search_trace": trace})
        pruned_macs.append(count(small).macs)
        print(f"# {name} round_to={rt}: uniform sparsity {sparsity:.4f} -> {frac:.3f} of dense MACs", flush=True)
    target = sum(pruned_macs) / len(pruned_macs)
    wide, frac, width, trace = width_to_macs(name, args.size, target)
    path = export(wide, os.path.join(folder, f"{name}_width.tflite"), q)
    variants["width"] = describe(name, "width", wide, dense_macs, path, {"width": width, "search_trace": trace})
    print(f"# {name} width reference: w={width:.4f} -> {frac:.3f} of dense MACs "
          f"(setup {time.perf_counter() - t0:.0f} s)", flush=True)
    results["variants"].extend(variants.values())

    pairs = [("dense", k) for k in variants if k != "dense"] + [("width", k) for k in variants if k.startswith("pruned")]
    for threads in args.threads:
        for repeat in range(args.repeats):
            for a, b in pairs:
                c = compare(variants[a]["tflite"], variants[b]["tflite"], threads=threads, runs=args.runs,
                            warmup=args.warmup)
                row = {"model": name, "a": a, "b": b, "threads": threads, "repeat": repeat,
                       "a_median_ms": c.a.median_ms, "b_median_ms": c.b.median_ms, "speedup": c.speedup,
                       "mac_ratio": variants[a]["macs"] / variants[b]["macs"], "loadavg": os.getloadavg()[0],
                       "a_report": c.a.to_dict(), "b_report": c.b.to_dict()}
                results["comparisons"].append(row)
                print(f"| {name} | {a} → {b} | {threads} | {repeat} | {c.a.median_ms:.2f} | {c.b.median_ms:.2f} | "
                      f"{c.speedup:.3f} | {row['mac_ratio']:.3f} | {c.speedup / row['mac_ratio']:.3f} | "
                      f"{row['loadavg']:.1f} |", flush=True)


def median(values):
    values = sorted(values)
    n = len(values)
    return values[n // 2] if n % 2 else (values[n // 2 - 1] + values[n // 2]) / 2


def summary(results) -> None:
    """Per model and thread count: median over repeats of each speedup, and the issue-3 target."""
    print("\n## Summary (medians over repeats)\n")
    print("| model | threads | variant | MACs kept | MAC reduction | speedup vs dense | speedup ÷ MAC reduction | "
          "width ms ÷ this ms (direct) | ≥ 0.9 × width? |")
    print("|---|---|---|---|---|---|---|---|---|")
    variants = {(v["model"], v["variant"]): v for v in results["variants"]}
    rows = results["comparisons"]
    for model in dict.fromkeys(r["model"] for r in rows):
        for threads in dict.fromkeys(r["threads"] for r in rows if r["model"] == model):
            pick = [r for r in rows if r["model"] == model and r["threads"] == threads]
            for variant in ("width", *sorted({r["b"] for r in pick if r["b"].startswith("pruned")})):
                v = variants[(model, variant)]
                sp = median([r["speedup"] for r in pick if r["a"] == "dense" and r["b"] == variant])
                direct = [r["speedup"] for r in pick if r["a"] == "width" and r["b"] == variant]
                vs_width = f"{median(direct):.3f}" if direct else "1 (reference)"
                verdict = ("yes" if median(direct) >= 0.9 else "no") if direct else ""
                results["summary"].append({"model": model, "threads": threads, "variant": variant,
                                           "macs_fraction": v["macs_fraction"], "speedup": sp,
                                           "speedup_per_mac_reduction": sp / v["mac_reduction"],
                                           "vs_width": median(direct) if direct else None})
                print(f"| {model} | {threads} | {variant} | {v['macs_fraction']:.3f} | {v['mac_reduction']:.2f} | "
                      f"{sp:.2f} | {sp / v['mac_reduction']:.2f} | {vs_width} | {verdict} |")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["ResNet50", "MobileNetV2"])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--macs", type=float, default=0.5, help="MACs kept by the pruned model (fraction).")
    parser.add_argument("--round-to", nargs="+", type=lambda v: v if v == "auto" else int(v), default=[1, 8, "auto"],
                        help="round_to values to compare (integers, or auto: kprune's default)")
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--runs", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--quantize", default="none", choices=["none", "fp16", "int8"],
                        help="Conversion of every variant (default fp32; int8 is calibrated on random images).")
    parser.add_argument("--repeats", type=int, default=1, help="Repeat every comparison (noisy machines).")
    parser.add_argument("--out", default="benchmarks/results/realized_speedup.json")
    args = parser.parse_args(argv)
    import tensorflow as tf
    from importlib.metadata import version
    host = {"machine": platform.machine(), "cpus": os.cpu_count(), "python": platform.python_version(),
            "tensorflow": tf.__version__, "keras": keras.__version__, "ai_edge_litert": version("ai-edge-litert")}
    print(f"# host: {host}")
    results = {"args": vars(args), "host": host, "loadavg_before": os.getloadavg(), "variants": [],
               "comparisons": [], "summary": []}
    print("| model | A → B | threads | repeat | A ms | B ms | speedup (A ms ÷ B ms) | MAC ratio A÷B | speedup ÷ MAC ratio | load |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="kprune_speedup_") as folder:
        for name in args.models:
            run_model(name, args, folder, results)
    summary(results)
    for v in results["variants"]:
        v["tflite"] = os.path.basename(v["tflite"])
    write_json(args.out, results, results.pop("loadavg_before"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
