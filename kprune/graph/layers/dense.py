"""Dense, EinsumDense (with a clear channel axis) and Embedding."""

from __future__ import annotations

import math

import keras

from kprune.graph.layers.base import LayerRule, ProducerRule, prod, register

L = keras.layers


class DenseRule(ProducerRule):
    """``Dense``: kernel rows read the input channels, columns are the units."""

    prunable = True

    def channels(self, ctx):
        ctx.consumer("kernel", 0)
        return [ctx.producer(ctx.layer.units, 1, ctx.layer.activation)]

    def macs(self, layer, in_shapes, out_shapes):
        return [(layer.kernel, None, prod(in_shapes[0][1:-1], layer, "leading"))]

    def resize(self, layer, config, sizes):
        return {**config, "units": sizes.out_n}


def einsum_axes(layer):
    """Return ``(kernel_in_axis, kernel_out_axis)`` of an EinsumDense whose channel is clear.

    The layer must contract the input's last axis against one kernel axis and produce its
    output's last axis from one kernel axis (bias, if any, only on that axis); otherwise
    ``None`` is returned.
    """
    eq = layer.equation.replace(" ", "")
    try:
        ins, out = eq.split("->")
        inp, ker = ins.split(",")
    except ValueError:
        return None
    if "." in inp or "." in ker:
        inp, ker, out = inp.replace("...", ""), ker, out.replace("...", "")
        if "." in ker:
            return None
    a, b = inp[-1], out[-1]
    if a in out or ker.count(a) != 1 or b in inp or ker.count(b) != 1:
        return None
    bias_axes = layer.bias_axes or ""
    if bias_axes not in ("", b):
        return None
    return ker.index(a), ker.index(b)


class EinsumDenseRule(ProducerRule):
    """``EinsumDense`` whose equation contracts the input's last axis and produces the output's
    last axis from one kernel axis each (:func:`einsum_axes`); any other equation is unknown."""

    prunable = True

    def channels(self, ctx):
        layer = ctx.layer
        axes = einsum_axes(layer)
        if axes is None:
            ctx.block(ctx.x.labels, f"{ctx.what} has no clear channel axis (equation {layer.equation})")
            return ctx.opaque(f"produced by {ctx.what}")
        ctx.consumer("kernel", axes[0])
        n = int(ctx.call.out_tensors[0].shape[-1])
        return [ctx.producer(n, axes[1], layer.activation, bias="bias" if layer.bias_axes else None)]

    def macs(self, layer, in_shapes, out_shapes):
        inputs, output = layer.equation.replace(" ", "").split("->")
        x_spec, k_spec = inputs.split(",")
        kernel_shape = tuple(layer.kernel.shape)
        sizes = dict(zip(k_spec, kernel_shape))
        contracted = [sizes[c] for c in k_spec if c in x_spec and c not in output]
        total = prod(out_shapes[0][1:], layer, "output") * int(math.prod(contracted))
        return [(layer.kernel, None, total // int(math.prod(kernel_shape)))]

    def resize(self, layer, config, sizes):
        shape = config["output_shape"]
        out = sizes.out_n if isinstance(shape, int) else list(shape[:-1]) + [sizes.out_n]
        return {**config, "output_shape": out}


class EmbeddingRule(LayerRule):
    """``Embedding``: the embedding dimension is produced (a lookup: no MACs formula, so
    :func:`kprune.count` lists it as uncounted)."""

    def channels(self, ctx):
        return [ctx.producer(ctx.layer.output_dim, 1, None, bias=None, kernel="embeddings")]

    def resize(self, layer, config, sizes):
        return {**config, "output_dim": sizes.out_n}


register(L.Dense, DenseRule())
register(L.EinsumDense, EinsumDenseRule())
register(L.Embedding, EmbeddingRule())
