"""Dense, EinsumDense (with a clear channel axis) and Embedding."""

from __future__ import annotations

import keras

from kprune.graph.layers.base import LayerRule, register

L = keras.layers


class DenseRule(LayerRule):
    """``Dense``: kernel rows read the input channels, columns are the units."""

    prunable = True

    def channels(self, ctx):
        ctx.consumer("kernel", 0)
        return [ctx.producer(ctx.layer.units, 1, ctx.layer.activation)]

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


class EinsumDenseRule(LayerRule):
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

    def resize(self, layer, config, sizes):
        shape = config["output_shape"]
        out = sizes.out_n if isinstance(shape, int) else list(shape[:-1]) + [sizes.out_n]
        return {**config, "output_shape": out}


class EmbeddingRule(LayerRule):
    """``Embedding``: the embedding dimension is produced."""

    prunable = False

    def channels(self, ctx):
        return [ctx.producer(ctx.layer.output_dim, 1, None, bias=None, kernel="embeddings")]

    def resize(self, layer, config, sizes):
        return {**config, "output_dim": sizes.out_n}


register(L.Dense, DenseRule())
register(L.EinsumDense, EinsumDenseRule())
register(L.Embedding, EmbeddingRule())
