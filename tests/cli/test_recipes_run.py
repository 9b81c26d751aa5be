"""The shipped transformer recipe runs end to end through `kprune-cli prune` (shortened with
--set): heads and MLP units pruned, the compacted ViT smaller, its TFLite file written."""

import json
import os

import pytest
from click.testing import CliRunner

from kprune.cli.main import cli

FMNIST = "/usr/share/datasets/fashion-mnist"


def test_vit_heads_recipe_prunes_heads_and_units(tmp_path):
    if not os.path.isdir(FMNIST):
        pytest.skip("needs Debian's dataset-fashion-mnist")
    out = tmp_path / "run"
    sets = ["train.epochs=1", "finetune.epochs=1", "data.take=256", "data.test_take=128",
            "export.benchmark.runs=2", "export.benchmark.warmup=1"]
    args = ["prune", "recipes/vit_heads.yaml", "--out", str(out)]
    for s in sets:
        args += ["--set", s]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    result = json.loads((out / "result.json").read_text())
    assert result["skipped"] == {}
    # 2 of 4 heads and 64 of 128 MLP units kept in every block
    assert result["macs"]["speedup"] < 0.6 * result["macs"]["original"]
    assert result["params"]["speedup"] < 0.7 * result["params"]["original"]
    assert result["tflite_bytes"]["speedup"] < result["tflite_bytes"]["original"]
