"""Rewinding (lottery ticket, Frankle & Carbin 2019): snapshots of a model's weights and optimizer reset.

The rewind point (all weights and BatchNorm statistics, masks and step counters excluded) is
kept in memory by the :class:`kprune.Pruner`; :func:`save_snapshot` / :func:`load_snapshot`
write it to and read it from an ``.npz`` file next to a saved ``.keras`` model. The rounds
around ``model.fit`` are driven by :class:`kprune.callbacks.lottery.LotteryTicket`.
"""


from __future__ import annotations

import numpy as np

from kprune.errors import KPruneError
from kprune.wrappers.wrap import find_wrappers


def _mask_ids(model) -> set:
    ids = set()
    for w in find_wrappers(model):
        ids.update(id(v) for v in w.masks.values())
        ids.add(id(w.pruning_step))
    return ids


def _state(model) -> list:
    skip = _mask_ids(model)
    return [v for v in model.weights if id(v) not in skip]


def snapshot(model) -> list:
    """Copies of every weight of ``model`` except kprune masks and step counters."""
    return [np.array(v.numpy(), copy=True) for v in _state(model)]


def restore(model, values: list):
    """Assigns a :func:`snapshot` back (masks are not touched; call ``apply_masks`` after)."""
    state = _state(model)
    if len(state) != len(values):
        raise KPruneError(f"the rewind snapshot holds {len(values)} weights but model `{model.name}` has "
                          f"{len(state)}: it was taken from another model.")
    for v, x in zip(state, values):
        v.assign(x)


def reset_optimizer(optimizer, iterations: int = 0):
    """Zeroes an optimizer's slots (momentum, Adam moments) and sets its step counter.

    The learning-rate variable is kept; ``iterations`` restarts learning-rate schedules at
    the rewind step, as the lottery-ticket experiments replay training from there.
    """
    keep = {id(optimizer.iterations)}
    lr = getattr(optimizer, "_learning_rate", None)
    if lr is not None and hasattr(lr, "assign"):
        keep.add(id(lr))
    for v in optimizer.variables:
        if id(v) not in keep:
            v.assign(np.zeros(tuple(v.shape), dtype=v.dtype))
    optimizer.iterations.assign(int(iterations))


def save_snapshot(values: list, path):
    """Writes a rewind snapshot to ``path`` (``.npz``)."""
    np.savez(path, *values)


def load_snapshot(path) -> list:
    """Reads a snapshot written by :func:`save_snapshot`."""
    with np.load(path) as f:
        return [f[f"arr_{i}"] for i in range(len(f.files))]
