"""The zoo's ViT: its groups (heads, MLP units prunable; residual stream not), and the user's path
wrap → fit with the callback → compact (≡ masked) → TFLite (≡ Keras)."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import pytest

import kprune
from kprune.errors import KPruneError

RNG = np.random.default_rng(0)


def test_architecture_and_defaults():
    model = kprune.models.get("vit", input_shape=(28, 28, 1), num_classes=10)
    assert model.output_shape == (None, 10)
    assert model.get_layer("patch_embed").strides == (4, 4)
    assert model.get_layer("tokens").output.shape[1:] == (49, 64)
    attn = [layer for layer in model.layers if isinstance(layer, keras.layers.MultiHeadAttention)]
    assert [(a.num_heads, a.key_dim) for a in attn] == [(4, 16)] * 4
    assert [model.get_layer(f"block{i}_mlp_up").units for i in range(1, 5)] == [128] * 4
    half = kprune.models.get("vit", input_shape=(28, 28, 1), width=0.5, depth=2)
    assert half.get_layer("block2_attn").num_heads == 2 and half.get_layer("block2_attn").key_dim == 16
    assert half.get_layer("block2_mlp_up").units == 64
    out = kprune.models.get("vit", input_shape=(32, 32, 3), num_classes=7, depth=1)(RNG.random((2, 32, 32, 3)))
    assert tuple(out.shape) == (2, 7)
    with pytest.raises(KPruneError, match="patch_size"):
        kprune.models.get("vit", input_shape=(30, 30, 1))


def test_heads_and_mlp_units_are_prunable_groups_the_residual_stream_is_not():
    model = kprune.models.get("vit", input_shape=(28, 28, 1), depth=2)
    groups = kprune.groups(model)
    heads = [g for g in groups if g.unit == "head"]
    assert [(g.layer_names("producer"), g.size, g.prunable) for g in heads] == [
        (["block1_attn"], 4, True), (["block2_attn"], 4, True)]
    mlp = [g for g in groups if any(n.endswith("mlp_up") for n in g.layer_names("producer"))]
    assert [(g.size, g.prunable) for g in mlp] == [(128, True), (128, True)]
    (residual,) = [g for g in groups if "patch_embed" in g.layer_names("producer")]
    assert residual.size == 64 and not residual.prunable and "LayerNormalization" in residual.reason


def test_user_path_prunes_heads_and_mlp_units_compacts_exactly_and_converts(tmp_path):
    keras.utils.set_random_seed(0)
    model = kprune.models.get("vit", input_shape=(28, 28, 1), num_classes=10, depth=2)
    recipe = {"prune": {"criterion": "taylor_fo", "schedule": {"name": "oneshot"}, "config_list": [
        {"op_types": ["MultiHeadAttention"], "granularity": "head", "sparsity": 0.5},
        {"op_names_re": [r"block\d+_mlp_up"], "granularity": "filter", "sparsity": 0.5}]}}
    x = RNG.random((32, 28, 28, 1)).astype("float32")
    y = RNG.integers(0, 10, 32)
    wrapped = kprune.wrap(model, recipe)
    wrapped.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    callback = kprune.PruningCallback(data=[(x[:16], y[:16])])
    wrapped.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[callback])
    assert callback.pruner.skipped == {}
    small = kprune.compact(wrapped)
    assert [small.get_layer(f"block{i}_attn").num_heads for i in (1, 2)] == [2, 2]
    assert [small.get_layer(f"block{i}_mlp_up").units for i in (1, 2)] == [64, 64]
    masked = np.asarray(wrapped(x, training=False))
    np.testing.assert_allclose(np.asarray(small(x, training=False)), masked, rtol=1e-5, atol=1e-5)
    half = kprune.models.get("vit", input_shape=(28, 28, 1), num_classes=10, depth=2, width=0.5)
    assert kprune.count(small).macs == kprune.count(half).macs < 0.55 * kprune.count(model).macs
    assert small.count_params() == half.count_params()
    path = kprune.export.to_tflite(small, os.path.join(tmp_path, "vit.tflite")).path
    got = kprune.export.predict_tflite(path, x, threads=1)
    np.testing.assert_allclose(got, masked, rtol=1e-4, atol=1e-4)
