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
mask constraint (see :mod:`kprune.wrappers.prune_wrapper`). Criteria that need activations
or gradients read them from ``data`` (see :mod:`kprune.pruning.statistics`); the granularities are
described in :mod:`kprune.pruning.granularity`.
"""

from __future__ import annotations

import logging
import weakref

import numpy as np

from kprune import criteria, schedules
from kprune.pruning import allocation, fast_update, granularity, rewind
from kprune.errors import GraphError, KPruneError, RecipeError, require_finite
from kprune.graph.masks import apply_group_mask
from kprune.pruning.pruner_units import LayerUnits
from kprune.wrappers.prune_wrapper import PruneWrapper
from kprune.wrappers.wrap import find_wrappers

log = logging.getLogger("kprune")

_MAIN_KERNELS = ("kernel", "pointwise_kernel")


class Pruner(LayerUnits):
    """Computes and applies masks for a wrapped model.

    Args:
        model: a model returned by :func:`kprune.wrap` (or loaded from a ``.keras`` file of one).
        data: dataset for criteria that need activations or gradients (default None): a
            ``tf.data.Dataset`` of ``(x, y)`` batches, any iterable of them, or ``(x, y)`` arrays.
        steps_per_epoch: needed when the schedule is given in epochs (the callback fills it
            from ``model.fit``).
        loss: loss for gradient criteria (default: the compiled loss, else sparse categorical
            cross-entropy).

    Attributes:
        step: the pruning step (number of training steps seen), saved in the wrappers.
        round: lottery-ticket rounds done (iterative schedule).
        skipped: ``{layer_name: reason}`` for selected layers that could not be pruned.
    """

    def __init__(self, model, data=None, steps_per_epoch=None, loss=None):
        self.model = model
        self.data = data
        self.loss = loss
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
        self.step = self.saved_step()
        # the first active wrapper writes this pruner's live step whenever the model is saved
        self.active[0].__dict__["_kprune_step_source"] = weakref.ref(self)
        for w in self.active:  # training a selected layer no Pruner ever saw is an error (PruneWrapper.call)
            w.__dict__["_kprune_has_pruner"] = True
        self.round = 0
        self.rewind_weights = None
        self._final = False
        self._stat_cache = {}
        self._fast = None
        self._fast_ok = None  # whether the compiled path applies (decided at the first update)
        #: False (set before the first update) forces the host-side update even where the
        #: compiled fast path applies
        self.fast = True
        self.bind(steps_per_epoch)
        self.penalties_changed = self.install_penalties()

    def bind(self, steps_per_epoch):
        """Sets steps per epoch for epoch-based schedules (no-op for step-based ones)."""
        self.steps_per_epoch = steps_per_epoch
        if steps_per_epoch or not self.schedule.in_epochs:
            self.schedule.bind(steps_per_epoch)
            if self.schedule.name == "iterative" and self.schedule.round_length():
                self.round = self.schedule.round_at(self.step)
        return self

    def install_penalties(self) -> int:
        """Adds the Network Slimming penalty λ·Σ|gamma| for ``slim`` entries (``prune.slim_lambda``).

        Returns the number of gamma variables that changed (a compiled train step must be
        rebuilt to include them; :class:`kprune.PruningCallback` does that).
        """
        from kprune.criteria.slim import install_penalty
        slim = [w for w in self.active if w.spec["criterion"] == "slim"]
        if not slim:
            return 0
        return install_penalty(self._slim_gammas(slim), float(self.plan.get("slim_lambda", 1e-4)))

    # -- stepping -------------------------------------------------------------------------
    def on_step(self, steps: int = 1) -> bool:
        """Call before each training step: updates masks if the schedule says so, advances the
        step counter. Returns True when masks were updated.

        Args:
            steps: how many training steps run before the next call (``steps_per_execution``
                of a compiled model). Masks can only change between calls, so when the schedule
                has updates inside those steps the last of them is applied now, up to
                ``steps − 1`` steps early (the lottery ticket's rewind point likewise).
        """
        start = self.step
        iterative = self.schedule.name == "iterative"
        if iterative and start <= self.schedule.rewind_step < start + steps and self.rewind_weights is None:
            self.snapshot()
        due = [t for t in range(start, start + steps) if self.schedule.updates_at(t)]
        if due:
            self.step = due[-1]
            self.update(due[-1])
            if iterative:
                self.round = self.schedule.round_at(due[-1])
                self.rewind()
        self.step = start + steps
        return bool(due)

    def saved_step(self) -> int:
        """The pruning step stored in the model's wrappers (the largest of them)."""
        return int(max(int(w.pruning_step.numpy()) for w in self.wrappers))

    def sync(self, step=None):
        """Saves the step counter in the model (one variable: loading takes the largest).

        Called after every mask update and at epoch and training ends, not at every step
        (an eager variable write per step would cost more than the rest of the callback).
        Saving the model (``model.save``, ``save_weights``, ``ModelCheckpoint``,
        ``BackupAndRestore``) also writes the live step first, so a checkpoint taken
        mid-epoch resumes at the exact step.
        """
        self.active[0].pruning_step.assign(self.step if step is None else step)

    def prune_now(self):
        """Applies the final target sparsity immediately (one-shot pruning outside of fit)."""
        self.schedule.bind(self.steps_per_epoch or 1)
        self.update(step=None)

    # -- lottery ticket ---------------------------------------------------------------------
    def snapshot(self):
        """Stores the current weights as the rewind point (lottery ticket)."""
        self.rewind_weights = rewind.snapshot(self.model)
        return self.rewind_weights

    def rewind(self, optimizer="auto"):
        """Rewinds survivors to the rewind point and resets the optimizer state.

        Args:
            optimizer: the optimizer to reset (default: ``model.optimizer`` if any; None skips).
        """
        if self.rewind_weights is None:
            raise KPruneError(
                f"no rewind point stored for model `{self.model.name}` at pruning step {self.step}: the "
                "iterative schedule snapshots the weights when training passes the rewind step "
                f"({self.schedule_rewind_step()}), and a model reloaded from a .keras file after that "
                "has lost it. Save it with kprune.pruning.rewind.save_snapshot(pruner.rewind_weights, path) and "
                "restore it with pruner.rewind_weights = kprune.pruning.rewind.load_snapshot(path), or call "
                "pruner.snapshot() to rewind to the current weights.")
        rewind.restore(self.model, self.rewind_weights)
        for w in self.wrappers:
            w.apply_masks()
        opt = getattr(self.model, "optimizer", None) if optimizer == "auto" else optimizer
        if opt is not None and getattr(opt, "built", False):
            rewind.reset_optimizer(opt, iterations=self.schedule_rewind_step())

    def schedule_rewind_step(self) -> int:
        return self.schedule.rewind_step if self.schedule.name == "iterative" else 0

    def next_round(self, optimizer="auto") -> float:
        """One lottery-ticket round by hand: prune to the next round's target, rewind, reset.

        Returns:
            The target sparsity reached.
        """
        if self.schedule.name != "iterative":
            raise RecipeError("prune.schedule.name", "next_round() drives lottery-ticket rounds; use "
                              "schedule: {name: iterative, rounds: R}.", self.schedule.name)
        if self.round >= self.schedule.rounds:
            raise KPruneError(f"all {self.schedule.rounds} rounds are done.")
        if self.rewind_weights is None:
            self.snapshot()
        self.round += 1
        self.update(step=None, round_=self.round)
        self.rewind(optimizer)
        return self.targets(round_=self.round)[self.active[0].name]

    # -- mask computation -------------------------------------------------------------------
    def targets(self, step=None, round_=None) -> dict:
        """``{layer_name: target sparsity}`` at ``step`` (final targets when ``step`` is None)."""
        from kprune.schedules.iterative import round_sparsity
        out = {}
        for w in self.active:
            final = w.spec["sparsity"] if w.spec.get("sparsity") is not None else w.spec["total_sparsity"]
            if round_ is not None:
                out[w.name] = round_sparsity(round_, self.schedule.rounds, final)
            else:
                out[w.name] = final if step is None else self.schedule.sparsity(step, final)
        return out

    def finalize(self):
        """Soft pruning's last step: masks at the final target, applied to every coupled weight.

        During soft filter pruning only the pruned filters themselves are zeroed (as in He et
        al. 2018), so that they keep receiving gradients; this call zeroes the whole channel
        group (biases, BatchNorm, consumers' input channels) so that ``compact`` removes the
        channels exactly. It runs by itself at the schedule's last update step.
        """
        self._final = True
        try:
            self.update(step=None)
        finally:
            self._final = False

    def update(self, step=None, round_=None):
        """Recomputes every mask for the schedule's target at ``step`` and applies it.

        Under a ``tf.distribute`` strategy (a model built in ``strategy.scope()``) the update
        runs in the strategy's cross-replica context: statistics are computed on whole
        global batches and every replica's copy of a mask is assigned the same value.
        """
        with self._strategy_scope():
            return self._update(step, round_)

    def _strategy_scope(self):
        import contextlib

        import tensorflow as tf
        strategy = getattr(self.model, "_distribute_strategy", None)
        if strategy is None or tf.distribute.has_strategy():
            return contextlib.nullcontext()
        return strategy.scope()

    def _update(self, step=None, round_=None):
        if self.soft and not self._final and (step is None or step == self.schedule.last_update_step()):
            return self.finalize()
        if self._fast_ok is None:
            self._fast_ok = fast_update.eligible(self)
        if step is not None and round_ is None and self._fast_ok:
            # level/weight/per-layer/hard: one compiled call (same masks as the path below)
            if self._fast is None:
                self._fast = fast_update.FastLevelUpdate(self)
            if self._fast(self.targets(step), self.step + 1):
                return
        targets = self.targets(step, round_)
        entries = {}
        for w in self.active:
            entries.setdefault((w.spec["entry"], w.spec["granularity"]), []).append(w)
        jobs = []
        for (entry, gran), members in sorted(entries.items(), key=lambda kv: kv[0]):
            crit = criteria.get(members[0].spec["criterion"], f"prune.config_list[{entry}].criterion")
            kind, params = granularity.parse(gran)
            crit.check(kind, self._asked_scope(members[0].spec, crit), f"prune.config_list[{entry}].granularity")
            units = self._filter_units(members) if kind == "filter" else None
            jobs.append((entry, kind, params, crit, members, units))
        stats = self._statistics(jobs)
        for entry, kind, params, crit, members, units in jobs:
            if kind == "filter":
                self._update_filters(units, members, crit, targets, stats)
            else:
                self._update_layers(kind, params, entry, members, crit, targets, stats)
        # this step's update is done: a reloaded model continues after it
        self.sync(self.step + 1 if step is not None else None)

    @staticmethod
    def _asked_scope(spec, crit):
        return crit.scope or spec["scope"]

    def _is_global(self, spec, crit) -> bool:
        return crit.scope == "global" or (spec["scope"] == "global" and spec.get("total_sparsity") is not None)

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

    def _slim_gammas(self, members) -> list:
        """The BatchNormalization gamma variables in the channel groups of ``members``."""
        out = {}
        for g, _ in self._filter_units(members):
            for m in g.members:
                if m.weight == "gamma" and type(m.inner).__name__ == "BatchNormalization":
                    out[id(m.variable())] = m.variable()
        return list(out.values())

    def _group_scores(self, group, crit, stats):
        how = self.plan.get("aggregate", "sum")
        vectors, costs, frozen = [], np.zeros(group.size), np.ones(group.size, dtype=bool)
        gammas = [m for m in group.members if m.weight == "gamma" and type(m.inner).__name__ == "BatchNormalization"]
        for m in group.members:
            if m.role != "producer" or m.weight not in _MAIN_KERNELS:
                continue
            value = require_finite(np.asarray(self._variable(m.layer.name, m.weight).numpy()), m.layer.name,
                                   m.weight, "scored")
            rows = np.asarray(m.index)  # [C, k]: a group channel may span k positions (GroupNorm groups)
            idx = rows[:, 0]
            kw = self._stats_for(stats, crit, m.layer.name, m.weight)
            if "bn" in crit.needs:
                if not gammas:
                    raise KPruneError(f"criterion `slim` scores channels by the scale (gamma) of the "
                                      f"BatchNormalization that follows each pruned layer, but the output of "
                                      f"`{m.layer.name}` reaches none. Add a BatchNormalization (scale=True) "
                                      "after it, exclude it, or use another criterion.")
                gm = gammas[0]
                gamma = np.zeros(value.shape[m.axis])
                gamma[idx] = np.asarray(gm.variable().numpy())[np.asarray(gm.index)[:, 0]]
                kw["gamma"] = gamma
            per_channel = crit(value, m.axis, **kw)
            vectors.append(per_channel[rows].sum(axis=1))
            costs += value.size / value.shape[m.axis] * rows.shape[1]
            if isinstance(m.layer, PruneWrapper) and m.weight in m.layer.masks:
                mask = np.asarray(m.layer.masks[m.weight].numpy())
                alive = np.any(np.moveaxis(mask, m.axis, 0).reshape(mask.shape[m.axis], -1) != 0, axis=1)
                frozen &= ~alive[rows].any(axis=1)
            else:
                frozen &= False
        if "bn" in crit.needs:
            vectors = vectors[:1]  # one BatchNorm scale per channel, whatever the producers
        return allocation.aggregate(vectors, how), costs, frozen

    def _update_filters(self, units, members, crit, targets, stats):
        if not units:
            return
        round_to = int(self.plan.get("round_to", 1))
        min_keep = int(self.plan.get("min_keep", 1))
        scored = [(g, ws) + self._group_scores(g, crit, stats) for g, ws in units]
        spec = members[0].spec
        if self._is_global(spec, crit):
            keeps = allocation.global_keep(
                [s for _, _, s, _, _ in scored], targets[members[0].name], costs=[c for *_, c, _ in scored],
                max_per_unit=spec["max_sparsity_per_layer"], min_keep=min_keep, round_to=round_to,
                frozen=None if self.soft else [f for *_, f in scored])
        else:
            keeps = [allocation.channel_keep(s, min(targets[w.name] for w in ws), round_to, min_keep,
                                             None if self.soft else f)
                     for g, ws, s, _, f in scored]
        for (g, *_), keep in zip(scored, keeps):
            apply_group_mask(g, keep, soft=self.soft and not self._final)

    # -- reporting -----------------------------------------------------------------------------
    def state(self) -> dict:
        """A JSON-friendly summary: step, round, schedule and skipped layers."""
        return {"step": self.step, "round": self.round, "schedule": self.schedule.get_config(),
                "skipped": dict(self.skipped)}
