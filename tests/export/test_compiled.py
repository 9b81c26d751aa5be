"""LiteRT's CompiledModel API beside the classic Interpreter: same outputs, timed by benchmark."""

import json

import numpy as np
import pytest

from export_fixtures import random_images, small_convnet
from kprune.errors import ExportError
from kprune.export import RUNTIMES, CompiledRunner
from kprune.export.benchmark import benchmark, compare
from kprune.export.interpreter import load_interpreter
from kprune.export.report import LatencyReport
from kprune.export.tflite import to_tflite


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    folder = tmp_path_factory.mktemp("compiled")
    return {
        "a": to_tflite(small_convnet(filters=(16, 32)), folder / "a.tflite").path,
        "b": to_tflite(small_convnet(filters=(4, 8), seed=1), folder / "b.tflite").path,
        "int8": to_tflite(small_convnet(filters=(4, 8)), folder / "int8.tflite", quantize="int8",
                          representative_data=random_images(8), io_dtype="int8").path,
    }


def _interpreter_outputs(path, x, use_xnnpack=True):
    interpreter = load_interpreter(path, threads=1, use_xnnpack=use_xnnpack)
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


@pytest.mark.parametrize("use_xnnpack", [True, False])
def test_compiled_model_gives_the_interpreters_outputs(paths, use_xnnpack):
    x = random_images(1, seed=4)
    runner = CompiledRunner(paths["a"], threads=1, use_xnnpack=use_xnnpack)
    assert runner.signature == "serving_default"
    assert [tuple(d["shape"]) for d in runner.input_details] == [(1, 12, 12, 3)]
    (out,) = runner(x)
    expected = _interpreter_outputs(paths["a"], x, use_xnnpack)
    assert out.shape == expected.shape == (1, 5) and out.dtype == np.float32
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
    # Different inputs give different outputs (the buffers are really rewritten).
    (other,) = runner(random_images(1, seed=5))
    assert not np.allclose(other, out)


def test_compiled_model_runs_integer_io(paths):
    x = np.random.default_rng(0).integers(-128, 128, (1, 12, 12, 3), dtype=np.int8)
    (out,) = CompiledRunner(paths["int8"])(x)
    np.testing.assert_array_equal(out, _interpreter_outputs(paths["int8"], x))


def test_runner_input_errors(paths):
    runner = CompiledRunner(paths["a"])
    with pytest.raises(ExportError, match=r"has 1 input\(s\) \(image\). Received: 2 array\(s\)"):
        runner.write([random_images(1), random_images(1)])
    with pytest.raises(ExportError, match=r"Input 'image' .* has shape \(1, 12, 12, 3\). Received: an array of shape \(2, 12, 12, 3\)"):
        runner.write([random_images(2)])


def test_runner_file_errors(tmp_path):
    with pytest.raises(ExportError, match="No TFLite file at"):
        CompiledRunner(tmp_path / "none.tflite")
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"not a flatbuffer at all")
    with pytest.raises(ExportError, match=r"(?s)CompiledModel could not load .*bad.tflite.*flatbuffer.*runtime='interpreter'"):
        CompiledRunner(bad)


def test_benchmark_with_compiled_model_fields(paths):
    report = benchmark(paths["a"], threads=1, runs=15, warmup=2, runtime="compiled_model")
    assert report.runtime == "compiled_model" and report.backend == "litert-host"
    assert (report.runs, report.warmup, report.threads, report.xnnpack) == (15, 2, 1, True)
    assert 0 < report.min_ms <= report.median_ms <= report.p90_ms <= report.p99_ms <= report.max_ms
    assert report.mean_ms > 0 and report.std_ms >= 0
    assert LatencyReport.from_dict(json.loads(json.dumps(report.to_dict()))) == report
    assert benchmark(paths["a"], runs=3, warmup=0).runtime == "interpreter"


def test_benchmark_compiled_model_without_xnnpack(paths):
    report = benchmark(paths["b"], runs=3, warmup=1, use_xnnpack=False, runtime="compiled_model")
    assert report.xnnpack is False and report.min_ms > 0


def test_compare_with_compiled_model(paths):
    result = compare(paths["a"], paths["b"], runs=10, warmup=1, runtime="compiled_model")
    assert result.a.runtime == result.b.runtime == "compiled_model"
    assert result.ratio == pytest.approx(result.b.median_ms / result.a.median_ms)


def test_unknown_runtime_names_value_and_choices(paths):
    assert RUNTIMES == ("interpreter", "compiled_model")
    with pytest.raises(ExportError, match=r"Received: runtime='gpu'. Allowed: 'interpreter', 'compiled_model'"):
        benchmark(paths["a"], runtime="gpu")
    with pytest.raises(ExportError, match="runtime='gpu'"):
        compare(paths["a"], paths["b"], runtime="gpu")
