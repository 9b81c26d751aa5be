"""Channel groups on hand-built graphs with known answers."""

import keras
import numpy as np
import pytest
from keras import layers as L

from kprune.errors import GraphError
from kprune.graph.analysis import check_independent, groups


def _by_producer(gs, name):
    """The group whose producers include layer ``name``."""
    found = [g for g in gs if name in g.layer_names("producer")]
    assert len(found) == 1, [g.layer_names() for g in found]
    return found[0]


def _member(g, layer, weight, role=None):
    found = [m for m in g.members if m.layer.name == layer and m.weight == weight
             and (role is None or m.role == role)]
    assert len(found) == 1, (layer, weight, [(m.layer.name, m.weight, m.role) for m in g.members])
    return found[0]


def _rows(m):
    return m.index.tolist()


def test_conv_bn_relu_chain():
    x = keras.Input((8, 8, 3))
    y = L.Conv2D(4, 3, name="c1")(x)
    y = L.BatchNormalization(name="bn1")(y)
    y = L.ReLU()(y)
    y = L.Conv2D(6, 3, name="c2")(y)
    y = L.GlobalAveragePooling2D()(y)
    y = L.Dense(2, name="fc")(y)
    gs = groups(keras.Model(x, y))
    g = _by_producer(gs, "c1")
    assert g.prunable and g.reason is None and g.size == 4
    got = sorted((m.layer.name, m.weight, m.axis, m.role) for m in g.members)
    assert got == sorted([
        ("c1", "kernel", 3, "producer"), ("c1", "bias", 0, "producer"),
        ("bn1", "gamma", 0, "follower"), ("bn1", "beta", 0, "follower"),
        ("bn1", "moving_mean", 0, "follower"), ("bn1", "moving_variance", 0, "follower"),
        ("c2", "kernel", 2, "consumer")])
    assert all(_rows(m) == [[0], [1], [2], [3]] for m in g.members)
    g2 = _by_producer(gs, "c2")
    assert g2.size == 6 and g2.prunable
    assert _member(g2, "fc", "kernel").axis == 0
    fc = _by_producer(gs, "fc")
    assert not fc.prunable and fc.reason == "reaches the model output 'fc'"
    inp = [g for g in gs if not g.producers][0]
    assert not inp.prunable and "model input" in inp.reason
    assert inp.layer_names() == ["c1"]


def test_residual_add_couples_two_convs():
    x = keras.Input((8, 8, 4))
    a = L.Conv2D(8, 1, name="a")(x)
    a = L.BatchNormalization(name="bn_a")(a)
    b = L.Conv2D(8, 3, padding="same", name="b")(x)
    b = L.BatchNormalization(name="bn_b")(b)
    s = L.Activation("relu")(L.Add()([a, b]))
    y = L.Conv2D(2, 1, name="out")(s)
    gs = groups(keras.Model(x, y))
    g = _by_producer(gs, "a")
    assert g is _by_producer(gs, "b")
    assert sorted(g.layer_names("producer")) == ["a", "b"]
    assert sorted(g.layer_names("follower")) == ["bn_a", "bn_b"]
    assert g.layer_names("consumer") == ["out"]
    assert g.size == 8 and g.prunable


def test_concatenate_offsets_and_split_producer():
    x = keras.Input((6, 6, 3))
    a = L.Conv2D(2, 1, name="a")(x)
    b = L.Conv2D(3, 1, name="b")(x)
    cat = L.Concatenate()([a, b])
    c = L.Conv2D(5, 1, name="c")(x)
    s = L.Add()([cat, c])
    y = L.Conv2D(1, 1, name="out")(s)
    gs = groups(keras.Model(x, y))
    ga, gb = _by_producer(gs, "a"), _by_producer(gs, "b")
    assert ga is not gb
    # c is split: its first two filters go with a, the last three with b.
    assert _rows(_member(ga, "c", "kernel", "producer")) == [[0], [1]]
    assert _rows(_member(gb, "c", "kernel", "producer")) == [[2], [3], [4]]
    assert _rows(_member(ga, "out", "kernel")) == [[0], [1]]
    assert _rows(_member(gb, "out", "kernel")) == [[2], [3], [4]]
    with pytest.raises(GraphError, match="'c' cannot be filter-pruned on its own"):
        check_independent(gs, ["c"])


def test_flatten_dense_index_expansion():
    x = keras.Input((4, 4, 1))
    y = L.Conv2D(3, 3, name="conv")(x)  # -> 2x2x3
    y = L.Flatten()(y)
    y = L.Dense(2, name="fc")(y)
    g = _by_producer(groups(keras.Model(x, y)), "conv")
    fc = _member(g, "fc", "kernel")
    # Flatten of (2, 2, 3): feature (h*2 + w)*3 + c belongs to channel c.
    assert fc.axis == 0 and _rows(fc) == [[0, 3, 6, 9], [1, 4, 7, 10], [2, 5, 8, 11]]


def test_depthwise_multiplier_two():
    x = keras.Input((6, 6, 2))
    y = L.Conv2D(3, 1, name="pw")(x)
    y = L.DepthwiseConv2D(3, depth_multiplier=2, name="dw")(y)
    y = L.Conv2D(1, 1, name="out")(y)
    g = _by_producer(groups(keras.Model(x, y)), "pw")
    assert g.size == 3
    assert _rows(_member(g, "dw", "kernel")) == [[0], [1], [2]]
    assert _member(g, "dw", "kernel").role == "follower" and _member(g, "dw", "kernel").axis == 2
    assert _rows(_member(g, "dw", "bias")) == [[0, 1], [2, 3], [4, 5]]
    assert _rows(_member(g, "out", "kernel")) == [[0, 1], [2, 3], [4, 5]]


def test_squeeze_excitation_block():
    x = keras.Input((8, 8, 3))
    f = L.Conv2D(8, 3, padding="same", name="feat")(x)
    s = L.GlobalAveragePooling2D()(f)
    s = L.Dense(2, activation="relu", name="se_reduce")(s)
    s = L.Dense(8, activation="sigmoid", name="se_expand")(s)
    s = L.Reshape((1, 1, 8))(s)
    y = L.Multiply()([f, s])
    y = L.Conv2D(4, 1, name="out")(y)
    gs = groups(keras.Model(x, y))
    inner = _by_producer(gs, "se_reduce")
    assert inner.prunable and inner.size == 2
    assert inner.layer_names("consumer") == ["se_expand"]
    main = _by_producer(gs, "feat")
    assert main is _by_producer(gs, "se_expand")
    assert main.size == 8 and main.prunable
    assert set(main.layer_names("consumer")) == {"se_reduce", "out"}
    # the pruned channel is 0 * sigmoid(0) = 0 at `out`: no consumer needs zeroing
    assert not any(m.requires_zero for m in main.consumers)


def test_sigmoid_makes_consumer_require_zero():
    x = keras.Input((5,))
    h = L.Dense(4, activation="sigmoid", name="h")(x)
    y = L.Dense(1, name="out")(h)
    g = _by_producer(groups(keras.Model(x, y)), "h")
    assert _member(g, "out", "kernel").requires_zero


def test_unprunable_reasons():
    x = keras.Input((8, 8, 3))
    a = L.Conv2D(4, 1, name="a")(x)
    b = L.Lambda(lambda t: t * 2.0, name="lam")(a)
    c = L.Conv2D(4, 1, name="c")(b)
    n = L.LayerNormalization(name="ln")(c)
    d = L.Conv2D(4, 1, name="d")(n)
    soft = L.Softmax(name="sm")(d)
    e = L.Conv2D(4, 1, name="e")(soft)
    f = L.Conv2D(4, 1, name="f")(e)
    gs = groups(keras.Model(x, [f, e]))
    assert "Lambda 'lam'" in _by_producer(gs, "a").reason
    assert "LayerNormalization 'ln'" in _by_producer(gs, "c").reason
    assert "softmax over channels" in _by_producer(gs, "d").reason
    assert _by_producer(gs, "e").reason == "reaches the model output 'e'"
    after_lambda = [g for g in gs if g.layer_names() == ["c"] and g.consumers][0]
    assert not after_lambda.prunable


def test_group_normalization_prunes_whole_groups():
    x = keras.Input((6, 6, 3))
    y = L.Conv2D(6, 1, name="conv")(x)
    y = L.GroupNormalization(groups=3, name="gn")(y)
    y = L.Conv2D(2, 1, name="out")(y)
    g = _by_producer(groups(keras.Model(x, y)), "conv")
    assert g.size == 3
    assert _rows(_member(g, "conv", "kernel")) == [[0, 1], [2, 3], [4, 5]]
    assert _rows(_member(g, "gn", "gamma")) == [[0, 1], [2, 3], [4, 5]]


def test_separable_conv_members():
    x = keras.Input((8, 8, 3))
    a = L.Conv2D(4, 1, name="a")(x)
    s = L.SeparableConv2D(5, 3, depth_multiplier=2, name="sep")(a)
    y = L.Conv2D(1, 1, name="out")(s)
    gs = groups(keras.Model(x, y))
    g = _by_producer(gs, "a")
    assert _rows(_member(g, "sep", "depthwise_kernel"))[:2] == [[0], [1]]
    assert _rows(_member(g, "sep", "pointwise_kernel", "consumer"))[:2] == [[0, 1], [2, 3]]
    gsep = _by_producer(gs, "sep")
    assert _member(gsep, "sep", "pointwise_kernel", "producer").axis == 3
    assert gsep.size == 5


def test_nested_sequential_is_flattened_and_shared_layers_unite():
    inner = keras.Sequential([keras.Input((8, 8, 3)), L.Conv2D(4, 3, name="inner_conv"),
                              L.BatchNormalization(name="inner_bn")], name="inner")
    shared = L.Conv2D(2, 1, name="shared")
    x = keras.Input((8, 8, 3))
    h = inner(x)
    y = L.Add()([shared(h), shared(L.ReLU()(h))])
    y = L.Conv2D(1, 1, name="out")(y)
    gs = groups(keras.Model(x, y))
    g = _by_producer(gs, "inner_conv")
    assert g.layer_names() == ["inner_conv", "inner_bn", "shared"]
    gsh = _by_producer(gs, "shared")
    assert gsh.size == 2 and len(gsh.producers) == 2  # kernel + bias, once


def test_reshape_mapping_and_mixing():
    x = keras.Input((4, 4, 2))
    a = L.Conv2D(3, 1, name="a")(x)
    r = L.Reshape((16, 3))(a)  # channel axis kept: passes through
    d = L.Dense(2, name="d")(r)
    m = L.Reshape((32, 1))(d)  # mixes channels with space
    y = L.Conv1D(1, 1, name="out")(m)
    gs = groups(keras.Model(x, y))
    assert _by_producer(gs, "a").prunable
    assert "mixes channels" in _by_producer(gs, "d").reason


def test_wrapped_layers_appear_as_wrappers():
    import kprune

    x = keras.Input((8, 8, 3))
    y = L.Conv2D(4, 3, name="c1")(x)
    y = L.BatchNormalization(name="bn")(y)
    y = L.Conv2D(2, 3, name="c2")(y)
    model = keras.Model(x, y)
    wrapped = kprune.wrap(model, {"prune": {"criterion": "l1", "granularity": "filter",
                                            "config_list": [{"op_names": ["c1"], "sparsity": 0.5}]}})
    g = _by_producer(groups(wrapped), "c1")
    assert isinstance(_member(g, "c1", "kernel").layer, kprune.PruneWrapper)
    assert _member(g, "c1", "kernel").variable() is wrapped.get_layer("c1").layer.kernel


def test_softmax_producer_and_per_channel_constant_are_unprunable():
    x = keras.Input((6,))
    a = L.Dense(4, activation="softmax", name="att")(x)
    b = L.Dense(3, name="b")(a)
    c = keras.ops.add(b, np.array([1.0, 2.0, 3.0], "float32"))
    d = L.Dense(3, name="d")(L.ReLU()(c))
    e = L.Dense(2, name="e")(keras.ops.multiply(d, 0.5))
    gs = groups(keras.Model(x, L.Dense(1, name="out")(e)))
    assert "softmax over the output channels of Dense 'att'" in _by_producer(gs, "att").reason
    assert "constant per-channel operand" in _by_producer(gs, "b").reason
    assert _by_producer(gs, "d").prunable  # a scalar constant is fine


def test_format_groups_lists_every_group():
    from kprune.graph.analysis import format_groups

    x = keras.Input((8, 8, 3))
    y = L.Conv2D(4, 3, name="c1")(x)
    y = L.BatchNormalization(name="bn")(y)
    y = L.Conv2D(2, 3, name="c2")(y)
    text = format_groups(groups(keras.Model(x, y)))
    lines = text.splitlines()
    assert len(lines) == 4
    assert "c1 -> bn -> c2" in text and "no (reaches the model output 'c2')" in text


def test_per_channel_rescaling_is_unprunable():
    x = keras.Input((4, 4, 2))
    a = L.Conv2D(3, 1, name="a")(x)
    r = L.Rescaling(scale=[1.0, 2.0, 3.0], name="rs")(a)
    b = L.Conv2D(2, 1, name="b")(r)
    s = L.Rescaling(scale=0.5, offset=0.1)(b)
    gs = groups(keras.Model(x, L.Conv2D(1, 1, name="out")(s)))
    assert "per-channel scale or offset of Rescaling 'rs'" in _by_producer(gs, "a").reason
    gb = _by_producer(gs, "b")
    assert gb.prunable and _member(gb, "out", "kernel").requires_zero  # 0 * 0.5 + 0.1 != 0


def test_unclear_einsum_is_unprunable_and_grouped_conv_couples_groups():
    x = keras.Input((4, 6))
    a = L.Dense(6, name="a")(x)
    e = L.EinsumDense("abc,bd->adc", output_shape=(3, 6), name="mix")(a)  # contracts time
    y = L.Dense(2, name="out")(e)
    gs = groups(keras.Model(x, y))
    assert "EinsumDense 'mix' has no clear channel axis" in _by_producer(gs, "a").reason
    x = keras.Input((6, 6, 4))
    a = L.Conv2D(4, 1, name="a")(x)
    g = L.Conv2D(4, 3, groups=2, name="grouped")(a)
    gs = groups(keras.Model(x, L.Conv2D(1, 1, name="out")(g)))
    a_group = _by_producer(gs, "a")
    # channels c and c + 2 of `a` read the same kernel slice of the 2-group conv
    assert a_group.prunable and a_group.size == 2
    assert [m.index.tolist() for m in a_group.members if m.layer.name == "a" and m.weight == "kernel"] == [[[0, 2], [1, 3]]]
