"""kprune's latency numbers against LiteRT's own ``litert-benchmark`` tool, on the same files.

For each model (``keras.applications`` ResNet50 and MobileNetV2, random weights,
``weights=None``, ``classifier_activation=None``): the dense model, and the model wrapped
with kprune's keyword form (L1 filter pruning, 50 % of every Conv2D/Dense, one-shot:
``Pruner.prune_now()``) and compacted with ``kprune.compact``. Both are converted with
``kprune.export.to_tflite`` (float32). Each file is then timed by

* ``kprune.export.benchmark(runtime="interpreter")`` (the classic Interpreter, in this process),
* ``kprune.export.benchmark(runtime="compiled_model")`` (LiteRT's CompiledModel, in this process),
* ``litert-benchmark --model F --num_threads T --num_runs N --warmup_runs W`` (the tool that
  ships with ai-edge-litert, a separate process; its ``--result_json`` gives the median),

with the same thread count, runs and warm-up. The three run in turn, ``--rounds`` times with
the order rotated each round; a tool's number is the median of its per-round medians.
Before timing, the script checks that the Interpreter and the CompiledModel give the same
outputs on one random input (largest absolute difference, stored).

Run it pinned to one core on a shared machine (the child process inherits the pinning)::

    taskset -c 1 nice -n 5 python benchmarks/litert_crosscheck.py
    python benchmarks/litert_crosscheck.py --quick      # 64x64, few runs: checks the script works

Prints a markdown table (per tool the median of the round medians in ms, with the range of the
round medians in brackets, and the ratios kprune / litert-benchmark) and
writes every number to ``--out`` (JSON, atomically), with /proc/loadavg sampled before,
after every measurement and at the end.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

TOOLS = ("kprune interpreter", "kprune compiled_model", "litert-benchmark")


def loadavg() -> list:
    """The three load averages of /proc/loadavg (1, 5, 15 minutes)."""
    with open("/proc/loadavg") as handle:
        return [float(v) for v in handle.read().split()[:3]]


def litert_benchmark_command() -> list:
    """``litert-benchmark`` beside this Python, else the module it runs."""
    script = os.path.join(os.path.dirname(sys.executable), "litert-benchmark")
    if os.path.isfile(script):
        return [script]
    return [sys.executable, "-m", "ai_edge_litert.tools.benchmark_litert_model"]


def build_files(name: str, size: int, folder: str) -> dict:
    """Dense and compacted ``keras.applications`` model converted to .tflite; returns paths and counts."""
    import keras

    import kprune
    from kprune.export import to_tflite

    keras.utils.set_random_seed(0)
    model = getattr(keras.applications, name)(weights=None, input_shape=(size, size, 3), classifier_activation=None)
    wrapped = kprune.wrap(model, sparsity=0.5)          # l1, filter, one-shot, Conv2D and Dense
    kprune.Pruner(wrapped).prune_now()
    small = kprune.compact(wrapped)
    out = {}
    for variant, m in (("dense", model), ("compacted", small)):
        path = os.path.join(folder, f"{name}_{size}_{variant}.tflite")
        result = to_tflite(m, path)
        counts = kprune.count(m)
        out[variant] = {"path": result.path, "bytes": result.bytes, "params": int(counts.params), "macs": int(counts.macs)}
    return out


def outputs_agree(path: str, threads: int) -> float:
    """Largest absolute difference between the Interpreter's and the CompiledModel's outputs."""
    import numpy as np
    from kprune.export import CompiledRunner
    from kprune.export.interpreter import load_interpreter

    runner = CompiledRunner(path, threads=threads)
    x = np.random.default_rng(1).standard_normal(runner.input_details[0]["shape"]).astype("float32")
    (compiled,) = runner(x)
    interpreter = load_interpreter(path, threads=threads)
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    reference = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    return float(np.max(np.abs(compiled - reference)))


def run_litert_benchmark(path: str, threads: int, runs: int, warmup: int) -> dict:
    """One ``litert-benchmark`` process on ``path``; returns its result JSON's latency block."""
    with tempfile.TemporaryDirectory() as folder:
        result_json = os.path.join(folder, "result.json")
        command = litert_benchmark_command() + [
            f"--model={path}", f"--num_threads={threads}", f"--num_runs={runs}", f"--warmup_runs={warmup}",
            f"--result_json={result_json}"]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0 or not os.path.isfile(result_json):
            raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        with open(result_json) as handle:
            return json.load(handle)["latency"]


def measure(path: str, threads: int, runs: int, warmup: int, rounds: int, loads: list) -> dict:
    """Median latency per tool (median of per-round medians), tools in rotated order each round."""
    from kprune.export import benchmark

    def run(tool):
        if tool == "litert-benchmark":
            return run_litert_benchmark(path, threads, runs, warmup)["median_ms"]
        runtime = tool.split()[1]
        return benchmark(path, threads=threads, runs=runs, warmup=warmup, runtime=runtime).median_ms

    per_round = {tool: [] for tool in TOOLS}
    for r in range(rounds):
        order = TOOLS[r % len(TOOLS):] + TOOLS[: r % len(TOOLS)]
        for tool in order:
            per_round[tool].append(run(tool))
            loads.append({"after": f"{os.path.basename(path)} {tool} round {r + 1}", "loadavg": loadavg()})
    return {tool: {"median_ms": statistics.median(values), "round_medians_ms": values}
            for tool, values in per_round.items()}


def table(rows) -> str:
    """Markdown: each tool's median of round medians (range of the round medians), and the ratios."""
    header = ("| model | variant | MACs | kprune Interpreter ms | kprune CompiledModel ms | litert-benchmark ms "
              "| Interpreter / litert-benchmark | CompiledModel / litert-benchmark |")
    lines = [header, "|---|---|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        m = row["medians"]

        def cell(tool, m=m):
            rounds = m[tool]["round_medians_ms"]
            return f"{m[tool]['median_ms']:.2f} ({min(rounds):.2f}–{max(rounds):.2f})"

        ref = m["litert-benchmark"]["median_ms"]
        interp, compiled = m["kprune interpreter"]["median_ms"], m["kprune compiled_model"]["median_ms"]
        lines.append(f"| {row['model']} | {row['variant']} | {row['macs'] / 1e6:,.0f} M | {cell('kprune interpreter')} "
                     f"| {cell('kprune compiled_model')} | {cell('litert-benchmark')} | {interp / ref:.3f} "
                     f"| {compiled / ref:.3f} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["ResNet50", "MobileNetV2"])
    parser.add_argument("--size", type=int, default=224, help="input height and width")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--folder", default=None, help="where the .tflite files go (default: a temporary folder)")
    parser.add_argument("--out", default="benchmarks/results/litert_crosscheck.json")
    parser.add_argument("--quick", action="store_true", help="64x64 inputs, 5 runs, 1 round")
    args = parser.parse_args(argv)
    if args.quick:
        args.size, args.runs, args.warmup, args.rounds = 64, 5, 1, 1

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from _results import write_json

    start = time.time()
    loads = [{"after": "start", "loadavg": loadavg()}]
    affinity = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    folder = args.folder or tempfile.mkdtemp(prefix="litert_crosscheck-")
    rows = []
    for name in args.models:
        print(f"building, pruning and converting {name} at {args.size}x{args.size} ...", flush=True)
        files = build_files(name, args.size, folder)
        for variant in ("dense", "compacted"):
            info = files[variant]
            difference = outputs_agree(info["path"], args.threads)
            print(f"  {variant}: {info['bytes']:,} bytes, {info['macs']:,} MACs; "
                  f"Interpreter vs CompiledModel max |diff| {difference:.3g}; timing ...", flush=True)
            medians = measure(info["path"], args.threads, args.runs, args.warmup, args.rounds, loads)
            rows.append({"model": name, "variant": variant, **info, "max_abs_output_difference": difference,
                         "medians": medians})
    loads.append({"after": "end", "loadavg": loadavg()})
    printed = table(rows)
    ones = [entry["loadavg"][0] for entry in loads]
    print()
    print(printed)
    print(f"\n{args.threads} thread(s), {args.runs} runs after {args.warmup} warm-up per measurement, "
          f"{args.rounds} rounds (median of round medians); CPU affinity {affinity}; "
          f"1-minute load average {min(ones):.2f}-{max(ones):.2f} (start {ones[0]:.2f}, end {ones[-1]:.2f}); "
          f"wall {time.time() - start:.0f} s")
    from importlib.metadata import version

    write_json(args.out, {
        "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "settings": {"size": args.size, "threads": args.threads, "runs": args.runs, "warmup": args.warmup,
                     "rounds": args.rounds, "models": args.models},
        "litert_benchmark": litert_benchmark_command(),
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpu_count": os.cpu_count(),
                    "affinity": affinity, "python": platform.python_version(),
                    "ai_edge_litert": version("ai-edge-litert"), "tensorflow": version("tensorflow"),
                    "keras": version("keras")},
        "loadavg": loads,
        "wall_s": round(time.time() - start, 1),
        "rows": rows,
        "table": printed,
    })


if __name__ == "__main__":
    main()
