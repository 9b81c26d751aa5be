"""keras-hub transformer layers: ``ViTEncoder`` (``ViTBackbone``), ``GemmaDecoderBlock``
(``GemmaBackbone``) and ``LlamaTransformerDecoder`` (``LlamaBackbone``).

keras-hub builds its blocks as subclassed layers, so the graph walk sees one node per block (or
one for the whole ViT encoder); these rules tell kprune what is inside. Each block's attention
heads are prunable units (``granularity: head``; with grouped-query attention a unit is one
key/value head and the query heads that share it) and each hidden unit of its MLP is one
channel group (``granularity: filter``); the residual stream that enters and leaves the block
is normalized over channels (LayerNorm, RMSNorm) and stays unpruned, with that reason. Rules
are registered by class name, so kprune never imports keras-hub itself (``pip install
kprune[hub]`` installs it).

``compact`` gives every block its own head and unit counts: ``GemmaDecoderBlock`` takes them in
its config (``num_query_heads``, ``num_key_value_heads``, ``intermediate_dim``; ``head_dim``
unchanged). ``ViTEncoder`` has one ``num_heads``/``mlp_dim`` for all its blocks and derives
``key_dim`` from ``hidden_dim // num_heads``, so its compacted form is
:class:`PrunedViTEncoder`, the same computation with per-block counts, serializable as
``kprune>PrunedViTEncoder``. ``LlamaAttention`` derives its head size from
``hidden_dim // num_query_heads`` as well and has no such replacement: its heads are reported
unprunable with that reason; its MLP units prune.
"""

from __future__ import annotations

import math

import keras

from kprune.graph.layers.attention import (AttentionRule, attention_weights, head_slices, record_heads,
                                           record_units)
from kprune.graph.layers.base import LayerRule, activation_is_zero_at_zero, elements, prod, register, rule_for
from kprune.graph.walk import weight_at

_STREAM = ("enters the residual stream of {what}, normalized over channels by its {norm} "
           "(pruning it would not be exact)")


def _ops_of(layers_and_shapes) -> int:
    """Other operations of sublayers, each through its own rule."""
    return sum(rule_for(l).ops(l, [s], [o]) for l, s, o in layers_and_shapes)


class ViTEncoderRule(LayerRule):
    """keras-hub ``ViTEncoder``: ``num_layers`` pre-norm blocks (``keras.layers``
    MultiHeadAttention and a ``Dense → gelu → Dense`` MLP), then a LayerNormalization."""

    prunable = True
    kernels = ()  # heads and MLP units are pruned whole, never weight by weight

    @staticmethod
    def blocks(layer) -> list:
        return list(layer.encoder_layers)

    def channels(self, ctx):
        layer = ctx.layer
        ctx.block_inputs(_STREAM.format(what=ctx.what, norm="LayerNormalization"))
        for i, block in enumerate(self.blocks(layer)):
            mha, mlp = block.mha, block.mlp
            units, per, _, _, key_dim, value_dim = AttentionRule.heads(mha)
            record_heads(ctx.state, ctx.op, units, per, *head_slices(mha, f"encoder_layers.{i}.mha."),
                         width=math.gcd(key_dim, value_dim))
            up = f"encoder_layers.{i}.mlp.dense_1"
            producers = [(f"{up}.kernel", 1)] + ([(f"{up}.bias", 0)] if mlp.dense_1.bias is not None else [])
            reason = None if activation_is_zero_at_zero(mlp.dense_1.activation) else (
                f"the MLP activation of block {i} of {ctx.what} does not map 0 to 0")
            record_units(ctx.state, ctx.op, mlp.dense_1.units, producers,
                         [(f"encoder_layers.{i}.mlp.dense_2.kernel", 0)], reason)
        return ctx.opaque(f"produced by {ctx.what} (after its final LayerNormalization)")

    def masked_weights(self, layer) -> dict:
        out = {}
        for i, block in enumerate(self.blocks(layer)):
            out.update(attention_weights(block.mha, f"encoder_layers.{i}.mha."))
            for name in ("dense_1", "dense_2"):
                dense = getattr(block.mlp, name)
                out[f"encoder_layers.{i}.mlp.{name}.kernel"] = dense.kernel
                if name == "dense_1" and dense.bias is not None:
                    out[f"encoder_layers.{i}.mlp.{name}.bias"] = dense.bias
        return out

    def resize(self, layer, config, sizes):
        heads, dims = [], []
        for i, block in enumerate(self.blocks(layer)):
            kv = AttentionRule.heads(block.mha)[3]
            heads.append(sizes.kept(f"encoder_layers.{i}.mha._key_dense.kernel", 1, kv))
            dims.append(sizes.kept(f"encoder_layers.{i}.mlp.dense_1.kernel", 1, block.mlp.dense_1.units))
        keep = ("name", "trainable", "dtype", "hidden_dim", "use_mha_bias", "use_mlp_bias", "dropout_rate",
                "attention_dropout", "layer_norm_epsilon")
        return {**{k: config[k] for k in keep if k in config}, "block_heads": heads, "block_mlp_dims": dims,
                "key_dim": int(self.blocks(layer)[0].mha.key_dim)}

    def rebuild(self, layer, config):
        return PrunedViTEncoder.from_config(config)

    def macs(self, layer, in_shapes, out_shapes):
        shape = in_shapes[0]
        tokens = prod(shape[1:-1], layer, "sequence")
        terms = []
        for block in self.blocks(layer):
            terms += AttentionRule().macs(block.mha, [shape] * 3, [shape])
            terms += [(block.mlp.dense_1.kernel, None, tokens), (block.mlp.dense_2.kernel, None, tokens)]
        return terms

    def ops(self, layer, in_shapes, out_shapes):
        shape = in_shapes[0]
        n = 0
        for block in self.blocks(layer):
            hidden = shape[:-1] + (block.mlp.dense_1.units,)
            n += _ops_of([(block.layer_norm_1, shape, shape), (block.layer_norm_2, shape, shape),
                          (block.mlp.dense_1, shape, hidden), (block.mlp.dense_2, hidden, shape)])
            n += AttentionRule().ops(block.mha, [shape] * 3, [shape])
            n += 2 * elements([shape], layer)  # the two residual adds
        return n + _ops_of([(layer.layer_norm, shape, shape)])


@keras.saving.register_keras_serializable(package="kprune")
class PrunedViTEncoder(keras.layers.Layer):
    """A keras-hub ``ViTEncoder`` after ``kprune.compact``: the same blocks (keras-hub's own
    ``ViTEncoderBlock``), each with its own number of heads and MLP units.

    Args:
        block_heads: heads of each block.
        block_mlp_dims: MLP units of each block.
        key_dim: the head size (unchanged by pruning).
        hidden_dim, use_mha_bias, use_mlp_bias, dropout_rate, attention_dropout,
            layer_norm_epsilon: as ``ViTEncoder``'s.
    """

    def __init__(self, block_heads, block_mlp_dims, key_dim, hidden_dim, use_mha_bias=True, use_mlp_bias=True,
                 dropout_rate=0.0, attention_dropout=0.0, layer_norm_epsilon=1e-6, **kwargs):
        super().__init__(**kwargs)
        self.block_heads = [int(h) for h in block_heads]
        self.block_mlp_dims = [int(m) for m in block_mlp_dims]
        self.key_dim, self.hidden_dim = int(key_dim), int(hidden_dim)
        self.use_mha_bias, self.use_mlp_bias = use_mha_bias, use_mlp_bias
        self.dropout_rate, self.attention_dropout = dropout_rate, attention_dropout
        self.layer_norm_epsilon = layer_norm_epsilon

    def build(self, input_shape):
        from keras_hub.src.models.vit.vit_layers import ViTEncoderBlock

        # the order of ViTEncoder.build (blocks, dropout, norm): weights copy over one to one
        self.encoder_layers = []
        for i, (heads, mlp_dim) in enumerate(zip(self.block_heads, self.block_mlp_dims)):
            block = ViTEncoderBlock(num_heads=heads, hidden_dim=self.hidden_dim, mlp_dim=mlp_dim,
                                    dropout_rate=self.dropout_rate, use_mha_bias=self.use_mha_bias,
                                    use_mlp_bias=self.use_mlp_bias, attention_dropout=self.attention_dropout,
                                    layer_norm_epsilon=self.layer_norm_epsilon, dtype=self.dtype_policy,
                                    name=f"transformer_block_{i + 1}")
            block.key_dim = self.key_dim  # ViTEncoderBlock would derive hidden_dim // num_heads
            block.build((None, None, self.hidden_dim))
            self.encoder_layers.append(block)
        self.dropout = keras.layers.Dropout(self.dropout_rate, dtype=self.dtype_policy, name="dropout")
        self.layer_norm = keras.layers.LayerNormalization(epsilon=self.layer_norm_epsilon, dtype=self.dtype_policy,
                                                          name="ln")
        self.layer_norm.build((None, None, self.hidden_dim))
        self.built = True

    def call(self, inputs):
        x = self.dropout(inputs)
        for block in self.encoder_layers:
            x = block(x)
        return self.layer_norm(x)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"block_heads": self.block_heads, "block_mlp_dims": self.block_mlp_dims,
                       "key_dim": self.key_dim, "hidden_dim": self.hidden_dim, "use_mha_bias": self.use_mha_bias,
                       "use_mlp_bias": self.use_mlp_bias, "dropout_rate": self.dropout_rate,
                       "attention_dropout": self.attention_dropout,
                       "layer_norm_epsilon": self.layer_norm_epsilon})
        return config


class _DecoderRule(LayerRule):
    """A decoder block with one attention (``attention`` path), an MLP whose ``up`` and ``gate``
    projections make its hidden units and whose ``down`` projection reads them, and a residual
    stream normalized by RMSNorm. Subclasses name the paths and resize the config."""

    prunable = True
    kernels = ()
    attention = "attention"
    up, gate, down = "", "", ""  # paths of the MLP's EinsumDense projections

    def heads(self, layer) -> tuple:
        """``(units, query heads per unit, head axis of q/k/v kernels, head axis of output)``."""
        att = getattr(layer, self.attention)
        kv, q = att.num_key_value_heads, att.num_query_heads
        return kv, q // kv, 0, 0

    def head_reason(self, layer, what):
        return None

    dense_prefix = ""  # the attention's projections are attributes `{prefix}{query|key|value|output}_dense`

    def _att_paths(self, layer):
        att, pre = getattr(layer, self.attention), self.dense_prefix
        names = {r: f"{self.attention}.{pre}{r}_dense" for r in ("query", "key", "value", "output")}
        biased = {r: getattr(att, f"{pre}{r}_dense").bias is not None for r in names}
        return names, biased

    def channels(self, ctx):
        layer = ctx.layer
        ctx.block_inputs(_STREAM.format(what=ctx.what, norm="RMSNorm"))
        units, per, axis, out_axis = self.heads(layer)
        names, biased = self._att_paths(layer)
        producers, biases = [], []
        for role in ("query", "key", "value"):
            producers.append((f"{names[role]}.kernel", axis, role == "query"))
            if biased[role]:
                biases.append((f"{names[role]}.bias", 0, role == "query"))
        att = getattr(layer, self.attention)
        width = getattr(att, "head_dim", None) or getattr(att, "_head_dim", None) or 1
        record_heads(ctx.state, ctx.op, units, per, producers + biases, [(f"{names['output']}.kernel", out_axis)],
                     self.head_reason(layer, ctx.what), width=int(width))
        n = int(weight_at(layer, self.up).kernel.shape[-1])
        record_units(ctx.state, ctx.op, n, [(f"{p}.kernel", 1) for p in (self.up, self.gate) if p],
                     [(f"{self.down}.kernel", 0)])
        return ctx.opaque(f"produced by {ctx.what} (its residual stream)")

    def masked_weights(self, layer) -> dict:
        names, biased = self._att_paths(layer)
        out = {}
        for role, path in names.items():
            dense = weight_at(layer, path)
            out[f"{path}.kernel"] = dense.kernel
            if biased[role]:
                out[f"{path}.bias"] = dense.bias
        for path in (self.up, self.gate, self.down):
            if path:
                out[f"{path}.kernel"] = weight_at(layer, path).kernel
        return out

    def kept(self, layer, sizes):
        """``(kept key/value heads, kept MLP units)``."""
        units, _, axis, _ = self.heads(layer)
        names, _ = self._att_paths(layer)
        n = int(weight_at(layer, self.up).kernel.shape[-1])
        return sizes.kept(f"{names['key']}.kernel", axis, units), sizes.kept(f"{self.up}.kernel", 1, n)

    def macs(self, layer, in_shapes, out_shapes):
        shape = in_shapes[0]
        tokens = prod(shape[1:-1], layer, "sequence")
        att = getattr(layer, self.attention)
        names, _ = self._att_paths(layer)
        q_heads, head_dim = att.num_query_heads, int(weight_at(layer, names["query"]).kernel.shape[-1])
        terms = [(weight_at(layer, p).kernel, None, tokens) for p in names.values()]
        terms += [(None, 2 * q_heads * tokens * tokens * head_dim, 1)]  # scores and context
        terms += [(weight_at(layer, p).kernel, None, tokens) for p in (self.up, self.gate, self.down) if p]
        return terms

    def ops(self, layer, in_shapes, out_shapes):
        shape = in_shapes[0]
        tokens = prod(shape[1:-1], layer, "sequence")
        att = getattr(layer, self.attention)
        n_hidden = int(weight_at(layer, self.up).kernel.shape[-1])
        # two RMSNorms (~4 ops per element), softmax over the scores, the gate's activation and
        # product, and the two residual adds
        return (8 + 2) * elements([shape], layer) + att.num_query_heads * tokens * tokens + 2 * tokens * n_hidden

    def input_shapes(self, layer, args, kwargs):
        return [tuple(args[0].shape)]


class GemmaDecoderRule(_DecoderRule):
    """keras-hub ``GemmaDecoderBlock`` (Gemma, Gemma 2): grouped-query attention whose
    ``EinsumDense`` projections carry heads on axis 0, and a gated MLP
    ``ffw_linear(gelu(gating_ffw(x)) * gating_ffw_2(x))``."""

    up, gate, down = "gating_ffw_2", "gating_ffw", "ffw_linear"

    def head_reason(self, layer, what):
        if not layer.query_head_dim_normalize:
            return (f"{what} scales queries by 1/sqrt(hidden_dim // num_query_heads) "
                    "(query_head_dim_normalize=False), which changes when heads are removed")
        return None

    def resize(self, layer, config, sizes):
        kv, units = self.kept(layer, sizes)
        per = layer.num_query_heads // layer.num_key_value_heads
        return {**config, "num_key_value_heads": kv, "num_query_heads": kv * per, "intermediate_dim": 2 * units}


class LlamaDecoderRule(_DecoderRule):
    """keras-hub ``LlamaTransformerDecoder`` (Llama, Mistral-like): gated MLP
    ``_feedforward_output_dense(silu(_feedforward_gate_dense(x)) * _feedforward_intermediate_dense(x))``;
    its attention's head size is ``hidden_dim // num_query_heads``, so heads stay unpruned."""

    attention = "_self_attention_layer"
    up, gate, down = "_feedforward_intermediate_dense", "_feedforward_gate_dense", "_feedforward_output_dense"

    dense_prefix = "_"

    def heads(self, layer):
        att = getattr(layer, self.attention)
        kv, q = att.num_key_value_heads, att.num_query_heads
        return kv, q // kv, 1, 0

    def head_reason(self, layer, what):
        return (f"{what} derives its head size from hidden_dim // num_query_heads, so a block with fewer "
                "heads cannot be rebuilt from its config")

    def resize(self, layer, config, sizes):
        return {**config, "intermediate_dim": self.kept(layer, sizes)[1]}


register("ViTEncoder", ViTEncoderRule())
register(PrunedViTEncoder, ViTEncoderRule())
register("GemmaDecoderBlock", GemmaDecoderRule())
register("LlamaTransformerDecoder", LlamaDecoderRule())

__all__ = ["GemmaDecoderRule", "LlamaDecoderRule", "PrunedViTEncoder", "ViTEncoderRule"]
