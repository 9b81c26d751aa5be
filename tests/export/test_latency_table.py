"""latency_table: grid construction, interpolation, cache reuse, predictions."""

import importlib
import json

import keras
import numpy as np
import pytest

from kprune.errors import ExportError
from kprune.export.latency_table import LatencyTable, channels_of, latency_table, prediction_error


# The package re-exports the function latency_table under the module's name.
lt = importlib.import_module("kprune.export.latency_table")


def two_conv_model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.Conv2D(64, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(10, name="fc")(x)
    return keras.Model(inputs, outputs, name="two_conv")


def pruned_two_conv(c1, c2):
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(c1, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.Conv2D(c2, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(10, name="fc")(x)
    return keras.Model(inputs, outputs, name="two_conv")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    cache = tmp_path_factory.mktemp("latency") / "table.json"
    model = two_conv_model()
    table = latency_table(model, channel_grid=(0.25, 1.0), runs=10, warmup=2, cache=cache)
    return model, table, cache


def test_grid_and_measurement_count(built):
    model, table, cache = built
    assert set(table.layers) == {"conv1", "conv2", "fc"}
    conv1, conv2, fc = (table.layers[n] for n in ("conv1", "conv2", "fc"))
    assert conv1["in_grid"] == [3] and conv1["out_grid"] == [8, 32]  # fed by the model input
    assert conv2["in_grid"] == [8, 32] and conv2["out_grid"] == [16, 64]
    assert fc["in_grid"] == [16, 64] and fc["out_grid"] == [10]  # produces the model output
    assert table.measured == 2 + 4 + 2 + 1 + 1  # probes, the full model, the overhead
    assert 0 < table.overhead_ms <= table.full_model_ms  # the table caps it at the full model
    assert not table.from_cache
    assert all(ms > 0 for entry in table.layers.values() for row in entry["ms"] for ms in row)
    assert channels_of(model) == {"conv1": (3, 32), "conv2": (32, 64), "fc": (64, 10)}


def test_full_width_prediction_equals_measured_full_model(built):
    _, table, _ = built
    assert table.predict({}) == pytest.approx(table.full_model_ms)
    assert table.predict(two_conv_model()) == pytest.approx(table.full_model_ms)


def test_prediction_positive_and_grows_with_channels(built):
    _, table, _ = built
    small = table.predict({"conv1": (3, 8), "conv2": (8, 16), "fc": (16, 10)})
    large = table.predict(pruned_two_conv(32, 64))
    assert 0 < small < large
    # conv2 at full width does ~16x the MACs of its quarter-width probe.
    assert table.layer_ms("conv2", 32, 64) > 2 * table.layer_ms("conv2", 8, 16)


def test_cache_reused_without_measuring(built, monkeypatch):
    model, table, cache = built

    def no_measurement(*args, **kwargs):
        raise AssertionError("the cached table should not be measured again")

    monkeypatch.setattr(lt, "_measure_table", no_measurement)
    again = latency_table(model, channel_grid=(0.25, 1.0), runs=10, warmup=2, cache=cache)
    assert again.from_cache and again.measured == 0
    assert again.layers == table.layers and again.remainder_ms == pytest.approx(table.remainder_ms)
    assert again.predict({"conv2": (16, 32)}) == pytest.approx(table.predict({"conv2": (16, 32)}))
    # A different grid or thread count is a different table: the cache is not used.
    with pytest.raises(AssertionError, match="should not be measured"):
        latency_table(model, channel_grid=(0.5, 1.0), runs=10, warmup=2, cache=cache)
    with pytest.raises(AssertionError, match="should not be measured"):
        latency_table(model, channel_grid=(0.25, 1.0), threads=2, runs=10, warmup=2, cache=cache)
    data = json.loads(cache.read_text())
    assert data["signature"]["grid"] == [0.25, 1.0] and data["signature"]["threads"] == 1


def test_bilinear_interpolation_against_hand_computed_values():
    table = LatencyTable(
        layers={"c": {"class": "Conv2D", "full": [8, 16], "in_grid": [4, 8], "out_grid": [8, 16], "ms": [[1.0, 2.0], [3.0, 5.0]]}},
        full_model_ms=6.0, remainder_ms=1.0, signature={},
    )
    assert table.layer_ms("c", 4, 8) == 1.0
    assert table.layer_ms("c", 6, 12) == pytest.approx((1.0 + 2.0 + 3.0 + 5.0) / 4)
    assert table.layer_ms("c", 8, 12) == pytest.approx(4.0)
    assert table.layer_ms("c", 2, 8) == pytest.approx(0.0)  # extrapolated 1 - (3 - 1) / 2 = 0, clipped at 0
    assert table.predict({"c": (6, 12)}) == pytest.approx(3.75)
    assert table.predict({"c": 8}) == pytest.approx(1.0 + 3.0)  # int = output channels only
    with pytest.raises(ExportError, match=r"no layer\(s\) \['missing'\]"):
        table.predict({"missing": (1, 1)})
    assert LatencyTable.from_dict(json.loads(json.dumps(table.to_dict()))).layers == table.layers
    # With a measured per-invoke overhead each probe is charged beyond it, and the
    # prediction never falls below it.
    table.overhead_ms = 0.5
    assert table.layer_ms("c", 6, 12) == pytest.approx(2.75 - 0.5)
    assert table.layer_ms("c", 4, 8) == pytest.approx(0.5)
    table.remainder_ms = -3.0
    assert table.predict({"c": (4, 8)}) == pytest.approx(0.5)  # 0.5 - 3.0 < overhead → overhead
    assert LatencyTable.from_dict(json.loads(json.dumps(table.to_dict()))).overhead_ms == 0.5


def test_prediction_error_helper(built):
    _, table, _ = built
    result = prediction_error(table, pruned_two_conv(16, 32), measure=lambda path: 2.0)
    assert result["measured_ms"] == 2.0
    assert result["error_ms"] == pytest.approx(result["predicted_ms"] - 2.0)
    assert result["relative_error"] == pytest.approx(result["error_ms"] / 2.0)


@pytest.mark.parametrize(
    "kwargs, pattern",
    [({"target": "tpu"}, "target='tpu'"), ({"channel_grid": (0.0, 1.0)}, "channel_grid"), ({"quantize": "int8"}, "quantize='int8'")],
)
def test_argument_errors(kwargs, pattern):
    with pytest.raises(ExportError, match=pattern):
        latency_table(two_conv_model(), **kwargs)


def test_model_without_prunable_layers():
    inputs = keras.Input((4,))
    with pytest.raises(ExportError, match="no Conv1D/Conv2D/DepthwiseConv2D/Dense"):
        latency_table(keras.Model(inputs, keras.layers.ReLU()(inputs)))


def test_depthwise_grid_is_one_dimensional(tmp_path):
    inputs = keras.Input((8, 8, 4))
    x = keras.layers.Conv2D(8, 1, name="pw")(inputs)
    x = keras.layers.DepthwiseConv2D(3, padding="same", name="dw")(x)
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))
    table = latency_table(model, channel_grid=(0.5, 1.0), runs=3, warmup=1)
    assert table.layers["dw"]["in_grid"] == [4, 8] and table.layers["dw"]["out_grid"] == [8]
    assert np.shape(table.layers["dw"]["ms"]) == (2, 1)
    assert table.predict({"pw": (4, 4), "dw": (4, 4)}) > 0


def test_android_target_through_fake_adb(fake_adb, tmp_path):
    # Every probe replays the same benchmark_model output, so each measures its median 2.537 ms.
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, name="conv")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(4, name="fc")(x))
    table = latency_table(model, channel_grid=(0.5, 1.0), runs=5, warmup=1, target="android", statistic="median",
                          cache=tmp_path / "android.json")
    assert table.signature["machine"] == {"serial": "emulator-5554"}
    assert table.layers["conv"]["ms"] == [[2.537, 2.537]] and table.layers["fc"]["ms"] == [[2.537], [2.537]]
    assert table.measured == 2 + 2 + 1 + 1
    # The overhead probe also reads 2.537 ms: every layer costs 0 beyond it, the remainder is
    # the whole model, and a prediction never drops below the overhead.
    assert table.overhead_ms == pytest.approx(2.537)
    assert table.layer_ms("conv", 3, 8) == 0.0
    assert table.remainder_ms == pytest.approx(2.537)
    assert table.predict({"conv": (3, 4)}) == pytest.approx(2.537)
    pushes = [call for call in fake_adb() if "push" in call]
    assert len(pushes) == 6
