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


def test_prune_recipe_without_tensorflow_installed(tiny_recipe, tmp_path):
    """TensorFlow made uninstalled (tests/backends/no_tensorflow.py): the recipe runs on JAX with the
    numpy data pipeline when export is off, and export on is a recipe error before any training."""
    if importlib.util.find_spec("jax") is None:
        pytest.skip("jax is not installed (pip install -e '.[jax]')")
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    helper = os.path.join(os.path.dirname(os.path.dirname(__file__)), "backends")
    code = (f"import sys; sys.path.insert(0, {helper!r}); from no_tensorflow import block; block(); "
            "from kprune.cli.main import main; main()")
    base = [sys.executable, "-c", code, "--backend", "jax", "prune", str(tiny_recipe), "--quiet",
            "--set", "train.epochs=1", "--set", "finetune.epochs=1"]
    res = subprocess.run(base + ["--out", str(tmp_path / "off"), "--set", "export.enabled=false"], env=env,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    result = json.loads((tmp_path / "off" / "result.json").read_text())
    assert result["machine"]["keras_backend"] == "jax" and "export" not in result
    assert result["macs"]["speedup"] < 0.5 * result["macs"]["original"]
    res = subprocess.run(base + ["--out", str(tmp_path / "on")], env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode != 0
    assert "recipe key `export.enabled`" in res.stderr + res.stdout and "TensorFlow, which is not installed" in res.stderr + res.stdout
    assert not (tmp_path / "on" / "dense.keras").exists()  # refused before training


@pytest.mark.parametrize("missing", ["torch", "jax"])
def test_a_backend_without_its_package_is_a_usage_error(missing, monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == missing else find_spec(name, *a))
    res = CliRunner().invoke(cli, ["--backend", missing, "count", "x.keras"])
    assert res.exit_code == 2 and f"needs the `{missing}` package" in res.output
