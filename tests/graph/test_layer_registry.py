"""The layer registry: built-in families, and a custom layer taught through kprune.layers.register."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import layers as L

import kprune
from kprune.errors import UnsupportedLayerError
from kprune.graph import layers


class ChannelScale(keras.layers.Layer):
    """A LayerScale-like custom layer: one learned scale per channel, no compute_output_shape."""

    def __init__(self, channels, **kwargs):
        super().__init__(**kwargs)
        self.channels = channels

    def build(self, input_shape):
        self.scale = self.add_weight(shape=(self.channels,), initializer="ones", name="scale")

    def call(self, x):
        return x * self.scale

    def get_config(self):
        return {**super().get_config(), "channels": self.channels}


class ChannelScaleRule(layers.LayerRule):
    """One scale per channel follows the channels; compact resizes ``channels``; MACs: one per element."""

    def channels(self, ctx):
        ctx.follower(ctx.x.labels, "scale")
        return ctx.passthrough()

    def resize(self, layer, config, sizes):
        return {**config, "channels": sizes.in_n}

    def macs(self, layer, in_shapes, out_shapes):
        return [(layer.scale, None, int(np.prod(out_shapes[0][1:-1])))]


def _model():
    x = keras.Input((8, 8, 3))
    y = L.Conv2D(8, 3, padding="same", name="c1")(x)
    y = ChannelScale(8, name="scale")(y)
    y = L.ReLU()(y)
    y = L.Conv2D(4, 3, name="c2")(y)
    return keras.Model(x, L.GlobalAveragePooling2D()(y))


RECIPE = {"prune": {"criterion": "l1", "granularity": "filter",
                    "schedule": {"name": "agp", "start_step": 0, "end_step": 2, "frequency": 1},
                    "config_list": [{"op_names": ["c1"], "sparsity": 0.5}]}}


@pytest.fixture
def registered():
    layers.register(ChannelScale, ChannelScaleRule)
    yield
    layers.base._BY_CLASS.pop(ChannelScale, None)


def _fit(model):
    wrapped = kprune.wrap(model, RECIPE)
    wrapped.compile("sgd", "mse")
    x = np.random.default_rng(0).normal(size=(8, 8, 8, 3)).astype("float32")
    callback = kprune.PruningCallback()
    wrapped.fit(x, np.zeros((8, 4), "float32"), batch_size=2, epochs=1, verbose=0, callbacks=[callback])
    return wrapped, x, callback.pruner


def test_unknown_custom_layer_blocks_its_group_with_the_reason():
    wrapped, x, pruner = _fit(_model())
    assert "ChannelScale 'scale'" in pruner.skipped["c1"] and "does not know" in pruner.skipped["c1"]
    small = kprune.compact(wrapped)
    assert small.get_layer("c1").filters == 8


def test_custom_layer_taught_through_the_registry_prunes_and_compacts_exactly(registered):
    assert kprune.layers.rule_for(ChannelScale(2)).__class__ is ChannelScaleRule
    model = _model()
    model.get_layer("scale").scale.assign(np.linspace(0.5, 2.0, 8).astype("float32"))
    wrapped, x, pruner = _fit(model)
    assert pruner.skipped == {}
    scale_mask = wrapped.get_layer("scale").masks["scale"].numpy()
    assert scale_mask.sum() == 4  # the scale of each pruned channel is masked with its filter
    small = kprune.compact(wrapped)
    assert small.get_layer("c1").filters == 4 and small.get_layer("scale").channels == 4
    np.testing.assert_allclose(small(x), wrapped(x), rtol=1e-5, atol=1e-6)
    # the rule's MACs: one per element of the scaled tensor
    per_layer = {row.name: row.macs for row in kprune.count(small).per_layer}
    assert per_layer["scale"] == 4 * 8 * 8


def test_register_refuses_what_is_not_a_rule():
    with pytest.raises(UnsupportedLayerError, match="LayerRule"):
        layers.register(ChannelScale, object())


def test_rules_are_found_through_subclasses_and_names():
    class MyConv(L.Conv2D):
        pass

    from kprune.graph.layers.conv import ConvRule
    assert isinstance(layers.rule_for(MyConv(2, 1)), ConvRule)
    assert layers.is_prunable(L.Dense(2)) and not layers.is_prunable(L.BatchNormalization())
    assert {"Conv2D", "Dense", "DepthwiseConv2D", "SeparableConv2D", "EinsumDense"} <= set(layers.prunable_types())
