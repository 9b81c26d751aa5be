"""Benchmark a ``.tflite`` file on an Android device with TensorFlow Lite's ``benchmark_model``.

Getting ``benchmark_model``: TensorFlow Lite (LiteRT) publishes prebuilt benchmark
binaries for Android — download the one for the device's ABI (``android_aarch64_benchmark_model``
for 64-bit ARM phones, ``android_arm_benchmark_model`` for 32-bit ARM) from the TFLite
performance-measurement page (https://ai.google.dev/edge/litert/models/measurement), or
build it from the TensorFlow / LiteRT sources with
``bazel build -c opt --config=android_arm64 //tensorflow/lite/tools/benchmark:benchmark_model``.
Then copy it to the device once::

    adb push android_aarch64_benchmark_model /data/local/tmp/benchmark_model
    adb shell chmod +x /data/local/tmp/benchmark_model

``adb`` itself comes with Android SDK platform-tools
(https://developer.android.com/tools/releases/platform-tools; Debian/Ubuntu: ``apt install adb``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

from kprune.errors import ExportError
from kprune.export.report import LatencyReport, file_sizes, validate_counts

DEFAULT_BINARY = "/data/local/tmp/benchmark_model"
REMOTE_DIR = "/data/local/tmp"

_PREFIX = r"^(?:[A-Z]+: |[VDIWEF]\s+tflite\s*: )?"
_NUMBER = r"([-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)"
_COUNT_LINE = re.compile(_PREFIX + r"count=\d+.*$", re.MULTILINE)
_KEY_VALUE = re.compile(r"(\w+)=" + _NUMBER)
_TIMINGS = re.compile(
    r"Inference timings in us: Init: " + _NUMBER + r", First inference: " + _NUMBER
    + r", Warmup \(avg\): " + _NUMBER + r", Inference \(avg\): " + _NUMBER
)
_MEMORY_DELTA = re.compile(r"(?:Memory footprint delta from the start of the tool|Peak memory footprint) \(MB\): init=" + _NUMBER + r" overall=" + _NUMBER)
_PEAK_MONITOR = re.compile(r"Overall peak memory footprint \(MB\) via periodic monitoring: " + _NUMBER)
_MODEL_SIZE = re.compile(r"The input model file size \(MB\): " + _NUMBER)
_THREADS = re.compile(r"Num threads: \[(\d+)\]")


def _stat_line(line: str) -> dict:
    """``count=.. first=.. min=.. avg=.. std=.. [p5=.. median=.. p95=..]`` -> dict of floats (us)."""
    return {key: float(value) for key, value in _KEY_VALUE.findall(line)}


def parse_benchmark_output(text: str) -> dict:
    """Parses the console output of TensorFlow Lite's ``benchmark_model``.

    Understands the summary line (``Inference timings in us: Init: ..., First inference:
    ..., Warmup (avg): ..., Inference (avg): ...``), the ``count=... first=... curr=...
    min=... max=... avg=... std=...`` statistics lines (with ``p5``/``median``/``p95``
    where the binary prints them; the last such line is the timed run, an earlier one the
    warm-up), and the memory lines. Log prefixes (``INFO: ``, logcat ``I tflite  : ``) and
    ``\\r`` line ends are ignored.

    Args:
        text: everything the binary printed (stdout and stderr).

    Returns:
        A dict of floats in milliseconds / megabytes: ``init_ms``, ``first_ms``,
        ``warmup_avg_ms``, ``inference_avg_ms``, ``count``, ``min_ms``, ``max_ms``,
        ``avg_ms``, ``std_ms`` and, when printed, ``median_ms``, ``p5_ms``, ``p95_ms``,
        ``warmup_count``, ``memory_init_mb``, ``memory_overall_mb``, ``peak_memory_mb``,
        ``model_size_mb``, ``num_threads``.

    Raises:
        ExportError: the output holds no timing results (the binary failed); the message
            quotes the end of the output.

    Example:
        >>> parse_benchmark_output(open("out.txt").read())["inference_avg_ms"]
        2.56972
    """
    text = text.replace("\r", "")
    result: dict = {}
    timings = _TIMINGS.search(text)
    if timings:
        init, first, warm, avg = (float(v) / 1000.0 for v in timings.groups())
        result.update(init_ms=init, first_ms=first, warmup_avg_ms=warm, inference_avg_ms=avg)
    stats = [_stat_line(m.group(0)) for m in _COUNT_LINE.finditer(text)]
    stats = [s for s in stats if "count" in s and "avg" in s]
    if stats:
        timed = stats[-1]
        result["count"] = int(timed["count"])
        for key in ("min", "max", "avg", "std", "median", "p5", "p95", "first"):
            if key in timed:
                result[f"{key}_ms" if key != "first" else "first_run_ms"] = timed[key] / 1000.0
        if len(stats) > 1:
            result["warmup_count"] = int(stats[0]["count"])
    if not timings and not stats:
        tail = "\n".join(text.strip().splitlines()[-15:])
        raise ExportError(
            "benchmark_model printed no timing results, so it probably failed. "
            f"Last lines of its output:\n{tail}"
        )
    memory = _MEMORY_DELTA.search(text)
    if memory:
        result["memory_init_mb"], result["memory_overall_mb"] = (float(v) for v in memory.groups())
    peak = _PEAK_MONITOR.search(text)
    if peak:
        result["peak_memory_mb"] = float(peak.group(1))
    size = _MODEL_SIZE.search(text)
    if size:
        result["model_size_mb"] = float(size.group(1))
    threads = _THREADS.search(text)
    if threads:
        result["num_threads"] = int(threads.group(1))
    return result


def report_from_output(text: str, path, threads: int, warmup: int, xnnpack: bool, machine: dict | None = None) -> LatencyReport:
    """Builds a :class:`LatencyReport` (backend ``"android"``) from ``benchmark_model`` output.

    ``benchmark_model`` prints no p90/p99, so those stay None; its p5/p95 and warm-up
    average go to ``extra``. The mean is the timed run's ``avg`` (equal to ``Inference
    (avg)``). Without a printed median (older binaries), ``median_ms`` is None and a note
    says so.

    Args:
        text: the binary's output.
        path: the local ``.tflite`` file that was benchmarked (for the sizes).
        threads, warmup, xnnpack: the settings it ran with.
        machine: device description. Default None (empty).

    Returns:
        LatencyReport.
    """
    parsed = parse_benchmark_output(text)
    size, gz = file_sizes(path)
    notes = ["benchmark_model prints no p90/p99; p90_ms and p99_ms are None (p5/p95 are in extra when printed)"]
    if "median_ms" not in parsed:
        notes.append("this benchmark_model build prints no median; median_ms is None, use mean_ms")
    mean = parsed.get("avg_ms", parsed.get("inference_avg_ms"))
    if "peak_memory_mb" in parsed:
        peak, method = parsed["peak_memory_mb"], "benchmark_model: overall peak memory footprint via periodic monitoring"
    elif "memory_overall_mb" in parsed:
        peak, method = parsed["memory_overall_mb"], "benchmark_model: max RSS growth from the start of the tool (overall)"
    else:
        peak, method = None, "not reported by benchmark_model"
    extra = {k: parsed[k] for k in ("p5_ms", "p95_ms", "warmup_avg_ms", "warmup_count", "memory_init_mb", "memory_overall_mb", "model_size_mb", "first_run_ms", "inference_avg_ms") if k in parsed}
    return LatencyReport(
        path=os.fspath(path),
        backend="android",
        median_ms=parsed.get("median_ms"),
        mean_ms=mean,
        p90_ms=None,
        p99_ms=None,
        min_ms=parsed.get("min_ms"),
        max_ms=parsed.get("max_ms"),
        std_ms=parsed.get("std_ms"),
        runs=parsed.get("count", 0),
        warmup=warmup,
        threads=parsed.get("num_threads", threads),
        xnnpack=xnnpack,
        size_bytes=size,
        gzip_bytes=gz,
        peak_memory_mb=peak,
        memory_method=method,
        machine=dict(machine or {}),
        init_ms=parsed.get("init_ms"),
        first_ms=parsed.get("first_ms"),
        notes=notes,
        extra=extra,
    )


def _find_adb(adb: str) -> str:
    found = shutil.which(adb)
    if found is None:
        raise ExportError(
            f"adb was not found (looked for {adb!r} on PATH). Install Android SDK platform-tools "
            "(https://developer.android.com/tools/releases/platform-tools, or `apt install adb`), "
            "put adb on PATH, or pass the adb path explicitly."
        )
    return found


def _run(cmd: list, timeout: float, what: str) -> str:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as err:
        raise ExportError(f"{what} timed out after {timeout:g} s: {' '.join(cmd)}") from err
    output = (done.stdout or "") + (done.stderr or "")
    if done.returncode != 0:
        raise ExportError(f"{what} failed (exit code {done.returncode}): {' '.join(cmd)}\n{output.strip()}")
    return output


def list_devices(adb: str = "adb", timeout: float = 30.0) -> dict:
    """Returns ``{serial: state}`` from ``adb devices`` (state ``"device"`` means usable)."""
    output = _run([_find_adb(adb), "devices"], timeout, "adb devices")
    devices = {}
    for line in output.replace("\r", "").splitlines():
        parts = line.split()
        if len(parts) >= 2 and not line.startswith(("List of devices", "*")):
            devices[parts[0]] = parts[1]
    return devices


def _pick_device(devices: dict, serial: str | None) -> str:
    ready = [s for s, state in devices.items() if state == "device"]
    if serial is not None:
        if serial not in devices:
            raise ExportError(
                f"No Android device with serial {serial!r}. Connected: {devices or 'none'}. "
                "Check `adb devices` and pass one of its serials."
            )
        if devices[serial] != "device":
            raise ExportError(
                f"Android device {serial!r} is {devices[serial]!r}, not ready. Unlock it and accept "
                "the USB-debugging prompt (unauthorized) or reconnect it (offline)."
            )
        return serial
    if not ready:
        detail = f" Found but not ready: {devices}." if devices else ""
        raise ExportError(
            "No Android device is connected (adb devices lists none ready). Connect one with USB "
            f"debugging enabled, or start an emulator.{detail}"
        )
    if len(ready) > 1:
        raise ExportError(f"Several Android devices are connected: {ready}. Pass serial= (CLI: --serial) to choose one.")
    return ready[0]


def benchmark_android(
    path,
    serial: str | None = None,
    threads: int = 1,
    runs: int = 50,
    warmup: int = 5,
    use_xnnpack: bool = True,
    binary: str = DEFAULT_BINARY,
    adb: str = "adb",
    extra_args: tuple = (),
    timeout: float = 600.0,
    cleanup: bool = True,
) -> LatencyReport:
    """Pushes a ``.tflite`` file to an Android device and times it with ``benchmark_model``.

    See the module docstring for where to get ``benchmark_model`` and ``adb``.
    ``benchmark_model`` runs at least ``runs`` iterations and at least its own minimum
    time, so the report's ``runs`` is the count it actually made.

    Args:
        path: the local ``.tflite`` file.
        serial: device serial (``adb devices``); None picks the only connected device.
        threads: ``--num_threads``. Default 1.
        runs: ``--num_runs``. Default 50.
        warmup: ``--warmup_runs``. Default 5.
        use_xnnpack: ``--use_xnnpack``. Default True.
        binary: path of ``benchmark_model`` on the device. Default
            ``/data/local/tmp/benchmark_model``.
        adb: the adb executable (name on PATH or path). Default ``"adb"``.
        extra_args: more ``benchmark_model`` flags, e.g.
            ``("--report_peak_memory_footprint=true",)``. Default ().
        timeout: seconds allowed for each adb call. Default 600.
        cleanup: delete the pushed model from the device afterwards. Default True.

    Returns:
        LatencyReport with backend ``"android"``.

    Raises:
        ExportError: adb missing, no/ambiguous/unknown device, binary missing on the device,
            or the benchmark failed.

    Example:
        >>> report = benchmark_android("model.tflite", serial="R58M123", threads=4)
        >>> report.mean_ms
    """
    validate_counts(threads, runs, warmup)
    path = os.fspath(path)
    file_sizes(path)  # fails early with a clear message for a missing file
    adb_path = _find_adb(adb)
    device = _pick_device(list_devices(adb_path, timeout), serial)
    base = [adb_path, "-s", device]
    listing = subprocess.run(base + ["shell", f"ls {binary}"], capture_output=True, text=True, timeout=timeout)
    found = (listing.stdout or "") + (listing.stderr or "")
    if listing.returncode != 0 or "No such file" in found or binary not in found:
        raise ExportError(
            f"benchmark_model is not on device {device!r} at {binary!r}. Download TensorFlow Lite's "
            "prebuilt android_aarch64_benchmark_model (or build it with bazel), then "
            f"`adb push android_aarch64_benchmark_model {binary}` and `adb shell chmod +x {binary}`. "
            "See docs/export.md."
        )
    remote = f"{REMOTE_DIR}/{os.path.basename(path)}"
    _run(base + ["push", path, remote], timeout, "adb push")
    command = (
        f"{binary} --graph={remote} --num_threads={threads} --num_runs={runs} "
        f"--warmup_runs={warmup} --use_xnnpack={'true' if use_xnnpack else 'false'}"
    )
    if extra_args:
        command += " " + " ".join(extra_args)
    try:
        output = _run(base + ["shell", command], timeout, "benchmark_model")
    finally:
        if cleanup:
            subprocess.run(base + ["shell", f"rm -f {remote}"], capture_output=True, timeout=timeout)
    return report_from_output(output, path, threads, warmup, use_xnnpack, _device_info(base, device, timeout))


def _device_info(base: list, serial: str, timeout: float) -> dict:
    props = ("ro.product.model", "ro.product.cpu.abi", "ro.build.version.release", "ro.soc.model")
    try:
        output = _run(base + ["shell", "; ".join(f"getprop {p}" for p in props)], timeout, "adb shell getprop")
    except ExportError:  # the description is informative only; never fail a finished benchmark on it
        return {"serial": serial}
    values = output.replace("\r", "").splitlines() + [""] * len(props)
    info = {"serial": serial}
    for key, value in zip(("model", "abi", "android", "soc"), values):
        info[key] = value.strip() or None
    return info
