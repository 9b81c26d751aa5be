"""Granularities: the unit a mask prunes, and the pure functions that build those masks.

========  =====================================================================================
kind      unit
========  =====================================================================================
weight    one weight (fine-grained)
filter    one output channel of a layer, with everything coupled to it (channel groups)
channel   one input channel of the layer's kernel: the slice ``kernel[..., c, :]``
n:m       ``"N:M"``, e.g. ``"2:4"``: in every run of M consecutive weights along the input-channel
          axis, N are kept (the M − N lowest-scored are pruned), as TFLite/TFMOT define 2:4
block     ``block_shape: [r, c]`` tiles of the kernel's 2-D view (rows = all input axes
          flattened, columns = output channels); TFLite's 1×4 (out × in) blocks of a Dense
          weight are ``block_shape: [4, 1]`` in Keras' (in, out) layout
========  =====================================================================================
"""

from __future__ import annotations

import math

import numpy as np

from kprune.config.granularity import KINDS, check, parse  # noqa: F401  (the grammar, re-exported)
from kprune.errors import UnsupportedLayerError

def input_axis(layer, weight: str, ndim: int) -> int:
    """The input-channel axis of ``layer``'s weight ``weight`` (``ndim`` dimensions).

    Dense/Conv/Depthwise kernels are ``(..., in, out)``; transposed convolutions store
    ``(..., out, in)``.

    Raises:
        UnsupportedLayerError: for layers whose input axis is not defined (EinsumDense).
    """
    kind = type(layer).__name__
    if kind == "EinsumDense" or ndim < 2:
        raise UnsupportedLayerError(
            f"layer `{layer.name}` ({kind}) has no single input-channel axis, so channel, n:m and "
            "block granularities do not apply to it. Use granularity: weight for it, or exclude it.")
    return ndim - 1 if kind.endswith("Transpose") else ndim - 2


def nm_keep(scores: np.ndarray, n: int, m: int, axis: int, sparsity: float | None = None,
            frozen=None) -> np.ndarray:
    """Keep-mask with N of every M consecutive entries along ``axis`` kept.

    Args:
        scores: elementwise scores (shape of the weight).
        n, m: the N:M pattern.
        axis: the axis the runs of M lie along (the input-channel axis).
        sparsity: gradual schedules pass their current target; each block then prunes
            ``round(sparsity * M)`` entries (``M − N`` at the final target). Default: ``M − N``.
        frozen: entries already pruned (they are pruned first).

    Returns:
        Bool keep-mask of ``scores.shape``.

    Example:
        >>> nm_keep(np.array([[4., 1., 3., 2.]]), 2, 4, axis=1).astype(int)
        array([[1, 0, 1, 0]])
    """
    s = np.moveaxis(np.asarray(scores, dtype=np.float64), axis, -1)
    if s.shape[-1] % m:
        raise UnsupportedLayerError(f"{n}:{m} sparsity needs the input-channel count to be a multiple of "
                                    f"{m}; this weight has {s.shape[-1]}. Exclude the layer or pick another M.")
    prune = m - n if sparsity is None else min(m - n, int(round(sparsity * m)))
    blocks = s.reshape(-1, m).copy()
    if frozen is not None:
        fz = np.moveaxis(np.asarray(frozen, dtype=bool), axis, -1).reshape(-1, m)
        blocks[fz] = -np.inf
    keep = np.ones(blocks.shape, dtype=bool)
    if prune > 0:
        order = np.argsort(blocks, axis=1, kind="stable")[:, :prune]
        np.put_along_axis(keep, order, False, axis=1)
    return np.moveaxis(keep.reshape(s.shape), -1, axis)


def _matrix(shape: tuple, out_axis: int) -> tuple:
    """2-D view (rows, cols) of a weight: cols = ``out_axis``, rows = the others flattened."""
    rows = int(np.prod([d for i, d in enumerate(shape) if i != out_axis]))
    return rows, shape[out_axis]


def block_scores(scores: np.ndarray, block_shape, out_axis: int = -1) -> np.ndarray:
    """Mean elementwise score of every ``block_shape`` tile of the 2-D view.

    Edge tiles that do not fill a whole block average over the entries they have.

    Example:
        >>> block_scores(np.arange(8.).reshape(2, 4), (1, 2))
        array([[0.5, 2.5],
               [4.5, 6.5]])
    """
    s = np.asarray(scores, dtype=np.float64)
    out_axis = out_axis % s.ndim
    rows, cols = _matrix(s.shape, out_axis)
    mat = np.moveaxis(s, out_axis, -1).reshape(rows, cols)
    r, c = int(block_shape[0]), int(block_shape[1])
    br, bc = math.ceil(rows / r), math.ceil(cols / c)
    total = np.zeros((br, bc))
    count = np.zeros((br, bc))
    ri, ci = np.arange(rows) // r, np.arange(cols) // c
    np.add.at(total, (ri[:, None], ci[None, :]), mat)
    np.add.at(count, (ri[:, None], ci[None, :]), 1.0)
    return total / count


def block_sizes(shape: tuple, block_shape, out_axis: int = -1) -> np.ndarray:
    """Number of weights in each tile (for global ranking by cost)."""
    out_axis = out_axis % len(shape)
    rows, cols = _matrix(tuple(shape), out_axis)
    r, c = int(block_shape[0]), int(block_shape[1])
    rs = np.bincount(np.arange(rows) // r).astype(np.float64)
    cs = np.bincount(np.arange(cols) // c).astype(np.float64)
    return rs[:, None] * cs[None, :]


def expand_blocks(keep_blocks: np.ndarray, shape: tuple, block_shape, out_axis: int = -1) -> np.ndarray:
    """Elementwise keep-mask of ``shape`` from a keep-mask over tiles."""
    out_axis = out_axis % len(shape)
    rows, cols = _matrix(tuple(shape), out_axis)
    r, c = int(block_shape[0]), int(block_shape[1])
    mat = np.asarray(keep_blocks, dtype=bool)[np.arange(rows)[:, None] // r, np.arange(cols)[None, :] // c]
    moved = [d for i, d in enumerate(shape) if i != out_axis] + [shape[out_axis]]
    return np.moveaxis(mat.reshape(moved), -1, out_axis)


def expand_axis(keep: np.ndarray, shape: tuple, axis: int) -> np.ndarray:
    """Elementwise keep-mask of ``shape`` from a keep-vector along ``axis``."""
    view = [1] * len(shape)
    view[axis] = shape[axis]
    return np.broadcast_to(np.asarray(keep, dtype=bool).reshape(view), shape).copy()
