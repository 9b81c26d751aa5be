"""Reading a comparison's results and the mean ± std table over seeds (``summary.md``, ``summary.csv``).

Standard deviations are sample standard deviations (``n - 1``) over seeds, 0 for one seed.
"""

from __future__ import annotations

import csv
import glob
import io
import json
import math
import os
import statistics

from kprune.errors import KPruneError
from kprune.io import atomic_write_bytes

METRICS = (  # (column, path in result.json)
    ("params", ("params", "speedup")),
    ("flops", ("flops", "speedup")),
    ("latency_ms", None),
    ("tflite_bytes", ("tflite_bytes", "speedup")),
    ("acc_pruned", ("performance", "pruned")),
    ("acc_recalibrated", ("performance", "pruned_recalibrated")),
    ("acc_finetuned", ("performance", "finetuned")),
)


def load_results(results_dir) -> list:
    """Every finished cell's ``result.json`` under ``results_dir`` (dense models included).

    Raises:
        KPruneError: when the folder holds no result.
    """
    results_dir = os.fspath(results_dir)
    paths = sorted(glob.glob(os.path.join(results_dir, "dense", "*", "result.json"))
                   + glob.glob(os.path.join(results_dir, "cells", "*", "*", "*", "result.json")))
    out = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            r = json.load(f)
        if "cell" in r:
            out.append(r)
    order = _pruner_order(results_dir)
    out.sort(key=lambda r: (order.get(r["cell"]["pruner"], len(order)), r["cell"]["pruner"]))
    if not out:
        raise KPruneError(f"no comparison results under {results_dir!r}: expected dense/seed-*/result.json and "
                          "cells/PRUNER/TARGET/seed-*/result.json, as `kprune-cli compare` writes them.")
    return out


def _pruner_order(results_dir) -> dict:
    """Pruner name -> position in the sweep (``sweep.json``): pruners, then baselines."""
    path = os.path.join(results_dir, "sweep.json")
    names = ["dense"]
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            sweep = json.load(f)
        names += [p["name"] for p in sweep.get("pruners", [])] + ["uniform-width"]
        names += [f"scratch-{p['name']}" for p in sweep.get("pruners", [])]
    return {n: i for i, n in enumerate(names)}


def latency_threads(results) -> str | None:
    """The smallest benchmark thread count present in the results (as its key, e.g. ``"1"``)."""
    keys = {t for r in results for t in (r.get("latency_ms") or {})}
    return min(keys, key=int) if keys else None


def value(result: dict, metric: str, threads: str | None = None):
    """One number of a result: ``params``, ``flops``, ``latency_ms``, ``acc_finetuned``... (None if absent)."""
    path = dict(METRICS)[metric]
    if metric == "latency_ms":
        lat = (result.get("latency_ms") or {}).get(threads or "") or {}
        return lat.get("speedup")
    cur = result
    for key in path:
        cur = (cur or {}).get(key) if isinstance(cur, dict) else None
    if result["cell"]["role"] == "dense" and metric in ("acc_pruned", "acc_recalibrated"):
        return None
    return cur


def mean_std(values):
    """``(mean, sample std)`` of the non-None values, ``(None, None)`` if none."""
    xs = [float(v) for v in values if v is not None]
    if not xs:
        return None, None
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def summarize(results) -> list:
    """One row per (pruner, target): seeds, and mean/std of every metric in :data:`METRICS`.

    Returns:
        Dicts with ``pruner``, ``role``, ``target_kind``, ``target_value``, ``n``, ``seeds``,
        ``latency_threads`` and ``<metric>_mean`` / ``<metric>_std``; the dense model first,
        then pruners in order of appearance, targets in sweep order.
    """
    threads = latency_threads(results)
    groups = {}
    for r in results:
        c = r["cell"]
        key = (c["pruner"], c["target"]["kind"], c["target"]["value"])
        groups.setdefault(key, []).append(r)
    rows = []
    for (pruner, kind, val), rs in groups.items():
        rs = sorted(rs, key=lambda r: r["cell"]["seed"])
        row = {"pruner": pruner, "role": rs[0]["cell"]["role"], "target_kind": kind or "", "target_value": val,
               "n": len(rs), "seeds": " ".join(str(r["cell"]["seed"]) for r in rs), "latency_threads": threads or ""}
        for metric, _ in METRICS:
            row[f"{metric}_mean"], row[f"{metric}_std"] = mean_std(value(r, metric, threads) for r in rs)
        rows.append(row)
    order = {"dense": 0, "prune": 1, "uniform-width": 2, "scratch": 3}
    first = {}
    for r in results:
        first.setdefault(r["cell"]["pruner"], len(first))
    rows.sort(key=lambda row: (order.get(row["role"], 9), first[row["pruner"]], row["target_kind"],
                               row["target_value"] if row["target_value"] is not None else -1))
    return rows


def _fmt(mean, std, pct=False, digits=2):
    if mean is None:
        return "–"
    if pct:
        return f"{100 * mean:.{digits}f} ± {100 * std:.{digits}f}"
    if abs(mean) >= 1000:
        return f"{mean:,.0f} ± {std:,.0f}"
    return f"{mean:.4g} ± {std:.2g}"


def to_markdown(rows, title: str | None = None) -> str:
    """The table as Markdown: accuracies in % as mean ± std over seeds."""
    threads = next((r["latency_threads"] for r in rows if r["latency_threads"]), "")
    lat = f"latency ms ({threads} thr.)" if threads else "latency ms"
    head = ["pruner", "target", "seeds", "params", "FLOPs", lat, "pruned acc. %", "+ BN recal. %",
            "fine-tuned acc. %"]
    lines = ([f"## {title}", ""] if title else []) + [
        "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        target = f"{r['target_kind']} {r['target_value']:g}" if r["target_kind"] else "–"
        lines.append("| " + " | ".join([
            r["pruner"], target, str(r["n"]), _fmt(r["params_mean"], r["params_std"]),
            _fmt(r["flops_mean"], r["flops_std"]), _fmt(r["latency_ms_mean"], r["latency_ms_std"]),
            _fmt(r["acc_pruned_mean"], r["acc_pruned_std"], pct=True),
            _fmt(r["acc_recalibrated_mean"], r["acc_recalibrated_std"], pct=True),
            _fmt(r["acc_finetuned_mean"], r["acc_finetuned_std"], pct=True)]) + " |")
    lines += ["", "Mean ± sample standard deviation over seeds. Accuracies are top-1 on the test split "
              "(`performance.pruned`, `.pruned_recalibrated`, `.finetuned` of each cell's result.json)."]
    return "\n".join(lines) + "\n"


def to_csv(rows) -> str:
    """The table as CSV (full precision; empty cells for missing values)."""
    buf = io.StringIO()
    fields = ["pruner", "role", "target_kind", "target_value", "n", "seeds", "latency_threads"] + [
        f"{m}_{s}" for m, _ in METRICS for s in ("mean", "std")]
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None or (isinstance(r.get(k), float) and math.isnan(r[k])) else r[k])
                    for k in fields})
    return buf.getvalue()


def write_summary(results_dir) -> str | None:
    """Writes ``summary.md`` and ``summary.csv`` into ``results_dir``; returns the Markdown path
    (None when there is no finished cell yet)."""
    try:
        results = load_results(results_dir)
    except KPruneError:
        return None
    rows = summarize(results)
    name = results[0]["cell"]["sweep"]
    md = os.path.join(os.fspath(results_dir), "summary.md")
    atomic_write_bytes(md, to_markdown(rows, title=f"Sweep `{name}`").encode())
    atomic_write_bytes(os.path.join(os.fspath(results_dir), "summary.csv"), to_csv(rows).encode())
    return md
