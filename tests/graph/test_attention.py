"""Attention heads (granularity: head) of MultiHeadAttention and GroupQueryAttention, on the
user's path: wrap → fit with the callback → compact (≡ masked) → TFLite (≡ Keras)."""

from __future__ import annotations

import os

import keras
import numpy as np
import pytest
from keras import layers as L

import kprune

RNG = np.random.default_rng(0)


def _block(kind="mha", cross=False, mask=False, use_gate=False):
    x = keras.Input((6, 16), name="tokens")
    inputs = [x]
    ctx = x
    if cross:
        ctx = keras.Input((5, 16 if kind == "gqa" else 12), name="context")
        inputs.append(ctx)
    kwargs = {}
    if mask:
        m = keras.Input((6, 5 if cross else 6), name="mask", dtype="bool")
        inputs.append(m)
        kwargs["attention_mask"] = m
    if kind == "mha":
        att = L.MultiHeadAttention(num_heads=4, key_dim=4, name="att", **({"use_gate": True} if use_gate else {}))
    else:
        att = L.GroupQueryAttention(head_dim=4, num_query_heads=4, num_key_value_heads=2, name="att")
    y = L.LayerNormalization(name="ln1")(x + att(x, ctx, **kwargs))
    h = L.Dense(32, activation="gelu", name="mlp_up")(y)
    y = L.LayerNormalization(name="ln2")(y + L.Dense(16, name="mlp_down")(h))
    out = L.Dense(3, name="logits")(L.GlobalAveragePooling1D()(y))
    return keras.Model(inputs, out)


def _data(model, n=8):
    xs = []
    for t in model.inputs:
        shape = (n,) + tuple(t.shape[1:])
        xs.append(RNG.random(shape) > 0.3 if t.dtype == "bool" else RNG.normal(size=shape).astype("float32"))
    return xs, RNG.integers(0, 3, n)


def _recipe(criterion="l1", schedule=None, scope="layerwise", sparsity=0.5):
    return {"prune": {"criterion": criterion, "scope": scope,
                      "schedule": schedule or {"name": "agp", "start_step": 0, "end_step": 3, "frequency": 1},
                      "config_list": [{"op_names": ["att"], "granularity": "head",
                                       ("total_sparsity" if scope == "global" else "sparsity"): sparsity},
                                      {"op_names": ["mlp_up"], "granularity": "filter", "sparsity": 0.5}]}}


def _fit(model, recipe, jit=False, data=None):
    wrapped = kprune.wrap(model, recipe)
    wrapped.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=jit)
    xs, y = _data(model)
    callback = kprune.PruningCallback(data=data)
    wrapped.fit(xs, y, batch_size=2, epochs=1, verbose=0, callbacks=[callback])
    return wrapped, xs, callback.pruner


@pytest.mark.parametrize("kind,cross,mask", [("mha", False, False), ("mha", True, True), ("gqa", True, False)])
def test_heads_pruned_in_fit_compact_exactly_and_convert(kind, cross, mask, tmp_path):
    model = _block(kind, cross, mask)
    wrapped, xs, pruner = _fit(model, _recipe(), jit=True)
    assert pruner.skipped == {}
    small = kprune.compact(wrapped)
    cfg = small.get_layer("att").get_config()
    if kind == "mha":
        assert cfg["num_heads"] == 2
    else:
        assert (cfg["num_query_heads"], cfg["num_key_value_heads"]) == (2, 1)
    assert small.get_layer("mlp_up").units == 16
    ref = keras.ops.convert_to_numpy(wrapped(xs, training=False))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(small(xs, training=False)), ref, rtol=1e-5, atol=1e-5)
    before, after = kprune.count(model), kprune.count(small)
    assert after.macs < 0.7 * before.macs and after.params < before.params
    res = kprune.export.to_tflite(small, os.path.join(tmp_path, "m.tflite"))
    from ai_edge_litert.interpreter import Interpreter
    runner = Interpreter(model_path=res.path).get_signature_runner()
    feeds = {t.name: x[:1] for t, x in zip(small.inputs, xs)}
    (got,) = runner(**feeds).values()
    np.testing.assert_allclose(got, ref[:1], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("criterion", ["l2", "taylor_fo", "random"])
def test_head_criteria_and_global_scope(criterion):
    model = _block("mha")
    xs, y = _data(model, 16)
    data = [(xs, y)]
    wrapped, xs, pruner = _fit(model, _recipe(criterion, scope="global", sparsity=0.5,
                                              schedule={"name": "oneshot"}), data=data)
    mask = wrapped.get_layer("att").masks["_query_dense.kernel"].numpy()  # (16, heads, key_dim)
    heads_alive = mask.reshape(16, 4, 4).any(axis=(0, 2))
    assert heads_alive.sum() < 4


def test_pruned_head_contributes_exactly_zero():
    model = _block("mha")
    wrapped = kprune.wrap(model, _recipe(schedule={"name": "oneshot"}))
    kprune.Pruner(wrapped).prune_now()
    att = wrapped.get_layer("att")
    q = att.masks["_query_dense.kernel"].numpy()
    dead = ~q.reshape(16, 4, 4).any(axis=(0, 2))
    assert dead.sum() == 2
    assert np.all(att.masks["_value_dense.kernel"].numpy()[:, dead] == 0)
    assert np.all(att.masks["_output_dense.kernel"].numpy()[dead] == 0)


def test_wrapped_attention_saves_and_loads_with_its_masks(tmp_path):
    model = _block("gqa")
    wrapped = kprune.wrap(model, _recipe(schedule={"name": "oneshot"}))
    kprune.Pruner(wrapped).prune_now()
    path = os.path.join(tmp_path, "w.keras")
    wrapped.save(path)
    loaded = keras.saving.load_model(path)
    xs, _ = _data(model, 2)
    np.testing.assert_allclose(loaded(xs), wrapped(xs), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(loaded.get_layer("att").masks["_key_dense.kernel"].numpy(),
                                  wrapped.get_layer("att").masks["_key_dense.kernel"].numpy())


def test_head_granularity_on_a_layer_without_heads_is_reported():
    recipe = {"prune": {"criterion": "l1", "granularity": "head",
                        "config_list": [{"op_names": ["mlp_up", "att"], "sparsity": 0.5}]}}
    pruner = kprune.Pruner(kprune.wrap(_block("mha"), recipe))
    pruner.prune_now()
    assert "has no attention heads" in pruner.skipped["mlp_up"] and "att" not in pruner.skipped


def test_gated_attention_is_refused_with_the_reason():
    recipe = {"prune": {"criterion": "l1", "granularity": "head",
                        "config_list": [{"op_names": ["att"], "sparsity": 0.5}]}}
    pruner = kprune.Pruner(kprune.wrap(_block("mha", use_gate=True), recipe))
    pruner.prune_now()
    assert "use_gate" in pruner.skipped["att"]


def test_inspect_lists_head_groups_and_mlp_groups_with_their_sizes(tmp_path):
    from click.testing import CliRunner

    from kprune.cli.main import cli
    path = os.path.join(tmp_path, "block.keras")
    _block("gqa").save(path)
    out = CliRunner().invoke(cli, ["inspect", path])
    assert out.exit_code == 0, out.output
    assert "    2 heads producers=['att']" in out.output  # two key/value groups
    assert "   32 ch    producers=['mlp_up']" in out.output


@pytest.mark.parametrize("einsum", [False, True])
def test_gated_mlp_units_are_one_group_and_compact_exactly(einsum):
    x = keras.Input((6, 16))
    if einsum:
        gate = L.EinsumDense("abc,cd->abd", output_shape=(None, 24), activation="silu", name="gate")(x)
        up = L.EinsumDense("abc,cd->abd", output_shape=(None, 24), name="up")(x)
        down = L.EinsumDense("abc,cd->abd", output_shape=(None, 16), name="down")
    else:
        gate = L.Dense(24, activation="silu", name="gate")(x)
        up = L.Dense(24, name="up")(x)
        down = L.Dense(16, name="down")
    y = L.LayerNormalization(name="ln")(x + down(gate * up))
    model = keras.Model(x, L.Dense(3, name="logits")(L.GlobalAveragePooling1D()(y)))
    g = next(g for g in kprune.groups(model) if "up" in g.layer_names("producer"))
    assert g.prunable and set(g.layer_names("producer")) == {"gate", "up"} and g.size == 24
    recipe = {"prune": {"criterion": "l1", "granularity": "filter",
                        "config_list": [{"op_names": ["up"], "sparsity": 0.5}]}}
    wrapped, xs, pruner = _fit(model, {"prune": {**recipe["prune"], "schedule": {"name": "oneshot"}}})
    small = kprune.compact(wrapped)
    # 24 units at 0.5 keep 12, which round_to: auto (the default) takes to the nearest multiple of 8, 16
    assert int(small.get_layer("up").kernel.shape[-1]) == 16 and int(small.get_layer("gate").kernel.shape[-1]) == 16
    np.testing.assert_allclose(small(xs, training=False), wrapped(xs, training=False), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("scope", ["layerwise", "global"])
@pytest.mark.parametrize("round_to,heads_kept", [(1, 1), (4, 1), (8, 2), (16, 4)])
def test_round_to_keeps_head_channel_counts_multiples(scope, round_to, heads_kept):
    """round_to applies to channels: heads of size 4 are kept in multiples of round_to / gcd(round_to, 4)."""
    model = _block("mha")
    assert [g.width for g in kprune.groups(model) if g.unit == "head"] == [4]
    recipe = _recipe(schedule={"name": "oneshot"}, scope=scope, sparsity=0.75)
    recipe["prune"]["round_to"] = round_to
    if scope == "global":  # one global entry: the heads alone
        recipe["prune"]["config_list"] = recipe["prune"]["config_list"][:1]
    wrapped = kprune.wrap(model, recipe)
    kprune.Pruner(wrapped).prune_now()
    small = kprune.compact(wrapped)
    cfg = small.get_layer("att").get_config()
    assert cfg["num_heads"] == heads_kept  # channel round_to on the head count would keep all 4 at 8 and 16
