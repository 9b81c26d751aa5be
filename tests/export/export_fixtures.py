"""Tiny models and inputs shared by the export tests (imported by name, not via conftest)."""

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np

SAMPLE = Path(__file__).parent / "data" / "benchmark_model_output.txt"


def small_convnet(seed=0, filters=(8, 16), classes=5, input_shape=(12, 12, 3)):
    """Conv-BN-ReLU ×2, global pooling, dense: a few thousand parameters."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(input_shape, name="image")
    x = inputs
    for i, f in enumerate(filters):
        x = keras.layers.Conv2D(f, 3, padding="same", name=f"conv{i + 1}")(x)
        x = keras.layers.BatchNormalization(name=f"bn{i + 1}")(x)
        x = keras.layers.ReLU(name=f"relu{i + 1}")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(classes, name="fc")(x)
    model = keras.Model(inputs, outputs, name="small_convnet")
    # Non-trivial BatchNorm statistics, so folding them into the conv is exercised.
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.moving_mean.assign(rng.normal(0, 0.1, n).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.5, 1.5, n).astype("float32"))
    return model


def random_images(n, shape=(12, 12, 3), seed=0):
    return np.random.default_rng(seed).uniform(0, 1, (n, *shape)).astype("float32")


def sparse_convnet(fraction=0.9):
    """``small_convnet(filters=(32, 64))`` with the smallest ``fraction`` of every kernel zeroed."""
    model = small_convnet(filters=(32, 64))
    for layer in model.layers:
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
            kernel = layer.kernel.numpy()
            kernel[np.abs(kernel) < np.quantile(np.abs(kernel), fraction)] = 0.0
            layer.kernel.assign(kernel)
    return model


def sparse_dynamic_tflite(path):
    """A 90 %-sparse small convnet exported with dynamic-range quantization and sparse
    tensors: the case XNNPACK (LiteRT 2.3) refuses. Returns ``(model, tflite path)``."""
    from kprune.export.tflite import to_tflite

    model = sparse_convnet()
    return model, to_tflite(model, path, quantize="dynamic", sparsity=True).path
