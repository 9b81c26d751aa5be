"""kprune.runner tables and figure on hand-written results (no training)."""

import csv
import json
import statistics

import pytest

from kprune.errors import KPruneError
from kprune.runner import load_results, plot, summarize, write_summary
from kprune.runner import references as refs

DENSE = {0: 0.90, 1: 0.92}
CELLS = {  # (pruner, role, sparsity, seed) -> (finetuned acc, params, flops, latency ms, pruned acc, recal acc)
    ("l1", "prune", 0.5, 0): (0.80, 500, 9000, 0.50, 0.20, 0.60),
    ("l1", "prune", 0.5, 1): (0.90, 500, 9000, 0.70, 0.30, 0.70),
    ("l1", "prune", 0.7, 0): (0.60, 200, 4000, 0.30, 0.10, 0.40),
    ("l1", "prune", 0.7, 1): (0.64, 200, 4000, 0.34, 0.12, 0.44),
    ("random", "prune", 0.5, 0): (0.70, 500, 9000, 0.52, 0.10, 0.50),
    ("random", "prune", 0.5, 1): (0.74, 500, 9000, 0.56, 0.12, 0.52),
    ("uniform-width", "uniform-width", 0.5, 0): (0.78, 520, 9100, 0.51, None, None),
    ("uniform-width", "uniform-width", 0.5, 1): (0.76, 520, 9100, 0.49, None, None),
}


def _write(path, result):
    path.mkdir(parents=True)
    (path / "result.json").write_text(json.dumps(result))


@pytest.fixture
def results_dir(tmp_path):
    for seed, acc in DENSE.items():
        _write(tmp_path / "dense" / f"seed-{seed}", {
            "model": "vgg16", "dataset": "cifar10", "seed": seed,
            "cell": {"sweep": "fake", "pruner": "dense", "role": "dense", "baseline": True,
                     "target": {"kind": None, "value": None}, "seed": seed},
            "performance": {"original": acc, "pruned": 0.5, "speedup": acc, "finetuned": acc},
            "params": {"original": 1000, "speedup": 1000}, "flops": {"original": 20000, "speedup": 20000},
            "latency_ms": {"1": {"original": 1.0, "speedup": 1.0 + seed / 10}},
            "tflite_bytes": {"original": 4000, "speedup": 4000}})
    for (name, role, s, seed), (acc, params, flops, lat, pruned, recal) in CELLS.items():
        perf = {"original": DENSE[seed], "pruned": pruned, "speedup": acc, "finetuned": acc}
        if recal is not None:
            perf["pruned_recalibrated"] = recal
        _write(tmp_path / "cells" / name / f"sparsity-{s:g}" / f"seed-{seed}", {
            "model": "/x/dense.keras", "dataset": "cifar10", "seed": seed,
            "cell": {"sweep": "fake", "pruner": name, "role": role, "baseline": name != "l1",
                     "target": {"kind": "sparsity", "value": s}, "seed": seed},
            "performance": perf, "params": {"original": 1000, "speedup": params},
            "flops": {"original": 20000, "speedup": flops},
            "latency_ms": {"1": {"original": 1.0, "speedup": lat}, "2": {"original": 0.6, "speedup": lat / 2}},
            "tflite_bytes": {"original": 4000, "speedup": 4 * params}})
    return tmp_path


def _row(rows, pruner, s):
    return next(r for r in rows if r["pruner"] == pruner and r["target_value"] == s)


def test_table_values_are_mean_and_sample_std_over_seeds(results_dir):
    rows = summarize(load_results(results_dir))
    assert [r["pruner"] for r in rows] == ["dense", "l1", "l1", "random", "uniform-width"]
    r = _row(rows, "l1", 0.5)
    assert r["n"] == 2 and r["seeds"] == "0 1" and r["latency_threads"] == "1"
    assert r["acc_finetuned_mean"] == pytest.approx(0.85)
    assert r["acc_finetuned_std"] == pytest.approx(statistics.stdev([0.8, 0.9]))  # 0.0707...
    assert r["acc_pruned_mean"] == pytest.approx(0.25) and r["acc_recalibrated_mean"] == pytest.approx(0.65)
    assert r["latency_ms_mean"] == pytest.approx(0.6) and r["latency_ms_std"] == pytest.approx(0.141421356)
    assert r["params_mean"] == 500 and r["params_std"] == 0 and r["tflite_bytes_mean"] == 2000
    uw = _row(rows, "uniform-width", 0.5)
    assert uw["acc_recalibrated_mean"] is None and uw["acc_finetuned_mean"] == pytest.approx(0.77)
    dense = rows[0]
    assert dense["acc_finetuned_mean"] == pytest.approx(0.91) and dense["acc_pruned_mean"] is None
    assert dense["latency_ms_mean"] == pytest.approx(1.05)

    md_path = write_summary(results_dir)
    md = open(md_path, encoding="utf-8").read()
    assert "| l1 | sparsity 0.5 | 2 | 500 ± 0 | 9,000 ± 0 | 0.6 ± 0.14 | 25.00 ± 7.07 | 65.00 ± 7.07 | " \
           "85.00 ± 7.07 |" in md
    with open(results_dir / "summary.csv", newline="") as f:
        table = list(csv.DictReader(f))
    l1 = next(t for t in table if t["pruner"] == "l1" and t["target_value"] == "0.7")
    assert float(l1["acc_finetuned_mean"]) == pytest.approx(0.62)
    assert float(l1["acc_finetuned_std"]) == pytest.approx(statistics.stdev([0.60, 0.64]))
    assert next(t for t in table if t["pruner"] == "uniform-width")["acc_pruned_mean"] == ""


def test_plot_writes_png_and_svg(results_dir, tmp_path):
    own = tmp_path / "mine.csv"
    own.write_text("source,model,pruner,finetuned_acc,params_after,flops_after\n"
                   "paper,vgg16,L1,0.8,600,10000\npaper,vgg16,L1,0.7,300,5000\npaper,resnet18,L1,0.1,1,1\n")
    paths = plot(results_dir, logx=True, references=("auto", str(own)))
    assert [p.rsplit(".", 1)[1] for p in paths] == ["png", "svg"]
    png = open(paths[0], "rb").read()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    assert "<svg" in open(paths[1], encoding="utf-8").read()
    paths = plot(results_dir, out=tmp_path / "lin", references=(), threads=2, formats=("png",))
    assert paths == [str(tmp_path / "lin.png")]


def test_references_select_and_format_errors(tmp_path):
    rows = refs.select(["auto"], model="vgg16", dataset="cifar10")
    assert len(rows) == 63 and {r["name"] for r in rows} >= {"NNI L1", "NNI SA", "NNI AutoCompress"}
    l1 = refs.points(rows, "params")["NNI L1"]
    assert l1[-1] == (12187336.0, 0.9344)  # sparsity 0.1: the largest model
    assert refs.select(["auto"], model="vgg16", dataset="fashion_mnist") == []
    assert len(refs.select(["nni"], model="vgg16", dataset="fashion_mnist")) == 63
    bad = tmp_path / "bad.csv"
    bad.write_text("pruner,acc\nL1,0.5\n")
    with pytest.raises(KPruneError, match="finetuned_acc"):
        refs.select([str(bad)], model="vgg16", dataset="cifar10")
    with pytest.raises(KPruneError, match="not found"):
        refs.select([str(tmp_path / "none.csv")], model="vgg16", dataset="cifar10")


def test_empty_folder_is_a_clean_error(tmp_path):
    with pytest.raises(KPruneError, match="no comparison results"):
        load_results(tmp_path)
    assert write_summary(tmp_path) is None
