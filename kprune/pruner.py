"""``Pruner``: schedule → criterion → allocation → masks, one step at a time.

The same object drives :class:`kprune.PruningCallback` inside ``model.fit`` and hand-written
training loops:

    pruner = kprune.Pruner(model, steps_per_epoch=len(ds))
    for epoch in range(epochs):
        for x, y in ds:
            pruner.on_step()               # updates masks when the schedule says so
            with tf.GradientTape() as tape:
                loss = loss_fn(y, model(x, training=True))
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables))  # masks re-applied
    print(kprune.sparsity(model))

Masked weights stay zero after every optimizer step because each masked variable carries a
mask constraint (see :mod:`kprune.wrappers.prune_wrapper`).
"""

from __future__ import annotations

import logging

import numpy as np

from kprune import allocation, criteria, schedules
from kprune.errors import GraphError, KPruneError, RecipeError
from kprune.wrappers.prune_wrapper import KERNEL_WEIGHTS, PruneWrapper
from kprune.wrappers.wrap import find_wrappers

log = logging.getLogger("kprune")

_MAIN_KERNELS = ("kernel", "pointwise_kernel")


class Pruner:
    """Computes and applies masks for a wrapped model.

    Args:
        model: a model returned by :func:`kprune.wrap` (or loaded from a ``.keras`` file of one).
        data: optional dataset for criteria that need activations or gradients.
        steps_per_epoch: needed when the schedule is given in epochs (the callback fills it
            from ``model.fit``).

    Attributes:
        step: the pruning step (number of training steps seen), saved in the wrappers.
        skipped: ``{layer_name: reason}`` for selected layers that could not be pruned.
    """

    def __init__(self, model, data=None, steps_per_epoch=None):
        self.model = model
        self.data = data
        self.wrappers = find_wrappers(model)
        self.active = [w for w in self.wrappers if w.spec]
        if not self.active:
            raise KPruneError(f"model `{model.name}` has no layers to prune: build it with "
                              "kprune.wrap(model, recipe) first.")
        self.plan = self.active[0].plan or {}
        self.schedule = schedules.get(self.plan.get("schedule", {"name": "oneshot"}))
        self.soft = any(w.soft for w in self.active)
        self.skipped = {}
        self._groups = None
        self._by_name = {w.name: w for w in self.wrappers}
        self.step = int(max(int(w.pruning_step.numpy()) for w in self.wrappers))
        self.bind(steps_per_epoch)

    def bind(self, steps_per_epoch):
        """Sets steps per epoch for epoch-based schedules (no-op for step-based ones)."""
        self.steps_per_epoch = steps_per_epoch
        if steps_per_epoch or not self.schedule.in_epochs:
            self.schedule.bind(steps_per_epoch)
        return self

    # -- stepping -------------------------------------------------------------------------
    def on_step(self) -> bool:
        """Call before each training step: updates masks if the schedule says so, advances the
        step counter. Returns True when masks were updated."""
        updated = False
        if self.schedule.updates_at(self.step):
            self.update(self.step)
            updated = True
        self.step += 1
        self.active[0].pruning_step.assign(self.step)
        return updated

    def sync(self):
        """Writes the step counter into every wrapper (done at epoch ends and on save)."""
        for w in self.wrappers:
            w.pruning_step.assign(self.step)

    def prune_now(self):
        """Applies the final target sparsity immediately (one-shot pruning outside of fit)."""
        self.schedule.bind(self.steps_per_epoch or 1)
        self.update(step=None)

    # -- mask computation -------------------------------------------------------------------
    def targets(self, step=None) -> dict:
        """``{layer_name: target sparsity}`` at ``step`` (final targets when ``step`` is None)."""
        out = {}
        for w in self.active:
            final = w.spec["sparsity"] if w.spec.get("sparsity") is not None else w.spec["total_sparsity"]
            out[w.name] = final if step is None else self.schedule.sparsity(step, final)
        return out

    def update(self, step=None):
        """Recomputes every mask for the schedule's target at ``step`` and applies it."""
        targets = self.targets(step)
        entries = {}
        for w in self.active:
            entries.setdefault((w.spec["entry"], w.spec["granularity"]), []).append(w)
        for (entry, granularity), members in sorted(entries.items(), key=lambda kv: kv[0]):
            crit = criteria.get(members[0].spec["criterion"])
            if granularity not in crit.granularities:
                raise RecipeError(f"prune.config_list[{entry}].granularity",
                                  f"criterion `{crit.name}` supports granularities {list(crit.granularities)}.",
                                  granularity)
            if granularity == "weight":
                self._update_weights(members, crit, targets)
            elif granularity == "filter":
                self._update_filters(members, crit, targets)
        self.sync()

    def _update_weights(self, members, crit, targets):
        spec = members[0].spec
        items = []  # (wrapper, attr, scores, frozen)
        for w in members:
            for attr, var in w.weights_by_attr().items():
                if attr not in KERNEL_WEIGHTS:
                    continue
                value = np.asarray(var.numpy())
                frozen = None if self.soft else np.asarray(w.masks[attr].numpy()) == 0
                items.append((w, attr, crit(value, None), frozen))
        if spec["scope"] == "global" and spec.get("total_sparsity") is not None:
            keeps = allocation.global_keep([s for _, _, s, _ in items], targets[members[0].name],
                                           max_per_unit=spec["max_sparsity_per_layer"],
                                           frozen=None if self.soft else [f for *_, f in items])
        else:
            keeps = [allocation.weight_mask(s, targets[w.name], f) for w, _, s, f in items]
        for (w, attr, _, _), keep in zip(items, keeps):
            w.set_mask(attr, keep)

    # -- filters ------------------------------------------------------------------------------
    def groups(self):
        """The model's channel groups (computed once)."""
        if self._groups is None:
            from kprune import graph
            self._groups = graph.groups(self.model)
        return self._groups

    def _filter_units(self, members):
        """[(group, selected producer wrappers)] for the groups these wrappers produce."""
        names = {w.name for w in members}
        units = []
        for g in self.groups():
            producers = {m.layer.name for m in g.members if m.role == "producer"}
            chosen = producers & names
            if not chosen:
                continue
            if not g.prunable:
                for n in chosen:
                    self.skipped[n] = g.reason or "channel group cannot be pruned"
                continue
            if len(producers) > 1 and not self.plan.get("dependency_aware", True):
                raise GraphError(
                    f"filter pruning of {sorted(chosen)} without dependency awareness is refused: their "
                    f"output channels are coupled with {sorted(producers - chosen) or sorted(producers)} "
                    "(e.g. through a residual Add), so pruning them independently would misalign the "
                    "channels. Set `prune.dependency_aware: true`.")
            others = producers - chosen
            excluded = others & set(self.plan.get("excluded", ()))
            if excluded:
                for n in chosen:
                    self.skipped[n] = f"coupled with excluded layer(s) {sorted(excluded)}"
                continue
            if others:
                log.info("pruning %s also prunes coupled layer(s) %s", sorted(chosen), sorted(others))
            units.append((g, [self._by_name[n] for n in sorted(chosen)]))
        return units

    def _group_scores(self, group, crit):
        how = self.plan.get("aggregate", "sum")
        vectors, costs, frozen = [], np.zeros(group.size), np.ones(group.size, dtype=bool)
        for m in group.members:
            if m.role != "producer" or m.weight not in _MAIN_KERNELS:
                continue
            inner = m.layer.layer if isinstance(m.layer, PruneWrapper) else m.layer
            value = np.asarray(getattr(inner, "_kernel" if m.weight == "kernel" and hasattr(inner, "_kernel")
                                       else m.weight).numpy())
            per_channel = crit(value, m.axis)
            idx = np.asarray(m.index)[:, 0]
            vectors.append(per_channel[idx])
            costs += value.size / value.shape[m.axis]
            if isinstance(m.layer, PruneWrapper) and m.weight in m.layer.masks:
                mask = np.asarray(m.layer.masks[m.weight].numpy())
                alive = np.any(np.moveaxis(mask, m.axis, 0).reshape(mask.shape[m.axis], -1) != 0, axis=1)
                frozen &= ~alive[idx]
            else:
                frozen &= False
        return allocation.aggregate(vectors, how), costs, frozen

    def _update_filters(self, members, crit, targets):
        units = self._filter_units(members)
        if not units:
            return
        round_to = int(self.plan.get("round_to", 1))
        min_keep = int(self.plan.get("min_keep", 1))
        scored = [(g, ws) + self._group_scores(g, crit) for g, ws in units]
        spec = members[0].spec
        if spec["scope"] == "global" and spec.get("total_sparsity") is not None:
            keeps = allocation.global_keep(
                [s for _, _, s, _, _ in scored], targets[members[0].name], costs=[c for *_, c, _ in scored],
                max_per_unit=spec["max_sparsity_per_layer"], min_keep=min_keep, round_to=round_to,
                frozen=None if self.soft else [f for *_, f in scored])
        else:
            keeps = [allocation.channel_keep(s, min(targets[w.name] for w in ws), round_to, min_keep,
                                             None if self.soft else f)
                     for g, ws, s, _, f in scored]
        for (g, *_), keep in zip(scored, keeps):
            apply_group_keep(g, keep, soft=self.soft)

    # -- reporting -----------------------------------------------------------------------------
    def state(self) -> dict:
        """A JSON-friendly summary: step, schedule and skipped layers."""
        return {"step": self.step, "schedule": self.schedule.get_config(), "skipped": dict(self.skipped)}


def apply_group_keep(group, keep: np.ndarray, soft: bool = False):
    """Writes a channel group's keep-mask into the masks of every wrapped member.

    Pruned channels are zeroed along each member's axis at its index (producers' filters and
    biases, followers' per-channel parameters, consumers' input channels). With ``soft`` the
    kept channels of this group are re-enabled (other groups' indices are untouched).
    """
    keep = np.asarray(keep, dtype=bool)
    touched = {}
    for m in group.members:
        if not isinstance(m.layer, PruneWrapper) or m.weight not in m.layer.masks:
            continue
        key = (id(m.layer), m.weight)
        if key not in touched:
            touched[key] = (m.layer, m.weight, np.asarray(m.layer.masks[m.weight].numpy()).copy())
        mask = touched[key][2]
        idx = np.asarray(m.index)
        view = np.moveaxis(mask, m.axis, 0)
        view[idx[~keep].ravel()] = 0
        if soft:
            view[idx[keep].ravel()] = 1
    for layer, weight, mask in touched.values():
        layer.set_mask(weight, mask)
