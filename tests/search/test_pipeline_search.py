"""``prune.search`` in a recipe: the pipeline and ``kprune-cli prune`` search, then apply the allocation."""

import json

import pytest
from click.testing import CliRunner

from kprune.cli.main import cli

RECIPE = """
name: searched
seed: 0
model: {name: lenet5, width: 0.5}
data: {name: fashion_mnist, batch_size: 64, take: 256, test_take: 128}
train: {epochs: 0}
prune:
  criterion: l1
  granularity: filter
  config_list:
    - {op_types: [Conv2D, Dense], sparsity: 0.5}
  search: {name: simulated_annealing, constraint: params, budget: 0.5, eval_take: 128,
           start_temperature: 10, stop_temperature: 8, cool_down_rate: 0.8}
finetune: {epochs: 0}
export: {enabled: false}
"""


@pytest.fixture
def recipe(recipe_file):
    return recipe_file(RECIPE, "searched.yaml")


def test_cli_prune_runs_the_search_and_meets_the_budget(recipe, tmp_path):
    out = tmp_path / "run"
    res = CliRunner().invoke(cli, ["prune", str(recipe), "--out", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    result = json.loads((out / "result.json").read_text())
    s = result["search"]
    assert s["algorithm"] == "simulated_annealing" and s["met"] is True and s["evaluations"] == 2
    assert result["params"]["speedup"] == s["cost"]["params"] <= 0.5 * result["params"]["original"]
    assert set(s["allocation"]) == {"conv1", "conv2", "fc1", "fc2"}
    traj = json.loads((out / "search" / "trajectory.json").read_text())["trajectory"]
    assert len(traj) == 2
    res2 = CliRunner().invoke(cli, ["prune", str(recipe), "--out", str(out), "--quiet", "--resume"])
    assert res2.exit_code == 0, res2.output
    assert json.loads((out / "result.json").read_text())["params"] == result["params"]


def test_bad_search_key_is_a_clean_error(recipe, tmp_path):
    res = CliRunner().invoke(cli, ["prune", str(recipe), "--out", str(tmp_path / "x"),
                                   "--set", "prune.search.cool_down=0.5"])
    assert res.exit_code != 0
    assert "prune.search.cool_down" in res.output and "Traceback" not in res.output
