"""Products of activations: ``Dot`` and ``MultiHeadAttention`` (counting; their channels are
derived by running them or, with weights, reported unprunable)."""

from __future__ import annotations

import keras

from kprune.graph.layers.base import LayerRule, elements, prod, register

L = keras.layers


class DotRule(LayerRule):
    """``Dot``: a weightless product; MACs = output elements × contracted length."""

    def macs(self, layer, in_shapes, out_shapes):
        axes = layer.axes if isinstance(layer.axes, (list, tuple)) else (layer.axes, layer.axes)
        contracted = in_shapes[0][axes[0]]
        return [(None, prod(out_shapes[0][1:], layer, "output") * prod([contracted], layer, "contracted"), 1)]


class MultiHeadAttentionRule(LayerRule):
    """``MultiHeadAttention``: its four projections (query/output: query positions; key/value:
    key/value positions) plus the weightless ``heads × Tq × Tk × key_dim`` scores and
    ``heads × Tq × Tv × value_dim`` context products. Positions are all axes between batch and
    features (the default ``attention_axes``)."""

    def input_shapes(self, layer, args, kwargs):
        named = dict(zip(("query", "value", "key"), args))
        named.update({k: v for k, v in kwargs.items() if k in ("query", "value", "key")})
        if named.get("key") is None:
            named["key"] = named["value"]
        return [tuple(named[k].shape) for k in ("query", "value", "key")]

    def macs(self, layer, in_shapes, out_shapes):
        q, v, k = (prod(s[1:-1], layer, "sequence") for s in in_shapes)
        heads, key_dim, value_dim = layer.num_heads, layer.key_dim, layer.value_dim
        return [
            (layer.query_dense.kernel, None, q),
            (layer.key_dense.kernel, None, k),
            (layer.value_dense.kernel, None, v),
            (None, heads * q * k * key_dim, 1),
            (None, heads * q * v * value_dim, 1),
            (layer.output_dense.kernel, None, q),
        ]

    def ops(self, layer, in_shapes, out_shapes):
        out_shapes = out_shapes[:1]  # not the optional attention scores
        q, v, k = (prod(s[1:-1], layer, "sequence") for s in in_shapes)
        heads, key_dim, value_dim = layer.num_heads, layer.key_dim, layer.value_dim
        n = heads * q * k + q * heads * key_dim  # softmax over scores, query scaling
        if layer.query_dense.bias is not None:
            n += heads * (q * key_dim + k * key_dim + v * value_dim) + elements(out_shapes, layer)
        return n


register(L.Dot, DotRule())
register(L.MultiHeadAttention, MultiHeadAttentionRule())
