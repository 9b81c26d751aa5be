"""Mixed precision (``mixed_float16``) and ``jit_compile=True``: masks stay exact, training works."""

import keras
import numpy as np
import pytest

import kprune

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture
def mixed_policy():
    keras.mixed_precision.set_global_policy("mixed_float16")
    yield
    keras.mixed_precision.set_global_policy("float32")


def convnet():
    inp = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, name="c1")(inp)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Conv2D(8, 3, activation="relu", name="c2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, keras.layers.Dense(3, name="out", dtype="float32")(x))


RECIPE = {"prune": {"criterion": "l1", "granularity": "filter",
                    "schedule": {"name": "agp", "start_step": 0, "end_step": 6, "frequency": 2},
                    "config_list": [{"op_names": ["c1", "c2"], "sparsity": 0.5}]}}


def data(n=64):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 8, 8, 3)).astype("float32")
    return x, (x[:, :4].mean(axis=(1, 2, 3)) > 0).astype("int32") + (x[..., 0].mean(axis=(1, 2)) > 0)


def masked_values(model):
    """All weight values under a zero mask, over every wrapper (must all be exactly 0)."""
    out = []
    for w in kprune.wrappers.find_wrappers(model):
        for attr, var in w.weights_by_attr().items():
            out.append(np.asarray(var.numpy())[np.asarray(w.masks[attr].numpy()) == 0])
    return np.concatenate([v.ravel() for v in out])


LEVEL = {"prune": {"criterion": "level", "granularity": "weight",
                   "schedule": {"name": "agp", "start_step": 0, "end_step": 20, "frequency": 1},
                   "config_list": [{"op_names": ["c1", "c2", "out"], "sparsity": 0.7}]}}


def train(jit, optimizer="adam", epochs=4, recipe=RECIPE):
    keras.utils.set_random_seed(0)
    model = kprune.wrap(convnet(), recipe)
    opt = keras.optimizers.Adam(0.01) if optimizer == "adam" else keras.optimizers.SGD(0.05, momentum=0.9)
    model.compile(opt, keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=jit)
    x, y = data()
    hist = model.fit(x, y, batch_size=8, epochs=epochs, shuffle=False, verbose=0,
                     callbacks=[kprune.PruningCallback()])
    return model, hist.history["loss"]


@pytest.mark.parametrize("jit", [False, True])
def test_mixed_float16_masks_stay_exact(mixed_policy, jit):
    model, losses = train(jit)
    c1 = model.get_layer("c1")
    assert c1.layer.compute_dtype == "float16" and c1.layer.kernel.dtype == "float32"
    # the compiled optimizer is wrapped in a LossScaleOptimizer, whose inner optimizer
    # applies the mask constraints: 26 steps after the last mask update, pruned weights are 0
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert int(model.optimizer.iterations.numpy()) == 32
    vals = masked_values(model)
    assert vals.size > 0 and np.all(vals == 0.0)
    # c2 loses half of its filters and the input channels of c1's pruned filters: 1 - 0.5 * 0.5
    assert kprune.sparsity(model)["c1"] == pytest.approx(0.5) and kprune.sparsity(model)["c2"] == pytest.approx(0.75)
    # the BatchNorm after c1 is masked on the pruned channels too (channel group)
    bn = model.get_layer("bn")
    assert np.all(bn.layer.gamma.numpy()[bn.masks["gamma"].numpy() == 0] == 0)
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]


@pytest.mark.parametrize("jit", [False, True])
def test_mixed_float16_level_pruning_at_every_step(mixed_policy, jit):
    """The compiled per-step update (inside the train step without XLA) under mixed precision."""
    model, losses = train(jit, recipe=LEVEL)
    vals = masked_values(model)
    assert vals.size > 0 and np.all(vals == 0.0)
    report = kprune.sparsity(model)
    for name in ("c1", "c2", "out"):
        kernel = model.get_layer(name).masks["kernel"].numpy()
        assert np.sum(kernel == 0) == round(0.7 * kernel.size), name
    assert report["total"] > 0.6 and np.all(np.isfinite(losses))


def test_jit_compile_float32_matches_eager_masks():
    a, la = train(False, optimizer="sgd", epochs=2)
    b, lb = train(True, optimizer="sgd", epochs=2)
    for name in ("c1", "c2"):
        np.testing.assert_array_equal(a.get_layer(name).masks["kernel"].numpy(),
                                      b.get_layer(name).masks["kernel"].numpy())
    np.testing.assert_allclose(la, lb, rtol=1e-4)
    assert np.all(masked_values(b) == 0.0)


def test_constraint_survives_a_large_update(mixed_policy):
    """A gradient step that would move masked weights (huge learning rate) leaves them 0."""
    model = kprune.wrap(convnet(), {"prune": {"criterion": "l1", "granularity": "weight",
                                              "config_list": [{"op_names": ["c2"], "sparsity": 0.9}]}})
    kprune.Pruner(model).prune_now()
    model.compile(keras.optimizers.SGD(10.0), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  jit_compile=True)
    x, y = data(16)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    mask = model.get_layer("c2").masks["kernel"].numpy()
    kernel = model.get_layer("c2").layer.kernel.numpy()
    assert np.sum(mask == 0) == round(0.9 * mask.size)
    assert np.all(kernel[mask == 0] == 0.0)
