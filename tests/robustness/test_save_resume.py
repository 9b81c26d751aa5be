"""Save / resume mid-schedule: same step, same masks, same optimizer state as an uninterrupted run."""

import keras
import numpy as np
import pytest

import kprune

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def mlp():
    inp = keras.Input((10,))
    x = keras.layers.Dense(32, activation="relu", name="d1")(inp)
    return keras.Model(inp, keras.layers.Dense(3, name="d2")(x))


RECIPES = {
    # filter pruning: masks computed on the host at each update
    "l1": {"prune": {"criterion": "l1", "granularity": "filter",
                     "schedule": {"name": "agp", "start_step": 0, "end_step": 16, "frequency": 2},
                     "config_list": [{"op_names": ["d1"], "sparsity": 0.75}]}},
    # weight pruning at every step: masks computed inside the compiled train step
    "level": {"prune": {"criterion": "level", "granularity": "weight",
                        "schedule": {"name": "agp", "start_step": 0, "end_step": 16, "frequency": 1},
                        "config_list": [{"op_names": ["d1"], "sparsity": 0.75}]}},
}


@pytest.fixture(scope="module", params=sorted(RECIPES))
def recipe(request):
    return RECIPES[request.param]


def data(n=40):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 10)).astype("float32"), rng.integers(0, 3, n)


def compiled(base, recipe):
    w = kprune.wrap(base, recipe)
    w.compile(keras.optimizers.Adam(0.01), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return w


def state(model):
    """Masks, weights, pruning step and optimizer variables of a wrapped model."""
    d1 = model.get_layer("d1")
    return {"mask": d1.masks["kernel"].numpy().copy(), "kernel": d1.layer.kernel.numpy().copy(),
            "d2": model.get_layer("d2").get_weights()[0].copy() if not hasattr(model.get_layer("d2"), "masks")
            else model.get_layer("d2").layer.kernel.numpy().copy(),
            "step": kprune.Pruner(model).step,
            "opt": [np.asarray(v.numpy()).copy() for v in model.optimizer.variables]}


def assert_same(a, b):
    assert a["step"] == b["step"]
    np.testing.assert_array_equal(a["mask"], b["mask"])
    np.testing.assert_allclose(a["kernel"], b["kernel"], atol=1e-6)
    np.testing.assert_allclose(a["d2"], b["d2"], atol=1e-6)
    assert len(a["opt"]) == len(b["opt"])
    for u, v in zip(a["opt"], b["opt"]):
        np.testing.assert_allclose(u, v, atol=1e-6)


@pytest.fixture(scope="module")
def reference(recipe):
    keras.utils.set_random_seed(0)
    base = mlp()
    x, y = data()
    w = compiled(base, recipe)
    w.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0, callbacks=[kprune.PruningCallback()])
    return base.get_weights(), state(w)


def fresh_base(weights):
    base = mlp()
    base.set_weights(weights)
    return base


def test_model_checkpoint_mid_epoch_resumes_exactly(tmp_path, reference, recipe):
    weights, ref = reference
    x, y = data()
    w = compiled(fresh_base(weights), recipe)
    ckpt = str(tmp_path / "mid.keras")
    # saved after 12 steps: mid-epoch 2, two steps after the last mask update's sync (step 10)
    w.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0,
          callbacks=[kprune.PruningCallback(), keras.callbacks.ModelCheckpoint(ckpt, save_freq=12)])
    again = keras.saving.load_model(ckpt)
    assert kprune.Pruner(again).step == 12
    assert int(again.optimizer.iterations.numpy()) == 12
    # the remaining 8 batches of the second epoch
    again.fit(x[8:], y[8:], batch_size=4, epochs=1, shuffle=False, verbose=0, callbacks=[kprune.PruningCallback()])
    assert_same(state(again), ref)


def test_model_save_mid_epoch_from_a_custom_callback(tmp_path, reference, recipe):
    weights, ref = reference
    x, y = data()
    path = str(tmp_path / "probe.keras")

    class SaveAt(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 4 and not hasattr(self, "done"):
                self.done = True
                self.model.save(path)

    w = compiled(fresh_base(weights), recipe)
    w.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0, callbacks=[kprune.PruningCallback(), SaveAt()])
    again = keras.saving.load_model(path)
    assert kprune.Pruner(again).step == 5
    again.fit(x[20:], y[20:], batch_size=4, epochs=1, shuffle=False, verbose=0, callbacks=[kprune.PruningCallback()])
    again.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0, callbacks=[kprune.PruningCallback()])
    assert_same(state(again), ref)


class Crash(Exception):
    pass


def test_backup_and_restore_after_a_crash(tmp_path, reference, recipe):
    weights, ref = reference
    x, y = data()
    backup = str(tmp_path / "backup")

    class CrashAt(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            if self.params and getattr(self, "_epoch", 0) == 1 and batch == 3:
                raise Crash()

        def on_epoch_begin(self, epoch, logs=None):
            self._epoch = epoch

    w = compiled(fresh_base(weights), recipe)
    with pytest.raises(Crash):
        w.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0,
              callbacks=[kprune.PruningCallback(), keras.callbacks.BackupAndRestore(backup), CrashAt()])
    # a new process: the same wrapped model rebuilt; the pruning callback comes first, so it
    # is created before BackupAndRestore restores the weights and must read the step again
    keras.utils.set_random_seed(0)
    fresh = compiled(fresh_base(weights), recipe)
    fresh.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0,
              callbacks=[kprune.PruningCallback(), keras.callbacks.BackupAndRestore(backup)])
    assert_same(state(fresh), ref)


def test_weights_only_checkpoint_keeps_the_live_step(tmp_path, recipe):
    x, y = data()
    w = compiled(mlp(), recipe)
    path = str(tmp_path / "w.weights.h5")
    w.fit(x[:12], y[:12], batch_size=4, epochs=1, shuffle=False, verbose=0,
          callbacks=[kprune.PruningCallback(), keras.callbacks.ModelCheckpoint(path, save_weights_only=True,
                                                                                 save_freq=1)])
    other = compiled(mlp(), recipe)
    other.load_weights(path)
    assert kprune.Pruner(other).step == 3
