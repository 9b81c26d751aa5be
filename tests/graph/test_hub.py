"""keras-hub backbones on the user's path: heads and MLP units of ViTBackbone and GemmaBackbone
(built offline from small explicit configurations), wrap → fit with the callback → compact →
TFLite, masked ≡ compacted ≡ TFLite; LlamaBackbone's heads refused with the reason."""

import numpy as np
import pytest

keras_hub = pytest.importorskip("keras_hub")
import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

import kprune  # noqa: E402
from kprune.errors import UnsupportedLayerError  # noqa: E402
from kprune.graph.layers.hub import PrunedViTEncoder  # noqa: E402

T = 6


def _vit():
    keras.utils.set_random_seed(0)
    bb = keras_hub.models.ViTBackbone(image_shape=(16, 16, 1), patch_size=4, num_layers=2, num_heads=4,
                                      hidden_dim=32, mlp_dim=64, use_class_token=False)
    x = keras.Input((16, 16, 1))
    h = keras.layers.GlobalAveragePooling1D()(bb(x))
    return keras.Model(x, keras.layers.Dense(10, name="head")(h))


def _decoder(kind="gemma", **kw):
    keras.utils.set_random_seed(0)
    if kind == "gemma":
        bb = keras_hub.models.GemmaBackbone(vocabulary_size=50, num_layers=2, num_query_heads=4,
                                            num_key_value_heads=2, hidden_dim=16, intermediate_dim=32, head_dim=8,
                                            **kw)
    else:
        bb = keras_hub.models.LlamaBackbone(vocabulary_size=50, num_layers=2, num_query_heads=4,
                                            num_key_value_heads=2, hidden_dim=16, intermediate_dim=32)
    tok = keras.Input((T,), dtype="int32", name="token_ids")
    pm = keras.Input((T,), dtype="int32", name="padding_mask")
    out = keras.layers.Dense(5, name="head")(bb({"token_ids": tok, "padding_mask": pm}))
    return keras.Model({"token_ids": tok, "padding_mask": pm}, out)


def _recipe(op_type, criterion="l1", heads=0.5, units=0.5):
    return {"prune": {"criterion": criterion,
                      "schedule": {"name": "agp", "start_step": 0, "end_step": 2, "frequency": 1},
                      "config_list": [{"op_types": [op_type], "granularity": "head", "sparsity": heads},
                                      {"op_types": [op_type], "granularity": "filter", "sparsity": units}]}}


def _tflite(model, x, path):
    from ai_edge_litert.interpreter import Interpreter

    kprune.export.to_tflite(model, path)
    runner = Interpreter(model_path=path).get_signature_runner()
    feeds = x if isinstance(x, dict) else {next(iter(runner.get_input_details())): x}
    return next(iter(runner(**feeds).values()))


def _user_path(model, recipe, x, y, tmp_path, reload=True):
    wrapped = kprune.wrap(model, recipe)
    wrapped.compile("adam", "mse")
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)
    callback = kprune.PruningCallback(data=data)
    wrapped.fit(data, epochs=1, verbose=0, callbacks=[callback])
    small = kprune.compact(wrapped)
    masked, compacted = wrapped.predict(x, verbose=0), small.predict(x, verbose=0)
    np.testing.assert_allclose(compacted, masked, atol=1e-5)
    one = keras.tree.map_structure(lambda a: a[:1], x)
    np.testing.assert_allclose(_tflite(small, one, str(tmp_path / "m.tflite")), compacted[:1], atol=1e-4)
    if not reload:
        return wrapped, small, callback
    path = str(tmp_path / "small.keras")
    small.save(path)
    np.testing.assert_allclose(keras.models.load_model(path).predict(x, verbose=0), compacted, atol=1e-6)
    return wrapped, small, callback


def test_vit_backbone_heads_and_mlp_units(tmp_path):
    model = _vit()
    groups = kprune.groups(model)
    assert [(g.unit, g.size) for g in groups if g.prunable] == [("head", 4), ("channel", 64)] * 2
    assert not any(g.prunable for g in groups if g.unit == "channel" and g.size == 32)  # the residual stream
    rng = np.random.default_rng(0)
    x, y = rng.random((16, 16, 16, 1), dtype=np.float32), rng.random((16, 10), dtype=np.float32)
    # keras-hub 0.32's ViTPatchingAndEmbedding writes config keys its __init__ refuses, so Keras
    # cannot load any model holding it layer by layer (compacted or not): no reload here
    _, small, _ = _user_path(model, _recipe("ViTEncoder"), x, y, tmp_path, reload=False)
    config = next(layer for layer in small.layers if isinstance(layer, PrunedViTEncoder)).get_config()
    again = PrunedViTEncoder.from_config(config)
    again.build((None, 16, 32))
    assert len(again.weights) == len(small.get_layer(config["name"]).weights)
    enc = next(layer for layer in small.layers if isinstance(layer, PrunedViTEncoder))
    assert enc.block_heads == [2, 2] and enc.block_mlp_dims == [32, 32] and enc.key_dim == 8
    dense, after = kprune.count(model), kprune.count(small)
    # the two blocks' projections and MLPs halve; patch embedding and head stay
    assert after.macs < 0.75 * dense.macs and after.params < dense.params


@pytest.mark.parametrize("criterion", ["l1", "taylor_fo"])
def test_gemma_backbone_gqa_heads_and_gated_mlp(criterion, tmp_path):
    model = _decoder()
    heads = [g for g in kprune.groups(model) if g.unit == "head"]
    assert [g.size for g in heads] == [2, 2] and all(g.prunable for g in heads)  # one unit per key/value head
    rng = np.random.default_rng(1)
    x = {"token_ids": rng.integers(0, 50, (16, T)).astype("int32"), "padding_mask": np.ones((16, T), "int32")}
    x["padding_mask"][:4, 4:] = 0
    y = rng.random((16, T, 5), dtype=np.float32)
    wrapped, small, callback = _user_path(model, _recipe("GemmaDecoderBlock", criterion), x, y, tmp_path)
    assert callback.pruner.skipped == {}
    blocks = [layer for layer in small.layers if type(layer).__name__ == "GemmaDecoderBlock"]
    assert [(b.num_query_heads, b.num_key_value_heads, b.intermediate_dim) for b in blocks] == [(2, 1, 16)] * 2
    assert kprune.count(small).params < kprune.count(model).params


def test_gemma_heads_refused_when_their_scale_depends_on_the_head_count():
    model = _decoder(query_head_dim_normalize=False)
    heads = [g for g in kprune.groups(model) if g.unit == "head"]
    assert heads and not any(g.prunable for g in heads)
    assert "query_head_dim_normalize=False" in heads[0].reason
    mlp = [g for g in kprune.groups(model) if g.unit == "channel" and g.prunable]
    assert [g.size for g in mlp] == [16, 16]


def test_llama_heads_are_reported_and_a_broken_config_is_named():
    model = _decoder("llama")
    groups = kprune.groups(model)
    heads = [g for g in groups if g.unit == "head"]
    assert heads and all("hidden_dim // num_query_heads" in g.reason for g in heads)
    assert [g.size for g in groups if g.prunable] == [32, 32]  # the gated MLPs' units
    recipe = {"prune": {"criterion": "l1", "config_list": [
        {"op_types": ["LlamaTransformerDecoder"], "granularity": "filter", "sparsity": 0.5}]}}
    try:
        wrapped = kprune.wrap(model, recipe)
    except UnsupportedLayerError as e:  # keras-hub 0.32: get_config raises
        assert "transformer_layer_0" in str(e) and "LlamaTransformerDecoder" in str(e)
        return
    kprune.Pruner(wrapped).prune_now()
    small = kprune.compact(wrapped)
    x = {"token_ids": np.ones((2, T), "int32"), "padding_mask": np.ones((2, T), "int32")}
    np.testing.assert_allclose(small.predict(x, verbose=0), wrapped.predict(x, verbose=0), atol=1e-5)


def test_inspect_lists_head_and_mlp_groups(tmp_path):
    text = kprune.graph.format_groups(kprune.groups(_vit()))
    assert "4 heads" in text and "vit_encoder/encoder_layers.1" in text
