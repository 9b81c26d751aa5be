"""kprune.runner.compare: sweeps, shared dense models, baselines, resume, --jobs."""

import json
import os
import pickle

import pytest
import yaml

from kprune.errors import RecipeError
from kprune.config.recipe import Recipe
from kprune.runner import Sweep, compare, plan
from kprune.runner.sweep import cell_recipe

FMNIST = "/usr/share/datasets/fashion-mnist"
TINY = os.path.join(os.path.dirname(__file__), "..", "..", "recipes", "compare", "tiny.yaml")


def _tiny(**changes) -> dict:
    with open(TINY, encoding="utf-8") as f:
        data = yaml.safe_load(f)
    if "pruners" in changes:
        data["baselines"].pop("scratch_of")
    for key, value in changes.items():
        data[key] = value
    return data


needs_data = pytest.mark.skipif(not os.path.isdir(FMNIST), reason="needs Debian's dataset-fashion-mnist")


# -- the sweep file (no training) ----------------------------------------------------------------
def test_tiny_sweep_expands_into_cells(tmp_path):
    sweep = Sweep.load(TINY)
    assert [p["name"] for p in sweep.pruners] == ["l1", "fpgm", "random"]
    assert sweep.targets == [("sparsity", 0.3), ("sparsity", 0.6)] and sweep.seeds == [0, 1]
    dense, middle, scratch = plan(sweep, tmp_path)
    assert [c["id"] for c in dense] == ["dense/seed-0", "dense/seed-1"]
    assert len(middle) == 2 * 2 * 4 and len(scratch) == 2 * 2  # (3 pruners + uniform-width), scratch of l1
    cell = next(c for c in middle if c["id"] == "fpgm/sparsity-0.6/seed-1")
    r = cell["recipe"].to_dict()
    assert r["model"]["name"] == str(tmp_path / "dense" / "seed-1" / "dense.keras") and r["train"]["epochs"] == 0
    assert r["prune"]["criterion"] == "fpgm" and r["seed"] == 1 and r["prune"]["seed"] == 1
    assert [e["sparsity"] for e in r["prune"]["config_list"]] == [0.6, None]  # the exclude entry is kept
    assert dense[0]["recipe"]["prune"]["config_list"][0]["sparsity"] == 0.0  # dense: trained, not pruned


def test_targets_map_to_config_entries_and_search_budgets():
    base = Sweep.load(TINY).recipe
    sa = {"name": "sa", "set": {"prune.search": {"name": "simulated_annealing", "eval_take": 64}}}
    r = cell_recipe(base, sa, "sparsity", 0.7, seed=3)
    assert r.prune["search"]["constraint"] == "params" and r.prune["search"]["budget"] == pytest.approx(0.3)
    r = cell_recipe(base, sa, "flops", 0.25, seed=3)
    assert (r.prune["search"]["constraint"], r.prune["search"]["budget"]) == ("flops", 0.25)
    slim = cell_recipe(base, {"name": "slim", "set": {"prune.criterion": "slim"}}, "sparsity", 0.5, seed=0)
    assert slim.prune["criterion"] == "slim"  # global by definition: valid because the raw recipe names no scope
    assert Recipe.coerce(pickle.loads(pickle.dumps(slim))).to_dict() == slim.to_dict()  # crosses processes
    r = cell_recipe(base, {"name": "l2", "set": {"prune.criterion": "l2"}}, "params", 0.4, seed=0)
    assert r.prune["search"]["name"] == "uniform" and r.prune["search"]["budget"] == 0.4
    assert r.prune["criterion"] == "l2"


def test_overrides_apply_to_the_base_recipe_and_shipped_sweeps_load():
    sweep = Sweep.load(TINY, overrides=["model.width=0.25", "finetune.epochs=3"])
    assert sweep.recipe.model["width"] == 0.25 and sweep.recipe.finetune["epochs"] == 3
    with pytest.raises(RecipeError, match="model.widht"):
        Sweep.load(TINY, overrides=["model.widht=0.25"])
    cpu = Sweep.load(os.path.join(os.path.dirname(TINY), "fashion_mnist_cpu.yaml"))
    assert [p["name"] for p in cpu.pruners] == ["L1", "L2", "FPGM", "NetAdapt", "SA", "AutoCompress", "random"]
    assert [len(p) for p in plan(cpu, "/tmp/unused")] == [3, 3 * 3 * 8, 3 * 3 * 2]
    gpu = Sweep.load(os.path.join(os.path.dirname(TINY), "cifar10_gpu.yaml"), overrides=["model.name=vgg16"])
    assert gpu.recipe.model["name"] == "vgg16" and gpu.recipe.train["epochs"] == 160
    assert [v for _, v in gpu.targets] == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]


@pytest.mark.parametrize("change, path", [
    ({"pruners": [{"name": "sa", "set": {"prune.search": {"name": "simulated_annealing", "cool": 1}}}]},
     "prune.search.cool"),
    ({"pruners": [{"name": "a", "set": {}}, {"name": "a", "set": {}}]}, "pruners"),
    ({"pruners": [{"name": "a", "sett": {}}]}, "pruners[0].sett"),
    ({"targets": {"sparsity": [1.5]}}, "targets"),
    ({"targets": {"flop": [0.5]}}, "targets.flop"),
    ({"baselines": {"scratch_of": ["nope"]}}, "baselines.scratch_of[0]"),
    ({"recipe": {"prune": {"criterion": "nope"}}}, "recipe.prune.criterion"),
    ({"seeds": []}, "seeds"),
])
def test_invalid_sweeps_name_the_key(change, path):
    with pytest.raises(RecipeError) as e:
        Sweep.load(_tiny(**change))
    assert path in str(e.value)


# -- end to end ----------------------------------------------------------------------------------
def _read(folder):
    with open(os.path.join(folder, "result.json"), encoding="utf-8") as f:
        return json.load(f)


KEYS = ("performance", "params", "flops")


@needs_data
@pytest.mark.slow
def test_tiny_sweep_end_to_end_resume_and_jobs(tmp_path):
    sweep = _tiny(baselines={"random": False, "uniform_width": False, "scratch": False})
    sweep["recipe"]["export"] = {"enabled": False}
    out = tmp_path / "run"
    report = compare(sweep, out, jobs=2, verbose=0)
    assert report["failed"] == [] and len(report["cells"]) == 2 + 8
    assert {c["status"] for c in report["cells"]} == {"done"}
    dense = {s: _read(out / "dense" / f"seed-{s}") for s in (0, 1)}
    for s, d in dense.items():
        assert d["cell"]["role"] == "dense" and d["params"]["original"] == d["params"]["speedup"] == 15_738
    cells = {}
    for name in ("l1", "fpgm"):
        for t in ("0.3", "0.6"):
            for s in (0, 1):
                r = _read(out / "cells" / name / f"sparsity-{t}" / f"seed-{s}")
                cells[name, t, s] = r
                assert r["cell"] == {"sweep": "tiny", "pruner": name, "role": "prune", "baseline": False,
                                     "target": {"kind": "sparsity", "value": float(t)}, "seed": s}
                assert set(r["performance"]) == {"original", "pruned", "pruned_recalibrated", "speedup", "finetuned"}
                # the same initial model for every pruner: the seed's dense model
                assert r["performance"]["original"] == dense[s]["performance"]["finetuned"]
                assert r["params"]["original"] == 15_738 and r["flops"]["original"] == dense[s]["flops"]["speedup"]
                assert r["params"]["speedup"] < r["params"]["original"] and r["seed"] == s
    # layerwise filter pruning: every criterion reaches the same architecture
    assert cells["l1", "0.6", 0]["params"]["speedup"] == cells["fpgm", "0.6", 1]["params"]["speedup"]
    assert os.path.exists(out / "summary.md") and os.path.exists(out / "summary.csv")

    # resume: nothing reruns, no result file is rewritten
    mtimes = {k: os.path.getmtime(out / "cells" / k[0] / f"sparsity-{k[1]}" / f"seed-{k[2]}" / "result.json")
              for k in cells}
    again = compare(sweep, out, jobs=1, verbose=0)
    assert all(c.get("reused") for c in again["cells"])
    assert mtimes == {k: os.path.getmtime(out / "cells" / k[0] / f"sparsity-{k[1]}" / f"seed-{k[2]}" / "result.json")
                      for k in cells}

    # one cell removed, one cell stopped after pruning: --jobs 1 recomputes both, equal to --jobs 2
    import shutil
    gone = out / "cells" / "l1" / "sparsity-0.6" / "seed-1"
    shutil.rmtree(gone)
    partial = out / "cells" / "fpgm" / "sparsity-0.3" / "seed-0"
    os.unlink(partial / "result.json")
    state = json.loads((partial / "state.json").read_text())
    state["stages"] = {k: v for k, v in state["stages"].items() if k in ("train", "prune")}
    (partial / "state.json").write_text(json.dumps(state))
    third = compare(sweep, out, jobs=1, verbose=0)
    rerun = {c["id"] for c in third["cells"] if not c.get("reused")}
    assert rerun == {"l1/sparsity-0.6/seed-1", "fpgm/sparsity-0.3/seed-0"}
    for key, folder in ((("l1", "0.6", 1), gone), (("fpgm", "0.3", 0), partial)):
        new = _read(folder)
        assert {k: new[k] for k in KEYS} == {k: cells[key][k] for k in KEYS}, key
    log = [json.loads(line)["stage"] for line in (partial / "log.jsonl").read_text().splitlines()]
    assert log.count("prune") == 1 and log.count("finetune") == 2  # resumed after pruning, not re-pruned


@needs_data
@pytest.mark.slow
def test_baselines_random_uniform_width_and_scratch(tmp_path):
    sweep = _tiny(pruners=[{"name": "l1", "set": {"prune.criterion": "l1"}}], targets={"sparsity": [0.5]}, seeds=[0],
                  baselines={"random": True, "uniform_width": True, "scratch": True, "match": "flops"})
    out = tmp_path / "run"
    report = compare(sweep, out, jobs=2, verbose=0)
    assert report["failed"] == [] and len(report["cells"]) == 5
    dense = _read(out / "dense" / "seed-0")
    l1 = _read(out / "cells" / "l1" / "sparsity-0.5" / "seed-0")
    rnd = _read(out / "cells" / "random" / "sparsity-0.5" / "seed-0")
    uw = _read(out / "cells" / "uniform-width" / "sparsity-0.5" / "seed-0")
    sc = _read(out / "cells" / "scratch-l1" / "sparsity-0.5" / "seed-0")
    assert rnd["criterion"] == "random" and rnd["cell"]["baseline"] is True
    assert rnd["params"]["speedup"] == l1["params"]["speedup"]
    # uniform-width: a narrower LeNet-5 whose FLOPs match L1's pruned model, trained 1 + 1 epochs
    assert uw["baseline"]["kind"] == "uniform-width" and 0 < uw["baseline"]["width"] < 0.5
    assert uw["baseline"]["reference"] == l1["flops"]["speedup"]
    assert abs(uw["flops"]["speedup"] - l1["flops"]["speedup"]) <= 0.1 * l1["flops"]["speedup"]
    # scratch: L1's compacted architecture, re-initialized, trained for the same total budget
    assert sc["baseline"] == {"kind": "scratch", "of": "l1",
                              "architecture": str(out / "cells" / "l1" / "sparsity-0.5" / "seed-0" / "model.keras")}
    assert sc["params"]["speedup"] == l1["params"]["speedup"] and sc["flops"]["speedup"] == l1["flops"]["speedup"]
    for r in (uw, sc):  # NNI's original -> speedup, original being the seed's dense model
        assert r["params"]["original"] == dense["params"]["original"]
        assert r["performance"]["original"] == dense["performance"]["finetuned"] and r["performance"]["pruned"] is None
        assert r["latency_ms"]["1"]["original"] == dense["latency_ms"]["1"]["original"]
    states = [json.loads((out / "cells" / n / "sparsity-0.5" / "seed-0" / "state.json").read_text())
              for n in ("uniform-width", "scratch-l1")]
    assert [s["recipe"]["train"]["epochs"] for s in states] == [2, 2]  # train 1 + finetune 1
    for r in (dense, l1, rnd, uw, sc):
        assert r["latency_ms"]["1"]["speedup"] > 0 and r["tflite_bytes"]["speedup"] > 0
    import keras
    import numpy as np
    init = keras.saving.load_model(str(out / "cells" / "scratch-l1" / "sparsity-0.5" / "seed-0" / "init.keras"))
    pruned = keras.saving.load_model(str(out / "cells" / "l1" / "sparsity-0.5" / "seed-0" / "model.keras"))
    assert [w.shape for w in init.get_weights()] == [w.shape for w in pruned.get_weights()]
    assert not np.allclose(init.get_weights()[0], pruned.get_weights()[0])


@pytest.mark.slow
def test_a_script_without_main_guard_fails_cleanly_instead_of_hanging(tmp_path):
    import subprocess
    import sys
    script = tmp_path / "unguarded.py"
    script.write_text(f"from kprune.runner import compare\n"
                      f"report = compare({TINY!r}, {str(tmp_path / 'out')!r}, jobs=1, verbose=0)\n"
                      f"print('FAILED', len(report['failed']), report['failed'][0]['error'])\n")
    res = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=500)
    line = next(ln for ln in res.stdout.splitlines() if ln.startswith("FAILED"))
    assert line.startswith("FAILED 22 ") and "__main__" in line
