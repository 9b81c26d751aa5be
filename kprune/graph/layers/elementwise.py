"""Layers applied per element or per channel: activations, merges, dropout and noise,
pooling/padding/resizing (channels unchanged), PReLU, Rescaling, Softmax; and the element-wise
``keras.ops`` nodes of functional graphs (``x + 3``, ``x * y``, ``ops.relu6``...)."""

from __future__ import annotations

import math

import keras
import numpy as np
from keras.src.layers.pooling.base_pooling import BasePooling

from kprune.graph.layers.base import LayerRule, elements, last_axis, register
from kprune.graph.state import TInfo

L = keras.layers


class PassThroughRule(LayerRule):
    """Channels unchanged and zero stays zero (dropout, noise, pooling, padding, cropping,
    upsampling, resizing, masking, identity)."""

    def __init__(self, statistics="stop"):
        self.statistics = statistics

    def channels(self, ctx):
        return ctx.passthrough()


class PoolingRule(PassThroughRule):
    """Pooling: channels unchanged; ``prod(pool_size)`` ops per output element (NNI counts
    average pooling's outputs)."""

    def ops(self, layer, in_shapes, out_shapes):
        return elements(out_shapes, layer) * int(math.prod(layer.pool_size))

    def nni(self, layer, macs, in_shapes, out_shapes):
        return elements(out_shapes, layer) if "Average" in type(layer).__name__ else 0


class ActivationRule(LayerRule):
    """An activation layer: element-wise; whether 0 maps to 0 is measured. A softmax over the
    channel axis couples every channel and blocks them. One op per output element."""

    statistics = "activation"
    weights_without_macs = True

    def ops(self, layer, in_shapes, out_shapes):
        return elements(out_shapes, layer)

    def nni(self, layer, macs, in_shapes, out_shapes):
        return elements(out_shapes, layer) if isinstance(layer, L.LeakyReLU) else 0

    def channels(self, ctx):
        layer, x = ctx.layer, ctx.x
        softmax = isinstance(layer, L.Softmax) or getattr(getattr(layer, "activation", None), "__name__", "") in (
            "softmax", "log_softmax")
        if softmax:
            if last_axis(getattr(layer, "axis", -1), ctx.rank):
                ctx.block(x.labels, f"softmax over channels in {ctx.what}")
            return [TInfo(x.labels, np.zeros(len(x.labels), bool))]
        return ctx.elementwise()


class PReLURule(ActivationRule):
    """``PReLU``: a per-channel slope (``alpha``) follows the channels when it has one per channel."""

    def channels(self, ctx):
        alpha, x = ctx.layer.alpha, ctx.x
        if alpha.shape[-1] == len(x.labels) and len(x.labels) > 1:
            ctx.follower(x.labels, "alpha", alpha.ndim - 1)
        return [TInfo(x.labels, x.zero)]


class RescalingRule(LayerRule):
    """``Rescaling``: element-wise; a per-channel scale or offset blocks the channels. Two ops per
    output element."""

    weights_without_macs = True

    def ops(self, layer, in_shapes, out_shapes):
        return 2 * elements(out_shapes, layer)

    def channels(self, ctx):
        outs = ctx.elementwise()
        layer = ctx.layer
        if max(np.size(layer.scale), np.size(layer.offset)) > 1:
            ctx.block(outs[0].labels, f"per-channel scale or offset of {ctx.what}")
        return outs


class MergeRule(LayerRule):
    """``Add``, ``Multiply``... : inputs united channel by channel (a broadcast input blocks its
    group). ``inputs_minus`` ops per output element and input beyond it: ``n - 1`` for
    Add/Subtract/Multiply/Maximum/Minimum, ``n`` for Average (the division), none for others."""

    def __init__(self, inputs_minus=None):
        self.inputs_minus = inputs_minus

    def channels(self, ctx):
        return ctx.elementwise()

    def ops(self, layer, in_shapes, out_shapes):
        if self.inputs_minus is None:
            return 0
        return (len(in_shapes) - self.inputs_minus) * elements(out_shapes, layer)


class ElementwiseOpRule(LayerRule):
    """An element-wise ``keras.ops`` operation node (called as the operation itself)."""

    def channels(self, ctx):
        return ctx.elementwise(ctx.layer)


for _cls in (L.Dropout, L.GaussianNoise, L.GaussianDropout, L.AlphaDropout, L.Identity):
    register(_cls, PassThroughRule(statistics="pass"))
register(BasePooling, PoolingRule())
for _cls in (L.ActivityRegularization, L.ZeroPadding1D, L.ZeroPadding2D, L.ZeroPadding3D,
             L.Cropping1D, L.Cropping2D, L.Cropping3D, L.UpSampling1D, L.UpSampling2D, L.UpSampling3D,
             L.Resizing, L.Masking):
    register(_cls, PassThroughRule())
register("StochasticDepth", PassThroughRule())
register("TFOpLambda_identity", PassThroughRule())
for _cls in (L.Activation, L.ReLU, L.LeakyReLU, L.ELU, L.Softmax):
    register(_cls, ActivationRule())
register(L.PReLU, PReLURule())
register(L.Rescaling, RescalingRule())
for _cls in (L.Add, L.Subtract, L.Multiply, L.Maximum, L.Minimum):
    register(_cls, MergeRule(inputs_minus=1))
register(L.Average, MergeRule(inputs_minus=0))
register("CustomScaleLayer", MergeRule())

#: keras.ops operations (functional-API arithmetic) that act element by element
ELEMENTWISE_OPS = (
    "Add", "Subtract", "Multiply", "Divide", "TrueDivide", "Maximum", "Minimum", "Power",
    "Negative", "Abs", "Absolute", "Square", "Sqrt", "Exp", "Log", "Tanh", "Sigmoid",
    "Relu", "Relu6", "Silu", "Swish", "Gelu", "HardSigmoid", "HardSilu", "HardSwish",
    "LeakyRelu", "Elu", "Selu", "Softplus", "Softsign", "Mish", "Clip", "Cast", "Sign",
    "Round", "Floor", "Ceil", "Reciprocal", "Erf", "Celu", "Glu", "Identity",
)
for _name in ELEMENTWISE_OPS:
    register(_name, ElementwiseOpRule())
