"""Calibration data for full-integer quantization: single samples from dataset-like inputs."""

from __future__ import annotations

import numpy as np

from kprune.errors import ExportError

DEFAULT_CALIBRATION_SAMPLES = 100


def representative_samples(data, model, num_samples: int = DEFAULT_CALIBRATION_SAMPLES) -> list:
    """Collects single-sample calibration inputs from a dataset-like object.

    Args:
        data: a ``tf.data.Dataset``, numpy array, list/iterable or zero-argument callable
            returning an iterable; elements are ``x``, ``(x, y)`` or ``(x, y, w)``, batched
            or single samples. For multi-input models ``x`` is a list/tuple or a dict keyed
            by input name.
        model: the Keras model (its inputs give ranks, dtypes and names).
        num_samples: how many samples to collect. Default 100.

    Returns:
        A list of lists of numpy arrays, each with a leading batch dimension of 1, in the
        order of ``model.inputs``.

    Example:
        >>> samples = representative_samples(np.zeros((3, 8), "float32"), model, 2)
        >>> len(samples), samples[0][0].shape
        (2, (1, 8))
    """
    specs = _input_specs(model)
    out: list = []
    for element in _iterate(data):
        xs = _element_inputs(element, specs)
        batch = _split_batch(xs, specs)
        for sample in batch:
            out.append(sample)
            if len(out) >= num_samples:
                return out
    if not out:
        raise ExportError(
            "representative_data yielded no samples. Received an empty dataset/iterable; "
            "pass at least one input batch."
        )
    return out


def _input_specs(model):
    inputs = getattr(model, "inputs", None) or []
    specs = []
    for tensor in inputs:
        dtype = str(getattr(tensor.dtype, "name", tensor.dtype))
        specs.append((getattr(tensor, "name", None), len(tensor.shape), np.dtype(dtype)))
    return specs or [(None, None, np.dtype("float32"))]


def _iterate(data):
    if callable(data) and not hasattr(data, "__iter__"):
        data = data()
    if hasattr(data, "as_numpy_iterator"):
        return data.as_numpy_iterator()
    if isinstance(data, np.ndarray):
        return iter([data])
    try:
        return iter(data)
    except TypeError as err:
        raise ExportError(
            "representative_data must be a tf.data.Dataset, a numpy array, an iterable or a "
            f"callable returning one. Received: {type(data).__name__}."
        ) from err


def _element_inputs(element, specs) -> list:
    """Extracts the model inputs from one dataset element, as a list of arrays."""
    n = len(specs)
    if isinstance(element, dict):
        return _from_dict(element, specs)
    if isinstance(element, (tuple, list)):
        if n == 1:
            first = element[0]
            if isinstance(first, (tuple, list)):
                first = first[0]
            return [np.asarray(first)]
        first = element[0]
        if isinstance(first, dict):
            return _from_dict(first, specs)
        if isinstance(first, (tuple, list)) and len(first) == n:
            return [np.asarray(x) for x in first]
        if len(element) == n:
            return [np.asarray(x) for x in element]
        raise ExportError(
            f"Cannot find the {n} model inputs in a representative_data element of length "
            f"{len(element)}. Yield (inputs, labels) with inputs a list of {n} arrays."
        )
    return [np.asarray(element)]


def _from_dict(element, specs) -> list:
    names = [name for name, _, _ in specs]
    missing = [name for name in names if name not in element]
    if missing:
        raise ExportError(
            f"representative_data dict lacks model inputs {missing}. "
            f"Received keys: {sorted(element)}; expected: {names}."
        )
    return [np.asarray(element[name]) for name in names]


def _split_batch(xs, specs) -> list:
    """Turns one (possibly batched) element into a list of single-sample input lists."""
    arrays = []
    for x, (name, rank, dtype) in zip(xs, specs):
        if rank is not None and x.ndim == rank - 1:
            x = x[None, ...]
        elif rank is not None and x.ndim != rank:
            raise ExportError(
                f"representative_data input {name or 0!r} has shape {x.shape}; the model expects "
                f"rank {rank} (with batch) or {rank - 1} (single sample)."
            )
        arrays.append(x.astype(dtype, copy=False))
    size = arrays[0].shape[0]
    return [[a[i : i + 1] for a in arrays] for i in range(size)]
