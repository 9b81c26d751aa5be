"""Run ``.tflite`` files with LiteRT's CompiledModel API, the runtime beside the classic Interpreter.

``ai_edge_litert.compiled_model.CompiledModel`` compiles a model for the chosen hardware
(here the CPU, through XNNPACK unless told otherwise) and runs it on ``TensorBuffer``
objects allocated once. It is what LiteRT's own ``litert-benchmark`` tool times, so
:func:`kprune.export.benchmark` can time it too (``runtime="compiled_model"``).
"""

from __future__ import annotations

import os

import numpy as np

from kprune.errors import ExportError

#: The host runtimes :func:`kprune.export.benchmark` can time.
RUNTIMES = ("interpreter", "compiled_model")

_ENVIRONMENT: dict = {}


def check_runtime(runtime) -> str:
    """Returns ``runtime`` if it is one of :data:`RUNTIMES`, else raises ExportError."""
    if runtime not in RUNTIMES:
        raise ExportError(
            f"Unknown LiteRT runtime. Received: runtime={runtime!r}. "
            f"Allowed: {', '.join(repr(r) for r in RUNTIMES)}."
        )
    return runtime


def litert_environment():
    """One LiteRT environment per process (creating it registers the accelerators, logged once)."""
    if "env" not in _ENVIRONMENT:
        import ai_edge_litert
        from ai_edge_litert.environment import Environment, EnvironmentOptions

        runtime_path = os.path.dirname(os.path.abspath(ai_edge_litert.__file__))
        _ENVIRONMENT["env"] = Environment.create(options=EnvironmentOptions(runtime_path=runtime_path))
    return _ENVIRONMENT["env"]


class CompiledRunner:
    """A ``.tflite`` file compiled for this machine's CPU, with its input and output buffers.

    The first signature of the file is run (``serving_default`` for files written by
    kprune or Keras). Inputs and outputs are in that signature's order.

    Args:
        path: the ``.tflite`` file.
        threads: CPU threads; None lets LiteRT choose. Default 1.
        use_xnnpack: run through the XNNPACK delegate (True, default) or LiteRT's built-in
            kernels (``CpuKernelMode.BUILTIN``).

    Attributes:
        signature: the signature key that runs.
        input_details, output_details: lists of dicts with ``name``, ``dtype`` and ``shape``.

    Raises:
        ExportError: the file is missing, is not a model LiteRT can compile, or has a
            tensor type the CompiledModel buffers do not support.

    Example:
        >>> runner = CompiledRunner("model.tflite", threads=1)
        >>> (probabilities,) = runner(np.zeros(runner.input_details[0]["shape"], "float32"))
    """

    def __init__(self, path, threads: int | None = 1, use_xnnpack: bool = True):
        from ai_edge_litert.compiled_model import CompiledModel
        from ai_edge_litert.cpu_kernel_mode import CpuKernelMode
        from ai_edge_litert.hardware_accelerator import HardwareAccelerator
        from ai_edge_litert.options import CpuOptions, Options

        self.path = os.fspath(path)
        if not os.path.isfile(self.path):
            raise ExportError(f"No TFLite file at {self.path!r}. Convert a model first with kprune.export.to_tflite.")
        cpu = CpuOptions(num_threads=threads or 0, kernel_mode=None if use_xnnpack else CpuKernelMode.BUILTIN)
        options = Options(hardware_accelerators=HardwareAccelerator.CPU, cpu_options=cpu)
        try:
            self.model = CompiledModel.from_file(self.path, environment=litert_environment(), options=options)
        except Exception as err:  # the wrapper raises RuntimeError/ValueError from C++ status codes
            hint = "If XNNPACK refused an op, retry with use_xnnpack=False; " if use_xnnpack else ""
            raise ExportError(
                f"LiteRT's CompiledModel could not load {self.path!r} (use_xnnpack={use_xnnpack}): {err}. "
                f"{hint}the classic interpreter (runtime='interpreter') may also run it."
            ) from err
        signatures = self.model.get_signature_list()
        if not signatures:
            raise ExportError(
                f"{self.path!r} has no signature, which LiteRT's CompiledModel needs. "
                "Use runtime='interpreter', or convert with kprune.export.to_tflite (it writes serving_default)."
            )
        self.signature = next(iter(signatures))
        names = signatures[self.signature]
        inputs = self.model.get_input_tensor_details(self.signature)
        outputs = self.model.get_output_tensor_details(self.signature)
        self.input_details = [dict(inputs[n], name=n) for n in names["inputs"]]
        self.output_details = [dict(outputs[n], name=n) for n in names["outputs"]]
        self._inputs = {n: self.model.create_input_buffer_by_name(self.signature, n) for n in names["inputs"]}
        self._outputs = {n: self.model.create_output_buffer_by_name(self.signature, n) for n in names["outputs"]}

    def write(self, arrays) -> None:
        """Copies one array per input (signature order) into the input buffers."""
        arrays = list(arrays)
        if len(arrays) != len(self.input_details):
            raise ExportError(
                f"{self.path!r} has {len(self.input_details)} input(s) "
                f"({', '.join(d['name'] for d in self.input_details)}). Received: {len(arrays)} array(s)."
            )
        for detail, x in zip(self.input_details, arrays):
            x = np.asarray(x, dtype=np.dtype(detail["dtype"]))
            if tuple(x.shape) != tuple(detail["shape"]):
                raise ExportError(
                    f"Input {detail['name']!r} of {self.path!r} has shape {tuple(detail['shape'])}. "
                    f"Received: an array of shape {tuple(x.shape)}."
                )
            try:
                self._inputs[detail["name"]].write(x)
            except ValueError as err:
                raise ExportError(f"LiteRT's CompiledModel cannot take input {detail['name']!r}: {err}") from err

    def run(self) -> None:
        """Runs the signature once on the current input buffers (the call :func:`benchmark` times)."""
        self.model.run_by_name(self.signature, self._inputs, self._outputs)

    def read(self) -> list:
        """Returns the output buffers as numpy arrays (signature order, the file's dtypes)."""
        arrays = []
        for detail in self.output_details:
            shape = tuple(int(d) for d in detail["shape"])
            try:
                flat = self._outputs[detail["name"]].read(int(np.prod(shape)), np.dtype(detail["dtype"]))
            except ValueError as err:
                raise ExportError(f"LiteRT's CompiledModel cannot return output {detail['name']!r}: {err}") from err
            arrays.append(np.asarray(flat).reshape(shape))
        return arrays

    def __call__(self, *arrays) -> list:
        """Writes the inputs, runs once and returns the outputs."""
        self.write(arrays)
        self.run()
        return self.read()
