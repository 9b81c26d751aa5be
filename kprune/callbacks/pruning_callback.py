"""``PruningCallback``: runs the :class:`kprune.Pruner` inside ``model.fit``."""

from __future__ import annotations

import keras

from kprune.pruning import fast_update
from kprune.pruning.pruner import Pruner
from kprune.wrappers import stateless
from kprune.wrappers.wrap import sparsity


@keras.saving.register_keras_serializable(package="kprune")
class PruningCallback(keras.callbacks.Callback):
    """Updates masks before training steps as the wrapped model's schedule says.

    Before each step the callback asks the schedule whether masks change; if so the criterion
    scores the selected layers and the allocation turns scores into masks. At each epoch end
    it adds ``sparsity`` (total) and ``sparsity/<layer>`` to ``logs`` and, with ``log_dir``,
    writes them to TensorBoard.

    Criteria that read activations or gradients (``apoz``, ``mean_activation``,
    ``taylor_fo``, ``snip``, the gradient-magnitude baselines) collect them on ``data`` at each
    mask update without changing weights or BatchNorm statistics. For ``slim`` the callback
    adds the Network Slimming penalty λ·Σ|gamma| to the training loss.

    On the JAX backend the callback also carries the masks into Keras' stateless train step
    and syncs the live state into the model before a step whose masks change
    (:mod:`kprune.wrappers.stateless`, ``docs/backends.md``).

    Args:
        data: dataset of ``(x, y)`` batches for criteria that need activations or gradients
            (default None).
        steps_per_epoch: steps per epoch for epoch-based schedules, when ``fit`` cannot tell
            (default None: taken from ``fit``).
        log_dir: TensorBoard log directory (default None: no summaries).
        log_layers: add per-layer sparsity to ``logs`` (default True).

    Example:
        >>> model = kprune.wrap(model, recipe)
        >>> model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
        >>> model.fit(ds, epochs=3, callbacks=[kprune.PruningCallback()])
    """

    def __init__(self, data=None, steps_per_epoch=None, log_dir=None, log_layers=True, loss=None):
        super().__init__()
        self.data = data
        self.loss = loss
        self.steps_per_epoch = steps_per_epoch
        self.log_dir = log_dir
        self.log_layers = log_layers
        self.pruner = None
        self._writer = None
        self._reread_step = False
        self._before = None
        self._per_call = 1
        self._jax = False

    def get_config(self):
        return {"data": None, "steps_per_epoch": self.steps_per_epoch, "log_dir": self.log_dir,
                "log_layers": self.log_layers, "loss": None}

    def on_train_begin(self, logs=None):
        spe = self.steps_per_epoch or (self.params or {}).get("steps")
        if self.pruner is None or self.pruner.model is not self.model:
            self.pruner = Pruner(self.model, data=self.data, steps_per_epoch=spe, loss=self.loss)
        else:
            self.pruner.bind(spe)
            if self.data is not None:
                self.pruner.data = self.data
            self.pruner.penalties_changed += self.pruner.install_penalties()
        if self.pruner.penalties_changed:
            # a regularizer was added to BatchNorm gammas (slim): rebuild the train step so
            # that the traced loss includes it
            self.model.make_train_function(force=True)
            self.pruner.penalties_changed = 0
        self._per_call = int(getattr(self.model, "steps_per_execution", 1) or 1)
        # level pruning of single weights runs inside the compiled train step (no per-step
        # function call from here); see kprune.pruning.fast_update.install_in_step
        fast_update.install_in_step(self.pruner)
        # JAX trains statelessly: the train step carries the masks to their constraints, and the
        # host reads weights and writes masks between steps (kprune.wrappers.stateless)
        self._jax = stateless.install(self.model)
        # other callbacks may restore weights in their on_train_begin (BackupAndRestore):
        # the step is read from the model again before the first batch
        self._reread_step = True
        if self.log_dir and self._writer is None:
            import importlib.util

            import tensorflow as tf
            if importlib.util.find_spec("tensorboard") is None:
                from kprune.errors import KPruneError
                raise KPruneError("PruningCallback(log_dir=...) writes TensorBoard summaries, which needs "
                                  "the tensorboard package: pip install 'kprune[tensorboard]'. "
                                  f"Received: log_dir={self.log_dir!r}")
            self._writer = tf.summary.create_file_writer(self.log_dir)

    def on_train_batch_begin(self, batch, logs=None):
        if self._reread_step:
            self._reread_step = False
            saved = self.pruner.saved_step()
            if saved != self.pruner.step:
                self.pruner.step = saved
                self.pruner.bind(self.pruner.steps_per_epoch)
        steps = self._steps_in_call(batch)
        start = self.pruner.step
        if self._jax and (steps > 1 or self.pruner.needs_model(steps)):
            stateless.sync(self.model)
        self.pruner.on_step(steps)
        if steps > 1:
            # the last call of an epoch may run fewer: on_train_batch_end counts them (read
            # after on_step, which may reset the optimizer's iterations: lottery rewinding)
            self._before = (start, int(self.model.optimizer.iterations.numpy()))

    def _steps_in_call(self, batch) -> int:
        """Training steps the next compiled call runs (the model's ``steps_per_execution``)."""
        if self._per_call <= 1:
            return 1
        total = (self.params or {}).get("steps")
        return max(1, min(self._per_call, total - batch)) if total else self._per_call

    def on_train_batch_end(self, batch, logs=None):
        if self._before is not None:
            step, iterations = self._before
            self._before = None
            if self._jax:
                stateless.sync(self.model)
            self.pruner.step = step + int(self.model.optimizer.iterations.numpy()) - iterations

    def on_epoch_end(self, epoch, logs=None):
        self.pruner.sync()
        report = sparsity(self.model)
        if logs is not None:
            logs["sparsity"] = report["total"]
            if self.log_layers:
                for name, value in report.items():
                    if name != "total":
                        logs[f"sparsity/{name}"] = value
        if self._writer is not None:
            import tensorflow as tf
            with self._writer.as_default():
                for name, value in report.items():
                    tf.summary.scalar(f"kprune/sparsity/{name}", value, step=epoch)
                self._writer.flush()

    def on_train_end(self, logs=None):
        fast_update.uninstall_in_step(self.model)
        stateless.uninstall(self.model)
        self.pruner.sync()
        last = self.pruner.schedule.last_update_step()
        if last is not None and self.pruner.step <= last:
            import warnings
            done = self.pruner.step
            warnings.warn(f"training stopped after {done} step(s), before the schedule's last update at step "
                          f"{last} (steps count from 0): the final sparsity was not reached. Train "
                          "longer or end the schedule earlier.", stacklevel=2)
