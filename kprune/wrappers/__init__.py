"""Mask wrappers and the functions that add or remove them."""

from kprune.wrappers.prune_wrapper import PruneWrapper
from kprune.wrappers.wrap import find_wrappers, sparsity, strip, wrap

__all__ = ["PruneWrapper", "wrap", "strip", "sparsity", "find_wrappers"]
