"""The selection is checked against the model before any training (issue 14, fail fast)."""

from __future__ import annotations

import keras
import pytest
from click.testing import CliRunner

from kprune.cli.main import cli
from kprune.errors import KPruneError
from kprune.pruning.pruner import check_selection


def _model():
    x = keras.Input((8, 8, 1))
    y = keras.layers.Conv2D(4, 3, name="c1")(x)
    y = keras.layers.GlobalAveragePooling2D()(y)
    return keras.Model(x, keras.layers.Dense(3, name="predictions")(y))


def _recipe(names):
    return {"prune": {"criterion": "l1", "granularity": "filter",
                      "config_list": [{"op_names": names, "sparsity": 0.5}]}}


def test_only_the_output_layer_selected_is_an_error_naming_it():
    with pytest.raises(KPruneError, match="nothing can be pruned.*`predictions`: reaches the model output"):
        check_selection(_model(), _recipe(["predictions"]))


def test_missing_op_names_are_refused():
    with pytest.raises(KPruneError, match="no layer named `conv_that_does_not_exist`"):
        check_selection(_model(), _recipe(["conv_that_does_not_exist"]))


def test_skipped_layers_are_listed_with_their_reasons():
    found = check_selection(_model(), _recipe(["c1", "predictions"]))
    assert found["selected"] == ["c1", "predictions"]
    assert list(found["skipped"]) == ["predictions"]


def test_pipeline_fails_before_training(tmp_path, monkeypatch):
    from kprune.runner import pipeline
    calls = []
    monkeypatch.setattr(pipeline, "_fit_epochs", lambda *a, **k: calls.append(a) or a[1])
    recipe = {"model": {"name": "lenet5", "input_shape": [28, 28, 1], "num_classes": 10},
              "data": {"name": "fashion_mnist", "take": 64, "test_take": 64},
              "train": {"epochs": 1}, **_recipe(["predictions"]), "export": {"enabled": False}}
    with pytest.raises(KPruneError, match="nothing can be pruned"):
        pipeline.run(recipe, str(tmp_path / "run"), verbose=0)
    assert calls == []  # no epoch was trained


def test_inspect_with_a_recipe_lists_what_would_not_be_pruned(tmp_path):
    model_path = tmp_path / "m.keras"
    _model().save(model_path)
    recipe = tmp_path / "r.yaml"
    recipe.write_text("prune:\n  criterion: l1\n  granularity: filter\n  config_list:\n"
                      "    - {op_names: [c1, predictions], sparsity: 0.5}\n")
    out = CliRunner().invoke(cli, ["inspect", str(model_path), "--recipe", str(recipe)])
    assert out.exit_code == 0, out.output
    assert "c1" in out.output and "predictions" in out.output
    assert "NOT pruned: reaches the model output 'predictions'" in out.output
