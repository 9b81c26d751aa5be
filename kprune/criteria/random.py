"""``random``: seeded uniform scores, the baseline every criterion must beat (ShrinkBench)."""

from __future__ import annotations

import zlib

import numpy as np

from kprune.criteria.base import register
from kprune.criteria.base import Criterion


def layer_rng(seed: int, name: str) -> np.random.Generator:
    """A generator fixed by the recipe seed and the layer/weight name (stable across runs)."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32(name.encode("utf-8"))])


@register("random")
class Random(Criterion):
    """Uniform random scores in [0, 1), seeded by ``prune.seed`` and the layer name.

    The same layer gets the same scores at every update, so gradual schedules prune nested
    sets (a unit pruned at 30 % stays pruned at 50 %).

    Example:
        >>> a = Random()(np.zeros((3, 4)), axis=1, seed=0, name="conv1/kernel")
        >>> b = Random()(np.zeros((3, 4)), axis=1, seed=0, name="conv1/kernel")
        >>> bool((a == b).all()) and a.shape == (4,)
        True
    """

    name = "random"
    needs = ()
    paper = "Blalock et al. 2020, What is the State of Neural Network Pruning? (ShrinkBench)"

    def __call__(self, kernel, axis=None, seed=0, name="", **stats):
        shape = np.shape(kernel) if axis is None else (np.shape(kernel)[axis],)
        return layer_rng(seed, name).random(shape)
