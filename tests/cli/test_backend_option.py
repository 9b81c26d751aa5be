"""`kprune-cli --backend jax` (or KERAS_BACKEND=jax) runs a whole recipe on Keras' JAX backend;
a backend whose package is missing is a usage error naming it."""

import importlib.util
import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from kprune.cli.main import cli

FMNIST = "/usr/share/datasets/fashion-mnist"

TINY = """
name: tiny_jax
seed: 0
model: {name: lenet5}
data: {name: fashion_mnist, batch_size: 64, take: 256, test_take: 128}
train: {epochs: 1, optimizer: {name: adam, learning_rate: 0.001}}
prune:
  criterion: l1
  granularity: filter
  config_list:
    - {op_types: [Conv2D, Dense], sparsity: 0.5}
    - {op_names: [predictions], exclude: true}
finetune: {epochs: 1, optimizer: {name: adam, learning_rate: 0.0005}}
export: {quantize: none, benchmark: {threads: [1], runs: 3, warmup: 1}}
"""


def test_prune_recipe_on_the_jax_backend(tmp_path):
    if importlib.util.find_spec("jax") is None:
        pytest.skip("jax is not installed (pip install -e '.[jax]')")
    if not os.path.isdir(FMNIST):
        pytest.skip("needs Debian's dataset-fashion-mnist")
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(TINY)
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    code = "from kprune.cli.main import main; main()"
    res = subprocess.run([sys.executable, "-c", code, "--backend", "jax", "prune", str(recipe), "--out",
                          str(tmp_path / "run"), "--quiet"], env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["machine"]["keras_backend"] == "jax"
    assert result["macs"]["speedup"] < 0.5 * result["macs"]["original"]
    assert result["export"]["tflite_accuracy"]["speedup"] == pytest.approx(result["performance"]["finetuned"], abs=0.01)


def test_a_backend_without_its_package_is_a_usage_error():
    missing = next((b for b in ("torch", "jax") if importlib.util.find_spec(b) is None), None)
    if missing is None:
        pytest.skip("every backend's package is installed")
    res = CliRunner().invoke(cli, ["--backend", missing, "count", "x.keras"])
    assert res.exit_code == 2 and f"needs the `{missing}` package" in res.output
