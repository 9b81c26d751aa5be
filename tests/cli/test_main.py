import json

import pytest
from click.testing import CliRunner

from kprune.cli.main import cli

TINY = """
name: tiny
seed: 0
model: {name: lenet300_100}
data: {name: fashion_mnist, batch_size: 64, take: 512, test_take: 256}
train: {epochs: 1, optimizer: {name: adam, learning_rate: 0.001}}
prune:
  criterion: level
  granularity: weight
  config_list:
    - {op_types: [Dense], sparsity: 0.8}
    - {op_names: [predictions], exclude: true}
finetune: {epochs: 1, optimizer: {name: adam, learning_rate: 0.0005}}
export: {quantize: none, benchmark: {threads: [1], runs: 5, warmup: 1}}
"""


@pytest.fixture
def tiny_recipe(recipe_file):  # this module's recipe (weight pruning of LeNet-300-100)
    return recipe_file(TINY, "tiny.yaml")


def test_help_lists_commands_and_examples():
    res = CliRunner().invoke(cli, ["--help"])
    assert res.exit_code == 0
    for cmd in ("prune", "count", "inspect"):
        assert cmd in res.output
    assert "kprune-cli prune recipes/quickstart.yaml" in res.output


def test_prune_end_to_end_writes_result_and_resumes(tiny_recipe, tmp_path):
    out = tmp_path / "run"
    res = CliRunner().invoke(cli, ["prune", str(tiny_recipe), "--out", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    result = json.loads((out / "result.json").read_text())
    assert set(result["performance"]) == {"original", "pruned", "speedup", "finetuned"}
    assert 0.1 < result["performance"]["finetuned"] <= 1.0
    assert result["params"]["original"] == 266_610  # 784*300+300 + 300*100+100 + 100*10+10
    # fc1 and fc2 kernels at 80 % sparsity: 0.8 * (235200 + 30000) = 212160 zeros (a bias
    # of a dead unit may be exactly 0 too, hence <=)
    assert result["params"]["nonzero"] <= 266_610 - 212_160
    assert result["sparsity"]["fc1"] == 0.8 and result["sparsity"]["fc2"] == 0.8
    assert result["latency_ms"]["1"]["original"] > 0
    for name in ("model.keras", "model.tflite", "dense.keras", "log.jsonl", "state.json"):
        assert (out / name).exists(), name
    assert "params (nonzero)" in res.output
    # resume: every stage is done, nothing retrains, same result
    res2 = CliRunner().invoke(cli, ["prune", str(tiny_recipe), "--out", str(out), "--quiet", "--resume"])
    assert res2.exit_code == 0, res2.output
    again = json.loads((out / "result.json").read_text())
    assert again["performance"] == result["performance"] and again["params"] == result["params"]


def test_prune_set_override_error_is_clean(tiny_recipe, tmp_path):
    res = CliRunner().invoke(cli, ["prune", str(tiny_recipe), "--out", str(tmp_path / "x"),
                                   "--set", "prune.config_list[0].sparsity=1.5"])
    assert res.exit_code != 0
    assert "prune.config_list[0].sparsity" in res.output and "Traceback" not in res.output


def test_resume_with_other_recipe_is_refused(tiny_recipe, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "state.json").write_text(json.dumps({"stages": {}, "recipe": {"other": 1}}))
    res = CliRunner().invoke(cli, ["prune", str(tiny_recipe), "--out", str(out), "--resume"])
    assert res.exit_code != 0 and "recipe differs" in res.output


def test_count_and_inspect_zoo_model():
    res = CliRunner().invoke(cli, ["count", "lenet300_100", "--input-shape", "28,28,1"])
    assert res.exit_code == 0, res.output
    assert "params 266,610" in res.output
    res = CliRunner().invoke(cli, ["inspect", "lenet5", "--input-shape", "28,28,1"])
    assert res.exit_code == 0, res.output
    assert "conv1" in res.output and "channel groups" in res.output
    res = CliRunner().invoke(cli, ["count", "nonexistent_net"])
    assert res.exit_code != 0 and "Traceback" not in res.output
