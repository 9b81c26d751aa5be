"""Soft filter pruning (He et al. 2018): `soft: true` with constant/agp schedules."""

import keras
import numpy as np
import pytest

import kprune


def cnn():
    inp = keras.Input((6, 6, 3))
    # linear, so that every zeroed filter gets a gradient (a dead ReLU would hide it)
    x = keras.layers.Conv2D(8, 3, name="conv")(inp)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inp, keras.layers.Dense(3, name="fc")(x))


def test_soft_filters_are_zeroed_at_updates_and_keep_training():
    recipe = {"prune": {"criterion": "l2", "granularity": "filter", "soft": True,
                        "schedule": {"name": "constant", "start_step": 0, "frequency": 2},
                        "config_list": [{"op_names": ["conv"], "sparsity": 0.5}]}}
    model = kprune.wrap(cnn(), recipe)
    conv = model.get_layer("conv")
    assert conv.soft and conv.layer.kernel.constraint is None
    model.compile(keras.optimizers.SGD(0.05), "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(16, 6, 6, 3)).astype("float32"), rng.integers(0, 3, 16)
    seen = []

    class Probe(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            k = conv.layer.kernel.numpy()
            seen.append(np.abs(k).sum(axis=(0, 1, 2)))

    model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0,
              callbacks=[kprune.PruningCallback(), Probe()])
    # steps 0 and 2 update masks: exactly 4 of 8 filters are zero right after an update ...
    assert (seen[0] == 0).sum() == 4 and (seen[2] == 0).sum() == 4
    # ... and the zeroed filters receive gradients in between (no constraint holds them at 0)
    assert (seen[1] == 0).sum() == 0
    assert (seen[3] == 0).sum() == 0
    assert np.all(model.get_layer("fc").masks["kernel"].numpy() == 1)


def test_soft_agp_ends_hard_so_compact_is_exact():
    recipe = {"prune": {"criterion": "l2", "granularity": "filter", "soft": True,
                        "schedule": {"name": "agp", "start_step": 0, "end_step": 3, "frequency": 1},
                        "config_list": [{"op_names": ["conv"], "sparsity": 0.5}]}}
    model = kprune.wrap(cnn(), recipe)
    model.compile(keras.optimizers.SGD(0.05), "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(16, 6, 6, 3)).astype("float32"), rng.integers(0, 3, 16)
    model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0, callbacks=[kprune.PruningCallback()])
    # the last update (step 3) zeroed the whole group: filters, biases and fc input rows
    conv = model.get_layer("conv")
    gone = ~conv.masks["kernel"].numpy().any(axis=(0, 1, 2))
    assert gone.sum() == 4
    assert np.all(conv.masks["bias"].numpy()[gone] == 0)
    assert np.all(model.get_layer("fc").masks["kernel"].numpy()[gone] == 0)
    assert np.all(conv.layer.kernel.numpy()[..., gone] == 0) and np.all(conv.layer.bias.numpy()[gone] == 0)


def test_soft_from_recipe_or_argument():
    hard = {"prune": {"criterion": "l1", "granularity": "filter",
                      "config_list": [{"op_names": ["conv"], "sparsity": 0.5}]}}
    assert not kprune.wrap(cnn(), hard).get_layer("conv").soft
    assert kprune.wrap(cnn(), hard, soft=True).get_layer("conv").soft
    with pytest.raises(kprune.RecipeError, match="soft"):
        kprune.Recipe.from_dict({"prune": {"soft": "yes"}})
