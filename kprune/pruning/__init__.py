"""Scores → masks: the :class:`Pruner` and its parts (allocation, granularity, statistics,
the compiled fast update, rewinding, BatchNorm recalibration)."""
