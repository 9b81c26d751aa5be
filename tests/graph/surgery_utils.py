"""Helpers shared by the graph/surgery tests: dependency-aware random filter zeroing."""

from __future__ import annotations

import keras
import numpy as np

from kprune.graph.analysis import groups as find_groups
from kprune.graph.masks import zero_channels


def randomize_batchnorm(model, seed: int = 0) -> None:
    """Give every BatchNormalization non-trivial gamma, beta and moving statistics."""
    rng = np.random.default_rng(seed)
    for layer in _all_layers(model):
        inner = getattr(layer, "layer", layer) if hasattr(layer, "masks") else layer
        if isinstance(inner, keras.layers.BatchNormalization):
            for name, lo, hi in (("gamma", 0.5, 1.5), ("beta", -0.2, 0.2),
                                 ("moving_mean", -0.2, 0.2), ("moving_variance", 0.5, 1.5)):
                var = getattr(inner, name, None)
                if var is not None:
                    var.assign(rng.uniform(lo, hi, size=var.shape).astype("float32"))


def _all_layers(model):
    out = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            out.extend(_all_layers(layer))
        else:
            out.append(layer)
    return out


def random_filter_zeroing(model, fraction: float, seed: int = 0, groups=None) -> int:
    """Zero ``fraction`` of the channels of every prunable group, group-consistently.

    Channels are ranked by the L1 norm of their producer filters plus a random jitter (so
    ties in fresh models do not all fall on the same channels). Producer filters and biases,
    follower parameters (BatchNorm gamma and beta) and the consumers that need it are
    zeroed, exactly as dependency-aware filter masks do.

    Returns:
        The number of channels zeroed.
    """
    rng = np.random.default_rng(seed)
    groups = find_groups(model) if groups is None else groups
    total = 0
    for g in groups:
        if not g.prunable or g.size < 2:
            continue
        n = int(round(fraction * g.size))
        n = min(n, g.size - 1)
        if n <= 0:
            continue
        score = np.zeros(g.size)
        for m in g.producers:
            value = keras.ops.convert_to_numpy(m.variable())
            rows = np.moveaxis(value, m.axis, 0)[m.index]
            score += np.abs(rows.reshape(g.size, -1)).sum(axis=1)
        score = score * rng.uniform(0.5, 1.5, size=g.size)
        keep = np.ones(g.size, bool)
        keep[np.argsort(score)[:n]] = False
        zero_channels(g, keep)
        total += n
    return total
