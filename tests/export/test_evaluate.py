"""evaluate_tflite / predict_tflite: accuracy equals Keras for fp32, batching fallbacks, errors."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from export_fixtures import random_images, sparse_dynamic_tflite
from kprune.errors import ExportError
from kprune.export.evaluate import TFLiteRunner, evaluate_tflite, predict_tflite
from kprune.export.tflite import to_tflite


@pytest.fixture(scope="module")
def exported(convnet, tmp_path_factory):
    return to_tflite(convnet, tmp_path_factory.mktemp("eval") / "m.tflite").path


@pytest.fixture(scope="module")
def data(convnet):
    """32 images; labels agree with the Keras model on batches 0-1 and disagree on 2-3."""
    x = random_images(32, seed=5)
    predicted = np.argmax(convnet.predict(x, verbose=0), axis=-1)
    y = predicted.copy()
    y[16:] = (predicted[16:] + 1) % 5
    return x, y


def test_accuracy_equals_keras_fp32(convnet, exported, data):
    x, y = data
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    convnet.compile(loss="sparse_categorical_crossentropy", metrics=["sparse_categorical_accuracy"])
    keras_accuracy = convnet.evaluate(ds, verbose=0, return_dict=True)["sparse_categorical_accuracy"]
    tflite_accuracy = evaluate_tflite(exported, ds)
    assert tflite_accuracy == pytest.approx(0.5)  # 16 of 32 by construction
    assert tflite_accuracy == pytest.approx(keras_accuracy, abs=1e-6)


def test_max_batches_and_one_hot_and_numpy_tuple(exported, data):
    x, y = data
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    assert evaluate_tflite(exported, ds, max_batches=2) == 1.0
    one_hot = tf.data.Dataset.from_tensor_slices((x, np.eye(5)[y])).batch(8)
    assert evaluate_tflite(exported, one_hot) == 0.5
    assert evaluate_tflite(exported, (x, y)) == 0.5


def test_predict_resizes_batch_and_matches_keras(convnet, exported, data):
    x, _ = data
    runner = TFLiteRunner(exported)
    out = runner.run([x[:7]])[0]
    assert runner.batched and out.shape == (7, 5)
    np.testing.assert_allclose(out, convnet.predict(x[:7], verbose=0), rtol=1e-5, atol=1e-6)
    assert predict_tflite(exported, x, batch_size=10).shape == (32, 5)


def test_fixed_batch_file_falls_back_to_one_sample_at_a_time(tmp_path):
    keras.utils.set_random_seed(1)
    inputs = keras.Input((6,), batch_size=1)
    model = keras.Model(inputs, keras.layers.Dense(3)(inputs))
    path = to_tflite(model, tmp_path / "fixed.tflite").path
    x = np.random.default_rng(0).normal(size=(5, 6)).astype("float32")
    runner = TFLiteRunner(path)
    out = runner.run([x])[0]
    assert not runner.batched
    np.testing.assert_allclose(out, model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


def test_int8_io_accuracy_close_to_fp32(convnet, data, tmp_path):
    x, y = data
    path = to_tflite(convnet, tmp_path / "q.tflite", quantize="int8", representative_data=random_images(100), io_dtype="uint8").path
    accuracy = evaluate_tflite(path, (x, y))
    # The labels are Keras' own predictions on half the set; int8 may flip a few near-ties.
    assert abs(accuracy - 0.5) <= 4 / 32


def test_errors_are_clear(exported, tmp_path):
    with pytest.raises(ExportError, match="labelled batches"):
        evaluate_tflite(exported, tf.data.Dataset.from_tensor_slices(random_images(4)).batch(2))
    with pytest.raises(ExportError, match="No TFLite file"):
        evaluate_tflite(tmp_path / "missing.tflite", (random_images(2), np.zeros(2)))
    with pytest.raises(ExportError, match="max_batches=0"):
        evaluate_tflite(exported, (random_images(2), np.zeros(2)), max_batches=0)
    with pytest.raises(ExportError, match="empty dataset"):
        evaluate_tflite(exported, [])



def test_falls_back_to_builtin_kernels_when_xnnpack_refuses(tmp_path):
    # XNNPACK (LiteRT 2.3) refuses dynamic-range models with sparse tensors; predictions
    # still come out, from the built-in kernels, and match Keras within the dynamic bound.
    model, path = sparse_dynamic_tflite(tmp_path / "sd.tflite")
    runner = TFLiteRunner(path)
    x = random_images(6, seed=4)
    out = runner.run([x])[0]
    ref = model.predict(x, verbose=0)
    assert np.max(np.abs(out - ref)) / np.max(np.abs(ref)) < 2e-2
    assert runner.used_xnnpack in (True, False)  # False on LiteRT versions whose XNNPACK refuses it
