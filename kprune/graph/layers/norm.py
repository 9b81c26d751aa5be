"""Normalizations and per-channel scales: BatchNorm, GroupNorm, LayerNorm/UnitNorm,
Normalization, and ``LayerScale`` (ConvNeXt)."""

from __future__ import annotations

import keras
import numpy as np

from kprune.graph.layers.base import LayerRule, elements, last_axis, register
from kprune.graph.state import TInfo

L = keras.layers


class BatchNormRule(LayerRule):
    """``BatchNormalization`` over the channel axis: gamma, beta and the moving statistics follow
    the channels; with ``scale=True`` a channel whose gamma and beta are zero is exactly zero."""

    statistics = "pass"
    weights_without_macs = True

    def ops(self, layer, in_shapes, out_shapes):  # inference scale-and-shift
        return 2 * elements(out_shapes, layer)

    def nni(self, layer, macs, in_shapes, out_shapes):
        return 2 * elements(out_shapes, layer)

    def channels(self, ctx):
        layer, x = ctx.layer, ctx.x
        if not last_axis(layer.axis, ctx.rank) or (isinstance(layer.axis, (list, tuple)) and len(layer.axis) > 1):
            ctx.block_inputs(f"{ctx.what} normalizes a non-channel axis")
            return [x]
        for w in ("gamma", "beta", "moving_mean", "moving_variance"):
            if getattr(layer, w, None) is not None:
                ctx.follower(x.labels, w)
        return [TInfo(x.labels, np.full(len(x.labels), bool(layer.scale)))]


class GroupNormRule(LayerRule):
    """``GroupNormalization``: the channels of one normalization group are one unit (pruning
    removes whole groups; ``compact`` lowers ``groups``)."""

    weights_without_macs = True

    def ops(self, layer, in_shapes, out_shapes):  # mean, centre, square, variance, rsqrt-multiply, scale, shift
        return 7 * elements(out_shapes, layer)

    def channels(self, ctx):
        layer, x = ctx.layer, ctx.x
        if not last_axis(layer.axis, ctx.rank):
            ctx.block(x.labels, f"{ctx.what} normalizes a non-channel axis")
            return [TInfo(x.labels, np.zeros(len(x.labels), bool))]
        c = len(x.labels)
        size = c // layer.groups
        for g in range(layer.groups):
            seg = x.labels[g * size:(g + 1) * size]
            ctx.state.union(np.full(size, seg[0]), seg)
        for w in ("gamma", "beta"):
            if getattr(layer, w, None) is not None:
                ctx.follower(x.labels, w)
        return [TInfo(x.labels, np.ones(c, bool))]

    def resize(self, layer, config, sizes):
        if sizes.in_n != sizes.orig_in:
            config = {**config, "groups": sizes.in_n // (sizes.orig_in // layer.groups)}
        return config


class StatNormRule(LayerRule):
    """``LayerNormalization``/``UnitNormalization``/``RMSNormalization`` over the channel axis:
    removing a channel changes the mean and variance, so the channels are not prunable."""

    weights_without_macs = True

    def ops(self, layer, in_shapes, out_shapes):
        return 7 * elements(out_shapes, layer)

    def channels(self, ctx):
        layer, x = ctx.layer, ctx.x
        if last_axis(getattr(layer, "axis", -1), ctx.rank):
            ctx.block(x.labels, f"normalized over channels by {ctx.what} (removing channels changes its mean "
                      "and variance)")
        for w in ("gamma", "beta", "scale"):
            v = getattr(layer, w, None)
            if v is not None and hasattr(v, "ndim") and v.ndim == 1 and v.shape[0] == len(x.labels):
                ctx.follower(x.labels, w)
        return [TInfo(x.labels, np.zeros(len(x.labels), bool))]


class NormalizationRule(LayerRule):
    """``Normalization`` (feature-wise statistics adapted from data): not prunable."""

    weights_without_macs = True

    def ops(self, layer, in_shapes, out_shapes):
        return 2 * elements(out_shapes, layer)

    def channels(self, ctx):
        ctx.block(ctx.x.labels, f"per-channel statistics of {ctx.what}")
        return [TInfo(ctx.x.labels, np.zeros(len(ctx.x.labels), bool))]


class LayerScaleRule(LayerRule):
    """ConvNeXt's ``LayerScale``: one learned scale (``gamma``) per channel, sized by
    ``projection_dim``."""

    def channels(self, ctx):
        ctx.follower(ctx.x.labels, "gamma")
        return [TInfo(ctx.x.labels, np.ones(len(ctx.x.labels), bool))]

    def resize(self, layer, config, sizes):
        return {**config, "projection_dim": sizes.in_n}


register(L.BatchNormalization, BatchNormRule())
register(L.GroupNormalization, GroupNormRule())
for _cls in (L.LayerNormalization, L.UnitNormalization, getattr(L, "RMSNormalization", None)):
    if _cls is not None:
        register(_cls, StatNormRule())
register(L.Normalization, NormalizationRule())
register("LayerScale", LayerScaleRule())
