"""Shared helpers of the kprune-vs-TFMOT benchmarks: twin models, machine info, tables.

The same architecture is built twice, once in Keras 3 (for kprune) and once in legacy
``tf_keras`` (for TFMOT, which does not support Keras 3), and the Keras 3 weights are copied
into the tf_keras model layer by layer, so both start from identical parameters.
"""

from __future__ import annotations

import os
import platform

from _results import cpu_model, mean_std  # noqa: F401 - mean_std: C.mean_std for the scripts

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def require_tfmot():
    """Imports ``tf_keras`` and ``tensorflow_model_optimization`` or exits with the install hint."""
    try:
        import tensorflow_model_optimization as tfmot
        import tf_keras
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise SystemExit(f"this benchmark compares with TFMOT, which is not installed ({e}). "
                         "Install it with: pip install 'kprune[compare]'") from e
    return tf_keras, tfmot


def build(lib, arch: str, seed: int = 0):
    """Builds ``arch`` (``"cnn3"`` or ``"lenet300_100"``) with the layer API of ``lib``.

    ``lib`` is the ``keras`` (3) module or the ``tf_keras`` module; both expose the same
    Sequential/Conv2D/Dense names, so the two models have the same layers in the same order.

    * ``cnn3``: Conv 32 3x3 → MaxPool 2 → Conv 64 3x3 → MaxPool 2 → Conv 64 3x3 → Flatten →
      Dense 10 (ReLU, ``valid`` padding; the TensorFlow CNN tutorial's layers) on 28x28x1,
      61,514 parameters.
    * ``lenet300_100``: Flatten → Dense 300 → Dense 100 → Dense 10 (ReLU), 266,610 parameters
      (the same layers as ``kprune.models.lenet300_100``).

    Returns:
        A built model producing logits.
    """
    L = lib.layers
    if arch == "cnn3":
        layers = [L.Conv2D(32, 3, activation="relu", name="conv1"),
                  L.MaxPooling2D(2, name="pool1"),
                  L.Conv2D(64, 3, activation="relu", name="conv2"),
                  L.MaxPooling2D(2, name="pool2"),
                  L.Conv2D(64, 3, activation="relu", name="conv3"),
                  L.Flatten(name="flatten"),
                  L.Dense(10, name="predictions")]
    elif arch == "lenet300_100":
        layers = [L.Flatten(name="flatten"),
                  L.Dense(300, activation="relu", name="fc1"),
                  L.Dense(100, activation="relu", name="fc2"),
                  L.Dense(10, name="predictions")]
    else:
        raise SystemExit(f"unknown architecture {arch!r}; use cnn3 or lenet300_100")
    if hasattr(lib.utils, "set_random_seed"):
        lib.utils.set_random_seed(seed)
    model = lib.Sequential([lib.Input(shape=(28, 28, 1), name="input")] + layers, name=arch)
    return model


def agp_level_recipe(sparsity: float, end_step: int, frequency: int) -> dict:
    """kprune's recipe for AGP level pruning of every Dense kernel (layerwise), 0 → ``sparsity``."""
    return {"prune": {"criterion": "level", "granularity": "weight", "scope": "layerwise",
                      "schedule": {"name": "agp", "start_step": 0, "end_step": end_step, "frequency": frequency},
                      "config_list": [{"op_types": ["Dense"], "sparsity": sparsity}]}}


def tfmot_polynomial(tfmot, model, sparsity: float, end_step: int, frequency: int):
    """``model`` under TFMOT's ``prune_low_magnitude(PolynomialDecay(0 → sparsity))``, power 3."""
    sched = tfmot.sparsity.keras.PolynomialDecay(initial_sparsity=0.0, final_sparsity=sparsity, begin_step=0,
                                                 end_step=end_step, frequency=frequency)
    return tfmot.sparsity.keras.prune_low_magnitude(model, pruning_schedule=sched)


def copy_weights(src, dst):
    """Copies weights layer by layer (same order, same shapes) from ``src`` to ``dst``."""
    s_layers = [l for l in src.layers if l.get_weights()]
    d_layers = [l for l in dst.layers if l.get_weights()]
    if len(s_layers) != len(d_layers):
        raise SystemExit(f"models differ: {len(s_layers)} vs {len(d_layers)} layers with weights")
    for a, b in zip(s_layers, d_layers):
        b.set_weights([w.copy() for w in a.get_weights()])


def machine() -> str:
    """One line describing the machine and the library versions."""
    import keras
    import tensorflow as tf
    cpu = cpu_model()
    parts = [f"{cpu}, {os.cpu_count()} logical CPUs", f"Python {platform.python_version()}",
             f"TensorFlow {tf.__version__}", f"Keras {keras.__version__}"]
    try:
        import tensorflow_model_optimization as tfmot
        import tf_keras
        parts += [f"tf_keras {tf_keras.__version__}", f"TFMOT {tfmot.__version__}"]
    except ImportError:
        pass
    return "; ".join(parts)


def revision() -> str:
    """The kprune git commit being measured (``+dirty`` when kprune/ has uncommitted changes)."""
    import subprocess
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "kprune", "cli", "export"], cwd=root,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return head + ("+dirty" if dirty else "")


def table(header: list, rows: list) -> str:
    """A Markdown table."""
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)
