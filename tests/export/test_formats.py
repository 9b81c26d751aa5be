"""kprune.export.export: tflite (kprune's converter), litert and onnx (Keras' Model.export)."""

import os
import sys

import numpy as np
import pytest

from export_fixtures import random_images, small_convnet
from kprune.errors import ExportError
from kprune.export import FORMATS, export
from kprune.export.evaluate import predict_tflite
from kprune.export.interpreter import load_interpreter
from kprune.export.tflite import ExportResult


@pytest.fixture(scope="module")
def reference(convnet):
    x = random_images(8, seed=2)
    return x, convnet.predict(x, verbose=0)


def _close(out, ref):
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


def test_formats_are_the_three_named():
    assert FORMATS == ("tflite", "litert", "onnx")


def test_tflite_is_kprunes_converter_with_its_options(convnet, reference, tmp_path):
    x, ref = reference
    result = export(convnet, tmp_path / "m.tflite")
    assert isinstance(result, ExportResult) and result.format == "tflite" and result.quantize == "none"
    _close(predict_tflite(result.path, x), ref)
    fp16 = export(convnet, tmp_path / "m16.tflite", quantize="fp16")
    assert fp16.quantize == "fp16" and fp16.bytes < result.bytes


def test_litert_is_keras_export_and_matches_keras(convnet, reference, tmp_path):
    x, ref = reference
    result = export(convnet, tmp_path / "sub" / "keras.tflite", format="litert")
    assert result.format == "litert" and result.to_dict()["format"] == "litert"
    assert result.bytes == os.path.getsize(result.path) > 0
    assert os.listdir(tmp_path / "sub") == ["keras.tflite"]     # written atomically, no leftovers
    _close(predict_tflite(result.path, x), ref)
    # Keras' exporter names the signature input after the Keras input.
    assert "serving_default" in load_interpreter(result.path).get_signature_list()


def test_litert_writes_any_suffix(convnet, tmp_path):
    # Keras' exporter insists on ".tflite"; kprune exports to a temporary file and moves it.
    result = export(convnet, tmp_path / "model.bin", format="litert")
    assert result.path.endswith("model.bin") and os.path.getsize(result.path) == result.bytes


def test_onnx_matches_keras_in_onnxruntime(convnet, reference, tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    x, ref = reference
    result = export(convnet, tmp_path / "m.onnx", format="onnx")
    assert result.format == "onnx" and result.bytes == os.path.getsize(result.path) > 0
    session = onnxruntime.InferenceSession(result.path, providers=["CPUExecutionProvider"])
    (name,) = [i.name for i in session.get_inputs()]
    _close(session.run(None, {name: x})[0], ref)


def test_onnx_of_a_never_called_model(tmp_path):
    # Keras' exporter alone refuses it ("The model provided has never called").
    onnxruntime = pytest.importorskip("onnxruntime")
    model = small_convnet(seed=3)
    result = export(model, tmp_path / "fresh.onnx", format="onnx")
    x = random_images(2, seed=5)
    session = onnxruntime.InferenceSession(result.path, providers=["CPUExecutionProvider"])
    _close(session.run(None, {session.get_inputs()[0].name: x})[0], model.predict(x, verbose=0))


def test_prune_wrappers_are_stripped_for_keras_formats(tmp_path):
    import kprune

    model = small_convnet()
    recipe = {"prune": {"criterion": "l1", "granularity": "filter",
                        "config_list": [{"op_types": ["Conv2D"], "sparsity": 0.5}]}}
    wrapped = kprune.wrap(model, recipe)
    kprune.Pruner(wrapped).prune_now()
    x = random_images(4, seed=3)
    ref = kprune.strip(wrapped).predict(x, verbose=0)
    result = export(wrapped, tmp_path / "wrapped.tflite", format="litert")
    _close(predict_tflite(result.path, x), ref)
    names = " ".join(d["name"] for d in load_interpreter(result.path).get_tensor_details())
    assert "mask" not in names and "pruning_step" not in names


@pytest.mark.parametrize("fmt", ["litert", "onnx"])
@pytest.mark.parametrize("kwargs, name", [
    ({"quantize": "fp16"}, "quantize"),
    ({"io_dtype": "int8"}, "io_dtype"),
    ({"sparsity": True}, "sparsity"),
    ({"calibration_samples": 10}, "calibration_samples"),
    ({"representative_data": np.zeros((2, 12, 12, 3), "float32")}, "representative_data"),
])
def test_quantization_options_only_with_tflite(convnet, tmp_path, fmt, kwargs, name):
    with pytest.raises(ExportError, match=rf"{name} is an option of kprune's TFLite converter and works only "
                                          rf"with format='tflite'. Received: {name}=[^\n]* with format='{fmt}'"):
        export(convnet, tmp_path / "m.out", format=fmt, **kwargs)
    assert not (tmp_path / "m.out").exists()


def test_a_data_option_is_named_by_its_type_not_printed(convnet, tmp_path):
    with pytest.raises(ExportError, match=r"Received: representative_data=<ndarray> with format='onnx'"):
        export(convnet, tmp_path / "m.onnx", format="onnx", representative_data=np.zeros((64, 12, 12, 3)))


def test_defaults_of_the_tflite_options_are_accepted_with_other_formats(convnet, tmp_path):
    result = export(convnet, tmp_path / "m.tflite", format="litert", quantize="none", io_dtype="float32", sparsity=False)
    assert result.format == "litert"


def test_unknown_format_names_value_and_choices(convnet, tmp_path):
    with pytest.raises(ExportError, match=r"Received: format='savedmodel'. Allowed: 'tflite', 'litert', 'onnx'"):
        export(convnet, tmp_path / "m", format="savedmodel")


@pytest.mark.parametrize("missing", ["tf2onnx", "onnx"])
def test_missing_onnx_packages_name_the_extra(convnet, tmp_path, monkeypatch, missing):
    monkeypatch.setitem(sys.modules, missing, None)     # makes `import <missing>` raise ImportError
    with pytest.raises(ExportError, match=r"needs the (tf2onnx and )?" + missing + r" package.*pip install kprune\[onnx\]"):
        export(convnet, tmp_path / "m.onnx", format="onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_failed_keras_export_is_an_export_error_and_keeps_the_old_file(tmp_path, monkeypatch):
    model = small_convnet()
    target = tmp_path / "m.tflite"
    target.write_bytes(b"old")

    def broken(*args, **kwargs):
        raise ValueError("'tf.Frobnicate' op is neither a custom op nor a flex op")

    monkeypatch.setattr(model, "export", broken)
    with pytest.raises(ExportError, match=r"Model.export\(format='litert'\) failed. "
                                          r"Unsupported or failing op\(s\): tf.Frobnicate"):
        export(model, target, format="litert")
    assert target.read_bytes() == b"old"
