"""Selected layers the Pruner skips are reported (console and ``result.json``); a recipe whose
every selected layer is skipped is an error instead of a run that "succeeds" unpruned."""

import logging
import os

import keras
import pytest

import kprune.runner.pipeline as pipeline
from kprune.errors import KPruneError

pytestmark = pytest.mark.skipif(not os.path.isdir("/usr/share/datasets/fashion-mnist")
                                and not os.environ.get("KPRUNE_DATA_DIR"), reason="needs Fashion-MNIST")


def _model(path):
    """`a` feeds a Reshape that mixes channels (unprunable); `b` is prunable."""
    keras.utils.set_random_seed(0)
    x = keras.Input((28, 28, 1))
    h = keras.layers.Flatten()(x)
    a = keras.layers.Dense(16, activation="relu", name="a")(h)
    b = keras.layers.Dense(16, activation="relu", name="b")(h)
    r = keras.layers.Flatten()(keras.layers.Reshape((4, 4))(a))
    out = keras.layers.Dense(10, name="predictions")(keras.layers.Concatenate()([r, b]))
    keras.Model(x, out).save(path)
    return path


def _recipe(path, names, schedule=None):
    return {"name": "skipped", "seed": 0, "model": {"name": path},
            "data": {"name": "fashion_mnist", "batch_size": 32, "take": 128, "test_take": 64},
            "train": {"epochs": 0},
            "prune": {"criterion": "l1", "granularity": "filter",
                      "schedule": schedule or {"name": "oneshot"},
                      "config_list": [{"op_names": names, "sparsity": 0.5}]},
            "finetune": {"epochs": 2 if schedule else 0, "optimizer": {"name": "sgd", "learning_rate": 0.01}},
            "export": {"enabled": False}}


@pytest.mark.parametrize("schedule", [None, {"name": "agp", "start_epoch": 0, "end_epoch": 1, "frequency": 1}])
def test_skipped_layers_are_in_the_result_and_on_the_console(tmp_path, caplog, schedule):
    path = _model(str(tmp_path / "m.keras"))
    with caplog.at_level(logging.WARNING, logger="kprune"):
        result = pipeline.run(_recipe(path, ["a", "b"], schedule), str(tmp_path / "out"), verbose=0)
    assert result["skipped"] == {"a": "Reshape 'reshape' mixes channels with other axes"}
    assert result["sparsity"]["a"] == 0.0, result["sparsity"]
    assert result["sparsity"]["b"] == pytest.approx(0.5) if schedule is None else result["sparsity"]["b"] > 0.3
    assert "selected layer `a` was not pruned: Reshape 'reshape' mixes channels" in caplog.text


def test_a_recipe_whose_every_selection_is_skipped_is_an_error(tmp_path):
    path = _model(str(tmp_path / "m.keras"))
    with pytest.raises(KPruneError, match=r"every layer the recipe selects was skipped. Received: `a`: Reshape"):
        pipeline.run(_recipe(path, ["a"]), str(tmp_path / "out"), verbose=0)
