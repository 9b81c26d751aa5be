"""Loading without executing code: .keras files in Keras safe mode, recipes with yaml.safe_load."""

import os
import re

import keras
import numpy as np
import pytest
from click.testing import CliRunner

import kprune
from kprune.cli.main import cli
from kprune.errors import KPruneError, RecipeError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def lambda_file(tmp_path):
    """A .keras file whose Lambda layer's bytecode creates a marker file when it runs."""
    marker = tmp_path / "executed"
    fn = eval(f"lambda t: (open({str(marker)!r}, 'w').close(), t)[1]")  # noqa: S307 - the test's own payload
    inp = keras.Input((4,))
    out = keras.layers.Dense(2)(keras.layers.Lambda(fn, name="payload")(inp))
    path = tmp_path / "payload.keras"
    keras.Model(inp, out).save(path)
    if marker.exists():
        marker.unlink()   # building the model above ran the function once
    return str(path), marker


def test_models_get_refuses_lambda_bytecode(lambda_file):
    path, marker = lambda_file
    with pytest.raises(KPruneError, match=r"safe_mode=True.*Lambda"):
        kprune.models.get(path)
    assert not marker.exists()


@pytest.mark.parametrize("command", ["count", "inspect"])
def test_cli_refuses_lambda_bytecode(lambda_file, command):
    path, marker = lambda_file
    res = CliRunner().invoke(cli, [command, path])
    assert res.exit_code != 0
    assert "safe_mode=True" in res.output and "Lambda" in res.output
    assert "Traceback" not in res.output
    assert not marker.exists()


def test_pipeline_model_path_refuses_lambda_bytecode(lambda_file, tmp_path):
    import kprune.runner.pipeline
    path, marker = lambda_file
    recipe = {"model": {"name": path}, "data": {"name": "fashion_mnist", "take": 16, "test_take": 16},
              "prune": {"config_list": [{"op_types": ["Dense"], "sparsity": 0.5}]}, "export": {"enabled": False}}
    with pytest.raises(KPruneError, match="safe_mode=True"):
        kprune.runner.pipeline.run(recipe, str(tmp_path / "out"), verbose=0)
    assert not marker.exists()


def test_safe_files_still_load(tmp_path):
    inp = keras.Input((4,))
    model = keras.Model(inp, keras.layers.Dense(2)(inp))
    model.save(tmp_path / "ok.keras")
    again = kprune.models.get(str(tmp_path / "ok.keras"))
    x = np.ones((1, 4), "float32")
    np.testing.assert_allclose(again(x), model(x))


def test_recipe_yaml_tags_are_not_constructed(tmp_path):
    marker = tmp_path / "pwned"
    text = f"prune: !!python/object/apply:os.system ['touch {marker}']\n"
    with pytest.raises(RecipeError, match="malformed YAML"):
        kprune.Recipe.from_yaml(text)
    recipe_file = tmp_path / "evil.yaml"
    recipe_file.write_text(text)
    res = CliRunner().invoke(cli, ["prune", str(recipe_file), "--out", str(tmp_path / "o")])
    assert res.exit_code != 0 and "malformed YAML" in res.output
    assert not marker.exists()


def test_source_has_no_unsafe_loaders():
    """No safe_mode=False, no yaml.load/unsafe_load/full_load, no pickle.load anywhere in the product."""
    pattern = re.compile(r"safe_mode\s*=\s*False|yaml\.(load|unsafe_load|full_load)\(|pickle\.loads?\(|"
                         r"marshal\.loads?\(|\beval\(|\bexec\(")
    hits = []
    for folder in ("kprune", "cli", "export"):
        for dirpath, _, files in os.walk(os.path.join(ROOT, folder)):
            for name in files:
                if name.endswith(".py"):
                    text = open(os.path.join(dirpath, name), encoding="utf-8").read()
                    hits += [f"{name}: {m.group(0)}" for m in pattern.finditer(text)]
    assert hits == []


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_tampered_cifar_pickle_is_refused(tmp_path, monkeypatch):
    import pickle

    from kprune.data import local
    from kprune.errors import DataError
    folder = tmp_path / "cifar10" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    marker = tmp_path / "executed"
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({b"data": _Payload(str(marker)), b"labels": [0]}, f, protocol=2)
    monkeypatch.setenv(local.ENV_VAR, str(tmp_path))
    local._read_cached.cache_clear()
    with pytest.raises(DataError, match=r"refusing to unpickle `(io|builtins)\.open`"):
        local.local_arrays("cifar10", "test")
    assert not marker.exists()


def test_genuine_cifar_style_pickle_loads(tmp_path, monkeypatch):
    import pickle

    from kprune.data import local
    folder = tmp_path / "cifar10" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    data = np.arange(2 * 3072, dtype=np.uint8).reshape(2, 3072)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({b"data": data, b"labels": [3, 7]}, f, protocol=2)
    monkeypatch.setenv(local.ENV_VAR, str(tmp_path))
    local._read_cached.cache_clear()
    images, labels = local.local_arrays("cifar10", "test")
    assert images.shape == (2, 32, 32, 3) and list(labels) == [3, 7]
    # channel-first rows of 1024 per colour, as CIFAR stores them
    assert images[0, 0, 0].tolist() == [0, 1024 % 256, 2048 % 256]
