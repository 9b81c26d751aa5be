"""Convolutions: Conv1D/2D/3D (grouped too), their transposes, depthwise and separable convs."""

from __future__ import annotations

import numpy as np
from keras.src.layers.convolutional.base_conv import BaseConv
from keras.src.layers.convolutional.base_conv_transpose import BaseConvTranspose
from keras.src.layers.convolutional.base_depthwise_conv import BaseDepthwiseConv
from keras.src.layers.convolutional.base_separable_conv import BaseSeparableConv

from kprune.graph.layers.base import ProducerRule, activation_is_zero_at_zero, prod, register, spatial
from kprune.graph.state import TInfo


class ConvRule(ProducerRule):
    """``Conv*`` and ``Conv*Transpose``: input channels are read by the kernel's input axis, the
    filters are the output channels.

    With ``groups`` G > 1 (ResNeXt, RegNet) the same channel positions are pruned in every
    group, as Torch-Pruning does, so ``groups`` stays G: input channel ``c`` is read at kernel
    position ``c % (C_in / G)``, so the G input channels at one position are one channel of the
    graph, and filter ``j`` of every group is united with filter ``j`` of the others. A conv
    with ``groups == C_in`` (a depthwise conv written as a grouped one, as in ConvNeXt) is a
    follower: channel ``c`` owns outputs ``c*m .. c*m+m-1`` and ``compact`` lowers ``groups``.
    """

    prunable = True

    def channels(self, ctx):
        layer, x = ctx.layer, ctx.x
        groups = getattr(layer, "groups", 1)
        cin = len(x.labels)
        nd = layer.kernel.ndim
        if groups != 1 and groups == cin and isinstance(layer, BaseConv) and layer.filters % cin == 0:
            out_labels = np.repeat(x.labels, layer.filters // cin)
            ctx.follower(out_labels, "kernel", nd - 1)
            if layer.use_bias:
                ctx.follower(out_labels, "bias", 0)
            return [TInfo(out_labels, np.full(len(out_labels), activation_is_zero_at_zero(layer.activation)))]
        cin_axis, cout_axis = (nd - 1, nd - 2) if isinstance(layer, BaseConvTranspose) else (nd - 2, nd - 1)
        if groups == 1:
            ctx.consumer("kernel", cin_axis)
            return [ctx.producer(layer.filters, cout_axis, layer.activation)]
        per_in, per_out = cin // groups, layer.filters // groups
        by_group_in = x.labels.reshape(groups, per_in)
        for i in range(1, groups):
            ctx.state.union(by_group_in[0], by_group_in[i])
        ctx.consumer("kernel", cin_axis, positions=np.arange(cin) % per_in)
        out = ctx.producer(layer.filters, cout_axis, layer.activation)
        by_group_out = out.labels.reshape(groups, per_out)
        for i in range(1, groups):
            ctx.state.union(by_group_out[0], by_group_out[i])
        return [out]

    def macs(self, layer, in_shapes, out_shapes):
        if isinstance(layer, BaseConvTranspose):  # each input position scatters the whole kernel
            return [(layer.kernel, None, prod(spatial(in_shapes[0], layer.data_format), layer, "input spatial"))]
        return [(layer.kernel, None, prod(spatial(out_shapes[0], layer.data_format), layer, "output spatial"))]

    def resize(self, layer, config, sizes):
        config = {**config, "filters": sizes.out_n}
        if getattr(layer, "groups", 1) > 1 and layer.groups == sizes.orig_in:  # depthwise-like
            config["groups"] = sizes.in_n
        return config


class DepthwiseRule(ProducerRule):
    """``DepthwiseConv*``: each input channel has its own ``depth_multiplier`` filters (followers)."""

    prunable = True

    def channels(self, ctx):
        layer, x = ctx.layer, ctx.x
        m = layer.depth_multiplier
        ctx.follower(x.labels, "kernel", layer.kernel.ndim - 2)
        out_labels = np.repeat(x.labels, m)
        if layer.use_bias:
            ctx.follower(out_labels, "bias", 0)
        return [TInfo(out_labels, np.full(len(out_labels), activation_is_zero_at_zero(layer.activation)))]

    def macs(self, layer, in_shapes, out_shapes):
        return [(layer.kernel, None, prod(spatial(out_shapes[0], layer.data_format), layer, "output spatial"))]


class SeparableRule(ProducerRule):
    """``SeparableConv*``: the depthwise and pointwise kernels read the input channels; the
    pointwise filters are the output channels."""

    prunable = True

    def channels(self, ctx):
        layer, x = ctx.layer, ctx.x
        m = layer.depth_multiplier
        ctx.consumer("depthwise_kernel", layer.depthwise_kernel.ndim - 2)
        cin = len(x.labels)
        ctx.consumer("pointwise_kernel", layer.pointwise_kernel.ndim - 2,
                     positions=np.arange(cin * m), labels=np.repeat(x.labels, m))
        return [ctx.producer(layer.filters, layer.pointwise_kernel.ndim - 1, layer.activation,
                             kernel="pointwise_kernel")]

    def macs(self, layer, in_shapes, out_shapes):
        uses = prod(spatial(out_shapes[0], layer.data_format), layer, "output spatial")
        return [(layer.depthwise_kernel, None, uses), (layer.pointwise_kernel, None, uses)]

    def resize(self, layer, config, sizes):
        return {**config, "filters": sizes.out_n}


register(BaseConv, ConvRule())
register(BaseConvTranspose, ConvRule())
register(BaseDepthwiseConv, DepthwiseRule())
register(BaseSeparableConv, SeparableRule())
