"""Keras callbacks that drive pruning during ``model.fit``."""

from kprune.callbacks.pruning_callback import PruningCallback

__all__ = ["PruningCallback"]
