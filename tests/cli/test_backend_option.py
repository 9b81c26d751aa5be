"""`kprune-cli --backend jax|torch` (or KERAS_BACKEND) runs a whole recipe on Keras' JAX or PyTorch
backend; a backend whose package is missing is a usage error naming it."""

import importlib.util
import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from kprune.cli.main import cli


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_prune_recipe_on_another_backend(backend, tiny_recipe, tmp_path):
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed (pip install -e '.[{backend}]')")
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    code = "from kprune.cli.main import main; main()"
    res = subprocess.run([sys.executable, "-c", code, "--backend", backend, "prune", str(tiny_recipe), "--out",
                          str(tmp_path / "run"), "--quiet", "--set", "train.epochs=1", "--set", "finetune.epochs=1"], env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["machine"]["keras_backend"] == backend
    assert result["macs"]["speedup"] < 0.5 * result["macs"]["original"]
    assert result["export"]["tflite_accuracy"]["speedup"] == pytest.approx(result["performance"]["finetuned"], abs=0.01)


@pytest.mark.parametrize("missing", ["torch", "jax"])
def test_a_backend_without_its_package_is_a_usage_error(missing, monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == missing else find_spec(name, *a))
    res = CliRunner().invoke(cli, ["--backend", missing, "count", "x.keras"])
    assert res.exit_code == 2 and f"needs the `{missing}` package" in res.output
