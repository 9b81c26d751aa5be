"""Issue 17: readable progress of `kprune-cli prune` — stage headers, `Epoch k/N` of the whole stage
(also after --resume), no per-layer sparsity on the console (it is in log.jsonl), the sparsity
note, and ratios in one direction (dense / pruned)."""

import json

import pytest
from click.testing import CliRunner

from kprune.cli.main import cli, format_result


def test_prune_prints_stages_epochs_and_the_sparsity_note(tiny_recipe, tmp_path):
    out = tmp_path / "run"
    res = CliRunner().invoke(cli, ["prune", str(tiny_recipe), "--out", str(out)])
    assert res.exit_code == 0, res.output
    text = res.output
    headers = ["[1/6] training", "[2/6] pruning", "[3/6] fine-tuning", "[4/6] compacting", "[5/6] export",
               "[6/6] benchmark"]
    positions = [text.index(h) for h in headers]
    assert positions == sorted(positions)
    train, finetune = text[positions[0]:positions[1]], text[positions[2]:positions[3]]
    assert train.count("Epoch 1/2") == 1 and train.count("Epoch 2/2") == 1
    assert finetune.count("Epoch 1/2") == 1 and finetune.count("Epoch 2/2") == 1
    assert "sparsity/" not in text                       # per-layer entries stay off the console
    # LeNet-5's 120 and 84 units keep 64 and 40 (round_to: auto, nearest multiple of 8); 6 and 16 stay exact
    assert ("pruned filters/channels of the 4 selected layer(s): 0.4667 to 0.5238 (recipe sparsity 0.5; kept "
            "channel counts rounded by round_to: auto, 1 keeps them exact)") in text
    assert "coupled layers included" in text
    events = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    tuned = [e for e in events if e.get("stage") == "finetune"]
    assert len(tuned) == 2 and set(tuned[0]["layer_sparsity"]) >= {"conv1", "conv2", "fc1"}
    prune = next(e for e in events if e.get("stage") == "prune")
    assert prune["selected_unit_sparsity"] == pytest.approx({"conv1": 0.5, "conv2": 0.5, "fc1": 56 / 120, "fc2": 44 / 84})
    assert prune["sparsity"] > 0.5                       # the total counts coupled input channels too

    # resumed after the first training epoch: the header still counts the whole stage
    state = json.loads((out / "state.json").read_text())
    train = state["stages"]["train"]  # its last epoch checkpoint stands in for the first one's
    state["stages"] = {"train": {"epoch": 1, "test_accuracy": train["test_accuracy"],
                                 "checkpoint": train["checkpoint"]}}
    (out / "state.json").write_text(json.dumps(state))
    res = CliRunner().invoke(cli, ["prune", str(tiny_recipe), "--out", str(out), "--resume"])
    assert res.exit_code == 0, res.output
    train = res.output[res.output.index("[1/6] training"):res.output.index("[2/6] pruning")]
    assert "Epoch 2/2" in train and "Epoch 1/2" not in train


def test_report_ratios_are_dense_over_pruned():
    result = {"performance": {"original": 0.90, "pruned": 0.5, "finetuned": 0.88},
              "params": {"original": 400, "speedup": 100, "nonzero": 100},
              "macs": {"original": 1000, "speedup": 250, "effective": 250},
              "flops": {"original": 2000, "speedup": 500},
              "export": {"tflite_bytes": {"original": 3000, "speedup": 1000},
                         "latency_ms": {"1": {"original": 2.0, "speedup": 0.5, "ratio": 4.0}}}}
    text = format_result(result)
    assert "dense/pruned" in text.splitlines()[0]
    params = next(line for line in text.splitlines() if line.startswith("params "))
    latency = next(line for line in text.splitlines() if line.startswith("latency ms"))
    assert params.endswith("4.000x") and latency.endswith("4.000x")   # same direction as result.json's ratio
    accuracy = next(line for line in text.splitlines() if line.startswith("test accuracy (Keras)"))
    assert accuracy.endswith("-2.00 pts")
