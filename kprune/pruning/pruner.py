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

from kprune import criteria, graph, schedules
from kprune.config.recipe import check_group_score, group_score_of
from kprune.errors import KPruneError, RecipeError
from kprune.pruning import fast_update, granularity, rewind, statistics
from kprune.pruning.updaters import FilterUpdater, Job, LayerUpdater
from kprune.schedules.iterative import round_sparsity
from kprune.wrappers.prune_wrapper import PruneWrapper, weight_attributes
from kprune.wrappers.selectors import flatten_layers, specs_of, target_key
from kprune.wrappers.wrap import find_wrappers, wrap

log = logging.getLogger("kprune")


class Pruner:
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
        updaters: the parts that turn scores into masks: ``{"filter": FilterUpdater,
            "layer": LayerUpdater}`` (see :mod:`kprune.pruning.updaters`).
        fast_path: the seam for a compiled update (:mod:`kprune.pruning.fast_update`): an object
            ``fast_path(targets, step) -> bool`` tried first for step updates; True means it
            updated the masks. Set at the first update where it applies; None otherwise.
        fast: False (set before the first update) forces the host-side update even where the
            compiled fast path applies.
        finalizing: True while soft pruning's final, whole-group update runs.
    """

    def __init__(self, model, data=None, steps_per_epoch=None, loss=None):
        self.model = model
        self.data = data
        self.loss = loss
        self._scored_values = {}  # (layer, weight) -> value at the start of a mask update
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
        # every selected layer knows its Pruner (training one that has none is an error), and the
        # first one writes the Pruner's live step whenever the model is saved
        for w in self.active:
            w.attach_pruner(weakref.ref(self), saves_step=w is self.active[0])
        self.round = 0
        self.rewind_weights = None
        self.finalizing = False
        #: selected layers whose group the final rounding kept whole although the target prunes
        #: ``{layer: (channels, kept without rounding)}`` (filled by the filter updater)
        self.rounded_whole = {}
        self._stat_cache = {}
        self.updaters = {"filter": FilterUpdater(self), "layer": LayerUpdater(self)}
        self.fast_path = None
        self._fast_checked = False  # whether the fast path's eligibility was decided
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
        """Runs each filter criterion's training-time hook (:meth:`Criterion.install`), e.g. the
        Network Slimming penalty λ·Σ|gamma| of ``slim`` (``prune.slim_lambda``).

        Returns the number of variables that changed (a compiled train step must be rebuilt to
        include them; :class:`kprune.PruningCallback` does that).
        """
        changed = 0
        for job in self.jobs():
            if job.kind in ("filter", "head"):
                changed += job.criterion.install([g for g, _ in job.units], self.plan)
        return changed

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
        if self._snapshot_due(steps):
            self.snapshot()
        due = self._due(steps)
        if due:
            self.step = due[-1]
            self.update(due[-1])
            if iterative:
                self.round = self.schedule.round_at(due[-1])
                self.rewind()
        self.step = start + steps
        return bool(due)

    def _snapshot_due(self, steps: int) -> bool:
        start = self.step
        return (self.schedule.name == "iterative" and start <= self.schedule.rewind_step < start + steps
                and self.rewind_weights is None)

    def _due(self, steps: int) -> list:
        return [t for t in range(self.step, self.step + steps) if self.schedule.updates_at(t)]

    def needs_model(self, steps: int = 1) -> bool:
        """Whether the next :meth:`on_step` reads or writes the model's variables (a mask update
        or a lottery-ticket snapshot). A JAX ``fit`` syncs its live state into the model first."""
        return self._snapshot_due(steps) or bool(self._due(steps))

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
        out = {}
        for w in self.active:
            for spec in specs_of(w.spec):
                key = target_key(w, spec["entry"])
                final = spec["sparsity"] if spec.get("sparsity") is not None else spec["total_sparsity"]
                if round_ is not None:
                    out[key] = round_sparsity(round_, self.schedule.rounds, final)
                else:
                    out[key] = final if step is None else self.schedule.sparsity(step, final)
        return out

    def finalize(self):
        """Soft pruning's last step: masks at the final target, applied to every coupled weight.

        During soft filter pruning only the pruned filters themselves are zeroed (as in He et
        al. 2018), so that they keep receiving gradients; this call zeroes the whole channel
        group (biases, BatchNorm, consumers' input channels) so that ``compact`` removes the
        channels exactly. It runs by itself at the schedule's last update step.
        """
        self.finalizing = True
        try:
            self.update(step=None)
        finally:
            self.finalizing = False

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

        strategy = getattr(self.model, "_distribute_strategy", None)
        if strategy is None:  # always None off TensorFlow: tf.distribute is TensorFlow's
            return contextlib.nullcontext()
        import tensorflow as tf
        if tf.distribute.has_strategy():
            return contextlib.nullcontext()
        return strategy.scope()

    def _update(self, step=None, round_=None):
        if self.soft and not self.finalizing and (step is None or step == self.schedule.last_update_step()):
            return self.finalize()
        if not self._fast_checked:
            self._fast_checked = True
            if self.fast is not False and self.fast_path is None and fast_update.eligible(self):
                self.fast_path = fast_update.FastLevelUpdate(self)
        if step is not None and round_ is None and self.fast_path is not None:
            # e.g. level/weight/per-layer/hard: one compiled call (same masks as the path below)
            if self.fast_path(self.targets(step), self.step + 1):
                return
        targets = self.targets(step, round_)
        jobs = self.jobs()
        self.rounded_whole = {}
        requests = [(j.criterion, j.entry, self._updater(j).scored_layers(j)) for j in jobs]
        stats = statistics.gather(requests, self.model, self.data, self.variable, self.plan, loss=self.loss,
                                  cache=self._stat_cache)
        # every job scores the weights as they were before this update: masks one job sets (a
        # filter group zeroes its consumers' input channels) must not change another job's
        # scores, or the result would depend on how config_list is split into entries
        self._scored_values = ({key: np.array(self.variable(*key).numpy()) for _, _, layers in requests
                                for key in layers} if len(jobs) > 1 else {})
        try:
            for job in jobs:
                self._updater(job).update(job, targets, stats)
        finally:
            self._scored_values = {}
        if self.rounded_whole and (step is None or step == self.schedule.last_update_step()):
            import warnings
            what = ", ".join(f"`{n}` ({size} channels, the target keeps {exact})"
                             for n, (size, exact) in sorted(self.rounded_whole.items()))
            warnings.warn(f"prune.round_to: {self.plan.get('round_to', 'auto')} kept every channel of {what}: "
                          "rounding the kept count to a multiple of 8 prunes nothing there. Set a higher "
                          "sparsity, or round_to: 1 for exact channel counts.", stacklevel=2)
        # this step's update is done: a reloaded model continues after it
        self.sync(self.step + 1 if step is not None else None)

    def use_fast_path(self, fast) -> None:
        """Plugs a compiled update in (see :attr:`fast_path`); None goes back to the host path."""
        self.fast_path = fast
        self._fast_checked = True

    def jobs(self) -> list:
        """The selected wrappers grouped by ``config_list`` entry, as :class:`~kprune.pruning.updaters.Job`\\ s."""
        entries, specs = {}, {}
        for w in self.active:
            for spec in specs_of(w.spec):
                entries.setdefault((spec["entry"], spec["granularity"]), []).append(w)
                specs.setdefault((spec["entry"], spec["granularity"]), spec)
        jobs = []
        for (entry, gran), members in sorted(entries.items(), key=lambda kv: kv[0]):
            spec = specs[(entry, gran)]
            crit = criteria.get(spec["criterion"], f"prune.config_list[{entry}].criterion")
            kind, params = granularity.parse(gran)
            crit.check(kind, crit.scope or spec["scope"], f"prune.config_list[{entry}].granularity")
            check_group_score(crit, kind, group_score_of(self.plan))
            job = Job(entry, kind, params, crit, members, own_spec=spec)
            if kind in ("filter", "head"):
                job.units = self.updaters["filter"].units(members, "head" if kind == "head" else "channel")
            jobs.append(job)
        return jobs

    def _updater(self, job):
        return self.updaters["filter" if job.kind in ("filter", "head") else "layer"]

    # -- the model ---------------------------------------------------------------------------
    def groups(self):
        """The model's channel groups (computed once)."""
        if self._groups is None:
            self._groups = graph.groups(self.model)
        return self._groups

    def wrapper(self, name):
        """The wrapper (or plain layer) called ``name``."""
        if name in self._by_name:
            return self._by_name[name]
        return next(l for l in flatten_layers(self.model) if l.name == name)

    def variable(self, name, attr):
        """The weight ``attr`` of layer ``name`` (seen through its wrapper)."""
        layer = self.wrapper(name)
        inner = layer.layer if isinstance(layer, PruneWrapper) else layer
        return weight_attributes(inner)[attr]

    def value(self, name, attr) -> np.ndarray:
        """The value criteria score for weight ``attr`` of layer ``name``: during a mask update,
        the value from before the update began (see :meth:`update`), else the current one."""
        got = self._scored_values.get((name, attr))
        return got if got is not None else np.asarray(self.variable(name, attr).numpy())

    # -- reporting -----------------------------------------------------------------------------
    def state(self) -> dict:
        """A JSON-friendly summary: step, round, schedule and skipped layers."""
        return {"step": self.step, "round": self.round, "schedule": self.schedule.get_config(),
                "skipped": dict(self.skipped)}


def check_selection(model, recipe) -> dict:
    """What a recipe would prune in ``model``, checked before any training.

    Wraps a copy of ``model`` (which validates the ``config_list`` against its layers: missing
    ``op_names``, layer types that cannot be pruned) and works out, without changing weights,
    which selected layers cannot be pruned and why (a channel group that reaches the model
    output, passes through a layer kprune does not know, is normalized over channels...).

    Args:
        model: a plain (unwrapped) Keras model.
        recipe: a :class:`kprune.Recipe`, dict or YAML path.

    Returns:
        ``{"selected": [layer names], "skipped": {layer name: reason}}``.

    Raises:
        KPruneError: when every selected layer would be skipped (the recipe prunes nothing).

    Example:
        >>> kprune.pruning.pruner.check_selection(model, {"prune": {"criterion": "l1",
        ...     "granularity": "filter", "config_list": [{"op_names": ["predictions"], "sparsity": 0.5}]}})
        Traceback (most recent call last):
        KPruneError: nothing can be pruned: ... `predictions`: reaches the model output 'predictions' ...
    """
    wrapped = wrap(model, recipe)
    pruner = Pruner(wrapped)
    pruner.jobs()
    selected = [w.name for w in pruner.active]
    skipped = {n: pruner.skipped[n] for n in selected if n in pruner.skipped}
    require_something_pruned(selected, skipped)
    return {"selected": selected, "skipped": skipped}


def require_something_pruned(selected, skipped: dict, verb: str = "was") -> None:
    """Raises a :class:`KPruneError` naming each layer and reason when every selected layer is skipped."""
    if selected and set(skipped) >= set(selected):
        reasons = "; ".join(f"`{n}`: {why}" for n, why in sorted(skipped.items()))
        raise KPruneError(f"nothing can be pruned: every layer the recipe selects {verb} skipped. Received: "
                          f"{reasons}. Select other layers in prune.config_list (kprune-cli inspect MODEL "
                          "--recipe RECIPE lists them with the reasons), or use granularity: weight.")
