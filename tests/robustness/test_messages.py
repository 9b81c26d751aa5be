"""Messages that used to mislead (issue 16, point 7): each names what was received and the fix,
and the CLI answers bad arguments with a usage error, never a traceback."""

import keras
import numpy as np
import pytest
from click.testing import CliRunner

import kprune
from kprune import models
from kprune.cli.main import cli
from kprune.errors import KPruneError, RecipeError


@pytest.fixture
def truncated(tmp_path):
    x = keras.Input((4,))
    path = tmp_path / "m.keras"
    keras.Model(x, keras.layers.Dense(2)(x)).save(path)
    data = path.read_bytes()
    cut = tmp_path / "cut.keras"
    cut.write_bytes(data[: len(data) // 2])
    return str(cut), len(data) // 2


def test_a_truncated_keras_file_is_not_reported_as_missing(truncated):
    path, size = truncated
    with pytest.raises(KPruneError, match=rf"is not a whole .keras archive \({size:,} bytes.*truncated") as e:
        models.get(path)
    assert "not found" not in str(e.value)
    res = CliRunner().invoke(cli, ["count", path])
    assert res.exit_code != 0 and "not a whole .keras archive" in res.output and "Traceback" not in res.output


@pytest.mark.parametrize("start, end, key", [({"start_epoch": 3}, {"end_epoch": 2}, "end_epoch"),
                                             ({"start_step": 50}, {"end_step": 10}, "end_step")])
def test_a_schedule_ending_before_its_start_names_the_real_key(start, end, key):
    with pytest.raises(RecipeError, match=rf"`prune.schedule.{key}`: must be after the start") as e:
        kprune.Recipe.from_dict({"prune": {"schedule": {"name": "agp", **start, **end}}})
    assert "schedule.end`" not in str(e.value)


@pytest.mark.parametrize("shape", ["32x32x3", "32,32", "32,32,3,1", "a,b,c", "32,-1,3"])
def test_a_bad_input_shape_is_a_usage_error(shape):
    res = CliRunner().invoke(cli, ["count", "resnet20", "--input-shape", shape])
    assert res.exit_code == 2, res.output
    assert "Invalid value for '--input-shape': must be H,W,C" in res.output and f"Received: {shape!r}" in res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)


def test_a_shape_the_model_cannot_take_is_a_usage_error():
    res = CliRunner().invoke(cli, ["count", "lenet5", "--input-shape", "2,2,1"])
    assert res.exit_code == 2 and "`lenet5` cannot be built for input shape 2,2,1" in res.output
    assert "Traceback" not in res.output


def test_numpy_numbers_are_numbers():
    r = kprune.Recipe.from_dict({"train": {"epochs": np.int64(2)}, "prune": {
        "config_list": [{"op_types": ["Dense"], "sparsity": np.float32(0.25)}]}})
    assert r.prune["config_list"][0]["sparsity"] == 0.25 and type(r.prune["config_list"][0]["sparsity"]) is float
    assert r.train["epochs"] == 2 and type(r.train["epochs"]) is int
    with pytest.raises(RecipeError, match="must be a number"):
        kprune.Recipe.from_dict({"prune": {"config_list": [{"op_types": ["Dense"], "sparsity": np.bool_(True)}]}})


def test_an_empty_config_list_is_refused():
    with pytest.raises(RecipeError, match=r"`prune.config_list`: must not be empty.*Received: config_list=\[\]"):
        kprune.Recipe.from_dict({"prune": {"config_list": []}})
