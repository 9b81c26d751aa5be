"""The compiled per-step level update gives exactly the host path's masks."""

import keras
import numpy as np
import pytest

import kprune
from kprune.pruning import fast_update


def _model(seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 2))
    x = keras.layers.Conv2D(6, 3, name="conv")(inputs)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(12, name="fc1")(x)
    return keras.Model(inputs, keras.layers.Dense(3, name="fc2")(x))


def _recipe(**schedule):
    return {"prune": {"criterion": "level", "granularity": "weight",
                      "schedule": {"name": "agp", "start_step": 0, "end_step": 20, "frequency": 1, **schedule},
                      "config_list": [{"op_types": ["Conv2D", "Dense"], "sparsity": 0.8},
                                      {"op_names": ["fc2"], "sparsity": 0.5}]}}


def _masks(model):
    return {(w.name, a): np.asarray(m.numpy()) for w in kprune.wrappers.find_wrappers(model) for a, m in w.masks.items()}


def _train_with(fast, ties=False, jit_compile=False, hooked=None):
    model = kprune.wrap(_model(), _recipe())
    if ties:  # many equal magnitudes: tie-breaking by position must agree
        for layer in model.layers:
            if hasattr(layer, "layer") and hasattr(layer.layer, "kernel"):
                k = layer.layer.kernel
                k.assign(np.round(k.numpy() * 4) / 4)
    model.compile(keras.optimizers.SGD(0.05), keras.losses.MeanSquaredError(), jit_compile=jit_compile)
    callback = kprune.PruningCallback()
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 8, 8, 2)).astype("float32"), rng.normal(size=(64, 3)).astype("float32")
    history = []

    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            history.append(_masks(self.model))
            if hooked is not None:
                hooked.append(fast_update._HOOK in self.model.__dict__)

    callback.pruner = kprune.Pruner(model)
    callback.pruner.fast = fast
    model.fit(x, y, batch_size=8, epochs=3, verbose=0, shuffle=False, callbacks=[callback, Record()])
    return model, callback.pruner, history


@pytest.mark.parametrize("ties", [False, True])
def test_fast_path_masks_equal_the_host_path_at_every_step(ties):
    fast_model, fast_pruner, fast_hist = _train_with(True, ties)
    slow_model, slow_pruner, slow_hist = _train_with(False, ties)
    assert fast_pruner.fast_path is not None and slow_pruner.fast_path is None
    assert len(fast_hist) == len(slow_hist) == 24
    for step, (a, b) in enumerate(zip(fast_hist, slow_hist)):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=f"step {step} {key}")
    report = kprune.sparsity(fast_model)
    assert report["conv"] == pytest.approx(0.8, abs=0.01) and report["fc2"] == pytest.approx(0.5, abs=0.03)
    for w in kprune.wrappers.find_wrappers(fast_model):  # pruned weights are zero
        for attr, var in w.weights_by_attr().items():
            assert np.all(var.numpy()[w.masks[attr].numpy() == 0] == 0)
    assert int(fast_pruner.active[0].pruning_step.numpy()) == fast_pruner.step
    np.testing.assert_allclose(fast_model.predict(np.ones((2, 8, 8, 2), "float32"), verbose=0),
                               slow_model.predict(np.ones((2, 8, 8, 2), "float32"), verbose=0), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_in_step_update_masks_equal_the_host_path(jit_compile):
    """Without XLA the update runs inside the compiled train step; with XLA one call per step."""
    hooked = []
    model, pruner, hist = _train_with(True, jit_compile=jit_compile, hooked=hooked)
    _, _, slow_hist = _train_with(False)
    assert hooked == [not jit_compile] * 24
    assert pruner.fast_path.in_step is False  # removed at the end of fit
    assert "train_step" not in model.__dict__
    cache = model.__dict__.get(fast_update._CACHE)
    assert (cache is None) == jit_compile
    if cache is not None:  # the plain compiled function is back; the hooked one is kept aside
        assert model.train_function is cache.keras_function and cache.hooked is not model.train_function
    for step, (a, b) in enumerate(zip(hist, slow_hist)):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=f"step {step} {key}")
    assert int(pruner.active[0].pruning_step.numpy()) == pruner.step == 24


def test_in_step_update_continues_in_a_second_fit_and_after_a_host_update():
    model = kprune.wrap(_model(), _recipe(end_step=30))
    model.compile(keras.optimizers.SGD(0.05), keras.losses.MeanSquaredError())
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(40, 8, 8, 2)).astype("float32"), rng.normal(size=(40, 3)).astype("float32")
    callback = kprune.PruningCallback()
    with pytest.warns(UserWarning, match="before the schedule's last update at step 30"):
        model.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[callback])  # steps 0-9
    pruner = callback.pruner
    assert pruner.step == 10 and pruner.fast_path is not None
    expected = pruner.targets(9)
    report = kprune.sparsity(model)
    for name in ("conv", "fc1", "fc2"):
        assert report[name] == pytest.approx(expected[name], abs=2 / 200)
    # a host-side update in between (masks rewritten outside the train step)
    fc1 = next(w for w in pruner.active if w.name == "fc1")
    fc1.set_mask("kernel", np.ones(fc1.masks["kernel"].shape, "float32"))
    model.fit(x, y, batch_size=8, epochs=5, verbose=0, callbacks=[callback])  # steps 10-34
    assert pruner.step == 35
    report = kprune.sparsity(model)
    assert report["conv"] == pytest.approx(0.8, abs=0.01) and report["fc1"] == pytest.approx(0.8, abs=0.01)
    assert report["fc2"] == pytest.approx(0.5, abs=0.03)
    assert "train_step" not in model.__dict__


def test_the_hooked_train_function_is_reused_until_the_model_is_compiled_again():
    model = kprune.wrap(_model(), _recipe(end_step=3))
    model.compile(keras.optimizers.SGD(0.05), keras.losses.MeanSquaredError())
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(16, 8, 8, 2)).astype("float32"), rng.normal(size=(16, 3)).astype("float32")
    hooked = []

    class Seen(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            hooked.append(self.model.train_function)

    fit = lambda: model.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False,  # noqa: E731
                            callbacks=[kprune.PruningCallback(), Seen()])
    with pytest.warns(UserWarning, match="final sparsity was not reached"):
        fit()
    fit()  # a new callback and pruner: same layers, same compiled function
    assert hooked[0] is hooked[-1] and len(hooked) == 4
    assert kprune.sparsity(model)["fc1"] == pytest.approx(0.8, abs=0.01)  # reached at step 3 (2nd fit)
    plain = model.train_function
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)  # no callback: the plain function, no pruning
    assert model.train_function is plain
    model.compile(keras.optimizers.Adam(1e-3), keras.losses.MeanSquaredError())  # recompiled
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[kprune.PruningCallback(), Seen()])
    assert hooked[-1] is not hooked[0]
    assert int(model.optimizer.iterations.numpy()) == 2  # the new optimizer trains


def test_a_train_step_set_on_the_instance_is_kept():
    model = kprune.wrap(_model(), _recipe())
    model.compile(keras.optimizers.SGD(0.05), keras.losses.MeanSquaredError())
    calls = []
    own = model.train_step

    def counting_step(data):
        calls.append(1)
        return own(data)

    model.train_step = counting_step
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(16, 8, 8, 2)).astype("float32"), rng.normal(size=(16, 3)).astype("float32")
    with pytest.warns(UserWarning, match="final sparsity was not reached"):
        model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[kprune.PruningCallback()], shuffle=False)
    assert calls and model.__dict__["train_step"] is counting_step
    assert kprune.sparsity(model)["conv"] > 0


def test_a_falling_target_goes_to_the_host_path():
    model = kprune.wrap(_model(), _recipe())
    pruner = kprune.Pruner(model)
    fast = fast_update.FastLevelUpdate(pruner)
    assert fast({w.name: 0.6 for w in pruner.active}, 1)
    assert all(abs(np.mean(m == 0) - 0.6) < 0.02 for (name, attr), m in _masks(model).items() if attr == "kernel")
    assert fast({w.name: 0.6 for w in pruner.active}, 2)  # unchanged: only the step is written
    assert int(pruner.active[0].pruning_step.numpy()) == 2
    assert not fast({w.name: 0.3 for w in pruner.active}, 3)  # fell: refused, the pruner recomputes


def test_masks_changed_elsewhere_are_counted_again():
    model = kprune.wrap(_model(), _recipe())
    pruner = kprune.Pruner(model)
    fast = fast_update.FastLevelUpdate(pruner)
    fc1 = next(w for w in pruner.active if w.name == "fc1")
    outside = np.ones(fc1.masks["kernel"].shape, "float32")
    outside[0, :] = 0  # 12 weights pruned by someone else
    fc1.set_mask("kernel", outside)
    fast({w.name: 0.5 for w in pruner.active}, 1)
    m = fc1.masks["kernel"].numpy()
    assert np.all(m[0] == 0) and np.mean(m == 0) == pytest.approx(0.5, abs=1 / m.size)


def test_not_used_for_other_criteria_or_scopes():
    recipe = _recipe()
    recipe["prune"]["criterion"] = "l1"
    assert not fast_update.eligible(kprune.Pruner(kprune.wrap(_model(), recipe)))
    recipe = _recipe()
    recipe["prune"]["scope"] = "global"
    recipe["prune"]["config_list"] = [{"op_types": ["Conv2D", "Dense"], "total_sparsity": 0.8}]
    assert not fast_update.eligible(kprune.Pruner(kprune.wrap(_model(), recipe)))
    assert fast_update.eligible(kprune.Pruner(kprune.wrap(_model(), _recipe())))
