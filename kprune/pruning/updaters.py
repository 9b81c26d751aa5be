"""The parts of the :class:`kprune.Pruner` that turn scores into masks, one per kind of unit.

A mask update groups the selected wrappers by ``config_list`` entry into :class:`Job`\\ s. Each
job is served by one updater:

* :class:`FilterUpdater` — ``filter`` and ``head`` granularities: the channel (or attention
  head) groups the selected layers
  produce are scored as a whole (every producer kernel of a group, summed with
  ``prune.aggregate``), allocated layerwise or globally, and masked across the group
  (producers, followers such as BatchNorm, consumers' input channels);
* :class:`LayerUpdater` — ``weight``, ``channel``, ``block`` and ``n:m``: each selected layer's
  own kernels are scored and masked (see :mod:`kprune.pruning.granularity`).

An updater says which ``(layer, weight)`` pairs its criterion scores (:meth:`scored_layers`),
so that statistics are collected once for all jobs, then updates the masks with
:meth:`update`. Criteria are never named here: what a criterion needs (weights, activations,
gradients, the scale of the BatchNorm after the layer) is what it declares in ``needs``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from kprune.config.recipe import group_score_of, scores_whole_group
from kprune.errors import GraphError, KPruneError, RecipeError, UnsupportedLayerError, require_finite
from kprune.graph.analysis import channels_first
from kprune.graph.masks import apply_group_mask
from kprune.graph.walk import unwrap
from kprune.pruning import allocation, granularity
from kprune.wrappers.prune_wrapper import KERNEL_WEIGHTS, PruneWrapper
from kprune.wrappers.selectors import target_key

log = logging.getLogger("kprune")

#: the producer kernels a filter criterion scores
MAIN_KERNELS = ("kernel", "pointwise_kernel")


@dataclass
class Job:
    """The wrappers of one ``config_list`` entry and how they are pruned.

    Attributes:
        entry: index of the ``config_list`` entry.
        kind: granularity kind (``"filter"``, ``"weight"``, ``"channel"``, ``"block"``, ``"n:m"``).
        params: granularity parameters (``(n, m)`` for ``n:m``, else None).
        criterion: the :class:`kprune.criteria.Criterion`.
        members: the selected :class:`PruneWrapper` layers.
        units: for ``filter``: ``[(channel group, selected producer wrappers)]``.
    """

    entry: int
    kind: str
    params: object
    criterion: object
    members: list
    units: list | None = None
    own_spec: dict | None = None

    @property
    def spec(self) -> dict:
        return self.own_spec or self.members[0].spec

    def key(self, wrapper):
        """The key of ``wrapper``'s target in :meth:`kprune.Pruner.targets`: its name, or
        ``(name, entry)`` for a layer's second kind of unit (``spec["also"]``)."""
        return target_key(wrapper, self.entry)

    def is_global(self) -> bool:
        """Whether the job's allocation ranks units over all its layers together."""
        crit, spec = self.criterion, self.spec
        return crit.scope == "global" or (spec["scope"] == "global" and spec.get("total_sparsity") is not None)


def _main_kernel(weight: str) -> bool:
    """Whether a producer weight is a kernel a criterion scores (``kernel``, ``pointwise_kernel``,
    or a sublayer's kernel such as an attention head's ``_query_dense.kernel``)."""
    return weight.rsplit(".", 1)[-1] in MAIN_KERNELS


def is_bn_gamma(member) -> bool:
    """Whether a group member is the scale (gamma) of a BatchNormalization."""
    return member.weight == "gamma" and type(member.inner).__name__ == "BatchNormalization"


def kernel_attrs(wrapper, kind: str) -> list:
    """The kernels of ``wrapper`` that a per-layer granularity scores and masks."""
    attrs = [a for a in wrapper.masks if a in KERNEL_WEIGHTS]
    if kind == "channel":
        # the kernel that reads the layer input (SeparableConv: the depthwise one)
        return [a for a in ("kernel", "depthwise_kernel") if a in attrs][:1]
    return attrs


def _frozen(pruner, w, attr):
    """Hard pruning keeps pruned weights pruned (None for soft pruning)."""
    return None if pruner.soft else np.asarray(w.masks[attr].numpy()) == 0


def _no_group_reason(wrapper) -> str:
    """Why a selected layer produces no channel group (filter pruning cannot touch it)."""
    if channels_first(unwrap(wrapper)):
        return ("uses data_format='channels_first': kprune removes channels on the last axis only "
                "(build the model channels_last; TFLite runs channels-last)")
    return "its output channels form no channel group kprune can prune"


class FilterUpdater:
    """Masks whole channel groups (``filter`` granularity).

    Args:
        pruner: the :class:`kprune.Pruner` it serves (channel groups, plan, soft/final state,
            ``skipped`` reasons).
    """

    def __init__(self, pruner):
        self.pruner = pruner

    def units(self, members, unit: str = "channel") -> list:
        """``[(group, selected producer wrappers)]`` for the groups these wrappers produce.

        Args:
            members: the selected wrappers.
            unit: ``"channel"`` (filter granularity) or ``"head"`` (attention heads).

        Selected layers whose group cannot be pruned are recorded in ``pruner.skipped`` with
        the reason.
        """
        p = self.pruner
        names = {w.name for w in members}
        units = []
        if unit == "head":
            with_heads = {m.layer.name for g in p.groups() if g.unit == "head" for m in g.members}
            for n in sorted(names - with_heads):
                p.skipped[n] = ("has no attention heads (granularity: head prunes MultiHeadAttention and "
                                "GroupQueryAttention layers)")
        producing = set()
        for g in p.groups():
            if g.unit != unit:
                continue
            producers = {m.layer.name for m in g.members if m.role == "producer"}
            producing |= producers
            chosen = producers & names
            if not chosen:
                continue
            if not g.prunable:
                for n in chosen:
                    p.skipped[n] = g.reason or "channel group cannot be pruned"
                continue
            if len(producers) > 1 and not p.plan.get("dependency_aware", True):
                raise GraphError(
                    f"filter pruning of {sorted(chosen)} without dependency awareness is refused: their "
                    f"output channels are coupled with {sorted(producers - chosen) or sorted(producers)} "
                    "(e.g. through a residual Add), so pruning them independently would misalign the "
                    "channels. Set `prune.dependency_aware: true`.")
            others = producers - chosen
            excluded = others & set(p.plan.get("excluded", ()))
            if excluded:
                for n in chosen:
                    p.skipped[n] = f"coupled with excluded layer(s) {sorted(excluded)}"
                continue
            if others:
                log.info("pruning %s also prunes coupled layer(s) %s", sorted(chosen), sorted(others))
            units.append((g, [p.wrapper(n) for n in sorted(chosen)]))
        if unit == "channel":
            for n in sorted(names - producing):
                p.skipped[n] = _no_group_reason(p.wrapper(n))
        return units

    def _whole_group(self, crit) -> bool:
        """Whether ``crit`` scores every weight of a group (see :func:`scores_whole_group`)."""
        return scores_whole_group(crit, group_score_of(self.pruner.plan))

    def scored_members(self, group, crit) -> list:
        """The members of ``group`` whose weights ``crit`` scores: the producers' kernels, or
        with ``prune.group_score: all`` every kernel slice the group's channels index
        (producers' filters, consumers' input channels, depthwise kernels) and the BatchNorm
        scales (``crit.scores_scale``) — Torch-Pruning's group importance."""
        if self._whole_group(crit):
            return [m for m in group.members if m.weight.rsplit(".", 1)[-1] in KERNEL_WEIGHTS
                    or (crit.scores_scale and is_bn_gamma(m))]
        return [m for m in group.members if m.role == "producer" and _main_kernel(m.weight)]

    def scored_layers(self, job) -> list:
        """``(layer name, weight)`` pairs the job's criterion scores (see :meth:`scored_members`)."""
        return [(m.layer.name, m.weight) for g, _ in job.units for m in self.scored_members(g, job.criterion)]

    def _scores(self, group, crit, stats):
        """Per-channel scores, costs and already-pruned (frozen) flags of one group.

        Each scored member's per-channel scores (summed over the ``k`` positions a channel
        spans) are combined with ``prune.aggregate``; with ``prune.group_score: all`` they are
        raised to ``crit.group_power`` first and the root taken after (``l2``: the L2 norm of
        all the weights a channel's removal deletes). Costs and frozen flags come from the
        producers."""
        p = self.pruner
        power = float(crit.group_power) if self._whole_group(crit) else 1.0
        vectors, costs, frozen = [], np.zeros(group.size), np.ones(group.size, dtype=bool)
        gammas = [m for m in group.members if is_bn_gamma(m)]
        for m in self.scored_members(group, crit):
            value = require_finite(p.value(m.layer.name, m.weight), m.layer.name, m.weight, "scored")
            rows = np.asarray(m.index)  # [C, k]: a group channel may span k positions (GroupNorm groups)
            kw = stats.kwargs(crit, m.layer.name, m.weight)
            if "bn" in crit.needs:
                if not gammas:
                    raise KPruneError(f"criterion `{crit.name}` scores channels by the scale (gamma) of the "
                                      f"BatchNormalization that follows each pruned layer, but the output of "
                                      f"`{m.layer.name}` reaches none. Add a BatchNormalization (scale=True) "
                                      "after it, exclude it, or use another criterion.")
                gm = gammas[0]
                gamma = np.zeros(value.shape[m.axis])
                gamma[rows[:, 0]] = np.asarray(gm.variable().numpy())[np.asarray(gm.index)[:, 0]]
                kw["gamma"] = gamma
            per_channel = crit(value, m.axis, **kw)
            if power != 1:
                per_channel = np.power(np.asarray(per_channel, dtype=np.float64), power)
            vectors.append(per_channel[rows].sum(axis=1))
            if m.role == "producer" and _main_kernel(m.weight):
                costs += value.size / value.shape[m.axis] * rows.shape[1]
                frozen &= self._pruned(m, rows)
        if "bn" in crit.needs:
            vectors = vectors[:1]  # one BatchNorm scale per channel, whatever the producers
        combined = allocation.aggregate(vectors, p.plan.get("aggregate", "sum"))
        return (combined if power == 1 else np.power(combined, 1.0 / power)), costs, frozen

    @staticmethod
    def _pruned(m, rows) -> np.ndarray:
        """Per group channel: whether producer ``m``'s mask has already removed all of it."""
        if isinstance(m.layer, PruneWrapper) and m.weight in m.layer.masks:
            mask = np.asarray(m.layer.masks[m.weight].numpy())
            alive = np.any(np.moveaxis(mask, m.axis, 0).reshape(mask.shape[m.axis], -1) != 0, axis=1)
            return ~alive[rows].any(axis=1)
        return np.zeros(len(rows), dtype=bool)

    def update(self, job, targets: dict, stats) -> None:
        """Scores the job's groups, allocates kept channels and masks every group member."""
        if not job.units:
            return
        p = self.pruner
        round_to = p.plan.get("round_to", "auto")
        min_keep = int(p.plan.get("min_keep", 1))
        crit, spec = job.criterion, job.spec
        scored = [(g, ws) + self._scores(g, crit, stats) for g, ws in job.units]
        if job.is_global():
            keeps = allocation.global_keep(
                [s for _, _, s, _, _ in scored], targets[job.key(job.members[0])], costs=[c for *_, c, _ in scored],
                max_per_unit=spec["max_sparsity_per_layer"], min_keep=min_keep, round_to=round_to,
                frozen=None if p.soft else [f for *_, f in scored], widths=[g.width for g, *_ in scored])
        else:  # a group coupling layers of different targets takes the smallest
            group_targets = [min(targets[job.key(w)] for w in ws) for _, ws, *_ in scored]
            keeps = [allocation.channel_keep(s, t, round_to, min_keep, None if p.soft else f, width=g.width)
                     for (g, ws, s, _, f), t in zip(scored, group_targets)]
        for i, ((g, ws, *_), keep) in enumerate(zip(scored, keeps)):
            apply_group_mask(g, keep, soft=p.soft and not p.finalizing)
            if round_to != 1 and keep.all() and not job.is_global():
                exact = allocation.kept_channels(g.size, group_targets[i], 1, min_keep)
                if exact < g.size:  # the target prunes, the rounding kept everything
                    p.rounded_whole[ws[0].name] = (g.size, exact)


class LayerUpdater:
    """Masks each selected layer's own kernels (``weight``, ``channel``, ``block``, ``n:m``).

    Args:
        pruner: the :class:`kprune.Pruner` it serves.
    """

    def __init__(self, pruner):
        self.pruner = pruner

    @staticmethod
    def scored_layers(job) -> list:
        """``(layer name, weight)`` pairs the job's criterion scores."""
        return [(w.name, a) for w in job.members for a in kernel_attrs(w, job.kind)]

    def update(self, job, targets: dict, stats) -> None:
        """Scores the job's kernels and sets their masks."""
        if job.kind == "n:m":
            return self._update_nm(job, targets, stats)
        p, kind, crit, spec = self.pruner, job.kind, job.criterion, job.spec
        items = []  # (wrapper, attr, unit scores, unit costs, frozen units, to_mask)
        for w in job.members:
            for attr in kernel_attrs(w, kind):
                value = require_finite(self.pruner.value(w.name, attr), w.name, attr, "scored")
                kw = stats.kwargs(crit, w.name, attr)
                frozen = _frozen(p, w, attr)
                if kind == "weight":
                    scores = crit(value, None, **kw)
                    items.append((w, attr, scores, None, frozen, lambda keep, s=value.shape: keep.reshape(s)))
                elif kind == "channel":
                    axis = granularity.input_axis(w.layer, attr, value.ndim)
                    scores = crit(value, axis, **kw)
                    cost = np.full(value.shape[axis], value.size / value.shape[axis])
                    fz = None if frozen is None else np.all(np.moveaxis(frozen, axis, 0).reshape(
                        value.shape[axis], -1), axis=1)
                    items.append((w, attr, scores, cost, fz,
                                  lambda keep, s=value.shape, a=axis: granularity.expand_axis(keep, s, a)))
                else:  # block
                    shape = self._block_shape()
                    out_axis = value.ndim - 2 if type(w.layer).__name__.endswith("Transpose") else value.ndim - 1
                    granularity.input_axis(w.layer, attr, value.ndim)  # rejects EinsumDense
                    scores = granularity.block_scores(crit(value, None, **kw), shape, out_axis)
                    cost = granularity.block_sizes(value.shape, shape, out_axis)
                    fz = None if frozen is None else granularity.block_scores(frozen, shape, out_axis) == 1.0
                    items.append((w, attr, scores, cost, fz,
                                  lambda keep, s=value.shape, b=shape, o=out_axis:
                                  granularity.expand_blocks(keep, s, b, o)))
        if job.is_global():
            keeps = allocation.global_keep([it[2] for it in items], targets[job.members[0].name],
                                           costs=None if kind == "weight" else [it[3] for it in items],
                                           max_per_unit=spec["max_sparsity_per_layer"],
                                           frozen=None if p.soft else [it[4] for it in items])
        elif kind == "channel":
            keeps = [allocation.channel_keep(it[2], targets[it[0].name], 1, int(p.plan.get("min_keep", 1)),
                                             it[4]) for it in items]
        else:
            keeps = [allocation.weight_mask(it[2], targets[it[0].name], it[4]) for it in items]
        for (w, attr, _, _, _, expand), keep in zip(items, keeps):
            w.set_mask(attr, expand(np.asarray(keep, dtype=bool)))

    def _block_shape(self):
        shape = self.pruner.plan.get("block_shape") or [1, 4]
        if len(shape) != 2 or any(int(v) < 1 for v in shape):
            raise RecipeError("prune.block_shape", "must be two positive integers [rows, cols].", shape)
        return tuple(int(v) for v in shape)

    def _update_nm(self, job, targets, stats):
        (n, m), spec, crit = job.params, job.spec, job.criterion
        path = f"prune.config_list[{job.entry}]"
        if job.is_global():
            raise RecipeError("prune.scope", f"granularity `{n}:{m}` keeps {n} of every {m} weights inside "
                              "each layer, so it has no global ranking; use scope: layerwise.", "global")
        final = spec["sparsity"] if spec.get("sparsity") is not None else spec["total_sparsity"]
        if abs(final - (m - n) / m) > 1e-6:
            raise RecipeError(f"{path}.sparsity", f"granularity `{n}:{m}` prunes {m - n} of every {m} weights, "
                              f"i.e. sparsity {(m - n) / m:g}; set sparsity: {(m - n) / m:g}.", final)
        for w in job.members:
            for attr in kernel_attrs(w, "n:m"):
                value = require_finite(self.pruner.value(w.name, attr), w.name, attr, "scored")
                axis = granularity.input_axis(w.layer, attr, value.ndim)
                scores = crit(value, None, **stats.kwargs(crit, w.name, attr))
                try:
                    keep = granularity.nm_keep(scores, n, m, axis, sparsity=targets[w.name],
                                               frozen=_frozen(self.pruner, w, attr))
                except UnsupportedLayerError as e:
                    raise UnsupportedLayerError(f"{path}.granularity `{n}:{m}` on layer `{w.name}` ({attr}): {e} "
                                                f"Allowed here: an N:M whose M divides the layer's input "
                                                "channels.") from None
                w.set_mask(attr, keep)
