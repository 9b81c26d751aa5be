"""Channel rules derived by running weightless operations, and grouped convolutions."""

from __future__ import annotations

import keras
import numpy as np
from keras import layers as L
from keras import ops

import kprune
from kprune.graph.layers import channel_sources
from kprune.graph.walk import flatten_graph


def _sources(fn):
    x = keras.Input((4, 4, 6))
    call = flatten_graph(keras.Model(x, fn(x))).calls[-1]
    return channel_sources(call.op, call)


def test_channel_slice_maps_the_kept_channels():
    (src,) = _sources(lambda x: x[..., 2:5])
    np.testing.assert_array_equal(src, [[0, 2], [0, 3], [0, 4]])


def test_reduction_over_space_keeps_channels_and_over_channels_mixes_them():
    (src,) = _sources(lambda x: ops.mean(x, axis=(1, 2), keepdims=True))
    np.testing.assert_array_equal(src[:, 1], np.arange(6))
    assert "mixes channels" in _sources(lambda x: ops.mean(x, axis=-1, keepdims=True))
    # max over channels picks a value that is an input channel, but which one depends on values
    assert "by value" in _sources(lambda x: ops.max(x, axis=-1, keepdims=True))


def test_transpose_that_moves_channels_has_no_mapping():
    assert isinstance(_sources(lambda x: ops.transpose(x, (0, 3, 2, 1))), str)


def test_se_written_with_ops_is_prunable_and_compacts_exactly():
    x = keras.Input((8, 8, 3))
    y = L.Conv2D(8, 3, padding="same", name="c1")(x)
    s = L.Conv2D(8, 1, name="gate")(ops.mean(y, axis=(1, 2), keepdims=True))
    y = L.Conv2D(4, 3, name="c2")(y * ops.sigmoid(s))
    model = keras.Model(x, L.GlobalAveragePooling2D()(y))
    g = next(g for g in kprune.groups(model) if "c1" in g.layer_names("producer"))
    assert g.prunable and set(g.layer_names("producer")) == {"c1", "gate"}


def _grouped(groups=4):
    x = keras.Input((6, 6, 8))
    y = L.Conv2D(16, 1, name="pw")(x)
    y = L.Conv2D(16, 3, padding="same", groups=groups, name="gconv")(y)
    y = L.Conv2D(4, 1, name="out")(y)
    return keras.Model(x, y)


def test_grouped_conv_prunes_the_same_positions_in_every_group():
    model = _grouped()
    recipe = {"prune": {"criterion": "l1", "granularity": "filter",
                        "config_list": [{"op_names": ["pw", "gconv"], "sparsity": 0.5}]}}
    wrapped = kprune.wrap(model, recipe)
    kprune.Pruner(wrapped).prune_now()
    gmask = wrapped.get_layer("gconv").masks["kernel"].numpy()  # (3, 3, 4, 16)
    kept_out = gmask.reshape(-1, 16).any(axis=0).reshape(4, 4)  # [group, position in group]
    assert np.all(kept_out == kept_out[:1]) and kept_out[0].sum() == 2
    small = kprune.compact(wrapped)
    g = small.get_layer("gconv")
    assert g.groups == 4 and g.filters == 8 and tuple(g.kernel.shape) == (3, 3, 2, 8)
    assert small.get_layer("pw").filters == 8
    x = np.random.default_rng(0).normal(size=(2, 6, 6, 8)).astype("float32")
    np.testing.assert_allclose(small(x), wrapped(x), rtol=1e-5, atol=1e-6)


def test_compact_of_an_unpruned_grouped_conv_is_the_identity():
    model = _grouped()
    small = kprune.compact(model)
    x = np.random.default_rng(1).normal(size=(1, 6, 6, 8)).astype("float32")
    np.testing.assert_allclose(small(x), model(x), rtol=1e-6)
    assert small.get_layer("gconv").groups == 4
