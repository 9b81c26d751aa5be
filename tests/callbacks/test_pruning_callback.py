import keras
import numpy as np
import pytest

import kprune


def mlp():
    inp = keras.Input((10,))
    x = keras.layers.Dense(32, activation="relu", name="d1")(inp)
    return keras.Model(inp, keras.layers.Dense(3, name="d2")(x))


def agp_recipe(end_step=8, freq=2):
    return {"prune": {"criterion": "level", "schedule": {"name": "agp", "start_step": 0,
                                                           "end_step": end_step, "frequency": freq},
                      "config_list": [{"op_names": ["d1"], "sparsity": 0.8}]}}


def data(n=40):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 10)).astype("float32"), rng.integers(0, 3, n)


def test_agp_sparsity_follows_schedule_during_fit():
    w = kprune.wrap(mlp(), agp_recipe())
    seen = []

    class Probe(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append(kprune.sparsity(self.model)["d1"])

    w.compile("sgd", "sparse_categorical_crossentropy")
    x, y = data()
    hist = w.fit(x, y, batch_size=4, epochs=1, verbose=0, callbacks=[kprune.PruningCallback(), Probe()])
    n = 10 * 32
    expected = []
    current = 0.0
    for t in range(10):
        if t <= 8 and t % 2 == 0:
            current = round(0.8 * (1 - (1 - t / 8) ** 3) * n) / n
        expected.append(current)
    np.testing.assert_allclose(seen, expected, atol=1e-9)
    assert hist.history["sparsity/d1"][-1] == pytest.approx(0.8)
    assert "sparsity" in hist.history


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("criterion", ["level", "l1"])
def test_steps_per_execution_counts_every_step(fast, criterion):
    """Several steps per compiled call: the schedule runs in steps, not calls; an update that
    falls inside a call is applied at its start (the last one due)."""
    recipe = agp_recipe(end_step=16, freq=3)
    recipe["prune"]["criterion"] = criterion
    w = kprune.wrap(mlp(), recipe)
    seen = []

    class Probe(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append(kprune.sparsity(self.model)["d1"])

    w.compile("sgd", "sparse_categorical_crossentropy", steps_per_execution=4)
    callback = kprune.PruningCallback()
    callback.pruner = kprune.Pruner(w)
    callback.pruner.fast = fast
    x, y = data(56)  # 14 batches of 4: calls of 4, 4, 4 and 2 steps per epoch
    w.fit(x, y, batch_size=4, epochs=2, verbose=0, callbacks=[callback, Probe()])
    assert callback.pruner.step == 28 and int(w.optimizer.iterations.numpy()) == 28
    if criterion == "l1":  # whole filters (and their bias): 26 of 32 at the end
        assert seen == sorted(seen) and seen[-1] == pytest.approx(0.8, abs=1 / 32)
        assert len(set(seen)) == 5  # updates applied in the calls starting at steps 0, 4, 8, 12, 14
        return
    units = 10 * 32
    target = lambda t: round(0.8 * (1 - (1 - min(t, 16) / 16) ** 3) * units) / units  # noqa: E731
    starts = [0, 4, 8, 12, 14, 18, 22, 26]
    lengths = [4, 4, 4, 2, 4, 4, 4, 2]
    expected, current = [], 0.0
    for b, n in zip(starts, lengths):
        due = [t for t in range(b, b + n) if t <= 16 and (t % 3 == 0 or t == 16)]
        if due:
            current = target(due[-1])
        expected.append(current)
    np.testing.assert_allclose(seen, expected, atol=1e-9)
    assert seen[-1] == pytest.approx(0.8)


def test_custom_loop_gives_same_masks_as_fit():
    import tensorflow as tf
    x, y = data()
    base = mlp()
    w1 = kprune.wrap(base, agp_recipe())
    w2 = kprune.wrap(base, agp_recipe())
    w1.compile(keras.optimizers.SGD(0.05), "sparse_categorical_crossentropy")
    w1.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0, callbacks=[kprune.PruningCallback()])

    opt = keras.optimizers.SGD(0.05)
    loss_fn = keras.losses.SparseCategoricalCrossentropy()
    pruner = kprune.Pruner(w2)
    for i in range(0, 40, 4):
        pruner.on_step()
        with tf.GradientTape() as tape:
            loss = loss_fn(y[i:i + 4], w2(x[i:i + 4], training=True))
        grads = tape.gradient(loss, w2.trainable_variables)
        opt.apply_gradients(zip(grads, w2.trainable_variables))
    np.testing.assert_array_equal(w1.get_layer("d1").masks["kernel"].numpy(),
                                  w2.get_layer("d1").masks["kernel"].numpy())
    np.testing.assert_allclose(w1.get_layer("d1").layer.kernel.numpy(),
                               w2.get_layer("d1").layer.kernel.numpy(), atol=1e-5)


def test_resume_continues_schedule(tmp_path):
    x, y = data()
    w = kprune.wrap(mlp(), agp_recipe(end_step=16, freq=1))
    w.compile("sgd", "sparse_categorical_crossentropy")
    w.fit(x, y, batch_size=4, epochs=1, verbose=0, callbacks=[kprune.PruningCallback()])
    w.save(tmp_path / "mid.keras")
    again = keras.saving.load_model(tmp_path / "mid.keras")
    cb = kprune.PruningCallback()
    again.fit(x, y, batch_size=4, epochs=1, verbose=0, callbacks=[cb])
    assert cb.pruner.step == 20
    assert kprune.sparsity(again)["d1"] == pytest.approx(0.8)


def test_tensorboard_logging(tmp_path):
    x, y = data()
    w = kprune.wrap(mlp(), agp_recipe())
    w.compile("sgd", "sparse_categorical_crossentropy")
    w.fit(x, y, batch_size=4, epochs=1, verbose=0, callbacks=[kprune.PruningCallback(log_dir=str(tmp_path))])
    assert any(p.name.startswith("events") for p in tmp_path.iterdir())


def test_callback_on_unwrapped_model_is_a_clear_error():
    m = mlp()
    m.compile("sgd", "mse")
    with pytest.raises(kprune.KPruneError, match="kprune.wrap"):
        m.fit(np.zeros((4, 10)), np.zeros((4, 3)), verbose=0, callbacks=[kprune.PruningCallback()])


def test_warns_when_schedule_not_finished():
    x, y = data(8)
    w = kprune.wrap(mlp(), agp_recipe(end_step=100))
    w.compile("sgd", "sparse_categorical_crossentropy")
    with pytest.warns(UserWarning, match="final sparsity was not reached"):
        w.fit(x, y, batch_size=4, epochs=1, verbose=0, callbacks=[kprune.PruningCallback()])
