"""Load ``.tflite`` files in the LiteRT interpreter and move data across quantized I/O.

Shared by :mod:`kprune.export.evaluate`, :mod:`kprune.export.benchmark` and
:mod:`kprune.export.latency_table`.
"""

from __future__ import annotations

import os

import numpy as np

from kprune.errors import ExportError


def load_interpreter(path, threads: int | None = None, use_xnnpack: bool = True, batch_size: int | None = None):
    """Creates a LiteRT interpreter for a ``.tflite`` file and allocates its tensors.

    Args:
        path: the ``.tflite`` file.
        threads: CPU threads for the interpreter; None lets LiteRT choose. Default None.
        use_xnnpack: apply LiteRT's default XNNPACK delegate (True, default) or run the
            built-in kernels only (False).
        batch_size: when given, resize every input's batch dimension to it before
            allocating. Default None (keep the file's shapes).

    Returns:
        An allocated ``ai_edge_litert.interpreter.Interpreter``.

    Raises:
        ExportError: the file is missing, is not a TFLite model, or cannot be prepared
            (for example XNNPACK refusing an op; the message says to retry without it).

    Example:
        >>> interpreter = load_interpreter("model.tflite", threads=1)
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ExportError(f"No TFLite file at {path!r}. Convert a model first with kprune.export.to_tflite.")
    resolver = OpResolverType.AUTO if use_xnnpack else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    try:
        interpreter = Interpreter(model_path=path, num_threads=threads, experimental_op_resolver_type=resolver)
    except ValueError as err:
        raise ExportError(f"{path!r} is not a loadable TFLite model: {err}") from err
    if batch_size is not None:
        for detail in interpreter.get_input_details():
            shape = list(detail["shape"])
            if shape and shape[0] != batch_size:
                shape[0] = batch_size
                interpreter.resize_tensor_input(detail["index"], shape, strict=False)
    try:
        interpreter.allocate_tensors()
    except RuntimeError as err:
        hint = " Retry with use_xnnpack=False." if use_xnnpack else ""
        raise ExportError(f"LiteRT could not prepare {path!r} (use_xnnpack={use_xnnpack}): {err}.{hint}") from err
    return interpreter


def load_interpreter_with_fallback(path, threads=None, batch_size=None):
    """Like :func:`load_interpreter`, retrying without XNNPACK if the delegate refuses the model.

    Returns:
        ``(interpreter, used_xnnpack)``.
    """
    try:
        return load_interpreter(path, threads, True, batch_size), True
    except ExportError as err:
        if "use_xnnpack=True" not in str(err):
            raise
    return load_interpreter(path, threads, False, batch_size), False


def output_details_in_keras_order(interpreter) -> list:
    """The interpreter's output details in the order Keras returns the model's outputs.

    The converter's tensor order is not Keras' order (a classifier + regression model came out
    regression first). The file's ``serving_default`` signature names the outputs the way
    Keras' export does: ``output_0``, ``output_1``, ... for a list of outputs (sorted here by
    number, so ``output_10`` follows ``output_9``), and the keys of a dict of outputs, which
    Keras flattens in sorted key order. A file without a signature keeps the interpreter's
    order (nothing better is known).

    Args:
        interpreter: an allocated LiteRT interpreter.

    Returns:
        A list of output detail dicts (``name``, ``index``, ``shape``, ``quantization``, ...).
    """
    plain = list(interpreter.get_output_details())
    signatures = interpreter.get_signature_list()
    if len(plain) < 2 or len(signatures) != 1:
        return plain
    key = next(iter(signatures))
    named = interpreter.get_signature_runner(key).get_output_details()
    if len(named) != len(plain):
        return plain

    def position(name):
        head, _, number = name.rpartition("_")
        return (0, int(number), "") if head == "output" and number.isdigit() else (1, 0, name)

    by_index = {d["index"]: d for d in plain}
    return [by_index.get(named[n]["index"], named[n]) for n in sorted(named, key=position)]


def is_quantized(detail) -> bool:
    """True when a tensor detail has an integer dtype with a nonzero scale."""
    scale, _ = detail["quantization"]
    return np.issubdtype(np.dtype(detail["dtype"]), np.integer) and scale != 0.0


def to_input(x, detail) -> np.ndarray:
    """Converts float data to what an input tensor expects (quantizing when needed).

    Args:
        x: array-like input data in the model's float domain.
        detail: an entry of ``interpreter.get_input_details()``.

    Returns:
        An array of the tensor's dtype: ``round(x / scale + zero_point)`` clipped to the
        dtype's range for quantized inputs, a plain cast otherwise.
    """
    dtype = np.dtype(detail["dtype"])
    x = np.asarray(x)
    if is_quantized(detail):
        scale, zero_point = detail["quantization"]
        info = np.iinfo(dtype)
        q = np.round(x.astype(np.float64) / scale + zero_point)
        return np.clip(q, info.min, info.max).astype(dtype)
    return x.astype(dtype, copy=False)


def from_output(y, detail) -> np.ndarray:
    """Dequantizes an output tensor to float32 (``(y - zero_point) * scale``) when quantized."""
    if is_quantized(detail):
        scale, zero_point = detail["quantization"]
        return ((y.astype(np.float32) - zero_point) * scale).astype(np.float32)
    return np.asarray(y)


def random_inputs(interpreter, rng: np.random.Generator) -> list:
    """Returns one random array per input, matching each tensor's shape and dtype."""
    return random_arrays(interpreter.get_input_details(), rng)


def random_arrays(details, rng: np.random.Generator) -> list:
    """Returns one random array per tensor detail (a dict with ``shape`` and ``dtype``).

    Integers cover the dtype's whole range, booleans are fair coins and floats are standard
    normal. Used for the Interpreter's details and for the CompiledModel's alike, so both
    runtimes see the same inputs for the same seed.
    """
    arrays = []
    for detail in details:
        shape = tuple(int(d) for d in detail["shape"])
        dtype = np.dtype(detail["dtype"])
        if np.issubdtype(dtype, np.integer):
            info = np.iinfo(dtype)
            arrays.append(rng.integers(info.min, int(info.max) + 1, size=shape, dtype=dtype))
        elif dtype == np.bool_:
            arrays.append(rng.random(shape) < 0.5)
        else:
            arrays.append(rng.standard_normal(shape).astype(dtype))
    return arrays
