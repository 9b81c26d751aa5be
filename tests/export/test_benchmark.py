"""benchmark / compare on the host LiteRT interpreter: fields, ordering, sizes, errors."""

import gzip
import json

import numpy as np
import pytest

from export_fixtures import small_convnet, sparse_convnet, sparse_dynamic_tflite
from kprune.errors import ExportError
from kprune.export.benchmark import benchmark, compare
from kprune.export.report import LatencyReport, statistics_ms
from kprune.export.tflite import to_tflite


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bench")
    dense = small_convnet(filters=(32, 64))
    sparse = sparse_convnet()
    small = small_convnet(filters=(4, 8))
    return {
        "dense": to_tflite(dense, folder / "dense.tflite").path,
        "sparse": to_tflite(sparse, folder / "sparse.tflite").path,
        "small": to_tflite(small, folder / "small.tflite").path,
        "int8": to_tflite(small, folder / "int8.tflite", quantize="int8", representative_data=np.random.rand(8, 12, 12, 3), io_dtype="int8").path,
    }


def test_statistics_against_hand_computed_values():
    stats = statistics_ms([4.0, 1.0, 3.0, 2.0, 10.0])
    assert stats["median_ms"] == 3.0
    assert stats["mean_ms"] == 4.0
    assert stats["min_ms"] == 1.0 and stats["max_ms"] == 10.0
    assert stats["p90_ms"] == pytest.approx(4.0 + 0.6 * 6.0)  # linear between 4 and 10
    assert stats["p99_ms"] == pytest.approx(4.0 + 0.96 * 6.0)
    assert stats["std_ms"] == pytest.approx(np.sqrt((9 + 4 + 1 + 0 + 36) / 5))


def test_benchmark_fields_are_sane(paths):
    report = benchmark(paths["dense"], threads=1, runs=20, warmup=3)
    assert isinstance(report, LatencyReport)
    assert report.backend == "litert-host" and report.xnnpack is True
    assert (report.runs, report.warmup, report.threads) == (20, 3, 1)
    assert 0 < report.min_ms <= report.median_ms <= report.p90_ms <= report.p99_ms <= report.max_ms
    assert report.min_ms <= report.mean_ms <= report.max_ms
    assert report.std_ms >= 0
    with open(paths["dense"], "rb") as handle:
        content = handle.read()
    assert report.size_bytes == len(content)
    assert report.gzip_bytes == len(gzip.compress(content, compresslevel=9, mtime=0))
    assert report.machine["cpu_count"] >= 1 and report.machine["platform"]
    assert report.peak_memory_mb is None or report.peak_memory_mb >= 0
    assert report.memory_method
    # JSON round trip
    again = LatencyReport.from_dict(json.loads(json.dumps(report.to_dict())))
    assert again == report


def test_gzip_shrinks_a_sparse_model_more(paths):
    dense = benchmark(paths["dense"], runs=2, warmup=0)
    sparse = benchmark(paths["sparse"], runs=2, warmup=0)
    assert sparse.gzip_bytes < sparse.size_bytes
    assert sparse.size_bytes == pytest.approx(dense.size_bytes, rel=0.01)  # zeros still stored densely
    assert sparse.gzip_bytes < 0.5 * dense.gzip_bytes


def test_integer_inputs_and_no_xnnpack(paths):
    report = benchmark(paths["int8"], runs=5, warmup=1, use_xnnpack=False, threads=2)
    assert report.xnnpack is False and report.threads == 2
    assert report.min_ms > 0


def test_compare_runs_interleaved_and_reports_ratio(paths):
    result = compare(paths["small"], paths["dense"], runs=15, warmup=2)
    assert result.a.runs == result.b.runs == 15
    assert result.ratio == pytest.approx(result.b.median_ms / result.a.median_ms)
    assert result.speedup == pytest.approx(1 / result.ratio)
    # 32/64-filter convs cost about 30x the MACs of 4/8-filter ones.
    assert result.ratio > 1.0
    data = result.to_dict()
    assert set(data) == {"a", "b", "ratio", "speedup"} and data["a"]["path"] == paths["small"]


@pytest.mark.parametrize(
    "kwargs, pattern",
    [({"threads": 0}, "threads=0"), ({"runs": 0}, "runs=0"), ({"warmup": -1}, "warmup=-1"), ({"runs": 2.5}, "runs=2.5")],
)
def test_argument_errors(paths, kwargs, pattern):
    with pytest.raises(ExportError, match=pattern):
        benchmark(paths["small"], **kwargs)


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(ExportError, match="No TFLite file"):
        benchmark(tmp_path / "none.tflite")
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"not a flatbuffer")
    with pytest.raises(ExportError, match="not a loadable TFLite model"):
        benchmark(bad)


def test_sparse_quantized_model_needs_builtin_kernels(tmp_path):
    # Found while building this module (LiteRT 2.3): XNNPACK refuses a dynamic-range model
    # stored with sparse tensors. benchmark says so and how to proceed; the built-in kernels run it.
    _, path = sparse_dynamic_tflite(tmp_path / "sparse_dynamic.tflite")
    try:
        benchmark(path, runs=2, warmup=0)
    except ExportError as err:
        assert "Retry with use_xnnpack=False" in str(err)
    report = benchmark(path, runs=3, warmup=1, use_xnnpack=False)
    assert report.min_ms > 0 and report.xnnpack is False
