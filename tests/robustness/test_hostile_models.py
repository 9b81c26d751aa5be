"""Hostile models: unsupported layers, subclassed models, shared layers, Lambda layers,
multiple inputs and outputs — a clear kprune error or correct handling, never a deep traceback."""

import keras
import numpy as np
import pytest

import kprune
from kprune.errors import KPruneError, UnsupportedLayerError
from kprune.pruning.pruner import check_selection

FILTER = {"prune": {"criterion": "l1", "granularity": "filter",
                    "config_list": [{"op_types": ["Dense"], "sparsity": 0.5}]}}
WEIGHT = {"prune": {"criterion": "l1", "granularity": "weight",
                    "config_list": [{"op_types": ["Dense"], "sparsity": 0.5}]}}


def x(n=3, d=6, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d)).astype("float32")


def test_selected_unsupported_layer_names_entry_and_allowed_types():
    inp = keras.Input((5, 3))
    h = keras.layers.LSTM(4, name="lstm")(inp)
    model = keras.Model(inp, keras.layers.Dense(2, name="out")(h))
    with pytest.raises(UnsupportedLayerError, match=r"prune\.config_list\[0\] matches layer `lstm` of type LSTM.*"
                                                    r"Prunable types: \[.*'Conv2D'.*exclude"):
        kprune.wrap(model, {"prune": {"config_list": [{"op_types": ["LSTM"], "sparsity": 0.5}]}})


def test_unsupported_layer_elsewhere_does_not_block_pruning():
    inp = keras.Input((5, 3))
    h = keras.layers.LSTM(4, name="lstm")(inp)
    h = keras.layers.Dense(8, name="fc")(h)
    model = keras.Model(inp, keras.layers.Dense(2, name="out")(h))
    wrapped = kprune.wrap(model, WEIGHT)
    kprune.Pruner(wrapped).prune_now()
    assert kprune.sparsity(wrapped)["fc"] == pytest.approx(0.5)
    assert type(wrapped.get_layer("lstm")).__name__ == "LSTM"


def test_subclassed_model_is_refused_with_the_way_out():
    class Sub(keras.Model):
        def __init__(self):
            super().__init__()
            self.d = keras.layers.Dense(3)

        def call(self, inputs):
            return self.d(inputs)

    model = Sub()
    model(x())
    with pytest.raises(UnsupportedLayerError, match="subclassed model.*functional API.*kprune.PruneWrapper"):
        kprune.wrap(model, WEIGHT)


def test_subclassed_model_with_wrappers_inside_is_driven_by_the_pruner():
    class Sub(keras.Model):
        def __init__(self):
            super().__init__()
            self.fc = kprune.PruneWrapper(keras.layers.Dense(8, name="fc"), spec={
                "sparsity": 0.75, "criterion": "level", "granularity": "weight", "entry": 0})
            self.out = keras.layers.Dense(2)

        def call(self, inputs):
            return self.out(self.fc(inputs))

    model = Sub()
    model(x())
    kprune.Pruner(model).prune_now()
    kernel = model.fc.layer.kernel.numpy()
    assert np.sum(kernel == 0) == 36  # 75 % of 6 x 8, the smallest magnitudes
    assert np.all(np.abs(kernel[kernel != 0]).min() >= np.abs(kernel[model.fc.masks["kernel"].numpy() == 0]).max())


def shared_model():
    inp = keras.Input((6,))
    d = keras.layers.Dense(6, name="shared")
    return keras.Model(inp, keras.layers.Dense(2, name="out")(d(d(inp))))


def test_shared_layer_used_twice_weight_pruning_is_exact():
    model = shared_model()
    wrapped = kprune.wrap(model, WEIGHT)
    kprune.Pruner(wrapped).prune_now()
    assert kprune.sparsity(wrapped)["shared"] == pytest.approx(0.5)
    # one wrapper, called twice: both calls see the same masked kernel
    k = wrapped.get_layer("shared").layer.kernel.numpy()
    b = wrapped.get_layer("shared").layer.bias.numpy()
    o = wrapped.get_layer("out").layer
    h = (x() @ k + b) @ k + b
    np.testing.assert_allclose(wrapped(x()), h @ o.kernel.numpy() + o.bias.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(wrapped(x()), kprune.strip(wrapped)(x()), atol=1e-6)


def test_shared_layer_filter_pruning_is_skipped_with_a_reason():
    pruner = kprune.Pruner(kprune.wrap(shared_model(), FILTER))
    pruner.prune_now()
    # its output channels feed its own input, which is the model input: not removable
    assert "shared" in pruner.skipped and "model input" in pruner.skipped["shared"]
    assert "model output" in pruner.skipped["out"]


def lambda_model():
    inp = keras.Input((6,))
    h = keras.layers.Dense(8, activation="relu", name="d1")(inp)
    h = keras.layers.Lambda(lambda t: t * 2.0, name="double")(h)
    h = keras.layers.Dense(8, name="d2")(h)
    return keras.Model(inp, keras.layers.Dense(2, name="out")(h))


def test_lambda_layer_in_memory_is_kept_and_weight_pruning_works():
    model = lambda_model()
    wrapped = kprune.wrap(model, WEIGHT)
    assert type(wrapped.get_layer("double")).__name__ == "Lambda"
    np.testing.assert_allclose(wrapped(x()), model(x()), atol=1e-6)
    kprune.Pruner(wrapped).prune_now()
    assert kprune.sparsity(wrapped)["d1"] == pytest.approx(0.5)


def test_lambda_layer_blocks_filter_removal_with_a_reason():
    pruner = kprune.Pruner(kprune.wrap(lambda_model(), FILTER))
    pruner.prune_now()
    assert "d1" in pruner.skipped        # its channels go through Python code kprune cannot read
    assert kprune.sparsity(pruner.model)["d2"] > 0   # d2 -> out is still pruned


def test_lambda_layer_is_kept_as_it_is_by_compact():
    # a Python lambda cannot be re-created from its config (Keras refuses it in safe mode); it has
    # no weights and keeps its channels, so the smaller model calls the same layer
    wrapped = kprune.wrap(lambda_model(), FILTER)
    kprune.Pruner(wrapped).prune_now()
    small = kprune.compact(wrapped)
    assert small.get_layer("double") is wrapped.get_layer("double")
    assert small.get_layer("d2").units == 4 and small.get_layer("d1").units == 8
    np.testing.assert_allclose(small(x()), wrapped(x()), rtol=1e-6, atol=1e-6)


def test_multiple_inputs_and_outputs_prune_and_compact_exactly():
    a, b = keras.Input((6,), name="a"), keras.Input((4,), name="b")
    ha = keras.layers.Dense(8, activation="relu", name="da")(a)
    hb = keras.layers.Dense(8, activation="relu", name="db")(b)
    z = keras.layers.Concatenate(name="cat")([ha, hb])
    model = keras.Model([a, b], [keras.layers.Dense(3, name="o1")(z), keras.layers.Dense(1, name="o2")(ha)])
    wrapped = kprune.wrap(model, {"prune": {"criterion": "l1", "granularity": "filter", "config_list": [
        {"op_names": ["da", "db"], "sparsity": 0.5}]}})
    kprune.Pruner(wrapped).prune_now()
    small = kprune.compact(wrapped)
    xs = [x(), x(d=4, seed=1)]
    for p, q in zip(wrapped(xs), small(xs)):
        np.testing.assert_allclose(p, q, atol=1e-5)
    assert small.get_layer("da").units == 4 and small.get_layer("db").units == 4
    assert small.get_layer("o1").kernel.shape == (8, 3)


def test_not_a_model_and_unbuilt_model_are_clear_errors():
    with pytest.raises(UnsupportedLayerError, match="expects a keras.Model. Received: Dense"):
        kprune.wrap(keras.layers.Dense(3), WEIGHT)
    with pytest.raises(UnsupportedLayerError, match="not built"):
        kprune.wrap(keras.Sequential([keras.layers.Dense(3)]), WEIGHT)


class Apply(keras.layers.Layer):
    """A custom layer taking a Python function in __init__ (Keras cannot serialize it), with no
    get_config of its own; ``with_bias`` gives it a weight."""

    def __init__(self, fn, with_bias=False, **kw):
        super().__init__(**kw)
        self.fn, self.with_bias = fn, with_bias

    def build(self, shape):
        if self.with_bias:
            self.bias = self.add_weight(shape=(shape[-1],), initializer="zeros")

    def call(self, t):
        return self.fn(t) + self.bias if self.with_bias else self.fn(t)


def apply_model(with_bias):
    inp = keras.Input((6,))
    h = Apply(lambda t: t * 2.0, with_bias, name="apply")(keras.layers.Dense(8, name="d1")(inp))
    h = keras.layers.Dense(8, name="d2")(h)
    return keras.Model(inp, keras.layers.Dense(2, name="out")(h))


def test_weightless_custom_layer_without_config_is_reused_by_wrap_and_compact():
    wrapped = kprune.wrap(apply_model(with_bias=False), FILTER)
    pruner = kprune.Pruner(wrapped)
    pruner.prune_now()
    assert "Apply 'apply'" in pruner.skipped["d1"]
    small = kprune.compact(wrapped)
    assert small.get_layer("d2").units == 4
    np.testing.assert_allclose(small(x()), wrapped(x()), rtol=1e-6, atol=1e-6)


def test_custom_layer_with_weights_and_no_config_is_refused_by_wrap_naming_it():
    with pytest.raises(UnsupportedLayerError, match=r"could not re-create layer `apply` \(Apply\).*get_config"):
        kprune.wrap(apply_model(with_bias=True), FILTER)


def test_channels_first_layers_are_left_whole_with_the_reason():
    inp = keras.Input((3, 8, 8))
    h = keras.layers.Conv2D(4, 3, padding="same", data_format="channels_first", name="cf1")(inp)
    h = keras.layers.Conv2D(4, 3, padding="same", data_format="channels_first", name="cf2")(h)
    h = keras.layers.GlobalAveragePooling2D(data_format="channels_first")(h)
    model = keras.Model(inp, keras.layers.Dense(2, name="out")(h))
    recipe = {"prune": {"criterion": "l1", "granularity": "filter",
                        "config_list": [{"op_types": ["Conv2D"], "sparsity": 0.5}]}}
    with pytest.raises(KPruneError, match=r"nothing can be pruned.*`cf1`: uses data_format='channels_first'"):
        check_selection(model, recipe)
    wrapped = kprune.wrap(model, recipe)
    pruner = kprune.Pruner(wrapped)
    pruner.prune_now()
    assert set(pruner.skipped) == {"cf1", "cf2"} and "last axis only" in pruner.skipped["cf2"]
    small = kprune.compact(wrapped)  # resized the layers by their last (spatial) axis before
    assert small.get_layer("cf1").filters == 4
    probe = np.random.default_rng(0).normal(size=(2, 3, 8, 8)).astype("float32")
    np.testing.assert_allclose(small(probe), wrapped(probe), rtol=1e-6, atol=1e-6)
