"""Keras callbacks that drive pruning during ``model.fit``: the pruning callback and the lottery ticket."""

from kprune.callbacks.lottery import LotteryTicket
from kprune.callbacks.pruning_callback import PruningCallback

__all__ = ["LotteryTicket", "PruningCallback"]
