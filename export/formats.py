"""Write a Keras model in one of three deployment formats: ``tflite``, ``litert`` or ``onnx``.

- ``tflite``: kprune's own converter (:func:`kprune.export.to_tflite`), the only format
  with kprune's quantization options (fp16, dynamic, int8, integer I/O, sparse storage).
- ``litert``: Keras' ``Model.export(format="litert")``: an ``ExportArchive`` SavedModel
  converted by ``tf.lite.TFLiteConverter.from_saved_model`` with the builtin and TF Select
  op sets (a layer without a builtin kernel becomes a Flex op instead of an error).
- ``onnx``: Keras' ``Model.export(format="onnx")``, which goes through ``tf2onnx`` (the
  optional ``kprune[onnx]`` extra).

All three strip kprune's prune wrappers first and write the file atomically.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import tempfile
import warnings

from kprune.errors import ExportError, KPruneError
from kprune.export.tflite import ExportResult, describe_failure, strip_wrappers, to_tflite, write_atomic

FORMATS = ("tflite", "litert", "onnx")
#: The file suffix each format's default output path gets.
SUFFIXES = {"tflite": ".tflite", "litert": ".tflite", "onnx": ".onnx"}
#: Packages ``format="onnx"`` imports (pip names differ from module names only in case).
ONNX_MODULES = ("tf2onnx", "onnx")


def export(
    model,
    path,
    format: str = "tflite",
    quantize: str = "none",
    representative_data=None,
    io_dtype: str = "float32",
    sparsity: bool = False,
    calibration_samples: int | None = None,
) -> ExportResult:
    """Writes ``model`` to ``path`` as a ``.tflite`` (kprune's or Keras' converter) or ``.onnx`` file.

    Args:
        model: a built Keras 3 model (wrapped, stripped or compacted).
        path: output file path; parent folders are created and the file is replaced only
            once the export succeeded.
        format: ``"tflite"`` (default: :func:`kprune.export.to_tflite`), ``"litert"``
            (Keras' ``Model.export(format="litert")``) or ``"onnx"`` (Keras'
            ``Model.export(format="onnx")``; needs ``pip install kprune[onnx]``).
        quantize, representative_data, io_dtype, sparsity, calibration_samples: kprune's
            conversion options, passed to :func:`kprune.export.to_tflite`; only
            ``format="tflite"`` takes them (anything but their defaults with another format
            is an error).

    Returns:
        ExportResult with the path, size in bytes and ``format``.

    Raises:
        ExportError: an unknown format, a quantization option with a format other than
            ``"tflite"``, a missing ``kprune[onnx]`` extra, or a failed export (the message
            quotes the exporter's own).

    Example:
        >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(2)])
        >>> export(model, "/tmp/m.tflite", format="litert").format
        'litert'
    """
    if format not in FORMATS:
        raise ExportError(
            f"Unknown export format. Received: format={format!r}. Allowed: {', '.join(repr(f) for f in FORMATS)}."
        )
    options = {"quantize": quantize, "representative_data": representative_data, "io_dtype": io_dtype,
               "sparsity": sparsity, "calibration_samples": calibration_samples}
    if format == "tflite":
        if calibration_samples is None:
            options.pop("calibration_samples")
        return to_tflite(model, path, **options)
    _reject_tflite_options(format, options)
    if format == "onnx":
        require_onnx()
    model = strip_wrappers(model)
    if format == "onnx":
        _ensure_called(model)
    content = _keras_export(model, format)
    written = write_atomic(path, content)
    return ExportResult(path=written, bytes=len(content), format=format)


def _reject_tflite_options(format, options) -> None:
    defaults = {"quantize": "none", "representative_data": None, "io_dtype": "float32", "sparsity": False,
                "calibration_samples": None}
    given = [name for name, value in options.items() if _differs(value, defaults[name])]
    if given:
        name = given[0]
        value = options[name]
        shown = repr(value) if isinstance(value, (str, bool, int, float)) else f"<{type(value).__name__}>"
        raise ExportError(
            f"{name} is an option of kprune's TFLite converter and works only with format='tflite'. "
            f"Received: {name}={shown} with format={format!r}. "
            f"Use format='tflite', or drop {name}."
        )


def _differs(value, default) -> bool:
    if default is None:
        return value is not None
    return not (type(value) is type(default) and value == default)


def require_onnx() -> None:
    """Raises ExportError naming ``pip install kprune[onnx]`` unless tf2onnx and onnx import."""
    missing = []
    for name in ONNX_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise ExportError(
            f"format='onnx' needs the {' and '.join(missing)} package(s), which are not installed. "
            "Install them with: pip install kprune[onnx]"
        )


def _ensure_called(model) -> None:
    """Calls a never-called model once on zeros (batch 1).

    Keras' ONNX export refuses a model that has never been called ("The model provided has
    never called"), which includes a functional model just built or loaded from ``.keras``.
    """
    if getattr(model, "_called", True) or not getattr(model, "inputs", None):
        return
    import numpy as np

    zeros = [np.zeros([1 if d is None else d for d in t.shape], dtype=t.dtype) for t in model.inputs]
    model(zeros if len(zeros) > 1 else zeros[0], training=False)


def _keras_export(model, format: str) -> bytes:
    """Runs Keras' ``Model.export`` into a temporary folder and returns the file's bytes."""
    with tempfile.TemporaryDirectory(prefix="kprune-export-") as folder:
        target = os.path.join(folder, "model" + SUFFIXES[format])
        try:
            # Keras prints "Saved artifact at ..." through its own printer and tf2onnx logs each
            # rewrite; keep both off the user's console (errors still raise).
            with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings(), _quiet_tf2onnx():
                warnings.simplefilter("ignore")
                model.export(target, format=format, verbose=False)
        except KPruneError:
            raise
        except Exception as err:  # Keras, the converter and tf2onnx raise many types
            raise ExportError(describe_export_error(err, model, format)) from err
        if not os.path.isfile(target):
            raise ExportError(f"Keras' Model.export(format={format!r}) finished but wrote no file at {target!r}.")
        with open(target, "rb") as handle:
            return handle.read()


@contextlib.contextmanager
def _quiet_tf2onnx():
    import logging

    logger = logging.getLogger("tf2onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def describe_export_error(err, model, format: str) -> str:
    """The ExportError message for a failed Keras export (ops and layers when the converter names them)."""
    return describe_failure(err, model, f"Keras' Model.export(format={format!r}) failed.", "Exporter")
