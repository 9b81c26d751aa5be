"""Allocation: from importance scores to keep-masks (layerwise or global).

Pure numpy functions. Ranking is by score, lowest pruned first, ties broken by position
(stable sort), so results are deterministic. ``frozen`` marks units that are already pruned
under hard pruning: they rank below everything and stay pruned.

Rounding: a target sparsity ``s`` over ``n`` units prunes ``round(s * n)`` of them. Kept channel
counts are then rounded by ``round_to`` (:func:`round_kept`): an integer rounds them *up* to a
multiple (never pruning more than asked); ``"auto"`` (the recipe default) rounds them to the
*nearest* multiple of 8, never more than 10 % below the target (MobileNet's ``_make_divisible``)
— XNNPACK's CPU kernels tile output channels by 8, so other counts pay for padded tiles — in
groups of at least 16 channels, and leaves smaller groups exact.
"""

from __future__ import annotations

import math

import numpy as np

AUTO_MULTIPLE = 8  # XNNPACK's GEMM/conv micro-kernels tile output channels by 8 (16 on AVX-512)
AUTO_MIN_CHANNELS = 16  # below this, a multiple of 8 could only keep 8: the sparsity would be lost


def round_kept(n: int, keep: int, round_to="auto", width: int = 1, min_keep: int = 1) -> int:
    """Rounds a kept count ``keep`` of ``n`` units by ``round_to``.

    Args:
        n: units in the group (channels, or heads of ``width`` channels each).
        keep: kept units before rounding.
        round_to: an integer ``r`` (kept channels rounded *up* to a multiple of ``r``), or
            ``"auto"`` (to the *nearest* multiple of 8, at least 8 and never more than 10 %
            below ``keep`` — MobileNet's ``_make_divisible`` rule — in groups of at least 16
            channels; smaller groups exact).
        width: channels one unit stands for (a head's size); rounding applies to
            ``units x width`` channels, so heads of size 8 are never constrained by 8.
        min_keep: the least the result may be (when ``n`` allows).

    Example:
        >>> round_kept(64, 45, "auto"), round_kept(64, 43, "auto"), round_kept(12, 5, "auto")
        (48, 40, 5)
        >>> round_kept(16, 11, "auto")  # 8 would be 27 % below 11
        16
        >>> round_kept(64, 41, 8), round_kept(4, 1, 8, width=4)
        (48, 2)
    """
    width = max(1, int(width))
    if round_to == "auto":
        if n * width < AUTO_MIN_CHANNELS:
            return keep
        step = AUTO_MULTIPLE // math.gcd(AUTO_MULTIPLE, width)
        rounded = max(step, int(math.floor(keep / step + 0.5)) * step)
        if rounded < 0.9 * keep:  # as MobileNet's _make_divisible: never more than 10 % below the target
            rounded += step
        return min(n, max(rounded, min(min_keep, n)))
    round_to = int(round_to)
    step = round_to // math.gcd(round_to, width) if round_to > 1 else 1
    if step > 1:
        keep = min(n, int(math.ceil(keep / step) * step))
    return keep


def n_pruned(n: int, sparsity: float) -> int:
    """Number of units to prune out of ``n`` at ``sparsity`` (rounded, within [0, n])."""
    return int(min(n, max(0, round(sparsity * n))))


def _ranked(scores: np.ndarray, frozen) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64).ravel().copy()
    if frozen is not None:
        s[np.asarray(frozen).ravel().astype(bool)] = -np.inf
    return np.argsort(s, kind="stable")


def weight_mask(scores, sparsity: float, frozen=None) -> np.ndarray:
    """Keep-mask (bool, shape of ``scores``) pruning the ``sparsity`` lowest-scored entries.

    Example:
        >>> weight_mask(np.array([3., 1., 2., 4.]), 0.5)
        array([ True, False, False,  True])
    """
    scores = np.asarray(scores)
    flat = np.asarray(scores, dtype=np.float64).ravel()
    k = n_pruned(flat.size, sparsity)
    keep = np.ones(flat.size, dtype=bool)
    candidates = np.arange(flat.size)
    if frozen is not None:
        # frozen entries rank first (by position); select the rest among the others only, so
        # the partition below never runs over a large block of equal values
        fz = np.asarray(frozen).ravel().astype(bool)
        frozen_idx = np.flatnonzero(fz)
        keep[frozen_idx[:k]] = False
        k -= min(k, frozen_idx.size)
        candidates = np.flatnonzero(~fz)
    if k:
        # O(n) selection with the same result as a stable argsort: everything below the k-th
        # smallest value, then the first (by position) of the entries equal to it
        values = flat[candidates]
        kth = np.partition(values, k - 1)[k - 1]
        below = values < kth
        keep[candidates[below]] = False
        keep[candidates[np.flatnonzero(values == kth)[:k - int(below.sum())]]] = False
    return keep.reshape(scores.shape)


def kept_channels(n: int, sparsity: float, round_to=1, min_keep: int = 1, width: int = 1) -> int:
    """How many of ``n`` channels survive ``sparsity``, respecting ``min_keep`` and ``round_to``
    (see :func:`round_kept`; ``width``: channels per unit, for heads)."""
    keep = n - n_pruned(n, sparsity)
    keep = max(keep, min(min_keep, n))
    return round_kept(n, keep, round_to, width, min_keep)


def channel_keep(scores, sparsity: float, round_to=1, min_keep: int = 1, frozen=None,
                 width: int = 1) -> np.ndarray:
    """Keep-mask over channels: the ``kept_channels`` highest-scored ones survive.

    Example:
        >>> channel_keep(np.array([0.1, 5., 2., 3.]), 0.5)
        array([False,  True, False,  True])
    """
    scores = np.asarray(scores, dtype=np.float64)
    n = scores.size
    keep_n = kept_channels(n, sparsity, round_to, min_keep, width)
    if frozen is not None and round_to in (1, "auto"):
        # frozen channels stay pruned even if min_keep would want them back, unless all are frozen
        keep_n = min(keep_n, max(int(n - np.sum(frozen)), min(min_keep, n)))
    keep = np.zeros(n, dtype=bool)
    order = _ranked(scores, frozen)
    keep[order[n - keep_n:]] = True
    return keep


def global_keep(scores: list, sparsity: float, costs: list | None = None, max_per_unit: float = 1.0,
                min_keep: int = 0, round_to=1, frozen: list | None = None, widths: list | None = None) -> list:
    """Global ranking across units (layers or channel groups).

    Prunes the lowest-scored entries over all units until the pruned cost reaches
    ``sparsity`` x total cost. Each unit keeps at least ``max(min_keep, (1 - max_per_unit) x
    size)`` entries; ``round_to`` rounds each unit's kept count up afterwards.

    Args:
        scores: one score array per unit.
        sparsity: target fraction of the total cost to prune.
        costs: per-entry cost arrays (default 1 per entry, i.e. a fraction of entries).
        max_per_unit: the most any unit may be pruned (fraction of its entries).
        min_keep: entries every unit keeps.
        round_to: kept counts rounded afterwards by :func:`round_kept` (an integer or ``"auto"``).
        widths: channels per entry of each unit (head sizes; default 1).
        frozen: per-unit bool arrays of entries already pruned (hard pruning).

    Returns:
        One bool keep-mask per unit, shaped like its scores.
    """
    flat = [np.asarray(s, dtype=np.float64).ravel() for s in scores]
    sizes = [f.size for f in flat]
    cost = [np.ones(n) if costs is None else np.broadcast_to(np.asarray(c, dtype=np.float64).ravel(), (n,))
            for n, c in zip(sizes, costs or [None] * len(flat))]
    unit = np.concatenate([np.full(n, i) for i, n in enumerate(sizes)]) if sizes else np.zeros(0, int)
    allscores = np.concatenate(flat) if flat else np.zeros(0)
    allcost = np.concatenate(cost) if cost else np.zeros(0)
    if frozen is not None:
        fz = np.concatenate([np.asarray(f, dtype=bool).ravel() for f in frozen])
        allscores = np.where(fz, -np.inf, allscores)
    order = np.argsort(allscores, kind="stable")
    budget = sparsity * float(allcost.sum())
    cap = [n - max(min(min_keep, n), int(math.ceil((1.0 - max_per_unit) * n - 1e-9))) for n in sizes]
    pruned_count = [0] * len(sizes)
    keep = np.ones(allscores.size, dtype=bool)
    spent = 0.0
    for idx in order:
        u = unit[idx]
        if pruned_count[u] >= cap[u]:
            continue
        # prune while doing so brings the pruned cost closer to the budget (round to nearest)
        if spent + allcost[idx] / 2.0 > budget + 1e-9:
            break
        keep[idx] = False
        pruned_count[u] += 1
        spent += allcost[idx]
    out, start = [], 0
    for i, (n, s) in enumerate(zip(sizes, scores)):
        k = keep[start:start + n]
        have = int(k.sum())
        want = round_kept(n, have, round_to, widths[i] if widths else 1, min_keep)
        if want > have:  # the best-scored pruned entries come back
            extra = np.argsort(-np.where(k, -np.inf, allscores[start:start + n]), kind="stable")
            k = k.copy()
            k[extra[:want - have]] = True
        elif want < have:  # "auto" rounded down: the worst-scored kept entries go
            worst = np.argsort(np.where(k, allscores[start:start + n], np.inf), kind="stable")
            k = k.copy()
            k[worst[:have - want]] = False
        out.append(k.reshape(np.shape(s)))
        start += n
    return out


def aggregate(vectors: list, how: str = "sum") -> np.ndarray:
    """Combines the per-channel scores of a group's members (``sum``, ``mean`` or ``max``)."""
    stack = np.stack([np.asarray(v, dtype=np.float64) for v in vectors])
    if how == "sum":
        return stack.sum(0)
    if how == "mean":
        return stack.mean(0)
    if how == "max":
        return stack.max(0)
    raise ValueError(f"aggregate must be one of ['sum', 'mean', 'max']. Received: aggregate={how!r}")
