"""``kprune-cli compare`` and ``kprune-cli plot`` (CliRunner)."""

import json
import os

import pytest
import yaml
from click.testing import CliRunner

from kprune.cli.main import cli

FMNIST = "/usr/share/datasets/fashion-mnist"
TINY = os.path.join(os.path.dirname(__file__), "..", "..", "recipes", "compare", "tiny.yaml")


def _sweep(tmp_path, **changes):
    with open(TINY, encoding="utf-8") as f:
        data = yaml.safe_load(f)
    data.update(changes)
    p = tmp_path / "sweep.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def test_help_lists_compare_and_plot():
    res = CliRunner().invoke(cli, ["--help"])
    assert res.exit_code == 0 and "compare" in res.output and "plot" in res.output
    res = CliRunner().invoke(cli, ["compare", "--help"])
    assert res.exit_code == 0 and "--jobs" in res.output and "--no-resume" in res.output
    res = CliRunner().invoke(cli, ["plot", "--help"])
    assert res.exit_code == 0 and "--logx" in res.output and "--reference" in res.output


def test_invalid_sweep_is_a_clean_error(tmp_path):
    p = _sweep(tmp_path, targets={"sparsity": [0.5], "flopz": [0.5]})
    res = CliRunner().invoke(cli, ["compare", str(p), "--out", str(tmp_path / "out")])
    assert res.exit_code != 0 and "targets.flopz" in res.output and "Traceback" not in res.output


def test_plot_of_an_empty_folder_is_a_clean_error(tmp_path):
    res = CliRunner().invoke(cli, ["plot", str(tmp_path)])
    assert res.exit_code != 0 and "no comparison results" in res.output and "Traceback" not in res.output


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir(FMNIST), reason="needs Debian's dataset-fashion-mnist")
def test_compare_then_plot(tmp_path):
    p = _sweep(tmp_path, pruners=[{"name": "l1", "set": {"prune.criterion": "l1"}}], targets={"sparsity": [0.5]},
               seeds=[0], baselines={"random": False, "uniform_width": False, "scratch": False})
    out = tmp_path / "out"
    res = CliRunner().invoke(cli, ["compare", str(p), "--out", str(out), "--jobs", "1", "--quiet"])
    assert res.exit_code == 0, res.output
    assert "2/2 cells done, 0 skipped, 0 failed" in res.output and "| l1 | sparsity 0.5 | 1 |" in res.output
    result = json.loads((out / "cells" / "l1" / "sparsity-0.5" / "seed-0" / "result.json").read_text())
    assert result["cell"]["pruner"] == "l1" and result["latency_ms"]["1"]["speedup"] > 0
    res = CliRunner().invoke(cli, ["plot", str(out), "--logx", "--reference", "none"])
    assert res.exit_code == 0, res.output
    for name in ("comparison.png", "comparison.svg", "summary.md", "summary.csv"):
        assert (out / name).exists() and f"wrote {out / name}" in res.output
    res = CliRunner().invoke(cli, ["compare", str(p), "--out", str(out), "--quiet"])  # resume: nothing reruns
    assert res.exit_code == 0 and "2/2 cells done" in res.output
    assert json.loads((out / "compare.json").read_text())["cells"][1]["reused"] is True


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir(FMNIST), reason="needs Debian's dataset-fashion-mnist")
@pytest.mark.parametrize("jobs", ["1", "2"])
def test_compare_runs_more_cells_than_a_worker_lifetime(tmp_path, monkeypatch, jobs):
    """Python 3.11's max_tasks_per_child hung after a worker's last cell; one cell per worker here."""
    import signal
    import sys
    import kprune.runner.compare  # noqa: F401 - the module (kprune.runner.compare is also the function)
    monkeypatch.setattr(sys.modules["kprune.runner.compare"], "CELLS_PER_WORKER", 1)
    p = _sweep(tmp_path, pruners=[{"name": "l1", "set": {"prune.criterion": "l1"}}],
               targets={"sparsity": [0.3, 0.5, 0.7]}, seeds=[0],
               baselines={"random": False, "uniform_width": False, "scratch": False})
    data = yaml.safe_load(p.read_text())
    data["recipe"].update(model={"name": "lenet300_100", "width": 0.1}, export={"enabled": False},
                          data={"name": "fashion_mnist", "batch_size": 64, "take": 128, "test_take": 128})
    data["recipe"]["prune"].pop("recalibrate_bn")
    p.write_text(yaml.safe_dump(data))

    def hung(signum, frame):
        raise TimeoutError("compare hung")
    old = signal.signal(signal.SIGALRM, hung)
    signal.alarm(400)
    try:
        res = CliRunner().invoke(cli, ["compare", str(p), "--out", str(tmp_path / "out"), "--jobs", jobs, "--quiet"])
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    assert res.exit_code == 0, res.output
    assert "4/4 cells done, 0 skipped, 0 failed" in res.output
