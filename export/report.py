"""``LatencyReport``: one latency measurement of one ``.tflite`` file, host or Android."""

from __future__ import annotations

import gzip
import os
import platform
from dataclasses import asdict, dataclass, field

import numpy as np

from kprune.errors import ExportError

BACKENDS = ("litert-host", "android")


@dataclass
class LatencyReport:
    """Latency statistics of a ``.tflite`` model and the conditions they were taken under.

    All times are milliseconds per inference (batch as stored in the file, normally 1).
    Fields a backend cannot measure are None, and ``notes`` says why.

    Attributes:
        path: the benchmarked file.
        backend: ``"litert-host"`` (this machine's LiteRT interpreter) or ``"android"``
            (TensorFlow Lite's ``benchmark_model`` over adb).
        median_ms, mean_ms, p90_ms, p99_ms, min_ms, max_ms, std_ms: statistics over the
            timed runs (``std_ms`` is the population standard deviation).
        runs, warmup, threads: timed runs, untimed warm-up runs, interpreter threads.
        xnnpack: whether the XNNPACK delegate was requested.
        size_bytes, gzip_bytes: file size raw and gzip-compressed (level 9).
        peak_memory_mb: memory attributed to the model (see ``memory_method``), or None.
        memory_method: how ``peak_memory_mb`` was obtained.
        machine: platform, processor, cpu count (host) or device properties (Android).
        init_ms, first_ms: interpreter initialisation and first inference, when reported.
        notes: caveats about the numbers (e.g. statistics the backend does not print).
        extra: backend-specific numbers that have no field of their own (e.g. the p5/p95
            and warm-up average that ``benchmark_model`` prints).
        runtime: the LiteRT API that ran the file on the host, ``"interpreter"`` or
            ``"compiled_model"``; None on Android (``benchmark_model`` chooses).
    """

    path: str
    backend: str
    median_ms: float | None
    mean_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    min_ms: float | None
    max_ms: float | None
    std_ms: float | None
    runs: int
    warmup: int
    threads: int
    xnnpack: bool
    size_bytes: int
    gzip_bytes: int
    peak_memory_mb: float | None = None
    memory_method: str | None = None
    machine: dict = field(default_factory=dict)
    init_ms: float | None = None
    first_ms: float | None = None
    notes: list = field(default_factory=list)
    extra: dict = field(default_factory=dict)
    runtime: str | None = None

    def to_dict(self) -> dict:
        """Returns the report as a JSON-ready dict (plain floats, ints, strings)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "LatencyReport":
        """Rebuilds a report from :meth:`to_dict` output."""
        return cls(**data)


def statistics_ms(samples_ms) -> dict:
    """Median, mean, p90, p99, min, max and std (population) of latency samples in ms.

    Percentiles use numpy's default linear interpolation.

    Example:
        >>> statistics_ms([1.0, 2.0, 3.0])["median_ms"]
        2.0
    """
    a = np.asarray(samples_ms, dtype=np.float64)
    if a.size == 0:
        raise ExportError("No latency samples were collected; runs must be at least 1.")
    return {
        "median_ms": float(np.median(a)),
        "mean_ms": float(np.mean(a)),
        "p90_ms": float(np.percentile(a, 90)),
        "p99_ms": float(np.percentile(a, 99)),
        "min_ms": float(np.min(a)),
        "max_ms": float(np.max(a)),
        "std_ms": float(np.std(a)),
    }


def file_sizes(path) -> tuple[int, int]:
    """Returns ``(raw_bytes, gzip_bytes)`` of a file (gzip level 9)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ExportError(f"No TFLite file at {path!r}. Convert a model first with kprune.export.to_tflite.")
    with open(path, "rb") as handle:
        content = handle.read()
    return len(content), len(gzip.compress(content, compresslevel=9, mtime=0))


def host_machine() -> dict:
    """Describes this machine: OS platform, processor, CPU count, Python and LiteRT versions."""
    try:
        from importlib.metadata import version

        litert = version("ai-edge-litert")
    except Exception:  # metadata missing in unusual installs
        litert = None
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "litert": litert,
    }


def validate_counts(threads, runs, warmup) -> None:
    """Raises ExportError unless threads ≥ 1, runs ≥ 1 and warmup ≥ 0 are integers."""
    for name, value, low in (("threads", threads, 1), ("runs", runs, 1), ("warmup", warmup, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ExportError(f"{name} must be an integer >= {low}. Received: {name}={value!r}.")
