"""Reading and writing whole channel groups: which channels are gone, and removing them.

A channel of a :class:`~kprune.graph.analysis.ChannelGroup` is *removable* (``compact`` may delete
it without changing the model's function) when

1. every producer slice of it is exactly zero (conv filter and bias, Dense column...), and
2. either every follower slice is zero (BatchNorm gamma and beta — with both zero the
   BatchNorm output is exactly 0 whatever its moving statistics — depthwise kernel and bias,
   PReLU alpha...) or every consumer slice is zero (nothing downstream reads it), and
3. every consumer marked ``requires_zero`` (it sees a value that is not 0 once the channel
   is zeroed, e.g. after ``sigmoid``) has a zero slice.

Weights of kprune wrappers are read with their masks applied (masks are the truth until
``compact``, even for soft pruning whose weights keep training under a zero mask), so the
same rule covers wrapped and plain (stripped) models.
"""

from __future__ import annotations

import keras
import numpy as np

from kprune.graph.walk import MaskedLayer

#: BatchNorm statistics never decide whether a channel is zero.
STATISTICS = ("moving_mean", "moving_variance")


#: kernels that soft pruning masks (the producers' filters).
SOFT_KERNELS = ("kernel", "pointwise_kernel", "depthwise_kernel")


def _rows(member, value: np.ndarray) -> np.ndarray:
    """Move the member's axis first and gather ``[C, k, ...]`` slices."""
    moved = np.moveaxis(value, member.axis, 0)
    return moved[member.index]


def masked_value(layer, weight: str, var) -> np.ndarray:
    """The value of ``var`` with the kprune mask of ``layer`` applied (if it has one).

    Masks are the truth until ``compact``: a soft-pruning wrapper may hold non-zero weights
    under a zero mask, and those entries count as zero (as ``kprune.strip`` bakes them).
    """
    value = keras.ops.convert_to_numpy(var)
    masks = layer.masks if is_wrapper(layer) else None
    if masks and weight in masks:
        value = value * keras.ops.convert_to_numpy(masks[weight]).astype(value.dtype)
    return value


def member_zero(member, cache: dict | None = None) -> np.ndarray:
    """Per group channel: whether this member's slice is exactly zero.

    Args:
        member: a :class:`~kprune.graph.analysis.Member`.
        cache: optional dict reused across calls to avoid reading a weight twice.

    Returns:
        Bool array of shape ``[group.size]``.
    """
    var = member.variable()
    key = id(var)
    if cache is not None and key in cache:
        value = cache[key]
    else:
        value = masked_value(member.layer, member.weight, var)
        if cache is not None:
            cache[key] = value
    rows = _rows(member, value)
    return np.all(rows.reshape(rows.shape[0], -1) == 0, axis=1)


def channel_mask_from_weights(group, model=None, cache: dict | None = None) -> np.ndarray:
    """Return which channels of ``group`` are already removable (all-zero, see module doc).

    Args:
        group: a :class:`~kprune.graph.analysis.ChannelGroup`.
        model: unused; accepted so callers can pass the model for symmetry.
        cache: optional dict shared across groups to read each weight once.

    Returns:
        Bool array ``[group.size]``, True where the channel can be removed exactly.

    Example:
        >>> g = kprune.groups(model)[1]
        >>> channel_mask_from_weights(g).sum()   # channels already pruned
        4
    """
    cache = {} if cache is None else cache
    done = np.ones(group.size, bool)
    producers = [m for m in group.members if m.role == "producer"]
    if not producers:
        return np.zeros(group.size, bool)
    for m in producers:
        done &= member_zero(m, cache)
    followers = [m for m in group.members
                 if m.role == "follower" and m.weight not in STATISTICS]
    consumers = [m for m in group.members if m.role == "consumer"]
    f_zero = np.ones(group.size, bool)
    for m in followers:
        f_zero &= member_zero(m, cache)
    c_zero = np.ones(group.size, bool)
    required = np.ones(group.size, bool)
    for m in consumers:
        z = member_zero(m, cache)
        c_zero &= z
        if m.requires_zero:
            required &= z
    return done & (f_zero | c_zero) & required


def _zero_rows(value: np.ndarray, member, drop: np.ndarray) -> np.ndarray:
    moved = np.moveaxis(value, member.axis, 0).copy()
    moved[member.index[drop].ravel()] = 0
    return np.moveaxis(moved, 0, member.axis)


def apply_group_mask(group, keep, soft: bool = False) -> None:
    """Multiply the masks of every wrapped member of ``group`` by a channel mask.

    Producers, followers and consumers that are kprune wrappers get their mask (and their
    weight) zeroed at the dropped channels; members whose layer is not wrapped are left
    alone (the values reaching them are zero, or the channel stays in ``compact``). Each
    (layer, weight) mask is written once, even when several members share it.

    Args:
        group: a :class:`~kprune.graph.analysis.ChannelGroup`.
        keep: bool array ``[group.size]``; False channels are pruned.
        soft: soft filter pruning: only the producers' kernels are masked, and this group's
            kept channels are re-enabled (other groups' indices are untouched), so pruned
            filters keep receiving gradients through biases and BatchNorm parameters.

    Example:
        >>> keep = np.ones(g.size, bool); keep[:4] = False
        >>> apply_group_mask(g, keep)
    """
    keep = np.asarray(keep, bool)
    if keep.shape != (group.size,):
        raise ValueError(f"keep must have shape ({group.size},). Received: shape {keep.shape}.")
    touched = {}
    for m in group.members:
        masks = m.layer.masks if is_wrapper(m.layer) else None
        if not masks or m.weight not in masks:
            continue
        if soft and not (m.role == "producer" and m.weight in SOFT_KERNELS):
            continue
        key = (id(m.layer), m.weight)
        if key not in touched:
            touched[key] = (m, keras.ops.convert_to_numpy(masks[m.weight]).copy())
        mask = touched[key][1]
        view = np.moveaxis(mask, m.axis, 0)
        view[np.asarray(m.index)[~keep].ravel()] = 0
        if soft:
            view[np.asarray(m.index)[keep].ravel()] = 1
    for m, mask in touched.values():
        m.layer.set_mask(m.weight, mask)


def zero_channels(group, keep, consumers: str = "required") -> None:
    """Zero the weight slices of dropped channels directly (plain or wrapped models).

    This is what dependency-aware filter masks do to the weights: producers and followers
    (BatchNorm gamma and beta, not its statistics) are zeroed, and consumers as chosen.

    Args:
        group: a :class:`~kprune.graph.analysis.ChannelGroup`.
        keep: bool array ``[group.size]``; False channels are zeroed.
        consumers: ``"required"`` (default) zeroes only consumers marked
            ``requires_zero``; ``"all"`` zeroes every consumer slice; ``"none"`` none.

    Example:
        >>> zero_channels(g, keep)      # then compact(model) removes those channels
    """
    if consumers not in ("required", "all", "none"):
        raise ValueError(f"consumers must be 'required', 'all' or 'none'. Received: {consumers!r}.")
    drop = ~np.asarray(keep, bool)
    for m in group.members:
        if m.weight in STATISTICS:
            continue
        if m.role == "consumer" and not (consumers == "all" or (consumers == "required" and m.requires_zero)):
            continue
        var = m.variable()
        var.assign(_zero_rows(keras.ops.convert_to_numpy(var), m, drop))
        masks = m.layer.masks if is_wrapper(m.layer) else None
        if masks and m.weight in masks:
            masks[m.weight].assign(_zero_rows(keras.ops.convert_to_numpy(masks[m.weight]), m, drop))


def is_wrapper(layer) -> bool:
    """Whether ``layer`` is a mask wrapper (:class:`~kprune.graph.walk.MaskedLayer`)."""
    return isinstance(layer, MaskedLayer)
