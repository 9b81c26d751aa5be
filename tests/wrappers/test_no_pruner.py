"""Training a wrapped model with no Pruner attached is an error, not an unpruned model."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import kprune
from kprune.errors import KPruneError

RECIPE = {"prune": {"criterion": "l1", "granularity": "weight", "schedule": {"name": "oneshot"},
                    "config_list": [{"op_types": ["Dense"], "sparsity": 0.5}]}}


def _data():
    rng = np.random.default_rng(0)
    return rng.standard_normal((32, 6)).astype("float32"), rng.integers(0, 3, 32)


def _wrapped():
    keras.utils.set_random_seed(0)
    x = keras.Input((6,))
    h = keras.layers.Dense(8, activation="relu", name="hidden")(x)
    model = keras.Model(x, keras.layers.Dense(3, name="out")(h))
    model = kprune.wrap(model, RECIPE)
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def test_fit_without_the_callback_raises_and_names_the_fix():
    x, y = _data()
    model = _wrapped()
    with pytest.raises(KPruneError, match=r"no kprune.Pruner attached.*PruningCallback"):
        model.fit(x, y, epochs=1, verbose=0)


def test_fit_with_the_callback_prunes():
    x, y = _data()
    model = _wrapped()
    model.fit(x, y, epochs=1, batch_size=16, verbose=0, callbacks=[kprune.PruningCallback()])
    assert kprune.sparsity(model)["hidden"] == pytest.approx(0.5, abs=0.05)


def test_custom_loop_with_a_pruner_trains_and_without_one_raises():
    x, y = _data()
    model = _wrapped()
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    with pytest.raises(KPruneError, match="wrapped for pruning"):
        model(x, training=True)
    pruner = kprune.Pruner(model)
    opt = keras.optimizers.SGD(0.1)
    for _ in range(2):
        pruner.on_step()
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        opt.apply(tape.gradient(loss, model.trainable_variables), model.trainable_variables)
    assert kprune.sparsity(model)["hidden"] == pytest.approx(0.5, abs=0.05)


def test_inference_stripped_and_compacted_models_need_no_pruner():
    x, y = _data()
    model = _wrapped()
    model.predict(x, verbose=0)
    model(x, training=False)
    stripped = kprune.strip(model)
    stripped.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    stripped.fit(x, y, epochs=1, verbose=0)
    assert np.isfinite(stripped.evaluate(x, y, verbose=0))


def test_bn_recalibration_of_a_loaded_wrapped_model_needs_no_pruner(tmp_path):
    keras.utils.set_random_seed(0)
    x = keras.Input((6,))
    h = keras.layers.BatchNormalization(name="bn")(keras.layers.Dense(8, name="hidden")(x))
    model = kprune.wrap(keras.Model(x, keras.layers.Dense(3, name="out")(h)), RECIPE)
    model.save(tmp_path / "w.keras")
    loaded = keras.saving.load_model(tmp_path / "w.keras")
    data, y = _data()
    assert kprune.recalibrate_bn(loaded, [(data, y)], batches=1) == 1
    mean = [v for v in loaded.weights if "moving_mean" in v.path][0]
    assert np.abs(keras.ops.convert_to_numpy(mean)).sum() > 0   # statistics updated
    with pytest.raises(KPruneError, match="wrapped for pruning"):
        loaded(data, training=True)  # training outside recalibration still needs a Pruner
