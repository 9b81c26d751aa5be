"""Run a ``.tflite`` file over data with the LiteRT interpreter: predictions and accuracy."""

from __future__ import annotations

import numpy as np

from kprune.errors import ExportError
from kprune.export.interpreter import (from_output, load_interpreter_with_fallback, output_details_in_keras_order,
                                      to_input)

DEFAULT_ARRAY_BATCH = 128


class TFLiteRunner:
    """Runs batches through one interpreter, resizing its batch dimension when it can.

    If the file's input shapes cannot be resized (a fixed batch of 1), batches are run one
    sample at a time instead. Quantized inputs are quantized and quantized outputs
    dequantized, so callers always see float data. Outputs come in Keras' order (see
    :func:`kprune.export.interpreter.output_details_in_keras_order`), not the file's.

    Args:
        path: the ``.tflite`` file.
        threads: interpreter threads; None lets LiteRT choose. Default None.

    Example:
        >>> runner = TFLiteRunner("model.tflite")
        >>> logits = runner.run([x_batch])[0]
    """

    def __init__(self, path, threads: int | None = None):
        self.path = path
        self.threads = threads
        self.interpreter, self.used_xnnpack = load_interpreter_with_fallback(path, threads)
        self.batched = True
        self._batch = int(self.interpreter.get_input_details()[0]["shape"][0])

    def _resize(self, size: int) -> None:
        if size == self._batch:
            return
        for detail in self.interpreter.get_input_details():
            shape = list(detail["shape"])
            shape[0] = size
            self.interpreter.resize_tensor_input(detail["index"], shape, strict=True)
        self.interpreter.allocate_tensors()
        self._batch = size

    def _invoke(self, xs) -> list:
        inputs = self.interpreter.get_input_details()
        for detail, x in zip(inputs, xs):
            self.interpreter.set_tensor(detail["index"], to_input(x, detail))
        self.interpreter.invoke()
        return [
            from_output(self.interpreter.get_tensor(d["index"]), d).copy()
            for d in output_details_in_keras_order(self.interpreter)
        ]

    def run(self, xs) -> list:
        """Runs one batch (a list with one array per input); returns one array per output."""
        inputs = self.interpreter.get_input_details()
        if len(xs) != len(inputs):
            raise ExportError(
                f"The TFLite model has {len(inputs)} input(s); received {len(xs)} array(s)."
            )
        size = int(np.shape(xs[0])[0])
        if self.batched:
            try:
                self._resize(size)
                return self._invoke(xs)
            except (RuntimeError, ValueError):
                self.batched = False
        self._resize_single()
        per_sample = [self._invoke([x[i : i + 1] for x in xs]) for i in range(size)]
        return [np.concatenate([out[k] for out in per_sample]) for k in range(len(per_sample[0]))]

    def _resize_single(self) -> None:
        try:
            self._resize(1)
        except (RuntimeError, ValueError):
            # Fixed-shape file: start over from the file's own shapes.
            self.interpreter, self.used_xnnpack = load_interpreter_with_fallback(self.path, self.threads)
            self._batch = int(self.interpreter.get_input_details()[0]["shape"][0])


def predict_tflite(path, x, threads: int | None = None, batch_size: int = DEFAULT_ARRAY_BATCH,
                   output: int = 0) -> np.ndarray:
    """Returns one output of a ``.tflite`` model on ``x`` (float, dequantized), by default the first.

    Args:
        path: the ``.tflite`` file.
        x: an input array with a batch dimension, or a list of arrays for multi-input
            models (in the interpreter's input order).
        threads: interpreter threads; None lets LiteRT choose. Default None.
        batch_size: rows per interpreter call. Default 128.
        output: which output, counted in Keras' order (``model.outputs``; sorted keys for a
            dict of outputs), whatever order the converter gave the file. Default 0.

    Returns:
        A float numpy array with one row per input row.

    Example:
        >>> predict_tflite("model.tflite", np.zeros((4, 28, 28, 1), "float32")).shape
        (4, 10)
    """
    runner = TFLiteRunner(path, threads)
    _check_output(runner, output)
    xs = [np.asarray(a) for a in x] if isinstance(x, (list, tuple)) else [np.asarray(x)]
    n = xs[0].shape[0]
    chunks = [runner.run([a[i : i + batch_size] for a in xs])[output] for i in range(0, n, batch_size)]
    return np.concatenate(chunks) if chunks else np.zeros((0,), np.float32)


def _batches(dataset):
    """Yields ``(x, y)`` numpy batches from a dataset-like object."""
    if hasattr(dataset, "as_numpy_iterator"):
        iterator = dataset.as_numpy_iterator()
    elif isinstance(dataset, tuple) and len(dataset) == 2 and isinstance(dataset[0], np.ndarray):
        x, y = dataset
        iterator = ((x[i : i + DEFAULT_ARRAY_BATCH], y[i : i + DEFAULT_ARRAY_BATCH]) for i in range(0, len(x), DEFAULT_ARRAY_BATCH))
    else:
        iterator = iter(dataset)
    for element in iterator:
        if isinstance(element, dict) or not isinstance(element, (tuple, list)) or len(element) < 2:
            raise ExportError(
                "evaluate_tflite needs labelled batches. Received an element of type "
                f"{type(element).__name__}; yield (x, y) or (x, y, sample_weight)."
            )
        yield element[0], element[1]


def _check_output(runner: TFLiteRunner, output) -> None:
    count = len(runner.interpreter.get_output_details())
    if isinstance(output, bool) or not isinstance(output, (int, np.integer)) or not 0 <= output < count:
        raise ExportError(f"output must be an index in [0, {count}) (the model's outputs in Keras' order). "
                          f"Received: output={output!r}.")


def _labels_of(y, output: int) -> np.ndarray:
    """The labels of one output: ``y`` itself, or its ``output``-th entry when ``y`` holds one per output."""
    if isinstance(y, (list, tuple)):
        return np.asarray(y[output])
    if isinstance(y, dict):  # Keras flattens a dict of outputs in sorted key order
        return np.asarray(y[sorted(y)[output]])
    return np.asarray(y)


def _predicted_classes(out: np.ndarray) -> np.ndarray:
    if out.ndim >= 2 and out.shape[-1] > 1:
        return np.argmax(out, axis=-1)
    return (out.reshape(out.shape[0], -1)[:, 0] > 0.5).astype(np.int64)


def _true_classes(y: np.ndarray, out: np.ndarray) -> np.ndarray:
    if y.ndim == out.ndim and y.shape[-1] == out.shape[-1] and out.shape[-1] > 1:
        return np.argmax(y, axis=-1)  # one-hot labels
    return y.reshape(y.shape[0], -1)[:, 0].astype(np.int64) if y.ndim > 1 else y.astype(np.int64)


def evaluate_tflite(path, dataset, max_batches: int | None = None, threads: int | None = None,
                    output: int = 0) -> float:
    """Classification accuracy of a ``.tflite`` model over a labelled dataset.

    The interpreter is resized to each batch's size when the file allows it and falls
    back to one sample at a time otherwise. Predictions are the argmax of output ``output``
    (the first, by default, in Keras' order; a single-unit output is thresholded at 0.5).
    Labels may be integer classes or one-hot; when ``y`` holds labels for every output (a
    list, tuple or dict, as Keras' ``fit`` takes them), those of ``output`` are used.

    Args:
        path: the ``.tflite`` file.
        dataset: a ``tf.data.Dataset`` or iterable of ``(x, y)`` batches, or a tuple of
            numpy arrays ``(x, y)``.
        max_batches: stop after this many batches; None evaluates everything. Default None.
        threads: interpreter threads; None lets LiteRT choose. Default None.
        output: which output to score, counted in Keras' order. Default 0.

    Returns:
        Accuracy in [0, 1] as a float.

    Example:
        >>> evaluate_tflite("model.tflite", test_ds, max_batches=10)
        0.9021
    """
    if max_batches is not None and (not isinstance(max_batches, int) or max_batches < 1):
        raise ExportError(f"max_batches must be a positive integer or None. Received: max_batches={max_batches!r}.")
    runner = TFLiteRunner(path, threads)
    _check_output(runner, output)
    correct = total = 0
    for i, (x, y) in enumerate(_batches(dataset)):
        if max_batches is not None and i >= max_batches:
            break
        xs = [np.asarray(a) for a in x] if isinstance(x, (list, tuple)) else [np.asarray(x)]
        out = runner.run(xs)[output]
        y = _labels_of(y, output)
        correct += int(np.sum(_predicted_classes(out) == _true_classes(y, out)))
        total += int(out.shape[0])
    if total == 0:
        raise ExportError("evaluate_tflite received an empty dataset; pass at least one labelled batch.")
    return correct / total
