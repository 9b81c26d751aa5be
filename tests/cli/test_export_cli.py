"""``kprune-cli export`` and ``kprune-cli bench`` through click's CliRunner."""

import json
import os
import stat
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from click.testing import CliRunner

from kprune.cli.main import cli
from kprune.export.interpreter import load_interpreter

SAMPLE = Path(__file__).resolve().parents[1] / "export" / "data" / "benchmark_model_output.txt"
FMNIST = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(scope="module")
def keras_file(tmp_path_factory):
    """A tiny Fashion-MNIST-shaped classifier saved as .keras."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((28, 28, 1))
    x = keras.layers.Conv2D(4, 3, strides=2, activation="relu", name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(10, name="fc")(x))
    path = tmp_path_factory.mktemp("cli") / "tiny.keras"
    model.save(path)
    return str(path)


@pytest.fixture(scope="module")
def tflite_files(keras_file):
    runner = CliRunner()
    folder = os.path.dirname(keras_file)
    a, b = os.path.join(folder, "a.tflite"), os.path.join(folder, "b.tflite")
    assert runner.invoke(cli, ["export", keras_file, "--out", a]).exit_code == 0
    assert runner.invoke(cli, ["export", keras_file, "--quantize", "dynamic", "--out", b]).exit_code == 0
    return a, b


def test_export_fp32_default_name_and_table(keras_file):
    result = CliRunner().invoke(cli, ["export", keras_file])
    assert result.exit_code == 0, result.output
    expected = keras_file.replace(".keras", ".tflite")
    assert f"wrote {expected}" in result.output
    assert f"{os.path.getsize(expected):,}" in result.output
    assert "quantize" in result.output and "none" in result.output


@pytest.mark.skipif(not FMNIST.is_dir(), reason="offline Fashion-MNIST copy not installed")
def test_export_int8_with_data_and_evaluate(keras_file, tmp_path):
    out = tmp_path / "q.tflite"
    args = ["export", keras_file, "--quantize", "int8", "--io-dtype", "uint8", "--data", "fashion_mnist",
            "--samples", "32", "--evaluate", "--eval-samples", "64", "--out", str(out), "--json"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output[result.output.index("{"):])
    assert summary["quantize"] == "int8" and summary["io_dtype"] == "uint8" and summary["eval_samples"] == 64
    assert 0.0 <= summary["tflite_accuracy"] <= 1.0
    # An untrained 10-class model: int8 and float agree on most of the 64 test images.
    assert abs(summary["tflite_accuracy"] - summary["keras_accuracy"]) <= 8 / 64
    assert load_interpreter(out).get_input_details()[0]["dtype"] == np.uint8


def test_export_usage_errors(keras_file):
    runner = CliRunner()
    bad = runner.invoke(cli, ["export", keras_file, "--quantize", "int4"])
    assert bad.exit_code == 2 and "'int4' is not one of" in bad.output
    missing_data = runner.invoke(cli, ["export", keras_file, "--quantize", "int8"])
    assert missing_data.exit_code == 2 and "--data NAME" in missing_data.output
    library_error = runner.invoke(cli, ["export", keras_file, "--io-dtype", "int8"])
    assert library_error.exit_code == 1 and "io_dtype='int8' with quantize='none'" in library_error.output


def test_bench_threads_and_json(tflite_files, tmp_path):
    a, _ = tflite_files
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(cli, ["bench", a, "--threads", "1,2", "--runs", "5", "--warmup", "1", "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "median" in result.output and "p99" in result.output
    data = json.loads(out.read_text())
    assert [r["threads"] for r in data["reports"]] == [1, 2]
    assert all(r["runs"] == 5 and r["backend"] == "litert-host" for r in data["reports"])


def test_bench_compare_prints_ratio(tflite_files, tmp_path):
    a, b = tflite_files
    out = tmp_path / "cmp.json"
    result = CliRunner().invoke(cli, ["bench", a, "--compare", b, "--runs", "5", "--warmup", "1", "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert f"1 thread(s): {a} / {b} latency = " in result.output
    data = json.loads(out.read_text())
    reports = data["reports"]
    assert [r["path"] for r in reports] == [a, b]
    assert data["speedups"]["1"] == pytest.approx(reports[0]["median_ms"] / reports[1]["median_ms"])


def test_bench_bad_threads(tflite_files):
    result = CliRunner().invoke(cli, ["bench", tflite_files[0], "--threads", "1,x"])
    assert result.exit_code == 2 and "positive integers separated by commas" in result.output


FAKE_ADB = r'''#!{python}
import os, sys
args = sys.argv[1:]
if args[:1] == ["-s"]:
    args = args[2:]
if args == ["devices"]:
    print("List of devices attached\nemulator-5554\tdevice\n")
elif args[0] == "shell" and args[1].startswith("ls "):
    print(args[1][3:])
elif args[0] == "shell" and args[1].startswith("getprop"):
    print("Pixel 7\narm64-v8a\n14\n")
elif args[0] == "shell" and "benchmark_model" in args[1]:
    sys.stdout.write(open(os.environ["FAKE_ADB_OUTPUT"]).read())
'''


def test_bench_android_with_fake_adb(tflite_files, tmp_path, monkeypatch):
    script = tmp_path / "adb"
    script.write_text(FAKE_ADB.replace("{python}", sys.executable))
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_ADB_OUTPUT", str(SAMPLE))
    result = CliRunner().invoke(cli, ["bench", tflite_files[0], "--android", "--threads", "2", "--runs", "50"])
    assert result.exit_code == 0, result.output
    assert "2.537" in result.output  # median from the replayed benchmark_model output
    assert "backend android Pixel 7" in result.output
    assert "no p90/p99" in result.output


def test_bench_android_without_adb(tflite_files, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    result = CliRunner().invoke(cli, ["bench", tflite_files[0], "--android"])
    assert result.exit_code == 1 and "adb was not found" in result.output


def test_export_wrapped_keras_file(tmp_path):
    import kprune

    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, name="conv")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2, name="fc")(keras.layers.Flatten()(x)))
    wrapped = kprune.wrap(model, {"prune": {"criterion": "level", "config_list": [{"op_types": ["Conv2D"], "sparsity": 0.5}]}})
    kprune.Pruner(wrapped).prune_now()
    path = tmp_path / "wrapped.keras"
    wrapped.save(path)
    result = CliRunner().invoke(cli, ["export", str(path), "--out", str(tmp_path / "w.tflite")])
    assert result.exit_code == 0, result.output
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 3)).astype("float32")
    from kprune.export.evaluate import predict_tflite

    np.testing.assert_allclose(predict_tflite(tmp_path / "w.tflite", x), kprune.strip(wrapped).predict(x, verbose=0), rtol=1e-5, atol=1e-5)


def test_export_format_litert_default_name_and_outputs(keras_file):
    result = CliRunner().invoke(cli, ["export", keras_file, "--format", "litert"])
    assert result.exit_code == 0, result.output
    expected = keras_file.replace(".keras", "_litert.tflite")
    assert f"wrote {expected}" in result.output and "litert" in result.output
    assert "quantize" not in result.output          # kprune's converter options do not apply
    from kprune.export.evaluate import predict_tflite

    x = np.random.default_rng(1).normal(size=(3, 28, 28, 1)).astype("float32")
    ref = keras.saving.load_model(keras_file).predict(x, verbose=0)
    np.testing.assert_allclose(predict_tflite(expected, x), ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


def test_export_format_onnx_json(keras_file, tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    out = tmp_path / "m.onnx"
    result = CliRunner().invoke(cli, ["export", keras_file, "--format", "onnx", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output[result.output.index("{"):])
    assert summary["format"] == "onnx" and summary["bytes"] == out.stat().st_size
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(2).normal(size=(2, 28, 28, 1)).astype("float32")
    ref = keras.saving.load_model(keras_file).predict(x, verbose=0)
    np.testing.assert_allclose(session.run(None, {session.get_inputs()[0].name: x})[0], ref, rtol=1e-5,
                               atol=1e-5 * np.abs(ref).max())


@pytest.mark.parametrize("fmt", ["litert", "onnx"])
@pytest.mark.parametrize("args, shown", [
    (["--quantize", "fp16"], "--quantize fp16"),
    (["--io-dtype", "uint8"], "--io-dtype uint8"),
    (["--sparsity"], "--sparsity"),
    (["--samples", "100"], "--samples 100"),       # given explicitly, even at its default value
])
def test_export_converter_options_need_format_tflite(keras_file, tmp_path, fmt, args, shown):
    out = tmp_path / "m.out"
    result = CliRunner().invoke(cli, ["export", keras_file, "--format", fmt, "--out", str(out), *args])
    assert result.exit_code == 2, result.output
    flag = shown.split()[0]
    assert (f"{shown} is an option of kprune's TFLite converter and works only with --format tflite. "
            f"Received: --format {fmt}. Allowed formats for {flag}: tflite.") in " ".join(result.output.split())
    assert not out.exists()


def test_export_evaluate_needs_a_litert_file(keras_file):
    result = CliRunner().invoke(cli, ["export", keras_file, "--format", "onnx", "--evaluate", "--data", "fashion_mnist"])
    assert result.exit_code == 2 and "--evaluate runs the file in LiteRT" in result.output


def test_export_bad_format_lists_choices(keras_file):
    result = CliRunner().invoke(cli, ["export", keras_file, "--format", "savedmodel"])
    assert result.exit_code == 2 and "'savedmodel' is not one of 'tflite', 'litert', 'onnx'" in result.output


def test_export_onnx_without_the_extra(keras_file, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tf2onnx", None)
    result = CliRunner().invoke(cli, ["export", keras_file, "--format", "onnx", "--out", str(tmp_path / "m.onnx")])
    assert result.exit_code == 1, result.output
    assert "pip install kprune[onnx]" in result.output and "Traceback" not in result.output


def test_bench_runtime_compiled_model(tflite_files, tmp_path):
    a, b = tflite_files
    out = tmp_path / "cm.json"
    result = CliRunner().invoke(cli, ["bench", a, "--runtime", "compiled_model", "--runs", "5", "--warmup", "1",
                                      "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "backend litert-host (compiled_model)" in result.output
    (report,) = json.loads(out.read_text())["reports"]
    assert report["runtime"] == "compiled_model" and report["median_ms"] > 0
    both = CliRunner().invoke(cli, ["bench", a, "--compare", b, "--runtime", "compiled_model", "--runs", "3"])
    assert both.exit_code == 0, both.output
    assert "(compiled_model)" in both.output and "latency = " in both.output


def test_bench_runtime_is_host_only(tflite_files):
    result = CliRunner().invoke(cli, ["bench", tflite_files[0], "--android", "--runtime", "compiled_model"])
    assert result.exit_code == 2 and "with --android the device's benchmark_model chooses" in result.output
    bad = CliRunner().invoke(cli, ["bench", tflite_files[0], "--runtime", "gpu"])
    assert bad.exit_code == 2 and "'gpu' is not one of 'interpreter', 'compiled_model'" in bad.output
