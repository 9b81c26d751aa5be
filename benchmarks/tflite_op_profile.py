"""Where the time of a ``.tflite`` file goes, op by op: each operator timed alone, as a one-op model.

The LiteRT Python package (``ai_edge_litert`` 2.3) exposes no per-op profiler (its
``Interpreter`` has no profiling option and ``litert-benchmark`` no ``--enable_op_profiling``),
and LiteRT's native ``benchmark_model`` binary is not installed here. So each operator is cut
out of the file with ``ai_edge_litert.tools.flatbuffer_utils`` into a model holding that one
operator (its constant inputs kept, its other inputs made model inputs), fed with the values
that tensor really has when the whole model runs (recorded once with
``experimental_preserve_all_tensors``), and timed like the whole file: LiteRT with its default
XNNPACK delegate, 1 thread, ``--runs`` ``invoke()`` calls after ``--warmup``, median.

What this measures and what it does not: an op timed alone pays one ``invoke()`` of its own
(the per-call overhead is printed: the cheapest op's time bounds it from above), and inside the
whole model XNNPACK runs consecutive supported ops as one partition without that overhead,
while the ops it does not support (the dynamic-shape ``SHAPE``/``GATHER``/``REDUCE_PROD``/``PACK``
chains, ``CUMSUM``...) split the graph into partitions and run on LiteRT's built-in kernels. The
sum of the parts is therefore an upper bound of the whole; the table is for *where* the time
goes and how each op type scales between two files, not for exact totals.

Usage::

    python benchmarks/tflite_op_profile.py DENSE.tflite COMPACTED.tflite [--runs 300] [--cpu 1]
        [--json benchmarks/results/vit_op_profile.json]
    python benchmarks/tflite_op_profile.py --from-json benchmarks/results/vit_op_profile.json   # reprint
"""

from __future__ import annotations

import argparse
import collections
import copy
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np


def _values(path):
    """Every tensor's value in one run of the whole model on fixed random inputs."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    interp = Interpreter(model_path=path, num_threads=1, experimental_preserve_all_tensors=True,
                         experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interp.allocate_tensors()
    rng = np.random.default_rng(0)
    for d in interp.get_input_details():
        interp.set_tensor(d["index"], rng.random(d["shape"]).astype(d["dtype"]))
    interp.invoke()
    out = {}
    for d in interp.get_tensor_details():
        try:
            out[d["index"]] = np.array(interp.get_tensor(d["index"]))
        except ValueError:  # a tensor without data (optional input)
            pass
    return out


def _time(content, feeds, runs, warmup):
    from ai_edge_litert.interpreter import Interpreter
    interp = Interpreter(model_content=bytes(content), num_threads=1)
    details = interp.get_input_details()
    for d, x in zip(details, feeds):
        if tuple(d["shape"]) != x.shape:
            interp.resize_tensor_input(d["index"], x.shape)
    interp.allocate_tensors()
    for d, x in zip(details, feeds):
        interp.set_tensor(d["index"], x.astype(d["dtype"]))
    for _ in range(warmup):
        interp.invoke()
    samples = []
    for _ in range(runs):
        t = time.perf_counter_ns()
        interp.invoke()
        samples.append((time.perf_counter_ns() - t) / 1e3)
    return statistics.median(samples)


def profile(path, runs=300, warmup=30) -> dict:
    """``{"ops": [{index, op, us, shapes}], "whole_us": ...}`` of one file (see the module docstring)."""
    from ai_edge_litert.tools import flatbuffer_utils as fb
    from kprune.export import benchmark
    values = _values(path)
    model = fb.read_model(path)
    sg = model.subgraphs[0]
    operators = list(sg.operators)
    constant = {i for i, t in enumerate(sg.tensors) if model.buffers[t.buffer].data is not None
                and len(model.buffers[t.buffer].data) > 0}
    model.signatureDefs = []
    rows = []
    for k, op in enumerate(operators):
        ins = [int(i) for i in op.inputs if i >= 0 and int(i) not in constant]
        one = copy.copy(model)
        sub = copy.copy(sg)
        sub.operators, sub.inputs, sub.outputs = [op], ins, [int(i) for i in op.outputs]
        one.subgraphs = [sub]
        content = fb.convert_object_to_bytearray(one)
        name = fb.opcode_to_name(model, op.opcodeIndex)
        us = _time(content, [values[i] for i in ins], runs, warmup)
        shapes = [list(values[i].shape) if i in values else None for i in op.inputs if i >= 0]
        rows.append({"index": k, "op": name, "us": us, "input_shapes": shapes,
                     "output_shapes": [list(values[int(i)].shape) for i in op.outputs if int(i) in values]})
    whole = benchmark(path, threads=1, runs=runs, warmup=warmup).median_ms * 1e3
    return {"path": os.path.basename(path), "ops": rows, "whole_us": whole}


#: Op types whose work is proportional to the number of heads or MLP units of a transformer block.
SCALING = ("FULLY_CONNECTED", "BATCH_MATMUL", "SOFTMAX", "GELU")


def by_type(prof, floor=0.0) -> dict:
    """``{op type: [count, µs]}``, each op's time less ``floor`` (not below 0)."""
    out = collections.defaultdict(lambda: [0, 0.0])
    for r in prof["ops"]:
        out[r["op"]][0] += 1
        out[r["op"]][1] += max(0.0, r["us"] - floor)
    return out


def table(a, b, label_a="dense", label_b="compacted") -> str:
    floor = min(r["us"] for r in a["ops"] + b["ops"])
    ta, tb = by_type(a), by_type(b)
    na, nb = by_type(a, floor), by_type(b, floor)
    names = sorted(set(ta) | set(tb), key=lambda n: -ta.get(n, [0, 0.0])[1])
    lines = [(f"| op | n ({label_a}) | µs ({label_a}) | n ({label_b}) | µs ({label_b}) | {label_a} ÷ {label_b} | "
             f"µs less floor ({label_a} / {label_b}) |"), "|---|---|---|---|---|---|---|"]
    for n in names:
        ca, ua = ta.get(n, [0, 0.0])
        cb, ub = tb.get(n, [0, 0.0])
        ratio = f"{ua / ub:.2f}" if ub else "–"
        lines.append(f"| {n} | {ca} | {ua:.1f} | {cb} | {ub:.1f} | {ratio} | "
                     f"{na.get(n, [0, 0.0])[1]:.1f} / {nb.get(n, [0, 0.0])[1]:.1f} |")
    sa, sb = sum(r["us"] for r in a["ops"]), sum(r["us"] for r in b["ops"])
    la, lb = sum(v[1] for v in na.values()), sum(v[1] for v in nb.values())
    lines.append(f"| **sum of ops timed alone** | {len(a['ops'])} | {sa:.1f} | {len(b['ops'])} | {sb:.1f} | "
                 f"{sa / sb:.2f} | {la:.1f} / {lb:.1f} |")
    lines.append(f"| **whole model** | | {a['whole_us']:.1f} | | {b['whole_us']:.1f} | "
                 f"{a['whole_us'] / b['whole_us']:.2f} | |")
    lines.append("")
    scaling = [n for n in SCALING if n in na or n in nb]
    for label, pick in ((f"ops whose work scales with heads and units ({', '.join(scaling)})", lambda n: n in SCALING),
                        ("all other ops", lambda n: n not in SCALING)):
        xa = sum(v[1] for n, v in na.items() if pick(n))
        xb = sum(v[1] for n, v in nb.items() if pick(n))
        lines.append(f"{label}, µs less floor: {xa:.1f} ({label_a}) → {xb:.1f} ({label_b}), ÷ {xa / xb:.2f}")
    lines.append(f"floor = the cheapest op timed alone, {floor:.2f} µs (an upper bound of the per-invoke "
                 "overhead each one-op model adds)")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dense", nargs="?")
    p.add_argument("compacted", nargs="?")
    p.add_argument("--from-json", default=None, help="print the tables of an earlier --json, measuring nothing")
    p.add_argument("--runs", type=int, default=300)
    p.add_argument("--warmup", type=int, default=30)
    p.add_argument("--cpu", type=int, default=None, help="pin the process to this CPU")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    if args.from_json:
        import json
        with open(args.from_json) as f:
            saved = json.load(f)
        print(table(saved["dense"], saved["compacted"]))
        print(f"\n1-minute load average before/after: {saved['loadavg_before'][0]:.2f} / "
              f"{saved['loadavg_after'][0]:.2f}; CPU {saved['cpu']}")
        return 0
    if args.dense is None or args.compacted is None:
        p.error("give DENSE and COMPACTED .tflite files (or --from-json)")
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    load = os.getloadavg()
    a = profile(args.dense, args.runs, args.warmup)
    b = profile(args.compacted, args.runs, args.warmup)
    text = table(a, b)
    print(text)
    print(f"\n1-minute load average before/after: {load[0]:.2f} / {os.getloadavg()[0]:.2f}; CPU {args.cpu}")
    if args.json:
        from kprune.io import atomic_write_json
        atomic_write_json(args.json, {"dense": a, "compacted": b, "runs": args.runs, "warmup": args.warmup,
                                      "cpu": args.cpu, "loadavg_before": list(load),
                                      "loadavg_after": list(os.getloadavg())})
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
