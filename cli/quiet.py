"""TensorFlow's start-up noise, silenced for the CLI unless ``--verbose``.

Importing TensorFlow prints C++ log lines to stderr before its logging is configured
(``WARNING: All log messages before absl::InitializeLog() ...``, ``oneDNN custom operations
are on``, ``Could not find cuda drivers``): ``TF_CPP_MIN_LOG_LEVEL`` does not reach them, so
the import runs with file descriptor 2 pointed at ``/dev/null``, and so does the first listing of
the devices, where a CPU-only machine logs ``E0000 ... failed call to cuInit`` (also beyond
``TF_CPP_MIN_LOG_LEVEL``; it would otherwise appear at the first operation). Later messages
(the CPU-instructions note) honour ``TF_CPP_MIN_LOG_LEVEL=3``, which is set before the import. ``CUDA_VISIBLE_DEVICES``
is left alone: hiding GPUs would silence the probe but also move a GPU user's run to the CPU.

Commands that need TensorFlow call :func:`import_tensorflow` first; ``--help`` never does.
"""

from __future__ import annotations

import contextlib
import os
import sys

_state = {"verbose": 0}


def configure(verbose: int) -> None:
    """Remembers the CLI's ``--verbose`` count and sets TensorFlow's log level (cheap; no import)."""
    _state["verbose"] = int(verbose or 0)
    if not verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@contextlib.contextmanager
def stderr_fd_silenced():
    """Points file descriptor 2 at ``/dev/null`` inside the block (C/C++ writes included)."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real fd 2 (embedded interpreters): nothing to silence
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def litert_logs_silenced(active: bool = True):
    """Silences fd 2 inside the block when ``active`` and the CLI is not ``--verbose``.

    LiteRT's CompiledModel logs every accelerator it registers and every vendor plugin it
    fails to load (``INFO: [accelerator_registry.cc:54] ...``) straight to fd 2; errors still
    reach the user as Python exceptions.
    """
    if active and not _state["verbose"]:
        return stderr_fd_silenced()
    return contextlib.nullcontext()


def import_tensorflow() -> None:
    """Imports TensorFlow and Keras, quietly unless the CLI runs with ``--verbose``. Without
    TensorFlow installed (Keras on JAX or PyTorch) only Keras is imported; the commands that
    need TensorFlow say so themselves.

    A failing import is not hidden: the exception propagates after stderr is restored.
    """
    if "tensorflow" in sys.modules and "keras" in sys.modules:
        return
    import importlib.util

    if importlib.util.find_spec("tensorflow") is None:
        import keras  # noqa: F401
        return
    if _state["verbose"]:
        import keras  # noqa: F401
        import tensorflow  # noqa: F401
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with stderr_fd_silenced():
        import tensorflow
        import keras  # noqa: F401

        # the CUDA probe (``E0000 ... failed call to cuInit`` without a GPU) logs through a
        # logger that TF_CPP_MIN_LOG_LEVEL does not reach, when the devices are first listed:
        # list them here, where stderr is silenced (GPUs stay visible)
        tensorflow.config.list_physical_devices()
    import absl.logging

    absl.logging.set_verbosity(absl.logging.ERROR)
