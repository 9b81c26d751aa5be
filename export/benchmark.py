"""Measure a ``.tflite`` file's latency on this machine with LiteRT (Interpreter or CompiledModel)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np

from kprune.export.compiled import CompiledRunner, check_runtime, litert_environment
from kprune.export.interpreter import load_interpreter, random_arrays
from kprune.export.report import LatencyReport, file_sizes, host_machine, statistics_ms, validate_counts

MEMORY_METHOD = (
    "growth of this process's resident set size (Linux /proc/self/statm), sampled after "
    "loading, allocating, warm-up and the timed runs, relative to just before loading; "
    "approximate: the first model loaded in a process also carries one-time runtime set-up"
)


def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as handle:
            resident_pages = int(handle.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


class _Timed:
    """One loaded model with fixed random inputs, ready to be timed invoke by invoke."""

    def __init__(self, path, threads, use_xnnpack, seed, runtime="interpreter"):
        self.path = os.fspath(path)
        self.runtime = check_runtime(runtime)
        import ai_edge_litert.interpreter  # noqa: F401  (library load is not the model's memory)

        if runtime == "compiled_model":
            litert_environment()  # the process's LiteRT environment is not the model's memory either
        self.rss_before = _rss_bytes()
        rng = np.random.default_rng(seed)
        if runtime == "compiled_model":
            runner = CompiledRunner(self.path, threads, use_xnnpack)
            runner.write(random_arrays(runner.input_details, rng))
            self._run = runner.run
        else:
            interpreter = load_interpreter(self.path, threads, use_xnnpack)
            details = interpreter.get_input_details()
            for detail, x in zip(details, random_arrays(details, rng)):
                interpreter.set_tensor(detail["index"], x)
            self._run = interpreter.invoke
        self.rss_samples = [_rss_bytes()]
        self.samples_ms: list[float] = []

    def invoke(self) -> float:
        run = self._run
        start = time.perf_counter_ns()
        run()
        return (time.perf_counter_ns() - start) / 1e6

    def sample_memory(self) -> None:
        self.rss_samples.append(_rss_bytes())

    def peak_memory_mb(self) -> float | None:
        if self.rss_before is None or None in self.rss_samples:
            return None
        return max(0, max(self.rss_samples) - self.rss_before) / 2**20

    def report(self, threads, runs, warmup, use_xnnpack, notes=()) -> LatencyReport:
        size, gz = file_sizes(self.path)
        peak = self.peak_memory_mb()
        return LatencyReport(
            path=self.path,
            backend="litert-host",
            **statistics_ms(self.samples_ms),
            runs=runs,
            warmup=warmup,
            threads=threads,
            xnnpack=use_xnnpack,
            size_bytes=size,
            gzip_bytes=gz,
            peak_memory_mb=peak,
            memory_method=MEMORY_METHOD if peak is not None else "unavailable (no /proc/self/statm)",
            machine=host_machine(),
            notes=list(notes),
            runtime=self.runtime,
        )


def benchmark(path, threads: int = 1, runs: int = 100, warmup: int = 10, use_xnnpack: bool = True, seed: int = 0,
              runtime: str = "interpreter") -> LatencyReport:
    """Times ``runs`` single inferences of a ``.tflite`` file after ``warmup`` untimed ones.

    Inputs are random arrays of each input's shape and dtype (fixed per call by ``seed``);
    only the inference call is timed, with ``time.perf_counter_ns``: ``interpreter.invoke()``
    for the classic Interpreter, ``CompiledModel.run_by_name`` on buffers allocated once for
    LiteRT's CompiledModel API (the call ``litert-benchmark`` times).

    Args:
        path: the ``.tflite`` file.
        threads: interpreter threads. Default 1.
        runs: timed inferences. Default 100.
        warmup: untimed inferences before timing. Default 10.
        use_xnnpack: apply LiteRT's default XNNPACK delegate. Default True.
        seed: random input seed. Default 0.
        runtime: ``"interpreter"`` (``ai_edge_litert.interpreter.Interpreter``, default) or
            ``"compiled_model"`` (``ai_edge_litert.compiled_model.CompiledModel`` on the CPU).

    Returns:
        LatencyReport with backend ``"litert-host"`` and ``runtime`` as given.

    Example:
        >>> report = benchmark("model.tflite", threads=1, runs=50)
        >>> report.median_ms, report.p90_ms
        >>> benchmark("model.tflite", runtime="compiled_model").median_ms
    """
    validate_counts(threads, runs, warmup)
    timed = _Timed(path, threads, use_xnnpack, seed, runtime)
    timed.sample_memory()
    for _ in range(warmup):
        timed.invoke()
    timed.sample_memory()
    timed.samples_ms = [timed.invoke() for _ in range(runs)]
    timed.sample_memory()
    return timed.report(threads, runs, warmup, use_xnnpack)


@dataclass
class Comparison:
    """Two latency reports measured interleaved, and how they relate.

    Attributes:
        a, b: the reports of the first and second file.
        ratio: ``b.median_ms / a.median_ms`` (below 1 means B is faster).
        speedup: ``a.median_ms / b.median_ms`` (above 1 means B is faster).
    """

    a: LatencyReport
    b: LatencyReport
    ratio: float
    speedup: float

    def to_dict(self) -> dict:
        """Returns both reports and the ratios as a JSON-ready dict."""
        return {"a": self.a.to_dict(), "b": self.b.to_dict(), "ratio": self.ratio, "speedup": self.speedup}


def compare(path_a, path_b, threads: int = 1, runs: int = 100, warmup: int = 10, use_xnnpack: bool = True, seed: int = 0,
            runtime: str = "interpreter") -> Comparison:
    """Benchmarks two ``.tflite`` files interleaved (A, B, A, B, ...) for a fair comparison.

    Interleaving exposes both models to the same machine state (frequency scaling, other
    load), so their ratio is steadier than two separate :func:`benchmark` calls.

    Args:
        path_a: the reference file (e.g. dense model).
        path_b: the file compared with it (e.g. pruned model).
        threads: interpreter threads for both. Default 1.
        runs: timed inferences per model. Default 100.
        warmup: untimed inferences per model. Default 10.
        use_xnnpack: apply XNNPACK to both. Default True.
        seed: random input seed. Default 0.
        runtime: ``"interpreter"`` (default) or ``"compiled_model"``, for both files.

    Returns:
        Comparison with both reports, ``ratio`` and ``speedup`` of the medians.

    Example:
        >>> result = compare("dense.tflite", "pruned.tflite", runs=50)
        >>> result.speedup
    """
    validate_counts(threads, runs, warmup)
    a = _Timed(path_a, threads, use_xnnpack, seed, runtime)
    b = _Timed(path_b, threads, use_xnnpack, seed, runtime)
    for _ in range(warmup):
        a.invoke()
        b.invoke()
    for _ in range(runs):
        a.samples_ms.append(a.invoke())
        b.samples_ms.append(b.invoke())
    note = "measured interleaved with another model; peak_memory_mb covers loading and allocating this model only"
    report_a = a.report(threads, runs, warmup, use_xnnpack, [note])
    report_b = b.report(threads, runs, warmup, use_xnnpack, [note])
    ratio = report_b.median_ms / report_a.median_ms if report_a.median_ms > 0 else float("inf")
    return Comparison(report_a, report_b, ratio, 1.0 / ratio if ratio > 0 else float("inf"))
