"""Convert a Keras model (wrapped, stripped or compacted) to a TFLite flatbuffer.

Conversion goes through ``tf.lite.TFLiteConverter.from_keras_model``, which for Keras 3
exports the model's inference call (``training=False``) to a temporary SavedModel and
converts that. (The concrete-function path was tried and rejected: with Keras 3 resource
variables it produced NaN outputs and broke int8 calibration.)
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import tempfile
import warnings
from dataclasses import asdict, dataclass

from kprune.errors import ExportError, KPruneError
from kprune.graph.walk import MaskedLayer
from kprune.wrappers.wrap import strip
from kprune.io import atomic_write_bytes
from kprune.export.calibration import DEFAULT_CALIBRATION_SAMPLES, representative_samples

QUANTIZE_MODES = ("none", "fp16", "dynamic", "int8")
IO_DTYPES = ("float32", "int8", "uint8")
_MAX_ORIGINAL_MESSAGE = 4000
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExportResult:
    """Where a converted model was written and how.

    Attributes:
        path: path of the ``.tflite`` file.
        bytes: its size in bytes.
        quantize: the quantization mode used.
        io_dtype: dtype of the model's inputs and outputs.
        sparsity: whether TFLite's sparse tensor storage was requested.
        format: ``"tflite"`` (kprune's converter), ``"litert"`` or ``"onnx"`` (Keras'
            ``Model.export``); see :func:`kprune.export.export`.
        batch_size: the batch size fixed in the file, or None where it is dynamic. It is 1
            where the model's batch was dynamic but the converter needs static shapes
            (recurrent layers: TFLite lowers their loops only at a known batch size).
    """

    path: str
    bytes: int
    quantize: str = "none"
    io_dtype: str = "float32"
    sparsity: bool = False
    format: str = "tflite"
    batch_size: int | None = None

    def to_dict(self) -> dict:
        """Returns the result as a JSON-ready dict."""
        return asdict(self)


def to_tflite(
    model,
    path,
    quantize: str = "none",
    representative_data=None,
    io_dtype: str = "float32",
    sparsity: bool = False,
    calibration_samples: int = DEFAULT_CALIBRATION_SAMPLES,
) -> ExportResult:
    """Converts a Keras model to a ``.tflite`` file, written atomically.

    Prune wrappers are never exported: a model that still contains kprune wrappers is
    passed through ``kprune.wrappers.strip`` first (masks baked into the weights).

    Args:
        model: a built Keras 3 model (functional, sequential or subclassed and called once).
        path: output file path; parent folders are created. An existing file is replaced
            only once conversion succeeded.
        quantize: ``"none"`` (float32), ``"fp16"`` (float16 weights), ``"dynamic"``
            (int8 weights, float activations) or ``"int8"`` (full integer; needs
            ``representative_data``). Default ``"none"``.
        representative_data: calibration inputs for ``"int8"``: a ``tf.data.Dataset``
            yielding ``x`` or ``(x, y)`` (batched or not), a numpy array of inputs, a list
            of such elements, or a zero-argument callable returning an iterable of them.
            Default None.
        io_dtype: dtype of the inputs and outputs, ``"float32"`` (default), ``"int8"`` or
            ``"uint8"``; integer I/O requires ``quantize="int8"``.
        sparsity: store pruned (zero) weights in TFLite's sparse format
            (``tf.lite.Optimize.EXPERIMENTAL_SPARSITY``). Default False.
        calibration_samples: how many single samples to take from
            ``representative_data``. Default 100.

    Returns:
        ExportResult with the path and size in bytes.

    Raises:
        ExportError: an argument is invalid or the converter failed (the message names
            the unsupported op and the layer it came from when the converter says so).

    Example:
        >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(2)])
        >>> to_tflite(model, "/tmp/m.tflite").bytes > 0
        True
    """
    _validate_arguments(quantize, io_dtype, sparsity, representative_data, calibration_samples)
    model = strip_wrappers(model)
    samples = None
    if quantize == "int8":
        samples = representative_samples(representative_data, model, calibration_samples)
    content = _convert(model, quantize, samples, io_dtype, sparsity)
    written = write_atomic(path, content)
    return ExportResult(
        path=written, bytes=len(content), quantize=quantize, io_dtype=io_dtype, sparsity=bool(sparsity),
        batch_size=_file_batch(content),
    )


def _file_batch(content: bytes) -> int | None:
    """The batch size the first input of a ``.tflite`` file fixes, None where it is dynamic."""
    from ai_edge_litert.interpreter import Interpreter

    details = Interpreter(model_content=content).get_input_details()
    batch = int(details[0]["shape_signature"][0]) if details and len(details[0]["shape_signature"]) else -1
    return None if batch < 0 else batch


def _validate_arguments(quantize, io_dtype, sparsity, representative_data, calibration_samples):
    if quantize not in QUANTIZE_MODES:
        raise ExportError(
            f"Unknown quantization mode. Received: quantize={quantize!r}. "
            f"Allowed: {', '.join(repr(m) for m in QUANTIZE_MODES)}."
        )
    if io_dtype not in IO_DTYPES:
        raise ExportError(
            f"Unknown input/output dtype. Received: io_dtype={io_dtype!r}. "
            f"Allowed: {', '.join(repr(d) for d in IO_DTYPES)}."
        )
    if io_dtype != "float32" and quantize != "int8":
        raise ExportError(
            f"Integer inputs/outputs need a fully integer model. Received: io_dtype={io_dtype!r} "
            f"with quantize={quantize!r}. Use quantize='int8' or io_dtype='float32'."
        )
    if quantize == "int8" and representative_data is None:
        raise ExportError(
            "quantize='int8' needs calibration data. Received: representative_data=None. "
            "Pass a tf.data.Dataset of (x, y) or x batches, a numpy array of inputs, or a "
            "callable returning an iterable of inputs."
        )
    if quantize != "int8" and representative_data is not None:
        raise ExportError(
            f"representative_data is only used by quantize='int8'. Received: quantize={quantize!r} "
            "with representative_data set. Drop representative_data or use quantize='int8'."
        )
    if not isinstance(sparsity, bool):
        raise ExportError(f"sparsity must be True or False. Received: sparsity={sparsity!r}.")
    if not isinstance(calibration_samples, int) or calibration_samples < 1:
        raise ExportError(
            "calibration_samples must be a positive integer. "
            f"Received: calibration_samples={calibration_samples!r}."
        )


def _all_layers(model):
    """Yields every layer of ``model``, descending into nested models."""
    for layer in getattr(model, "layers", []):
        yield layer
        if hasattr(layer, "layers") and not _is_prune_wrapper(layer):
            yield from _all_layers(layer)


def _is_prune_wrapper(layer) -> bool:
    return isinstance(layer, MaskedLayer)


def has_prune_wrappers(model) -> bool:
    """True when ``model`` (or a nested model) contains kprune prune wrappers."""
    return any(_is_prune_wrapper(layer) for layer in _all_layers(model))


def strip_wrappers(model):
    """Returns ``model`` with kprune wrappers removed (via kprune.wrappers.strip), else itself."""
    if not has_prune_wrappers(model):
        return model
    return strip(model)


def _dict_input_converter(model, tmp):
    """A converter for a model whose inputs are a dict (``{"token_ids": ..., "padding_mask":
    ...}``, as keras-hub backbones take them). TensorFlow's ``from_keras_model`` feeds such a
    model a list and fails; here the model is exported with its own input structure (a
    ``keras.export.ExportArchive`` endpoint, inference mode) and converted from that SavedModel.
    The TFLite signature's inputs keep the dict's keys as names."""
    import functools

    import keras
    import tensorflow as tf

    archive = keras.export.ExportArchive()
    archive.track(model)
    spec = keras.tree.map_structure_up_to(
        model.input, lambda t, name: tf.TensorSpec(t.shape, dtype=t.dtype, name=name), model.input,
        {k: k for k in model.input})
    archive.add_endpoint("serve", functools.partial(model.__call__, training=False), [spec])
    with contextlib.redirect_stdout(io.StringIO()):
        archive.write_out(tmp)
    return tf.lite.TFLiteConverter.from_saved_model(tmp)


def _make_converter(model, quantize, samples, io_dtype, sparsity, tmp=None):
    import tensorflow as tf

    if isinstance(getattr(model, "input", None), dict) and tmp is not None:
        converter = _dict_input_converter(model, tmp)
    else:
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
    optimizations = []
    if quantize != "none":
        optimizations.append(tf.lite.Optimize.DEFAULT)
    if sparsity:
        optimizations.append(tf.lite.Optimize.EXPERIMENTAL_SPARSITY)
    converter.optimizations = optimizations
    if quantize == "fp16":
        converter.target_spec.supported_types = [tf.float16]
    elif quantize == "int8":
        converter.representative_dataset = lambda: iter(samples)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        io_type = {"float32": tf.float32, "int8": tf.int8, "uint8": tf.uint8}[io_dtype]
        converter.inference_input_type = io_type
        converter.inference_output_type = io_type
    return converter


#: Keras backends whose models TensorFlow's converter traces in this process (JAX through
#: jax2tf); a model of another backend (PyTorch) is converted in a TensorFlow child process
IN_PROCESS_BACKENDS = ("tensorflow", "jax")


def _convert_in_tensorflow_process(model, quantize, samples, io_dtype, sparsity) -> bytes:
    """Saves ``model`` as ``.keras`` and converts it in a child process running Keras on
    TensorFlow (the converter cannot trace a PyTorch model); the child's ExportError message,
    if any, is raised here."""
    import json
    import subprocess
    import sys

    import keras
    import numpy as np

    backend = keras.backend.backend()
    with tempfile.TemporaryDirectory() as tmp:
        src, job, out = (os.path.join(tmp, n) for n in ("model.keras", "job.json", "model.tflite"))
        try:
            model.save(src)
        except Exception as err:
            raise ExportError(f"TFLite conversion under the `{backend}` backend saves the model as .keras for a "
                              f"TensorFlow process, and saving model `{model.name}` failed: "
                              f"{type(err).__name__}: {err}") from err
        with open(job, "w") as f:  # no pickle: the child reads JSON and (for int8) a .npz without objects
            json.dump({"quantize": quantize, "io_dtype": io_dtype, "sparsity": sparsity,
                       "samples": None if samples is None else [len(e) for e in samples]}, f)
        if samples is not None:
            np.savez(job + ".npz", **{f"s{i}_{j}": np.asarray(a) for i, e in enumerate(samples) for j, a in enumerate(e)})
        env = dict(os.environ, KERAS_BACKEND="tensorflow")
        code = "import sys; from kprune.export.tflite import _child_convert; _child_convert(*sys.argv[1:])"
        proc = subprocess.run([sys.executable, "-c", code, src, job, out], env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = proc.stderr.strip().splitlines()
            raise ExportError(f"TFLite conversion in the TensorFlow child process failed (model `{model.name}`, "
                              f"built on the `{backend}` backend). Its last lines:\n" + "\n".join(tail[-15:]))
        with open(out, "rb") as f:
            return f.read()


def _child_convert(src, job, out):
    """The child side of :func:`_convert_in_tensorflow_process` (Keras on TensorFlow)."""
    import json

    import keras
    import numpy as np

    with open(job) as f:
        args = json.load(f)
    if args["samples"] is not None:
        arrays = np.load(job + ".npz", allow_pickle=False)
        args["samples"] = [[arrays[f"s{i}_{j}"] for j in range(n)] for i, n in enumerate(args["samples"])]
    content = _convert(keras.saving.load_model(src), **args)
    with open(out, "wb") as f:
        f.write(content)


def _convert(model, quantize, samples, io_dtype, sparsity) -> bytes:
    import importlib.util

    import keras

    if importlib.util.find_spec("tensorflow") is None:
        raise ExportError(f"TFLite conversion needs TensorFlow (the converter is TensorFlow's), which is not "
                          f"installed. Received: model `{model.name}` on KERAS_BACKEND={keras.backend.backend()!r}. "
                          "Fix: pip install tensorflow, or save the model (.keras) and convert it where TensorFlow "
                          "is installed (kprune-cli export MODEL.keras).")
    if keras.backend.backend() not in IN_PROCESS_BACKENDS:
        return _convert_in_tensorflow_process(model, quantize, samples, io_dtype, sparsity)
    try:
        return _run_converter(model, model, quantize, samples, io_dtype, sparsity)
    except ExportError as err:
        fixed = _batch_one_copy(model) if _needs_static_shapes(err) else None
        if fixed is None:
            raise
    log.warning("TFLite needs a static batch size to convert model `%s` (its recurrent layers' loops); "
                "converting it with batch size 1", model.name)
    return _run_converter(fixed, model, quantize, samples, io_dtype, sparsity)


def _run_converter(model, original, quantize, samples, io_dtype, sparsity) -> bytes:
    """Converts ``model``; a converter failure is an ExportError describing ``original``."""
    try:
        # from_keras_model prints "Saved artifact at ..." and the converter warns about
        # input statistics it does not need; keep both off the user's console.
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with tempfile.TemporaryDirectory() as tmp:
                converter = _make_converter(model, quantize, samples, io_dtype, sparsity, tmp)
                return converter.convert()
    except KPruneError:
        raise
    except Exception as err:  # the converter raises ConverterError, RuntimeError, ValueError
        raise ExportError(describe_conversion_error(err, original, quantize)) from err


def _needs_static_shapes(err) -> bool:
    """Whether the converter failed on a loop whose tensor lists need a static shape (an RNN
    traced with a dynamic batch size)."""
    text = f"{err} {err.__cause__}"  # the converter's own error, whole
    return "TensorListReserve" in text or "element_shape to be static" in text


def _batch_one_copy(model):
    """``model`` called on inputs of batch size 1 (same weights), or None where its batch is
    already fixed or it has no functional inputs."""
    import keras

    inputs = getattr(model, "inputs", None)
    if not inputs or all(t.shape[0] is not None for t in inputs):
        return None
    fixed = [keras.Input(batch_shape=(1, *t.shape[1:]), dtype=t.dtype, name=t._keras_history.operation.name)
             for t in inputs]
    fixed = keras.tree.pack_sequence_as(model.input, fixed)
    return keras.Model(fixed, model(fixed), name=model.name)


_OP_PATTERNS = (
    re.compile(r"'(tfl?\.[A-Za-z0-9_]+)' op"),
    re.compile(r"TF Select ops: ([A-Za-z0-9_, ]+)"),
    re.compile(r"Node number \d+ \(([A-Z0-9_]+)\) failed"),
)
_LOC_PATTERN = re.compile(r'"([^"@]+)@__inference')


def conversion_culprits(err, model) -> tuple[list[str], list[str]]:
    """Finds the ops and Keras layers a converter error points at.

    Args:
        err: the exception raised by the TFLite converter.
        model: the Keras model being converted.

    Returns:
        ``(ops, layers)``: op names (e.g. ``"tf.MatrixDeterminant"``) and names of model
        layers whose name scope appears in the error's source locations; either may be
        empty when the converter does not say.
    """
    ops: list[str] = []
    scopes: list[str] = []
    for item in getattr(err, "errors", None) or []:
        name = getattr(getattr(item, "operator", None), "name", "")
        if name:
            ops.append(name)
        for call in getattr(getattr(item, "location", None), "call", []):
            scopes.append(call.name.split("@", 1)[0])
    text = str(err)
    for pattern in _OP_PATTERNS:
        for match in pattern.findall(text):
            ops.extend(part.strip() for part in match.split(",") if part.strip())
    scopes.extend(_LOC_PATTERN.findall(text))
    ops = _unique(ops)
    layer_names = {layer.name for layer in _all_layers(model)}
    layers = []
    for scope in scopes:
        for segment in scope.split("/"):
            candidates = [segment, re.sub(r"_\d+$", "", segment)]
            for candidate in candidates:
                if candidate in layer_names:
                    layers.append(candidate)
                    break
    return ops, _unique(layers)


def describe_failure(err, model, what: str, source: str, hint: str | None = None) -> str:
    """An ExportError message: ``what`` failed, the ops and layers the converter names, ``hint``
    (when it names any) and ``source``'s original message, truncated."""
    ops, layers = conversion_culprits(err, model)
    parts = [what]
    if ops:
        parts.append(f"Unsupported or failing op(s): {', '.join(ops)}.")
    if layers:
        parts.append(f"Layer(s) at fault: {', '.join(repr(name) for name in layers)}.")
    if hint and (ops or layers):
        parts.append(hint)
    original = str(err)
    if len(original) > _MAX_ORIGINAL_MESSAGE:
        original = original[:_MAX_ORIGINAL_MESSAGE] + " ... [truncated]"
    return " ".join(parts) + f"\n{source} message ({type(err).__name__}):\n{original}"


def describe_conversion_error(err, model, quantize: str) -> str:
    """Builds the ExportError message for a failed conversion (ops, layers, original text)."""
    hint = "Replace those layers with TFLite-supported ones"
    if quantize == "int8":
        hint += ", or use quantize='dynamic'/'fp16' if the op has no int8 kernel"
    return describe_failure(err, model, f"TFLite conversion failed (quantize={quantize!r}).", "Converter",
                            hint + ".")


def _unique(items):
    seen = []
    for item in items:
        if item not in seen:
            seen.append(item)
    return seen


def write_atomic(path, content: bytes) -> str:
    """Writes bytes to ``path`` atomically (see :func:`kprune.io.atomic_write_bytes`); returns the path."""
    atomic_write_bytes(path, content)
    return os.fspath(path)
