"""Custom training loops: a ``tf.function``-compiled step driven by ``kprune.Pruner``,
with a data criterion, gives the same masks and weights as ``model.fit``."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import kprune

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def convnet():
    inp = keras.Input((8, 8, 2))
    x = keras.layers.Conv2D(8, 3, activation="relu", name="c1")(inp)
    x = keras.layers.Conv2D(8, 3, activation="relu", name="c2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, keras.layers.Dense(3, name="out")(x))


RECIPE = {"prune": {"criterion": "taylor_fo", "granularity": "filter", "statistics_batches": 2,
                    "schedule": {"name": "agp", "start_step": 0, "end_step": 8, "frequency": 2},
                    "config_list": [{"op_names": ["c1", "c2"], "sparsity": 0.5}]}}


def dataset():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(48, 8, 8, 2)).astype("float32")
    y = (x[..., 0].mean(axis=(1, 2)) > 0).astype("int32") + (x[:, :4].mean(axis=(1, 2, 3)) > 0)
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(8)


LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


@pytest.mark.parametrize("jit", [False, True])
def test_tf_function_loop_with_taylor_matches_fit(jit):
    ds = dataset()
    base = convnet()
    fitted = kprune.wrap(base, RECIPE)
    fitted.compile(keras.optimizers.SGD(0.05, momentum=0.9), LOSS)
    fitted.fit(ds, epochs=2, verbose=0, callbacks=[kprune.PruningCallback(data=ds)])

    model = kprune.wrap(base, RECIPE)
    opt = keras.optimizers.SGD(0.05, momentum=0.9)
    pruner = kprune.Pruner(model, data=ds)

    @tf.function(jit_compile=jit)
    def train_step(x, y):
        with tf.GradientTape() as tape:
            loss = LOSS(y, model(x, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables))  # mask constraints applied here
        return loss

    for _ in range(2):
        for x, y in ds:
            pruner.on_step()          # eager: schedule -> gradient statistics on ds -> masks
            train_step(x, y)
        pruner.sync()
    assert pruner.step == 12
    for name in ("c1", "c2"):
        a, b = fitted.get_layer(name), model.get_layer(name)
        np.testing.assert_array_equal(a.masks["kernel"].numpy(), b.masks["kernel"].numpy())
        np.testing.assert_allclose(a.layer.kernel.numpy(), b.layer.kernel.numpy(), atol=1e-5)
        kernel, mask = b.layer.kernel.numpy(), b.masks["kernel"].numpy()
        assert np.all(kernel[mask == 0] == 0.0)
    assert kprune.sparsity(model)["c1"] == pytest.approx(0.5)


def test_custom_loop_under_a_compiled_step_keeps_mask_updates_visible():
    """Masks assigned eagerly between calls are read by the already-traced step (no retrace)."""
    ds = dataset()
    model = kprune.wrap(convnet(), RECIPE)
    opt = keras.optimizers.SGD(0.05)
    pruner = kprune.Pruner(model, data=ds)
    traces = []

    @tf.function
    def train_step(x, y):
        traces.append(1)
        with tf.GradientTape() as tape:
            loss = LOSS(y, model(x, training=True))
        opt.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))

    batches = list(ds)
    for x, y in batches[:5]:
        pruner.on_step()
        train_step(x, y)
    assert len(traces) == 1
    c1 = model.get_layer("c1")
    # step 4's update pruned 0.5 * (1 - (1 - 4/8)^3) of 8 filters = 3.5 -> 4 filters (rounded)
    assert int(np.sum(np.all(c1.masks["kernel"].numpy() == 0, axis=(0, 1, 2)))) == 4
    assert np.all(c1.layer.kernel.numpy()[c1.masks["kernel"].numpy() == 0] == 0.0)
