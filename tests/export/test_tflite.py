"""to_tflite: conversion round trips, quantization modes, I/O dtypes, errors, atomic writes.

Stated bounds (relative to the largest absolute Keras output on the test inputs):
fp32 1e-5, fp16 1e-2, dynamic-range 2e-2, full int8 5e-2. Measured on this small conv net
when the tests were written: 5e-7, 2e-4, 1.6e-3, 1.9e-2.
"""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from export_fixtures import random_images, small_convnet
from kprune.errors import ExportError, KPruneError
from kprune.export.evaluate import predict_tflite
from kprune.export.interpreter import load_interpreter
from kprune.export.tflite import ExportResult, to_tflite, write_atomic


@pytest.fixture(scope="module")
def reference(convnet):
    x = random_images(32, seed=1)
    return x, convnet.predict(x, verbose=0)


def _relative_error(path, x, ref):
    out = predict_tflite(path, x)
    assert out.shape == ref.shape
    return float(np.max(np.abs(out - ref)) / np.max(np.abs(ref)))


def test_fp32_round_trip_matches_keras(convnet, reference, tmp_path):
    x, ref = reference
    result = to_tflite(convnet, tmp_path / "m.tflite")
    assert isinstance(result, ExportResult)
    assert result.path == str(tmp_path / "m.tflite")
    assert result.bytes == os.path.getsize(result.path) > 0
    assert result.to_dict()["quantize"] == "none"
    assert result.batch_size is None  # the batch stays dynamic
    np.testing.assert_allclose(predict_tflite(result.path, x), ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


def test_recurrent_model_exports_at_batch_one_through_the_user_path(tmp_path, caplog):
    # TFLite lowers an LSTM's loop only at a static batch size: converted as it is, the file
    # fails on tf.TensorListReserve; kprune converts it at batch size 1 and says so
    import kprune

    inp = keras.Input((10, 6))
    h = keras.layers.LSTM(8, name="lstm")(inp)
    h = keras.layers.Dense(16, activation="relu", name="fc")(h)
    model = keras.Model(inp, keras.layers.Dense(3, name="out")(h))
    wrapped = kprune.wrap(model, {"prune": {"criterion": "l1", "granularity": "filter", "config_list": [
        {"op_types": ["Dense"], "sparsity": 0.5}]}})
    wrapped.compile(optimizer="sgd", loss="mse")
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(8, 10, 6)).astype("float32"), rng.normal(size=(8, 3)).astype("float32")
    wrapped.fit(x, y, batch_size=4, epochs=1, verbose=0, callbacks=[kprune.PruningCallback()])
    small = kprune.compact(wrapped)
    assert small.get_layer("fc").units == 8
    np.testing.assert_allclose(small.predict(x, verbose=0), wrapped.predict(x, verbose=0), rtol=1e-6, atol=1e-6)
    with caplog.at_level("WARNING", logger="kprune.export.tflite"):
        result = to_tflite(small, tmp_path / "rnn.tflite")
    assert result.batch_size == 1 and "batch size 1" in caplog.text
    ref = small.predict(x, verbose=0)
    np.testing.assert_allclose(predict_tflite(result.path, x), ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


@pytest.mark.parametrize("quantize, bound", [("fp16", 1e-2), ("dynamic", 2e-2)])
def test_weight_quantization_within_bound_and_smaller(convnet, reference, tmp_path, quantize, bound):
    x, ref = reference
    fp32 = to_tflite(convnet, tmp_path / "fp32.tflite")
    result = to_tflite(convnet, tmp_path / f"{quantize}.tflite", quantize=quantize)
    assert result.bytes < fp32.bytes
    assert _relative_error(result.path, x, ref) < bound


def test_int8_full_integer_within_bound(convnet, reference, tmp_path):
    x, ref = reference
    result = to_tflite(convnet, tmp_path / "int8.tflite", quantize="int8", representative_data=random_images(100))
    assert _relative_error(result.path, x, ref) < 5e-2
    interpreter = load_interpreter(result.path)
    ops = {op["op_name"] for op in interpreter._get_ops_details()}
    # float I/O around an integer graph: QUANTIZE at the input, DEQUANTIZE at the output.
    assert {"QUANTIZE", "DEQUANTIZE"} <= ops
    assert interpreter.get_input_details()[0]["dtype"] == np.float32


@pytest.mark.parametrize("io_dtype, np_dtype", [("int8", np.int8), ("uint8", np.uint8)])
def test_integer_io_dtypes(convnet, reference, tmp_path, io_dtype, np_dtype):
    x, ref = reference
    result = to_tflite(
        convnet, tmp_path / f"{io_dtype}.tflite", quantize="int8", representative_data=random_images(100), io_dtype=io_dtype
    )
    interpreter = load_interpreter(result.path)
    for detail in interpreter.get_input_details() + interpreter.get_output_details():
        assert detail["dtype"] == np_dtype
        scale, _ = detail["quantization"]
        assert scale > 0
    # predict_tflite quantizes inputs and dequantizes outputs, so results stay comparable.
    assert _relative_error(result.path, x, ref) < 5e-2


def test_int8_from_dataset_of_labelled_batches(convnet, reference, tmp_path):
    x, ref = reference
    ds = tf.data.Dataset.from_tensor_slices((random_images(100), np.zeros(100, "int64"))).batch(16)
    result = to_tflite(convnet, tmp_path / "ds.tflite", quantize="int8", representative_data=ds)
    assert _relative_error(result.path, x, ref) < 5e-2


def test_sparsity_stores_pruned_weights_compactly(tmp_path):
    model = small_convnet(filters=(32, 64))
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
            kernel = layer.kernel.numpy()
            layer.kernel.assign(kernel * (rng.random(kernel.shape) < 0.1))
    x = random_images(8, seed=2)
    ref = model.predict(x, verbose=0)
    dense = to_tflite(model, tmp_path / "dense.tflite")
    sparse = to_tflite(model, tmp_path / "sparse.tflite", sparsity=True)
    assert sparse.sparsity and sparse.bytes < 0.6 * dense.bytes
    ops = {op["op_name"] for op in load_interpreter(sparse.path)._get_ops_details()}
    assert "DENSIFY" in ops
    assert _relative_error(sparse.path, x, ref) < 1e-5


def test_bad_quantize_names_value_and_choices(convnet, tmp_path):
    with pytest.raises(ExportError) as info:
        to_tflite(convnet, tmp_path / "m.tflite", quantize="int4")
    message = str(info.value)
    assert "quantize='int4'" in message and "'none', 'fp16', 'dynamic', 'int8'" in message
    assert isinstance(info.value, KPruneError)


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"io_dtype": "float16"}, r"io_dtype='float16'.*'float32', 'int8', 'uint8'"),
        ({"io_dtype": "int8"}, r"io_dtype='int8' with quantize='none'"),
        ({"quantize": "int8"}, r"representative_data=None"),
        ({"quantize": "fp16", "representative_data": np.zeros((1, 12, 12, 3))}, r"only used by quantize='int8'"),
        ({"sparsity": "yes"}, r"sparsity='yes'"),
    ],
)
def test_argument_errors(convnet, tmp_path, kwargs, pattern):
    with pytest.raises(ExportError, match=pattern):
        to_tflite(convnet, tmp_path / "m.tflite", **kwargs)
    assert not os.path.exists(tmp_path / "m.tflite")


def _model_with_unsupported_op():
    inputs = keras.Input((4, 4))
    x = keras.layers.Dense(4, name="dense_in")(inputs)
    x = keras.layers.Lambda(lambda t: tf.linalg.det(t), name="determinant")(x)
    return keras.Model(inputs, x)


def test_conversion_failure_names_op_and_layer_and_leaves_old_file(tmp_path):
    target = tmp_path / "m.tflite"
    target.write_bytes(b"previous export")
    with pytest.raises(ExportError) as info:
        to_tflite(_model_with_unsupported_op(), target)
    message = str(info.value)
    assert "tf.MatrixDeterminant" in message
    assert "'determinant'" in message
    assert "Converter message (ConverterError)" in message  # the original text is kept
    assert target.read_bytes() == b"previous export"
    assert os.listdir(tmp_path) == ["m.tflite"]  # no temporary file left behind


def test_write_atomic_cleans_up_when_write_fails(tmp_path, monkeypatch):
    target = tmp_path / "sub" / "m.tflite"

    def failing_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        write_atomic(target, b"abc")
    assert os.listdir(tmp_path / "sub") == []


def test_prune_wrappers_are_stripped_before_export(tmp_path):
    wrappers = pytest.importorskip("kprune.wrappers")
    if not hasattr(wrappers, "strip") or not hasattr(wrappers, "PruneWrapper"):
        pytest.skip("kprune.wrappers.strip is not available yet")
    import kprune

    model = small_convnet()
    recipe = {"prune": {"criterion": "level", "config_list": [{"op_types": ["Conv2D"], "sparsity": 0.5}]}}
    wrapped = kprune.wrap(model, recipe)
    kprune.Pruner(wrapped).prune_now()
    stripped = kprune.strip(wrapped)
    assert kprune.sparsity(stripped)["conv2"] == pytest.approx(0.5, abs=0.01)
    x = random_images(4, seed=3)
    ref = stripped.predict(x, verbose=0)
    result = to_tflite(wrapped, tmp_path / "wrapped.tflite")
    np.testing.assert_allclose(predict_tflite(result.path, x), ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())
    # No wrapper variables (masks, step counters) made it into the file.
    interpreter = load_interpreter(result.path)
    names = " ".join(detail["name"] for detail in interpreter.get_tensor_details())
    assert "mask" not in names and "pruning_step" not in names
