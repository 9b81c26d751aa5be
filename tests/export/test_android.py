"""benchmark_android with a fake ``adb`` on PATH (conftest), and the benchmark_model output parser.

``data/benchmark_model_output.txt`` is a hand-written sample in the exact format that
TensorFlow Lite's ``benchmark_model`` prints (recent builds, with p5/median/p95 and the
periodic peak-memory line); it was not captured from a real device. The fake adb replays it.
"""

import os

import keras
import pytest

from export_fixtures import SAMPLE
from kprune.errors import ExportError
from kprune.export.android import benchmark_android, list_devices, parse_benchmark_output, report_from_output
from kprune.export.tflite import to_tflite


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8,))
    model = keras.Model(inputs, keras.layers.Dense(4)(inputs))
    return to_tflite(model, tmp_path_factory.mktemp("android") / "tiny.tflite").path


def test_parse_recorded_output():
    parsed = parse_benchmark_output(SAMPLE.read_text())
    expected = {
        "init_ms": 18.437, "first_ms": 4.211, "warmup_avg_ms": 2.6734, "inference_avg_ms": 2.56972,
        "count": 389, "first_run_ms": 2.603, "min_ms": 2.487, "max_ms": 3.950, "avg_ms": 2.56972,
        "std_ms": 0.118, "p5_ms": 2.494, "median_ms": 2.537, "p95_ms": 2.781, "warmup_count": 187,
        "memory_init_mb": 3.16406, "memory_overall_mb": 5.83594, "peak_memory_mb": 9.71875,
        "model_size_mb": 0.544716, "num_threads": 2,
    }
    assert parsed.keys() == expected.keys()
    for key, value in expected.items():
        assert parsed[key] == pytest.approx(value, rel=1e-9), key


def test_parse_older_format_with_logcat_prefix_and_crlf(model_path):
    text = (
        "I tflite  : Num threads: [4]\r\n"
        "I tflite  : count=12 first=61000 curr=50000 min=49800 max=61000 avg=51234.5 std=3100\r\n"
        "I tflite  : count=50 first=50210 curr=49990 min=49100 max=53000 avg=2.95034e+04 std=812\r\n"
        "I tflite  : Inference timings in us: Init: 17187, First inference: 61000, "
        "Warmup (avg): 51234.5, Inference (avg): 2.95034e+04\r\n"
        "I tflite  : Peak memory footprint (MB): init=4.92969 overall=138.809\r\n"
        "Timings (microseconds): count=50 first=1 curr=1 min=1 max=1 avg=1 std=0\n"
    )
    parsed = parse_benchmark_output(text)
    assert parsed["count"] == 50 and parsed["warmup_count"] == 12
    assert parsed["avg_ms"] == pytest.approx(29.5034) and parsed["inference_avg_ms"] == pytest.approx(29.5034)
    assert "median_ms" not in parsed
    assert parsed["memory_overall_mb"] == pytest.approx(138.809)
    report = report_from_output(text, model_path, threads=4, warmup=5, xnnpack=True)
    assert report.median_ms is None and report.mean_ms == pytest.approx(29.5034)
    assert report.peak_memory_mb == pytest.approx(138.809)
    assert any("no median" in note for note in report.notes)


def test_parse_failure_quotes_output():
    text = "INFO: STARTING!\nERROR: Could not open '/data/local/tmp/x.tflite'.\nERROR: Benchmarking failed.\n"
    with pytest.raises(ExportError, match=r"no timing results(.|\n)*Benchmarking failed"):
        parse_benchmark_output(text)


def test_benchmark_android_through_fake_adb(fake_adb, model_path):
    report = benchmark_android(model_path, threads=2, runs=50, warmup=5)
    assert report.backend == "android"
    assert report.median_ms == pytest.approx(2.537)
    assert report.mean_ms == pytest.approx(2.56972)
    assert (report.min_ms, report.max_ms, report.std_ms) == pytest.approx((2.487, 3.950, 0.118))
    assert report.p90_ms is None and report.p99_ms is None
    assert report.extra["p95_ms"] == pytest.approx(2.781)
    assert (report.runs, report.warmup, report.threads) == (389, 5, 2)
    assert report.init_ms == pytest.approx(18.437) and report.first_ms == pytest.approx(4.211)
    assert report.peak_memory_mb == pytest.approx(9.71875)
    assert report.size_bytes == os.path.getsize(model_path)
    assert report.machine == {"serial": "emulator-5554", "model": "Pixel 7", "abi": "arm64-v8a", "android": "14", "soc": "Tensor G2"}
    calls = fake_adb()
    assert calls[0] == ["devices"]
    assert ["-s", "emulator-5554", "push", model_path, "/data/local/tmp/tiny.tflite"] in calls
    run = [c for c in calls if c[-1].startswith("/data/local/tmp/benchmark_model")]
    assert run == [[
        "-s", "emulator-5554", "shell",
        "/data/local/tmp/benchmark_model --graph=/data/local/tmp/tiny.tflite --num_threads=2 "
        "--num_runs=50 --warmup_runs=5 --use_xnnpack=true",
    ]]
    assert ["-s", "emulator-5554", "shell", "rm -f /data/local/tmp/tiny.tflite"] in calls


def test_serial_selection(fake_adb, model_path, monkeypatch):
    monkeypatch.setenv("FAKE_ADB_DEVICES", "R58M1:device,emulator-5554:device,ZX1:unauthorized")
    assert list_devices() == {"R58M1": "device", "emulator-5554": "device", "ZX1": "unauthorized"}
    with pytest.raises(ExportError, match="Several Android devices"):
        benchmark_android(model_path)
    with pytest.raises(ExportError, match="No Android device with serial 'nope'"):
        benchmark_android(model_path, serial="nope")
    with pytest.raises(ExportError, match="'unauthorized'"):
        benchmark_android(model_path, serial="ZX1")
    report = benchmark_android(model_path, serial="R58M1", use_xnnpack=False, binary="/data/local/tmp/bm")
    assert report.machine["serial"] == "R58M1" and report.xnnpack is False
    assert any("/data/local/tmp/bm --graph" in c[-1] and "--use_xnnpack=false" in c[-1] for c in fake_adb())


def test_no_device_is_clear(fake_adb, model_path, monkeypatch):
    monkeypatch.setenv("FAKE_ADB_DEVICES", "")
    with pytest.raises(ExportError, match="No Android device is connected"):
        benchmark_android(model_path)


def test_missing_adb_is_clear(model_path, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ExportError, match="adb was not found(.|\n)*platform-tools"):
        benchmark_android(model_path)


def test_missing_binary_says_where_to_get_it(fake_adb, model_path, monkeypatch):
    monkeypatch.setenv("FAKE_ADB_BINARY", "absent")
    with pytest.raises(ExportError, match="android_aarch64_benchmark_model"):
        benchmark_android(model_path)


def test_failed_benchmark_reports_output(fake_adb, model_path, monkeypatch, tmp_path):
    failing = tmp_path / "failing.txt"
    failing.write_text("INFO: STARTING!\nERROR: Didn't find op for builtin opcode 'CONV_2D' version '6'\n")
    monkeypatch.setenv("FAKE_ADB_OUTPUT", str(failing))
    monkeypatch.setenv("FAKE_ADB_EXIT", "1")
    with pytest.raises(ExportError, match=r"benchmark_model failed \(exit code 1\)(.|\n)*CONV_2D"):
        benchmark_android(model_path)
    # The pushed file is removed even when the benchmark fails.
    assert ["-s", "emulator-5554", "shell", "rm -f /data/local/tmp/tiny.tflite"] in fake_adb()
