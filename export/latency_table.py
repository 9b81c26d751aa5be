"""Per-layer latency lookup table: measure once, predict pruned models' latency cheaply.

For every prunable layer (Conv1D/Conv2D with ``groups == 1``, DepthwiseConv2D, Dense) the
table times a one-layer TFLite model built from the layer's config and input shape, for
each (input channels, output channels) pair on a grid of fractions of the original
counts. Every probe also pays the interpreter's fixed per-invoke cost, so the table times
an (almost) empty model once and subtracts that overhead from each probe: a layer's
latency is ``probe − overhead`` (never below 0). A pruned model's latency is predicted as
the sum of the per-layer latencies, bilinearly interpolated at its channel counts, plus a
constant for the remainder (``full model measured − sum of its layers at full width``; it
holds the overhead, once, and the layers that are not in the table), and never below the
overhead. At full width the prediction equals the measured full model by construction.
Used by latency-constrained search (NetAdapt, AMC).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field

import numpy as np

from kprune.errors import ExportError
from kprune.export.report import host_machine, validate_counts
from kprune.export.tflite import to_tflite, write_atomic

TARGETS = ("host", "android")
STATISTICS = ("min", "median")
CACHE_VERSION = 2
DEFAULT_GRID = (0.25, 0.5, 1.0)
_SUPPORTED = ("Conv1D", "Conv2D", "DepthwiseConv2D", "Dense")


def _channel_axis(layer) -> int:
    return 1 if getattr(layer, "data_format", "channels_last") == "channels_first" else -1


def prunable_layers(model) -> list:
    """Layers the table measures: Conv1D/Conv2D (groups 1), DepthwiseConv2D, Dense, built."""
    out = []
    for layer in getattr(model, "layers", []):
        name = type(layer).__name__
        if name in _SUPPORTED and getattr(layer, "groups", 1) == 1 and layer.built:
            out.append(layer)
        elif hasattr(layer, "layers"):
            out.extend(prunable_layers(layer))
    return out


def channels_of(model) -> dict:
    """``{layer_name: (in_channels, out_channels)}`` for the model's prunable layers."""
    result = {}
    for layer in prunable_layers(model):
        shape = layer.input.shape
        result[layer.name] = (int(shape[_channel_axis(layer)]), int(layer.output.shape[_channel_axis(layer)]))
    return result


def _fixed_ends(model, layer) -> tuple[bool, bool]:
    """(input fixed, output fixed): fed straight by a model input / straight into an output."""
    inputs = {id(t) for t in getattr(model, "inputs", [])}
    outputs = {id(t) for t in getattr(model, "outputs", [])}
    return id(layer.input) in inputs, id(layer.output) in outputs


def _grid(full: int, fractions, fixed: bool) -> list:
    if fixed:
        return [full]
    return sorted({max(1, int(round(f * full))) for f in fractions})


def _probe_model(layer, cin: int, cout: int | None):
    """A one-layer model: the layer's config with ``cin`` input and ``cout`` output channels."""
    import keras

    config = dict(layer.get_config())
    config["name"] = f"{layer.name}_probe"
    kind = type(layer).__name__
    if kind == "Dense":
        config["units"] = cout
    elif kind != "DepthwiseConv2D":
        config["filters"] = cout
    shape = list(layer.input.shape[1:])
    shape[_channel_axis(layer)] = cin
    inputs = keras.Input(tuple(shape), batch_size=1)
    return keras.Model(inputs, type(layer).from_config(config)(inputs))


def _overhead_model():
    """The smallest model LiteRT will run: one ReLU on one number (the per-invoke cost)."""
    import keras

    inputs = keras.Input((1,), batch_size=1)
    return keras.Model(inputs, keras.layers.ReLU(name="overhead_probe")(inputs), name="overhead")


def _interp_index(grid, value: float):
    """Indices and weight for linear interpolation (extrapolation outside the grid)."""
    grid = np.asarray(grid, dtype=np.float64)
    if len(grid) == 1:
        return 0, 0, 0.0
    i = int(np.clip(np.searchsorted(grid, value) - 1, 0, len(grid) - 2))
    return i, i + 1, float((value - grid[i]) / (grid[i + 1] - grid[i]))


@dataclass
class LatencyTable:
    """Measured per-layer latencies and the remainder constant; predicts pruned latency.

    Attributes:
        layers: ``{name: {"class", "full": [cin, cout], "in_grid", "out_grid", "ms"}}``
            where ``ms[i][j]`` is the latency (the table's statistic) at ``in_grid[i]``, ``out_grid[j]``.
        full_model_ms: measured latency of the whole model.
        remainder_ms: ``full_model_ms − Σ layers at full width`` (holds the overhead once).
        overhead_ms: measured latency of an almost empty model (per-invoke cost); subtracted
            from every probe and the floor of every prediction. 0 for hand-built tables.
        signature: what the table was measured for (model, grid, threads, target, ...).
        measured: benchmarks run to build this object (0 when read from the cache).
        from_cache: whether it was read from the cache file.
    """

    layers: dict
    full_model_ms: float
    remainder_ms: float
    signature: dict
    measured: int = 0
    from_cache: bool = False
    meta: dict = field(default_factory=dict)
    overhead_ms: float = 0.0

    def layer_ms(self, name: str, in_channels: int, out_channels: int | None = None) -> float:
        """Interpolated latency of one layer at the given channel counts, overhead removed."""
        entry = self.layers[name]
        ms = np.asarray(entry["ms"], dtype=np.float64)
        i0, i1, ti = _interp_index(entry["in_grid"], in_channels)
        if entry["class"] == "DepthwiseConv2D" or out_channels is None:
            j0 = j1 = 0
            tj = 0.0
        else:
            j0, j1, tj = _interp_index(entry["out_grid"], out_channels)
        low = ms[i0, j0] * (1 - tj) + ms[i0, j1] * tj
        high = ms[i1, j0] * (1 - tj) + ms[i1, j1] * tj
        return float(max(0.0, low * (1 - ti) + high * ti - self.overhead_ms))

    def predict(self, model_or_channels) -> float:
        """Predicted latency in ms of a pruned version of the measured model.

        Args:
            model_or_channels: a (compacted) Keras model with the same layer names, or a
                dict ``{layer_name: (in_channels, out_channels)}`` (an int means output
                channels only); layers not mentioned keep their full counts.

        Returns:
            Σ interpolated per-layer latency + ``remainder_ms``, at least ``overhead_ms``.

        Example:
            >>> table.predict({"conv2": (16, 32)})
        """
        channels = channels_of(model_or_channels) if hasattr(model_or_channels, "layers") else dict(model_or_channels)
        unknown = sorted(set(channels) - set(self.layers))
        if unknown:
            raise ExportError(
                f"LatencyTable has no layer(s) {unknown}. Received channels for them; the table "
                f"covers {sorted(self.layers)}. Rebuild it for this model with latency_table()."
            )
        total = self.remainder_ms
        for name, entry in self.layers.items():
            cin, cout = entry["full"]
            value = channels.get(name, (cin, cout))
            if isinstance(value, (int, np.integer)):
                value = (cin, int(value))
            total += self.layer_ms(name, int(value[0]), int(value[1]))
        return float(max(total, self.overhead_ms))

    def to_dict(self) -> dict:
        """JSON-ready dict (the cache file's content)."""
        return {
            "version": CACHE_VERSION, "signature": self.signature, "key": signature_key(self.signature),
            "layers": self.layers, "full_model_ms": self.full_model_ms, "remainder_ms": self.remainder_ms,
            "overhead_ms": self.overhead_ms, "meta": self.meta,
        }

    @classmethod
    def from_dict(cls, data: dict) -> "LatencyTable":
        """Rebuilds a table from :meth:`to_dict` output (``from_cache`` set, ``measured`` 0)."""
        return cls(data["layers"], data["full_model_ms"], data["remainder_ms"], data["signature"],
                   measured=0, from_cache=True, meta=data.get("meta", {}), overhead_ms=data.get("overhead_ms", 0.0))


def signature_key(signature: dict) -> str:
    """A short stable hash of a signature dict."""
    return hashlib.sha256(json.dumps(signature, sort_keys=True).encode()).hexdigest()[:16]


def model_signature(model, grid, threads, target, quantize, use_xnnpack, device=None, statistic="min") -> dict:
    """What a table depends on: layer configs and shapes, grid, threads, target, machine."""
    layers = []
    for layer in prunable_layers(model):
        config = {k: v for k, v in layer.get_config().items() if k not in ("name", "trainable", "dtype")}
        layers.append({"name": layer.name, "class": type(layer).__name__, "config": json.loads(json.dumps(config, default=str)),
                       "input_shape": [None if d is None else int(d) for d in layer.input.shape]})
    machine = host_machine()
    return {
        "model": model.name, "layers": layers, "grid": [float(f) for f in grid], "threads": threads,
        "target": target, "quantize": quantize, "xnnpack": use_xnnpack, "statistic": statistic,
        "machine": device if target == "android" else {k: machine[k] for k in ("processor", "machine", "cpu_count", "litert")},
    }


def _measurer(target, threads, runs, warmup, use_xnnpack, serial, binary, adb, statistic="min"):
    key = f"{statistic}_ms"
    if target == "host":
        from kprune.export.benchmark import benchmark

        return lambda path: getattr(benchmark(path, threads=threads, runs=runs, warmup=warmup, use_xnnpack=use_xnnpack), key)
    from kprune.export.android import DEFAULT_BINARY, benchmark_android

    def measure(path):
        report = benchmark_android(path, serial=serial, threads=threads, runs=runs, warmup=warmup,
                                   use_xnnpack=use_xnnpack, binary=binary or DEFAULT_BINARY, adb=adb)
        value = getattr(report, key)
        return value if value is not None else report.mean_ms

    return measure


def latency_table(
    model,
    channel_grid=DEFAULT_GRID,
    threads: int = 1,
    runs: int = 30,
    warmup: int = 5,
    target: str = "host",
    cache=None,
    quantize: str = "none",
    use_xnnpack: bool = True,
    serial: str | None = None,
    binary: str | None = None,
    adb: str = "adb",
    statistic: str = "min",
) -> LatencyTable:
    """Measures (or loads from ``cache``) a per-layer latency table for ``model``.

    Cost: one conversion + benchmark per grid point — per layer ``len(grid)²`` points, or
    ``len(grid)`` for layers fed by a model input (input channels fixed), producing a model
    output (output channels fixed) or depthwise — plus one for the whole model and one for
    the per-invoke overhead.

    Args:
        model: a built functional/sequential Keras model (plain layers; strip/compact first).
        channel_grid: fractions of each layer's channel counts to measure. Default
            (0.25, 0.5, 1.0).
        threads: interpreter threads. Default 1.
        runs, warmup: timed and untimed runs per measurement. Defaults 30 and 5.
        target: ``"host"`` (LiteRT here) or ``"android"`` (benchmark_model over adb).
        cache: JSON file path; reused when its signature (layer configs and shapes, grid,
            threads, target, quantize, xnnpack, machine) matches, else (re)written
            atomically. Default None (no cache).
        quantize: conversion mode of the probes (see ``to_tflite``; ``"int8"`` is not
            supported here). Default ``"none"``.
        use_xnnpack: XNNPACK on or off. Default True.
        serial, binary, adb: Android settings (see ``benchmark_android``).
        statistic: ``"min"`` (default) or ``"median"`` of the timed runs per measurement.
            The minimum is the least sensitive to other processes on a shared machine;
            whichever is chosen is used for the probes and the full model alike.

    Returns:
        LatencyTable.

    Example:
        >>> table = latency_table(model, channel_grid=(0.5, 1.0), cache="lat.json")
        >>> table.predict(kprune.compact(pruned))
    """
    if target not in TARGETS:
        raise ExportError(f"Unknown latency target. Received: target={target!r}. Allowed: 'host', 'android'.")
    if quantize not in ("none", "fp16", "dynamic"):
        raise ExportError(f"latency_table measures quantize in 'none', 'fp16', 'dynamic'. Received: quantize={quantize!r}.")
    grid = [float(f) for f in channel_grid]
    if not grid or any(not 0 < f <= 1 for f in grid):
        raise ExportError(f"channel_grid must hold fractions in (0, 1]. Received: channel_grid={tuple(channel_grid)!r}.")
    if statistic not in STATISTICS:
        raise ExportError(f"Unknown statistic. Received: statistic={statistic!r}. Allowed: 'min', 'median'.")
    validate_counts(threads, runs, warmup)
    layers = prunable_layers(model)
    if not layers:
        raise ExportError(f"Model {model.name!r} has no Conv1D/Conv2D/DepthwiseConv2D/Dense layer to build a latency table for.")
    device = None
    if target == "android":
        from kprune.export.android import _pick_device, list_devices

        device = {"serial": _pick_device(list_devices(adb), serial)}
    signature = model_signature(model, grid, threads, target, quantize, use_xnnpack, device, statistic)
    cached = _read_cache(cache, signature)
    if cached is not None:
        return cached
    measure = _measurer(target, threads, runs, warmup, use_xnnpack, device and device["serial"], binary, adb, statistic)
    table = _measure_table(model, layers, grid, quantize, measure, signature)
    table.meta = {"runs": runs, "warmup": warmup}
    if cache is not None:
        write_atomic(cache, json.dumps(table.to_dict(), indent=1).encode())
    return table


def _read_cache(cache, signature):
    if cache is None or not os.path.isfile(cache):
        return None
    try:
        with open(cache) as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return None
    if data.get("version") != CACHE_VERSION or data.get("key") != signature_key(signature):
        return None
    return LatencyTable.from_dict(data)


def _measure_table(model, layers, grid, quantize, measure, signature) -> LatencyTable:
    count = 0
    entries = {}
    with tempfile.TemporaryDirectory(prefix="kprune_latency_") as folder:

        def time_model(keras_model, tag):
            nonlocal count
            path = to_tflite(keras_model, os.path.join(folder, f"{tag}.tflite"), quantize=quantize).path
            count += 1
            return float(measure(path))

        for index, layer in enumerate(layers):
            axis = _channel_axis(layer)
            cin, cout = int(layer.input.shape[axis]), int(layer.output.shape[axis])
            in_fixed, out_fixed = _fixed_ends(model, layer)
            depthwise = type(layer).__name__ == "DepthwiseConv2D"
            in_grid = _grid(cin, grid, in_fixed)
            out_grid = [cout] if depthwise else _grid(cout, grid, out_fixed)
            ms = [[time_model(_probe_model(layer, i, None if depthwise else o), f"l{index}_{i}_{o}") for o in out_grid] for i in in_grid]
            entries[layer.name] = {"class": type(layer).__name__, "full": [cin, cout], "in_grid": in_grid, "out_grid": out_grid, "ms": ms}
        full_ms = time_model(model, "full")
        overhead_ms = min(time_model(_overhead_model(), "overhead"), full_ms)
    table = LatencyTable(entries, full_ms, 0.0, signature, measured=count, overhead_ms=overhead_ms)
    table.remainder_ms = full_ms - sum(table.layer_ms(n, *e["full"]) for n, e in entries.items())
    return table


def prediction_error(table: LatencyTable, model, runs: int | None = None, warmup: int | None = None, measure=None) -> dict:
    """Compares ``table.predict(model)`` with a full measurement of ``model``.

    Args:
        table: a table built for the (unpruned) model this one derives from.
        model: the pruned/compacted Keras model.
        runs, warmup: benchmark settings; None uses the table's. Default None.
        measure: optional ``callable(path) -> ms``; default benchmarks on the host with the
            table's threads, xnnpack setting and statistic.

    Returns:
        ``{"predicted_ms", "measured_ms", "error_ms", "relative_error"}`` where
        ``error = predicted − measured`` and ``relative_error = error / measured``.
    """
    predicted = table.predict(model)
    signature = table.signature
    if measure is None:
        if signature["target"] != "host":
            raise ExportError("prediction_error measures on the host by default; pass measure= for an Android table.")
        measure = _measurer("host", signature["threads"], runs or table.meta.get("runs", 30),
                            warmup if warmup is not None else table.meta.get("warmup", 5),
                            signature["xnnpack"], None, None, "adb", signature.get("statistic", "min"))
    with tempfile.TemporaryDirectory(prefix="kprune_latency_") as folder:
        path = to_tflite(model, os.path.join(folder, "model.tflite"), quantize=signature["quantize"]).path
        measured = float(measure(path))
    error = predicted - measured
    return {"predicted_ms": predicted, "measured_ms": measured, "error_ms": error,
            "relative_error": error / measured if measured > 0 else float("inf")}
