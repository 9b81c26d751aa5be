"""Channel groups: which filters, channels and weight slices must be pruned together.

``groups(model)`` walks the functional graph (nested models inlined, kprune wrappers seen
as the layer they wrap), labels every channel of every tensor, merges the labels that are
coupled (an ``Add`` of two convolutions, a ``Multiply`` of a squeeze-and-excitation gate,
a shared layer, a GroupNormalization group) and summarizes each coupled set of channels as a
:class:`ChannelGroup`: the weight slices (:class:`Member`) that carry each channel.

What each layer does to channels is its rule in the layer registry (:mod:`kprune.graph.layers`);
see ``docs/surgery.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import keras
import numpy as np

from kprune.errors import GraphError
from kprune.graph.layers import Ctx, rule_for
from kprune.graph.state import ChannelState, TInfo
from kprune.graph.walk import FlatGraph, flatten_graph, unwrap, weight_at

ROLES = ("producer", "follower", "consumer")
NO_PRODUCER = ("has no producer layer (its channels come from the model input or from an "
               "operation kprune does not analyse)")


@dataclass(frozen=True, eq=False)
class Member:
    """The weight slices of one layer that carry a group's channels.

    Attributes:
        layer: the layer as it appears in the flattened model (a kprune wrapper stays a
            wrapper; its weights live on ``layer.layer``).
        weight: attribute name of the weight on the inner layer (``"kernel"``, ``"gamma"``...).
        axis: non-negative axis of that weight indexed by the group's channels.
        index: int array ``[group.size, k]``: for group channel ``c`` the ``k`` positions
            along ``axis`` (``k > 1`` after Flatten, for depth multipliers, GroupNorm groups).
        role: ``"producer"``, ``"follower"`` or ``"consumer"``.
        requires_zero: for consumers, whether the channel reaching them is *not* exactly 0
            once producers and followers are zeroed (e.g. after ``sigmoid``); such a
            consumer slice must be zero too before the channel can be removed.
    """

    layer: object
    weight: str
    axis: int
    index: np.ndarray
    role: str
    requires_zero: bool = False

    @property
    def inner(self):
        """The layer that owns the weight (unwraps a kprune wrapper)."""

        return unwrap(self.layer)

    def variable(self):
        """The Keras variable of this member's weight (a dotted path reaches a sublayer's
        weight, e.g. ``_query_dense.kernel`` of an attention layer)."""
        return weight_at(self.inner, self.weight)


@dataclass
class ChannelGroup:
    """A set of coupled channels that must be pruned together.

    Attributes:
        id: position of the group in ``groups(model)``.
        size: number of channels ``C`` in the group.
        members: the weight slices carrying them.
        prunable: whether channels of this group may be removed.
        reason: why not, when ``prunable`` is False.
        unit: what one element of the group is: ``"channel"`` (filters, units, channels), or
            ``"head"`` (attention heads, pruned with ``granularity: head``).
        width: channels of each projection one element stands for: 1 for a channel, the head
            size (the gcd of key and value sizes) for a head.
    """

    id: int
    size: int
    members: list
    prunable: bool
    reason: str | None
    roots: np.ndarray = field(default=None, repr=False)
    unit: str = "channel"
    width: int = 1

    def _role(self, role):
        return [m for m in self.members if m.role == role]

    @property
    def producers(self) -> list:
        """Members whose layer outputs the channels (filters, units)."""
        return self._role("producer")

    @property
    def followers(self) -> list:
        """Per-channel parameters the channels pass through (BatchNorm, depthwise...)."""
        return self._role("follower")

    @property
    def consumers(self) -> list:
        """Input slices of the layers that read the channels."""
        return self._role("consumer")

    def layer_names(self, role: str | None = None) -> list:
        """Names of the member layers (optionally of one role), first appearance first."""
        names = []
        for m in self.members:
            if (role is None or m.role == role) and m.layer.name not in names:
                names.append(m.layer.name)
        return names

    def labels(self, role: str | None = None) -> list:
        """Like :meth:`layer_names`, but a member inside a list of blocks of one layer (a
        keras-hub ``ViTEncoder``) is named with its block: ``vit_encoder/encoder_layers.0``."""
        names = []
        for m in self.members:
            if role is not None and m.role != role:
                continue
            parts = m.weight.split(".")
            at = next((i for i, p in enumerate(parts) if p.isdigit()), None)
            name = m.layer.name if at is None else f"{m.layer.name}/{'.'.join(parts[:at + 1])}"
            if name not in names:
                names.append(name)
        return names


@dataclass
class Analysis:
    """Everything :func:`analyze` learned (used by :mod:`kprune.graph.surgery`)."""

    flat: FlatGraph
    infos: dict
    roots: np.ndarray
    groups: list


def channels_first(layer) -> bool:
    """Whether ``layer`` keeps its channels on axis 1 (``data_format="channels_first"``). kprune
    labels channels on the last axis, so such a layer is left whole: its inputs are blocked, its
    outputs opaque, and :func:`kprune.compact` copies it unchanged."""
    return isinstance(layer, keras.layers.Layer) and getattr(layer, "data_format", "channels_last") not in (
        None, "channels_last")


def apply_rule(state: ChannelState, call, infos: list) -> list:
    """Applies the registered rule of ``call``'s layer or operation; returns the outputs' info."""
    ctx = Ctx(state, call, infos)
    layer = ctx.layer
    if channels_first(layer):
        ctx.block_inputs(f"{ctx.what} uses channels_first")
        return ctx.opaque(f"produced by channels_first {ctx.what}")
    return rule_for(layer).channels(ctx)


def analyze(model) -> Analysis:
    """Label every channel of ``model`` and build its channel groups.

    Args:
        model: a functional or Sequential Keras model (possibly wrapped, possibly nested).

    Returns:
        An :class:`Analysis` with the flattened graph, the per-tensor channel info, the
        union-find roots and the groups.
    """
    flat = flatten_graph(model)
    state = ChannelState()
    infos: dict = {}
    for t, k in zip(flat.input_tensors, flat.input_keys):
        n = int(t.shape[-1]) if len(t.shape) and t.shape[-1] is not None else 0
        name = t._keras_history.operation.name
        infos[k] = TInfo(state.fresh(n, reason=f"comes from the model input '{name}'"),
                         np.zeros(n, bool))
    for call in flat.calls:
        outs = apply_rule(state, call, [infos[k] for k in call.in_keys])
        for k, info in zip(call.out_keys, outs):
            infos[k] = info
    for t, k in zip(flat.output_tensors, flat.output_keys):
        name = t._keras_history.operation.name
        state.block(infos[k].labels, f"reaches the model output '{name}'")
    _union_shared_positions(state)
    roots = state.roots()
    return Analysis(flat, infos, roots, _summarize(state, roots))


def groups(model) -> list:
    """Return the channel groups of ``model`` that must be pruned together.

    Args:
        model: a functional or Sequential Keras model; nested models are inlined and
            kprune wrappers are analysed as the layer they wrap.

    Returns:
        A list of :class:`ChannelGroup`, in order of first appearance in the graph.

    Example:
        >>> gs = kprune.groups(model)
        >>> [(g.layer_names("producer"), g.size, g.prunable) for g in gs][:1]
        [(['conv1'], 16, True)]
    """
    return analyze(model).groups


def check_independent(groups: list, layer_names) -> None:
    """Refuse per-layer (non dependency-aware) filter pruning of coupled layers.

    Args:
        groups: the model's channel groups (``groups(model)``).
        layer_names: names of the layers whose filters would be pruned one by one.

    Raises:
        GraphError: when a named layer shares an output channel group with other producers
            (an ``Add``, ``Multiply`` or split ``Concatenate`` couples them): pruning it alone
            would misalign the channels.
    """
    wanted = set(layer_names)
    for g in groups:
        producers = g.layer_names("producer")
        hit = [n for n in producers if n in wanted]
        if hit and len(producers) > 1:
            others = [n for n in producers if n != hit[0]]
            raise GraphError(
                f"Layer '{hit[0]}' cannot be filter-pruned on its own: its output channels "
                f"are coupled with {others} (channel group {g.id}: "
                f"{g.layer_names()}), e.g. through an Add, Multiply or Concatenate. "
                f"Received: dependency_aware=False for layers {sorted(wanted)}. Set "
                "`dependency_aware: true` so the whole group shares one mask, or exclude "
                f"these layers ({producers})."
            )


def format_groups(groups: list) -> str:
    """Render channel groups as a plain-text table (what ``kprune-cli inspect`` prints).

    Args:
        groups: the output of :func:`groups`.

    Returns:
        One line per group: id, channels, prunable or the reason, producers, followers and
        consumers by layer name.

    Example:
        >>> print(format_groups(kprune.groups(model)))   # doctest: +SKIP
        group  channels  prunable  producers -> followers -> consumers
        1      16        yes       conv1 -> bn1 -> conv2
    """
    lines = ["group  channels  prunable  producers -> followers -> consumers"]
    for g in groups:
        parts = [",".join(g.labels(r)) or "-" for r in ROLES]
        state = "yes" if g.prunable else f"no ({g.reason})"
        size = f"{g.size} heads" if g.unit == "head" else str(g.size)
        lines.append(f"{g.id:<6} {size:<9} {state}  {' -> '.join(parts)}")
    return "\n".join(lines)


def _union_shared_positions(state: ChannelState) -> None:
    """Labels that touch the same weight position are the same channel (shared layers)."""
    seen: dict = {}
    for t in state.touches:
        key = (id(t.layer), t.weight, t.axis)
        pos = np.asarray(t.positions)
        size = int(pos.max()) + 1 if len(pos) else 0
        table = seen.get(key)
        if table is None or len(table) < size:
            grown = np.full(max(size, 0), -1, dtype=np.int64)
            if table is not None:
                grown[: len(table)] = table
            table = grown
        existing = table[pos]
        has = existing >= 0
        if has.any():
            state.union(existing[has], t.labels[has])
        table[pos[~has]] = t.labels[~has]
        seen[key] = table


def _summarize(state: ChannelState, roots: np.ndarray) -> list:
    """Group channel roots by the weight slices they touch (vectorized over all touches)."""
    root_reason: dict = {}
    for label, reason in state.reasons.items():
        root_reason.setdefault(int(roots[label]), reason)
    with_producer = set(roots[list(state.producers)].tolist()) if state.producers else set()
    mkeys: dict = {}  # mkey -> member id (first-touch order)
    infos: list = []  # member id -> [mkey, layer, requires_zero]
    rs, ms, ps = [], [], []
    for t in state.touches:
        mkey = (id(t.layer), t.weight, t.axis, t.role)
        mid = mkeys.setdefault(mkey, len(mkeys))
        if mid == len(infos):
            infos.append([mkey, t.layer, False])
        infos[mid][2] = infos[mid][2] or t.requires_zero
        rs.append(roots[t.labels])
        ms.append(np.full(len(t.labels), mid, dtype=np.int64))
        ps.append(np.asarray(t.positions, dtype=np.int64))
    if not rs:
        return []
    r, m, p = np.concatenate(rs), np.concatenate(ms), np.concatenate(ps)
    order = np.lexsort((p, m, r))
    r, m, p = r[order], m[order], p[order]
    fresh = np.ones(len(r), bool)
    fresh[1:] = (r[1:] != r[:-1]) | (m[1:] != m[:-1]) | (p[1:] != p[:-1])
    r, m, p = r[fresh], m[fresh], p[fresh]  # a shared layer touches a position twice
    pair_new = np.ones(len(r), bool)
    pair_new[1:] = (r[1:] != r[:-1]) | (m[1:] != m[:-1])
    pair_start = np.flatnonzero(pair_new)
    pair_count = np.diff(np.append(pair_start, len(r)))
    pair_root, pair_member = r[pair_start], m[pair_start]
    root_new = np.ones(len(pair_root), bool)
    root_new[1:] = pair_root[1:] != pair_root[:-1]
    root_first = np.flatnonzero(root_new)
    root_end = np.append(root_first[1:], len(pair_root))
    members_l, counts_l = pair_member.tolist(), pair_count.tolist()
    by_sig: dict = {}
    for i, (a, b) in enumerate(zip(root_first.tolist(), root_end.tolist())):
        root = int(pair_root[a])
        reason = root_reason.get(root)
        if reason is None and root not in with_producer:
            reason = NO_PRODUCER
        sig = (tuple(members_l[a:b]), tuple(counts_l[a:b]), reason)
        by_sig.setdefault(sig, []).append(i)
    result = []
    for (mids, counts, reason), idx in by_sig.items():
        idx = np.asarray(idx)
        firsts = [p[pair_start[root_first[idx] + j]] for j in range(len(mids))]
        idx = idx[np.lexsort(firsts[::-1])]
        members = []
        for j, (mid, k) in enumerate(zip(mids, counts)):
            starts = pair_start[root_first[idx] + j]
            index = p[starts[:, None] + np.arange(k)]
            mkey, layer, req = infos[mid]
            members.append(Member(layer, mkey[1], int(mkey[2]), index, mkey[3],
                                  requires_zero=bool(req) and mkey[3] == "consumer"))
        group_roots = pair_root[root_first[idx]]
        unit = state.units.get(int(group_roots[0]), "channel") if state.units else "channel"
        width = state.widths.get(int(group_roots[0]), 1) if state.widths else 1
        result.append((min(mids), ChannelGroup(0, len(idx), members, reason is None, reason,
                                               group_roots.astype(np.int64), unit, width)))
    result.sort(key=lambda fg: (fg[0], int(fg[1].roots[0])))
    out = []
    for i, (_, g) in enumerate(result):
        g.id = i
        out.append(g)
    return out
