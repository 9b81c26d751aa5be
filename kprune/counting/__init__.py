"""How big: params, MACs and FLOPs per layer, dense and effective (see ``docs/counting.md``)."""

from kprune.counting.counter import Counts, LayerCount, count

__all__ = ["Counts", "LayerCount", "count"]
