"""Reference points for the comparison figure: NNI's published curves and users' own files.

A reference file is CSV with a header row. Columns (see ``anchors/README.md``):

* ``pruner`` (required) — the legend name;
* ``finetuned_acc`` (required) — top-1 accuracy as a fraction in [0, 1];
* ``params_after``, ``flops_after``, ``latency_ms`` — the x values (at least one);
* ``model``, ``dataset`` (optional) — rows are drawn only for a sweep of that model/dataset;
* ``source`` (optional) — prefixed to the legend name (default: the file's stem).

``nni`` names the shipped ``anchors/nni_comparison_of_pruners.csv``: NNI's "comparison of
filter pruning algorithms" on CIFAR-10 (VGG16, ResNet18, ResNet50; L1, L2, FPGM, NetAdapt,
SA, AutoCompress), drawn as ``NNI <pruner>``.
"""

from __future__ import annotations

import csv
import os

from kprune.errors import KPruneError

ANCHORS = os.path.join(os.path.dirname(__file__), "anchors")
NNI = os.path.join(ANCHORS, "nni_comparison_of_pruners.csv")
COLUMNS = {"params": "params_after", "flops": "flops_after", "latency_ms": "latency_ms"}


def read(path: str, source: str | None = None, dataset: str | None = None) -> list:
    """Rows of a reference CSV as dicts with ``name`` (legend) and float x/accuracy values.

    Raises:
        KPruneError: for a missing file or missing required columns.
    """
    if not os.path.exists(path):
        raise KPruneError(f"reference file not found: {path!r}. Give a CSV in the format of "
                          f"{os.path.join(ANCHORS, 'README.md')}, or 'nni' / 'auto'.")
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    cols = set(rows[0]) if rows else set()
    missing = {"pruner", "finetuned_acc"} - cols
    if missing or not cols & set(COLUMNS.values()):
        raise KPruneError(f"reference file {path!r} needs the columns pruner, finetuned_acc and at least one of "
                          f"{sorted(COLUMNS.values())}. Received columns: {sorted(cols)}.")
    stem = source or os.path.splitext(os.path.basename(path))[0]
    out = []
    for row in rows:
        r = {"name": f"{row.get('source') or stem} {row['pruner']}", "model": (row.get("model") or "").lower(),
             "dataset": (row.get("dataset") or dataset or "").lower(), "acc": float(row["finetuned_acc"])}
        for metric, col in COLUMNS.items():
            r[metric] = float(row[col]) if row.get(col) not in (None, "") else None
        out.append(r)
    return out


def select(references, model: str, dataset: str) -> list:
    """The reference rows to draw for a sweep of ``model`` on ``dataset``.

    Args:
        references: ``"auto"`` (NNI's curves only when model and dataset match them),
            ``"nni"`` (NNI's rows of ``model``), or CSV paths; a list of them.
        model, dataset: the sweep's zoo model and dataset names.
    """
    model, dataset = (model or "").lower(), (dataset or "").lower()
    rows = []
    for ref in references or ():
        if ref in ("auto", "nni"):
            nni = read(NNI, source="NNI", dataset="cifar10")
            if ref == "nni" or dataset in ("cifar10", ""):
                rows += [r for r in nni if r["model"] == model]
            continue
        rows += [r for r in read(ref) if (not r["model"] or r["model"] == model)
                 and (not r["dataset"] or r["dataset"] == dataset)]
    return rows


def points(rows, metric: str) -> dict:
    """``{legend name: [(x, accuracy), ...]}`` sorted by x, for one panel's metric."""
    out = {}
    for r in rows:
        if r.get(metric) is not None:
            out.setdefault(r["name"], []).append((r[metric], r["acc"]))
    return {k: sorted(v) for k, v in out.items()}


def pruner_names(rows) -> list:
    """The legend names of the rows, each once."""
    return list(dict.fromkeys(r["name"] for r in rows))
