"""kprune.export: TFLite conversion, accuracy after conversion, latency on the host and on Android.

    from kprune.export import to_tflite, evaluate_tflite, benchmark
    result = to_tflite(model, "model.tflite", quantize="int8", representative_data=ds)
    accuracy = evaluate_tflite(result.path, test_ds)
    report = benchmark(result.path, threads=1, runs=100)   # LatencyReport(median_ms, p90_ms, ...)
    export(model, "model.onnx", format="onnx")             # or "litert": Keras' Model.export
    benchmark("model.tflite", runtime="compiled_model")    # LiteRT's CompiledModel API
"""

from kprune.export.android import benchmark_android, parse_benchmark_output
from kprune.export.benchmark import Comparison, benchmark, compare
from kprune.export.compiled import RUNTIMES, CompiledRunner
from kprune.export.evaluate import evaluate_tflite, predict_tflite
from kprune.export.formats import FORMATS, export
from kprune.export.latency_table import LatencyTable, latency_table, prediction_error
from kprune.export.report import LatencyReport
from kprune.export.tflite import ExportResult, to_tflite

__all__ = [
    "to_tflite",
    "export",
    "FORMATS",
    "CompiledRunner",
    "RUNTIMES",
    "ExportResult",
    "evaluate_tflite",
    "predict_tflite",
    "benchmark",
    "compare",
    "Comparison",
    "benchmark_android",
    "parse_benchmark_output",
    "latency_table",
    "prediction_error",
    "LatencyReport",
    "LatencyTable",
]
