"""Channel labels and their union-find: the state behind :func:`kprune.graph.analysis.groups`.

Every channel position of every tensor gets an integer label; labels that must be pruned
together are united; labels that must not be pruned carry a reason; and every weight slice a
label reaches is recorded as a :class:`Touch`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class TInfo:
    """Channel labels and zero flags of one tensor's last axis."""

    labels: np.ndarray
    zero: np.ndarray


@dataclass
class Touch:
    """Weight positions that carry the given labels (one per position)."""

    labels: np.ndarray
    layer: object
    weight: str
    axis: int
    role: str
    positions: np.ndarray
    requires_zero: bool = False


class ChannelState:
    """Union-find over channel labels, with reasons and recorded touches."""

    def __init__(self):
        self.parent: list[int] = []
        self.reasons: dict[int, str] = {}
        self.producers: set[int] = set()
        self.units: dict[int, str] = {}
        self.widths: dict[int, int] = {}
        self.touches: list[Touch] = []

    def fresh(self, n: int, reason: str | None = None, producer: bool = False, unit: str = "channel",
              width: int = 1) -> np.ndarray:
        """``n`` new labels; ``unit`` names what one label is (``"channel"``, or ``"head"`` for
        attention heads, which are pruned only with ``granularity: head``); ``width`` is how many
        channels of each projection one label stands for (a head's size), which ``round_to``
        uses."""
        start = len(self.parent)
        self.parent.extend(range(start, start + n))
        labels = np.arange(start, start + n, dtype=np.int64)
        if unit != "channel":
            for i in range(start, start + n):
                self.units[i] = unit
        if width != 1:
            for i in range(start, start + n):
                self.widths[i] = int(width)
        if reason is not None:
            for i in range(start, start + n):
                self.reasons[i] = reason
        if producer:
            self.producers.update(range(start, start + n))
        return labels

    def find(self, a: int) -> int:
        parent = self.parent
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    def union(self, a: np.ndarray, b: np.ndarray) -> None:
        for x, y in zip(a.tolist(), b.tolist()):
            rx, ry = self.find(x), self.find(y)
            if rx != ry:
                self.parent[max(rx, ry)] = min(rx, ry)

    def block(self, labels: np.ndarray, reason: str) -> None:
        for label in np.unique(labels).tolist():
            self.reasons.setdefault(label, reason)

    def touch(self, info_labels, layer, weight, axis, role, positions=None, requires_zero=False):
        positions = np.arange(len(info_labels)) if positions is None else positions
        self.touches.append(
            Touch(np.asarray(info_labels), layer, weight, axis, role, positions, requires_zero)
        )

    def roots(self) -> np.ndarray:
        parent = np.asarray(self.parent, dtype=np.int64)
        while True:
            nxt = parent[parent]
            if np.array_equal(nxt, parent):
                return parent
            parent = nxt
