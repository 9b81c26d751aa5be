"""Layers that move channels between positions: Concatenate, Flatten/Reshape, Permute,
global pooling."""

from __future__ import annotations

import keras
import numpy as np
from keras.src.layers.pooling.base_global_pooling import BaseGlobalPooling

from kprune.graph.layers.base import LayerRule, elements, register
from kprune.graph.state import TInfo

L = keras.layers


class ConcatenateRule(LayerRule):
    """``Concatenate`` on the channel axis: the inputs' channels side by side; on another axis
    it is element-wise for channels."""

    def channels(self, ctx):
        rank = len(ctx.call.out_tensors[0].shape)
        if ctx.layer.axis % rank == rank - 1:
            return [TInfo(np.concatenate([i.labels for i in ctx.infos]), np.concatenate([i.zero for i in ctx.infos]))]
        return ctx.elementwise()


class GlobalPoolingRule(LayerRule):
    """Global pooling: channels unchanged; one op per input element."""

    def channels(self, ctx):
        return ctx.passthrough()

    def ops(self, layer, in_shapes, out_shapes):
        return elements(in_shapes, layer, "input")


class ReshapeRule(LayerRule):
    """``Flatten``/``Reshape``: channels follow the element mapping (Flatten of (H, W, C) tiles
    the labels H·W times); a reshape that mixes channels with other axes is not prunable."""

    def channels(self, ctx):
        call, x, what = ctx.call, ctx.x, ctx.what
        in_shape = tuple(call.in_tensors[0].shape[1:])
        out_shape = tuple(call.out_tensors[0].shape[1:])
        if any(d is None for d in in_shape + out_shape) or not in_shape or not out_shape:
            ctx.block(x.labels, f"{what} with unknown shape")
            return ctx.opaque(f"produced by {what} with unknown shape")
        src = np.broadcast_to(np.arange(in_shape[-1]), in_shape).reshape(out_shape)
        rows = src.reshape(-1, out_shape[-1])
        if not np.all(rows == rows[:1]):
            ctx.block(x.labels, f"{what} mixes channels with other axes")
            return ctx.opaque(f"produced by channel-mixing {what}")
        mapping = rows[0]
        return [TInfo(x.labels[mapping], x.zero[mapping])]

    def resize(self, layer, config, sizes):
        if isinstance(layer, L.Reshape):
            out_shape = tuple(sizes.call.out_tensors[0].shape[1:])
            config = {**config, "target_shape": tuple(out_shape[:-1]) + (sizes.out_n,)}
        return config


class PermuteRule(LayerRule):
    """``Permute`` that keeps the channel axis last: channels unchanged; otherwise derived by
    running it."""

    def channels(self, ctx):
        if tuple(ctx.layer.dims)[-1] == ctx.rank - 1:
            return ctx.passthrough()
        return ctx.probed()


register(L.Concatenate, ConcatenateRule())
register(BaseGlobalPooling, GlobalPoolingRule())
register(L.Flatten, ReshapeRule())
register(L.Reshape, ReshapeRule())
register(L.Permute, PermuteRule())
