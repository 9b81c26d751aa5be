"""TFLite helpers on multi-output models: outputs come back in Keras' order, not the file's.

A classifier + regression head converts with the regression output first in the
interpreter's tensor order; evaluate_tflite read that as the classifier (accuracy 0.0).
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kprune.errors import ExportError
from kprune.export.evaluate import TFLiteRunner, evaluate_tflite, predict_tflite
from kprune.export.interpreter import load_interpreter, output_details_in_keras_order
from kprune.export.tflite import to_tflite


def _two_heads(kind: str):
    keras.utils.set_random_seed(0)
    x = keras.Input((8,), name="x")
    h = keras.layers.Dense(16, activation="relu")(x)
    cls = keras.layers.Dense(5, activation="softmax", name="zcls")(h)
    reg = keras.layers.Dense(1, name="areg")(h)
    outputs = {"zcls": cls, "areg": reg} if kind == "dict" else [cls, reg]
    return keras.Model(x, outputs)


@pytest.fixture(scope="module", params=["list", "dict"])
def model_and_file(request, tmp_path_factory):
    model = _two_heads(request.param)
    path = to_tflite(model, tmp_path_factory.mktemp("multi") / f"{request.param}.tflite").path
    return request.param, model, path


def _keras_outputs(model, x):
    out = model.predict(x, verbose=0)
    return [out[k] for k in sorted(out)] if isinstance(out, dict) else list(out)


def test_runner_returns_every_output_in_keras_order(model_and_file):
    kind, model, path = model_and_file
    x = np.random.default_rng(1).standard_normal((12, 8)).astype("float32")
    expected = _keras_outputs(model, x)
    if kind == "list":  # the file itself lists these outputs in another order: what this test guards against
        plain = load_interpreter(path).get_output_details()
        assert [tuple(d["shape"][1:]) for d in plain] == [(1,), (5,)]
    got = TFLiteRunner(path).run([x])
    assert [g.shape for g in got] == [e.shape for e in expected]
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, atol=1e-5)
    shapes = [tuple(d["shape"][1:]) for d in output_details_in_keras_order(load_interpreter(path))]
    if kind == "list":
        assert shapes == [(5,), (1,)]      # [classifier, regression] as built
    else:
        assert shapes == [(1,), (5,)]      # sorted keys: areg, zcls (Keras' flattening)


def test_predict_and_evaluate_pick_the_asked_output(model_and_file):
    kind, model, path = model_and_file
    x = np.random.default_rng(2).standard_normal((32, 8)).astype("float32")
    expected = _keras_outputs(model, x)
    cls_index = 0 if kind == "list" else 1
    np.testing.assert_allclose(predict_tflite(path, x), expected[0], atol=1e-5)
    np.testing.assert_allclose(predict_tflite(path, x, output=cls_index), expected[cls_index], atol=1e-5)
    labels = np.argmax(expected[cls_index], axis=-1)
    labels[24:] = (labels[24:] + 1) % 5       # 24 of 32 right by construction
    targets = np.zeros((32, 1), "float32")
    y = (labels, targets) if kind == "list" else {"zcls": labels, "areg": targets}
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    assert evaluate_tflite(path, ds, output=cls_index) == pytest.approx(0.75)
    assert evaluate_tflite(path, (x, labels), output=cls_index) == pytest.approx(0.75)


def test_an_output_out_of_range_is_a_clear_error(model_and_file):
    _, _, path = model_and_file
    with pytest.raises(ExportError, match=r"in \[0, 2\).*Received: output=2"):
        predict_tflite(path, np.zeros((1, 8), "float32"), output=2)
