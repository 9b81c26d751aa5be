"""Shared epilogue of the benchmark scripts: mean ± std strings and the JSON result file."""

from __future__ import annotations

import math
import os
import platform
import statistics


def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (else what ``platform`` knows)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def backend_versions() -> dict:
    """The version of the framework under Keras' backend (``{"jax": ...}``, ``{"torch": ...}`` or
    ``{"tensorflow": ...}``), importing only that one (TensorFlow may be absent)."""
    import keras
    backend = keras.backend.backend()
    if backend == "jax":
        import jax
        return {"jax": jax.__version__}
    if backend == "torch":
        import torch
        return {"torch": torch.__version__}
    import tensorflow as tf
    return {"tensorflow": tf.__version__}


def check_mergeable(paths, settings, backends, free=()) -> None:
    """Refuses (``SystemExit``) to pool result files whose ``settings`` differ in a key outside
    ``free`` or whose kprune side ran on another Keras backend; the message names the file and
    the keys."""
    first = {k: v for k, v in settings[0].items() if k not in free}
    for path, these, backend in zip(paths, settings, backends):
        other = {k: v for k, v in these.items() if k not in free}
        if other != first:
            diff = sorted(k for k in first.keys() | other.keys() if first.get(k) != other.get(k))
            raise SystemExit(f"--merge: {path} differs from {paths[0]} in {', '.join(diff)}")
        if backend != backends[0]:
            raise SystemExit(f"--merge: {path} differs from {paths[0]} in the Keras backend ({backend} vs "
                             f"{backends[0]}): runs on different Keras backends are not pooled")


def mean_std(values) -> tuple:
    """(mean, sample std) of a list (std 0 for one value)."""
    values = list(values)
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def mean_std_pct(values) -> str:
    """``"mean ± std"`` of fractions, in percent with two decimals (std 0 for one value)."""
    mean, std = mean_std(values)
    return f"{100 * mean:.2f} ± {100 * std:.2f}"


def paired(diffs, labels=None) -> str:
    """``"mean ± std (standard error, 95 % t-interval; k of n > 0); per seed: ..."`` of paired
    differences already in points; ``labels`` (e.g. the seeds) name the per-seed values."""
    diffs = list(diffs)
    mean, std = mean_std(diffs)
    text = f"{mean:+.2f} ± {std:.2f}"
    if len(diffs) > 2:
        se = std / math.sqrt(len(diffs))
        text += f" (standard error {se:.2f}"
        try:
            from scipy import stats
            half = stats.t.ppf(0.975, len(diffs) - 1) * se
            text += f"; 95 % t-interval [{mean - half:+.2f}, {mean + half:+.2f}]"
        except ImportError:  # scipy comes with the [compare] extra (TFMOT needs it)
            pass
        text += f"; {sum(d > 0 for d in diffs)} of {len(diffs)} seeds > 0)"
    values = (f"{d:+.2f}" for d in diffs) if labels is None else (f"{l}: {d:+.2f}" for l, d in zip(labels, diffs))
    return text + f"; per seed: {', '.join(values)}"


def write_json(path, results: dict, load_before=None) -> None:
    """Writes ``results`` to ``path`` atomically (folders created) and says where.

    With ``load_before`` (an ``os.getloadavg()`` tuple) the 1-minute load average before and
    after is printed and stored as ``loadavg_before`` / ``loadavg_after``.
    """
    from kprune.io import atomic_write_json

    if load_before is not None:
        results["loadavg_before"], results["loadavg_after"] = list(load_before), list(os.getloadavg())
        print(f"\n1-minute load average before/after: {load_before[0]:.2f} / {results['loadavg_after'][0]:.2f}")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write_json(path, results)
    print(f"wrote {path}")
