"""Deployment numbers: TFLite size and latency, dense vs compacted, fp32/fp16/int8; sparse storage;
int8 accuracy on Fashion-MNIST; latency-table prediction error.

Sections (``--only``, default all):

* ``deploy``: each model dense and compacted to about ``--macs`` of its MACs
  (``kprune.wrap`` with a uniform dependency-aware L1 filter recipe on every Conv2D/Dense,
  ``Pruner.prune_now()``, ``kprune.compact``; the uniform sparsity is searched for so that
  the compacted model's MACs hit the target, see ``realized_speedup.compact_to_macs``),
  converted with ``none``/``fp16``/``int8`` (int8 calibrated on random inputs: these files
  are for size and latency only), timed with ``compare`` (dense and pruned interleaved) at
  each thread count. Reports size, median latency, realized speedup
  and speedup ÷ MAC reduction.
* ``sparse``: ResNet-20 with 90 % of every conv/dense kernel zeroed by magnitude, exported
  with and without ``sparsity=True``: size, gzip size, latency (XNNPACK on and off).
* ``int8``: LeNet-5 trained on Fashion-MNIST for ``--epochs``; Keras, TFLite fp32 and
  TFLite int8 test accuracy and the int8 drop in points.
* ``table``: a latency table for ResNet-20 (grid 0.5/1.0), then ``prediction_error`` for
  ResNet-20 compacted to 70 % and 50 % of its MACs.

Usage::

    python benchmarks/export_bench.py [--only deploy sparse int8 table] [--threads 1 2] [--runs 100]
    python benchmarks/export_bench.py --quick      # small models, few runs: checks the script works

Prints markdown tables and writes every number to ``--out`` (JSON).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # benchmarks/: also when imported by a test
from _results import write_json  # noqa: E402

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from kprune import models  # noqa: E402
from kprune.counting.counter import count  # noqa: E402
from kprune.export import compare, evaluate_tflite, latency_table, prediction_error, to_tflite  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from realized_speedup import compact_to_macs  # noqa: E402


def random_images(shape, n=64, seed=0):
    return np.random.default_rng(seed).uniform(0, 1, (n, *shape)).astype("float32")


def build(name, quick):
    if name in ("MobileNetV2", "ResNet50"):
        return getattr(keras.applications, name)(weights=None, input_shape=(224, 224, 3), classifier_activation=None)
    width = {"resnet20": 0.5, "vgg16": 0.25}.get(name, 1.0) if quick else 1.0
    return models.get(name, input_shape=(32, 32, 3), num_classes=10, width=width)


def section_deploy(args, folder, results):
    print("\n## Dense vs compacted: size and latency\n")
    print("| model | MACs dense | MACs pruned | quantize | bytes dense | bytes pruned | threads | dense ms | pruned ms | speedup | MAC reduction | speedup ÷ MAC reduction |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name in args.models:
        model = build(name, args.quick)
        small, ratio, fraction, _ = compact_to_macs(model, args.macs)
        macs_dense, macs_small = count(model).macs, count(small).macs
        shape = tuple(model.inputs[0].shape[1:])
        for quantize in args.quantize:
            kwargs = {"representative_data": random_images(shape)} if quantize == "int8" else {}
            d = to_tflite(model, os.path.join(folder, f"{name}_dense_{quantize}.tflite"), quantize=quantize, **kwargs)
            p = to_tflite(small, os.path.join(folder, f"{name}_pruned_{quantize}.tflite"), quantize=quantize, **kwargs)
            for threads in args.threads:
                c = compare(d.path, p.path, threads=threads, runs=args.runs, warmup=args.warmup)
                reduction = macs_dense / macs_small
                row = {"model": name, "quantize": quantize, "threads": threads, "macs_dense": macs_dense,
                       "macs_pruned": macs_small, "sparsity": fraction, "bytes_dense": d.bytes, "bytes_pruned": p.bytes,
                       "dense": c.a.to_dict(), "pruned": c.b.to_dict(), "speedup": c.speedup, "mac_reduction": reduction}
                results["deploy"].append(row)
                print(f"| {name} | {macs_dense:,} | {macs_small:,} | {quantize} | {d.bytes:,} | {p.bytes:,} | {threads} | "
                      f"{c.a.median_ms:.3f} | {c.b.median_ms:.3f} | {c.speedup:.2f} | {reduction:.2f} | {c.speedup / reduction:.2f} |",
                      flush=True)


def level_zero(model, fraction):
    for layer in model.layers:
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
            kernel = layer.kernel.numpy()
            kernel[np.abs(kernel) <= np.quantile(np.abs(kernel), fraction)] = 0.0
            layer.kernel.assign(kernel)


def section_sparse(args, folder, results):
    print("\n## 90 % fine-grained sparse ResNet-20: sparse storage\n")
    print("| storage | bytes | gzip bytes | xnnpack | threads | dense-storage ms | sparse-storage ms | ratio |")
    print("|---|---|---|---|---|---|---|---|")
    model = build("resnet20", args.quick)
    level_zero(model, 0.9)
    plain = to_tflite(model, os.path.join(folder, "resnet20_sparse90_plain.tflite"))
    packed = to_tflite(model, os.path.join(folder, "resnet20_sparse90_packed.tflite"), sparsity=True)
    for xnnpack in (True, False):
        for threads in args.threads:
            c = compare(plain.path, packed.path, threads=threads, runs=args.runs, warmup=args.warmup, use_xnnpack=xnnpack)
            results["sparse"].append({"xnnpack": xnnpack, "threads": threads, "plain": c.a.to_dict(), "packed": c.b.to_dict(), "ratio": c.ratio})
            print(f"| dense / sparse | {c.a.size_bytes:,} / {c.b.size_bytes:,} | {c.a.gzip_bytes:,} / {c.b.gzip_bytes:,} | "
                  f"{'on' if xnnpack else 'off'} | {threads} | {c.a.median_ms:.3f} | {c.b.median_ms:.3f} | {c.ratio:.2f} |", flush=True)


def section_int8(args, folder, results):
    from kprune.data import load
    from kprune.models.training import accuracy, compile_model

    print("\n## int8 accuracy on Fashion-MNIST (LeNet-5)\n")
    take = 6000 if args.quick else None
    train = load("fashion_mnist", "train", batch_size=128, take=take, seed=0)
    test = load("fashion_mnist", "test", batch_size=256, shuffle=False)
    keras.utils.set_random_seed(0)
    model = models.get("lenet5", input_shape=(28, 28, 1), num_classes=10)
    compile_model(model, {"optimizer": {"name": "adam", "learning_rate": 1e-3}}, 1, args.epochs)
    model.fit(train, epochs=args.epochs, verbose=0)
    keras_acc = accuracy(model, test)
    fp32 = to_tflite(model, os.path.join(folder, "lenet5_fp32.tflite"))
    calibration = load("fashion_mnist", "train", batch_size=100, take=500, shuffle=False)
    int8 = to_tflite(model, os.path.join(folder, "lenet5_int8.tflite"), quantize="int8", representative_data=calibration,
                     calibration_samples=500)
    fp32_acc, int8_acc = evaluate_tflite(fp32.path, test), evaluate_tflite(int8.path, test)
    row = {"epochs": args.epochs, "train_examples": take or 60000, "keras": keras_acc, "tflite_fp32": fp32_acc,
           "tflite_int8": int8_acc, "drop_points": 100 * (fp32_acc - int8_acc),
           "drop_vs_keras_points": 100 * (keras_acc - int8_acc), "bytes_fp32": fp32.bytes, "bytes_int8": int8.bytes}
    results["int8"] = row
    print("| epochs | Keras acc | TFLite fp32 acc | TFLite int8 acc | int8 drop (points) | bytes fp32 | bytes int8 |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {args.epochs} | {keras_acc:.4f} | {fp32_acc:.4f} | {int8_acc:.4f} | {row['drop_points']:.2f} | {fp32.bytes:,} | {int8.bytes:,} |")


def section_table(args, folder, results):
    print("\n## Latency table prediction error (ResNet-20)\n")
    model = build("resnet20", True) if args.quick else build("resnet20", False)
    table = latency_table(model, channel_grid=(0.5, 1.0), threads=args.threads[0], runs=args.runs, warmup=args.warmup,
                          cache=os.path.join(folder, "resnet20_latency_table.json"))
    print(f"table: {table.measured} measurements, full model {table.full_model_ms:.3f} ms, remainder {table.remainder_ms:.3f} ms, "
          f"per-invoke overhead {table.overhead_ms:.3f} ms\n")
    print("| MACs kept | predicted ms | measured ms | error ms | relative error |")
    print("|---|---|---|---|---|")
    rows = []
    for target in (0.7, 0.5):
        small, ratio, _, _ = compact_to_macs(model, target)
        err = prediction_error(table, small, runs=args.runs, warmup=args.warmup)
        rows.append({"macs_kept": ratio, **err})
        print(f"| {ratio:.2f} | {err['predicted_ms']:.3f} | {err['measured_ms']:.3f} | {err['error_ms']:+.3f} | {err['relative_error']:+.1%} |", flush=True)
    results["table"] = {"measurements": table.measured, "full_model_ms": table.full_model_ms, "remainder_ms": table.remainder_ms,
                        "overhead_ms": table.overhead_ms, "rows": rows}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", default=["deploy", "sparse", "int8", "table"], choices=["deploy", "sparse", "int8", "table"])
    parser.add_argument("--models", nargs="+", default=["MobileNetV2", "ResNet50", "resnet20", "vgg16"])
    parser.add_argument("--quantize", nargs="+", default=["none", "fp16", "int8"])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--macs", type=float, default=0.5, help="MACs kept by the compacted model (fraction).")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="Small models and few runs (a smoke test, not results).")
    parser.add_argument("--out", default="benchmarks/results/export_bench.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.models = [m for m in args.models if m in ("resnet20", "vgg16")]
        args.runs, args.warmup, args.epochs, args.threads = 20, 3, 1, args.threads[:1]
    import tensorflow as tf
    from importlib.metadata import version
    host = {"machine": platform.machine(), "cpus": os.cpu_count(), "python": platform.python_version(),
            "tensorflow": tf.__version__, "keras": keras.__version__, "ai_edge_litert": version("ai-edge-litert")}
    print(f"# host: {host}" + (" — QUICK MODE, not results" if args.quick else ""))
    results = {"args": vars(args), "host": host, "loadavg_before": os.getloadavg(), "deploy": [], "sparse": []}
    with tempfile.TemporaryDirectory(prefix="kprune_export_bench_") as folder:
        for name in args.only:
            {"deploy": section_deploy, "sparse": section_sparse, "int8": section_int8, "table": section_table}[name](args, folder, results)
    write_json(args.out, results, results.pop("loadavg_before"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
