"""What is coupled, and making it smaller: the graph walk, channel groups, group masks and ``compact``.

``groups(model)`` lists the channel groups that must be pruned together; ``compact(model)``
rebuilds the model with the zeroed channels removed. The per-layer knowledge they rely on
lives in the layer registry, :mod:`kprune.graph.layers`.
"""

from kprune.graph.analysis import (Analysis, ChannelGroup, Member, analyze, check_independent,
                                   format_groups, groups)
from kprune.graph.surgery import compact

__all__ = ["Analysis", "ChannelGroup", "Member", "analyze", "check_independent", "compact",
           "format_groups", "groups"]
