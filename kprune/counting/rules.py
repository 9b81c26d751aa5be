"""The per-layer formulas of kprune's counting convention (see :mod:`kprune.counting.counter`).

Pure functions of a layer and its input/output shapes: :func:`terms` gives the
weight contractions (MACs), :func:`ops` the other arithmetic operations and :func:`nni`
the figure NNI's ``count_flops_params(mode="full")`` would report for the same layer.
"""

from __future__ import annotations

import math
import re

import keras

from kprune.errors import GraphError

L = keras.layers
_CONV = (L.Conv1D, L.Conv2D, L.Conv3D)
_CONV_T = (L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose)
_DEPTHWISE = tuple(c for c in (getattr(L, "DepthwiseConv1D", None), L.DepthwiseConv2D) if c)
_SEPARABLE = (L.SeparableConv1D, L.SeparableConv2D)
_POOL = tuple(getattr(L, n) for n in dir(L) if re.fullmatch(r"(Max|Average)Pooling[123]D", n))
_GLOBAL_POOL = tuple(getattr(L, n) for n in dir(L) if re.fullmatch(r"Global(Max|Average)Pooling[123]D", n))
_ELEMENTWISE_MERGE = (L.Add, L.Subtract, L.Multiply, L.Maximum, L.Minimum)
ACTIVATIONS = tuple(getattr(L, n) for n in ("Activation", "ReLU", "LeakyReLU", "PReLU", "ELU", "Softmax") if hasattr(L, n))
STAT_NORMS = tuple(
    getattr(L, n) for n in ("LayerNormalization", "GroupNormalization", "RMSNormalization", "UnitNormalization") if hasattr(L, n)
)
AFFINE = (L.Rescaling, L.Normalization)
RNN = (L.LSTM, L.GRU, L.SimpleRNN)


def prod(dims, layer, what) -> int:
    """Product of known dimensions; a ``None`` among them is a :class:`GraphError`."""
    dims = list(dims)
    if any(d is None for d in dims):
        raise GraphError(
            f"Layer {layer.name!r} ({type(layer).__name__}) has an unknown {what} dimension "
            f"(received shape with None: {tuple(dims)}). Pass `input_shape=` to count() so "
            "that every non-batch dimension is known."
        )
    return int(math.prod(int(d) for d in dims))


def _spatial(shape, data_format):
    """Spatial dimensions of a conv input/output shape."""
    return shape[2:] if data_format == "channels_first" else shape[1:-1]


def shapes(specs):
    """Shapes of all tensors (or KerasTensors) in a nested structure, in order."""
    return [tuple(s.shape) for s in keras.tree.flatten(specs) if hasattr(s, "shape")]


# --------------------------------------------------------------------------- formulas


def terms(layer, in_shapes, out_shapes):
    """Weight contractions of one call, or ``None`` for layers without MACs.

    Returns:
        ``[(weight_variable_or_None, size, uses)]``: the layer's MACs are
        ``sum(weight.size * uses)`` (``size`` stands in when there is no weight) and its
        effective MACs ``sum(nonzero(weight) * uses)``.
    """
    out = out_shapes[0] if out_shapes else None
    inp = in_shapes[0] if in_shapes else None
    if isinstance(layer, _CONV + _DEPTHWISE):
        uses = prod(_spatial(out, layer.data_format), layer, "output spatial")
        return [(layer.kernel, None, uses)]
    if isinstance(layer, _CONV_T):
        return [(layer.kernel, None, prod(_spatial(inp, layer.data_format), layer, "input spatial"))]
    if isinstance(layer, _SEPARABLE):
        uses = prod(_spatial(out, layer.data_format), layer, "output spatial")
        return [(layer.depthwise_kernel, None, uses), (layer.pointwise_kernel, None, uses)]
    if isinstance(layer, L.Dense):
        return [(layer.kernel, None, prod(inp[1:-1], layer, "leading"))]
    if isinstance(layer, L.EinsumDense):
        return [(layer.kernel, None, _einsum_uses(layer, out))]
    if isinstance(layer, L.Dot):
        axes = layer.axes if isinstance(layer.axes, (list, tuple)) else (layer.axes, layer.axes)
        contracted = in_shapes[0][axes[0]]
        return [(None, prod(out[1:], layer, "output") * prod([contracted], layer, "contracted"), 1)]
    if isinstance(layer, RNN):
        steps = prod([inp[1]], layer, "time")
        return [(layer.cell.kernel, None, steps), (layer.cell.recurrent_kernel, None, steps)]
    if isinstance(layer, L.MultiHeadAttention):
        return _attention_terms(layer, in_shapes)
    return None


def input_shapes(layer, args, kwargs):
    """Input shapes of one call; ``[query, value, key]`` for MultiHeadAttention."""
    if isinstance(layer, L.MultiHeadAttention):
        named = dict(zip(("query", "value", "key"), args))
        named.update({k: v for k, v in kwargs.items() if k in ("query", "value", "key")})
        if named.get("key") is None:
            named["key"] = named["value"]
        return [tuple(named[k].shape) for k in ("query", "value", "key")]
    return shapes((args, kwargs))


def _attention_terms(layer, in_shapes):
    """Projections, scores (Q·K) and context (scores·V) of MultiHeadAttention.

    Positions are all axes between batch and features (the default ``attention_axes``).
    """
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


def _einsum_uses(layer, out_shape):
    equation = layer.equation.replace(" ", "")
    inputs, output = equation.split("->")
    x_spec, k_spec = inputs.split(",")
    kernel_shape = tuple(layer.kernel.shape)
    sizes = dict(zip(k_spec, kernel_shape))
    contracted = [sizes[c] for c in k_spec if c in x_spec and c not in output]
    macs = prod(out_shape[1:], layer, "output") * int(math.prod(contracted))
    return macs // int(math.prod(kernel_shape))


def nni(layer, macs, in_shapes, out_shapes):
    """NNI's ``count_flops_params(mode="full")`` figure for one call (see Counts.nni_flops)."""
    out_elems = sum(prod(s[1:], layer, "output") for s in out_shapes)
    if isinstance(layer, _CONV + _CONV_T + _DEPTHWISE + _SEPARABLE + (L.Dense, L.EinsumDense)):
        return macs + (out_elems if getattr(layer, "bias", None) is not None else 0)
    if isinstance(layer, L.BatchNormalization):
        return 2 * out_elems
    if isinstance(layer, L.LeakyReLU):
        return out_elems
    if isinstance(layer, _POOL) and "Average" in type(layer).__name__:
        return out_elems
    return 0


def ops(layer, in_shapes, out_shapes):
    """Non-MAC arithmetic operations of one call (see the module docstring)."""
    if isinstance(layer, L.MultiHeadAttention):
        out_shapes = out_shapes[:1]  # not the optional attention scores
    out_elems = sum(prod(s[1:], layer, "output") for s in out_shapes)
    if isinstance(layer, _CONV + _CONV_T + _DEPTHWISE + _SEPARABLE + (L.Dense, L.EinsumDense)):
        n = out_elems if getattr(layer, "bias", None) is not None else 0
        act = getattr(layer, "activation", None)
        if act is not None and act is not keras.activations.linear:
            n += out_elems
        return n
    if isinstance(layer, L.MultiHeadAttention):
        q, v, k = (prod(s[1:-1], layer, "sequence") for s in in_shapes)
        heads, key_dim, value_dim = layer.num_heads, layer.key_dim, layer.value_dim
        n = heads * q * k + q * heads * key_dim  # softmax over scores, query scaling
        if layer.query_dense.bias is not None:
            n += heads * (q * key_dim + k * key_dim + v * value_dim) + prod(out_shapes[0][1:], layer, "output")
        return n
    if isinstance(layer, L.BatchNormalization) or isinstance(layer, AFFINE):
        return 2 * out_elems
    if isinstance(layer, STAT_NORMS):
        return 7 * out_elems
    if isinstance(layer, _POOL):
        return out_elems * int(math.prod(layer.pool_size))
    if isinstance(layer, _GLOBAL_POOL):
        return sum(prod(s[1:], layer, "input") for s in in_shapes)
    if isinstance(layer, _ELEMENTWISE_MERGE):
        return (len(in_shapes) - 1) * out_elems
    if isinstance(layer, L.Average):
        return len(in_shapes) * out_elems
    if isinstance(layer, ACTIVATIONS):
        return out_elems
    return 0
