"""Products of activations: ``Dot`` (counted; its channels are derived by running it) and
attention — ``MultiHeadAttention`` and ``GroupQueryAttention`` — whose heads are prunable units
(``granularity: head``) and whose input and output channels follow its projections."""

from __future__ import annotations

import math

import keras
import numpy as np

from kprune.graph.layers.base import LayerRule, elements, prod, register
from kprune.graph.state import TInfo

L = keras.layers


class DotRule(LayerRule):
    """``Dot``: a weightless product; MACs = output elements × contracted length."""

    def macs(self, layer, in_shapes, out_shapes):
        axes = layer.axes if isinstance(layer.axes, (list, tuple)) else (layer.axes, layer.axes)
        contracted = in_shapes[0][axes[0]]
        return [(None, prod(out_shapes[0][1:], layer, "output") * prod([contracted], layer, "contracted"), 1)]


def _tensor_args(call) -> dict:
    """``{role: KerasTensor}`` of an attention call: query, value, key and the masks."""
    args, kwargs = call.node.arguments.args, call.node.arguments.kwargs
    named = dict(zip(("query", "value", "key"), args))
    named.update(kwargs)
    return {k: v for k, v in named.items() if isinstance(v, keras.KerasTensor)}


def record_heads(state, op, units: int, per: int, producers, consumers, reason=None, width: int = 1) -> np.ndarray:
    """Records ``units`` attention heads as prunable units (``granularity: head``).

    Args:
        state: the :class:`~kprune.graph.state.ChannelState`.
        op: the operation as it appears in the model (its wrapper).
        units: key/value heads (one unit each; a unit of grouped-query attention carries the
            ``per`` query heads that share its key and value).
        per: query heads per unit.
        producers: ``[(weight path, head axis, indexed by query heads)]``: the query, key and
            value kernels and biases.
        consumers: ``[(weight path, head axis)]``: the output projection (query-head indexed).
        reason: makes the heads unprunable with this reason.
        width: the head size (gcd of key and value sizes), so that ``round_to`` rounds the kept
            heads to keep channel counts multiples of it (:func:`kprune.pruning.allocation.round_kept`).

    Returns:
        The units' labels.
    """
    heads = state.fresh(units, producer=True, unit="head", reason=reason, width=width)
    q_heads = np.repeat(heads, per)
    for path, axis, by_query in producers:
        state.touch(q_heads if by_query else heads, op, path, axis, "producer")
    for path, axis in consumers:
        state.touch(q_heads, op, path, axis, "consumer")
    return heads


def record_units(state, op, n: int, producers, consumers, reason=None) -> np.ndarray:
    """Records the ``n`` hidden units of an MLP inside a layer as one channel group each:
    ``producers`` (``[(weight path, axis)]``: up/gate kernels and biases) make them, whose
    activation maps 0 to 0, ``consumers`` (the down projection) read them."""
    labels = state.fresh(n, producer=True, reason=reason)
    for path, axis in producers:
        state.touch(labels, op, path, axis, "producer")
    for path, axis in consumers:
        state.touch(labels, op, path, axis, "consumer")
    return labels


def head_slices(layer, prefix: str = "") -> tuple:
    """``(producers, consumers)`` of :func:`record_heads` for a ``keras.layers``
    ``MultiHeadAttention`` or ``GroupQueryAttention`` reached at attribute path ``prefix``."""
    producers = []
    for role in ("query", "key", "value"):
        producers.append((f"{prefix}_{role}_dense.kernel", 1, role == "query"))
        if getattr(layer, f"_{role}_dense").bias is not None:
            producers.append((f"{prefix}_{role}_dense.bias", 0, role == "query"))
    return producers, [(f"{prefix}_output_dense.kernel", 0)]


def attention_weights(layer, prefix: str = "") -> dict:
    """``{path: variable}`` of the four projections of a ``keras.layers`` attention layer."""
    out = {}
    for role in ("query", "key", "value", "output"):
        dense = getattr(layer, f"_{role}_dense")
        out[f"{prefix}_{role}_dense.kernel"] = dense.kernel
        if dense.bias is not None:
            out[f"{prefix}_{role}_dense.bias"] = dense.bias
    return out


class AttentionRule(LayerRule):
    """Heads of ``MultiHeadAttention`` and ``GroupQueryAttention``.

    **Channels.** The query input is read by the query projection's input axis, the key and
    value inputs by theirs; the output channels are produced by the output projection and its
    bias. **Heads** are units of their own (``granularity: head``): a head is its query, key
    and value kernel and bias slices (producers) and its slice of the output projection
    (consumer), so a pruned head contributes exactly zero. For grouped-query attention the unit
    is one key/value head with the ``num_query_heads / num_key_value_heads`` query heads that
    share it, so the group structure stays valid. ``compact`` rebuilds the layer with fewer
    heads (``num_heads``; ``num_query_heads`` and ``num_key_value_heads``). Attention masks are
    read as they are (their channels are not pruned); a gated attention (``use_gate``) is not
    analysed (reported with the reason).

    **Counting.** Its four projections (query/output: query positions; key/value: key/value
    positions) plus the weightless ``heads × Tq × Tk × head_dim`` scores and
    ``heads × Tq × Tv × head_dim`` context products; positions are all axes between batch and
    features (the default ``attention_axes``).
    """

    prunable = True
    kernels = ()  # heads are pruned whole (granularity: head), never weight by weight

    @staticmethod
    def _dense(layer, role):
        return getattr(layer, f"_{role}_dense")

    @staticmethod
    def heads(layer) -> tuple:
        """``(units, query heads per unit, query heads, key/value heads, key_dim, value_dim)``."""
        if isinstance(layer, L.GroupQueryAttention):
            kv, q, d = layer.num_key_value_heads, layer.num_query_heads, layer.head_dim
            return kv, q // kv, q, kv, d, d
        n = layer.num_heads
        return n, 1, n, n, layer.key_dim, layer.value_dim or layer.key_dim

    def channels(self, ctx):
        layer, call = ctx.layer, ctx.call
        if getattr(layer, "_use_gate", False) or getattr(layer, "use_gate", False):
            reason = f"{ctx.what} is a gated attention (use_gate=True), which kprune does not analyse"
            heads = ctx.state.fresh(self.heads(layer)[0], producer=True, unit="head", reason=reason)
            ctx.state.touch(heads, ctx.op, "_key_dense.kernel", 1, "producer")  # the heads, unprunable
            return ctx.unknown(f"passes through {reason}")
        info = {id(t): i for t, i in zip(call.in_tensors, ctx.infos)}
        named = _tensor_args(call)
        for role, tensor in named.items():
            if role not in ("query", "value", "key"):
                ctx.block(info[id(tensor)].labels, f"{role} of {ctx.what}")
        value = named["value"]
        for role, tensor in (("query", named["query"]), ("key", named.get("key", value)), ("value", value)):
            ctx.consumer(f"_{role}_dense.kernel", 0, info=info[id(tensor)])
        units, per, _, _, key_dim, value_dim = self.heads(layer)
        record_heads(ctx.state, ctx.op, units, per, *head_slices(layer), width=math.gcd(key_dim, value_dim))
        n = int(call.out_tensors[0].shape[-1])
        out = ctx.state.fresh(n, producer=True)
        ctx.state.touch(out, ctx.op, "_output_dense.kernel", 2, "producer")
        if self._dense(layer, "output").bias is not None:
            ctx.state.touch(out, ctx.op, "_output_dense.bias", 0, "producer")
        outs = [TInfo(out, np.ones(n, bool))]
        if len(call.out_tensors) > 1:  # the attention scores: their last axis is key positions
            outs += ctx.opaque(f"attention scores of {ctx.what}")[1:]
        return outs

    def masked_weights(self, layer) -> dict:
        return attention_weights(layer)

    def resize(self, layer, config, sizes):
        units, per, _, kv_heads, _, _ = self.heads(layer)
        kept = sizes.kept("_key_dense.kernel", 1, kv_heads)
        if isinstance(layer, L.GroupQueryAttention):
            config = {**config, "num_key_value_heads": kept, "num_query_heads": kept * per}
        else:
            config = {**config, "num_heads": kept}
        if sizes.out_n != sizes.orig_out:
            config["output_shape"] = sizes.out_n
        return config

    def input_shapes(self, layer, args, kwargs):
        named = dict(zip(("query", "value", "key"), args))
        named.update({k: v for k, v in kwargs.items() if k in ("query", "value", "key")})
        if named.get("key") is None:
            named["key"] = named["value"]
        return [tuple(named[k].shape) for k in ("query", "value", "key")]

    def macs(self, layer, in_shapes, out_shapes):
        q, v, k = (prod(s[1:-1], layer, "sequence") for s in in_shapes)
        _, _, q_heads, _, key_dim, value_dim = self.heads(layer)
        return [
            (self._dense(layer, "query").kernel, None, q),
            (self._dense(layer, "key").kernel, None, k),
            (self._dense(layer, "value").kernel, None, v),
            (None, q_heads * q * k * key_dim, 1),
            (None, q_heads * q * v * value_dim, 1),
            (self._dense(layer, "output").kernel, None, q),
        ]

    def ops(self, layer, in_shapes, out_shapes):
        out_shapes = out_shapes[:1]  # not the optional attention scores
        q, v, k = (prod(s[1:-1], layer, "sequence") for s in in_shapes)
        _, _, q_heads, kv_heads, key_dim, value_dim = self.heads(layer)
        n = q_heads * q * k + q * q_heads * key_dim  # softmax over scores, query scaling
        if self._dense(layer, "query").bias is not None:
            n += q_heads * q * key_dim + kv_heads * (k * key_dim + v * value_dim) + elements(out_shapes, layer)
        return n


register(L.Dot, DotRule())
register(L.MultiHeadAttention, AttentionRule())
register(L.GroupQueryAttention, AttentionRule())
