"""Knowledge distillation while fine-tuning a pruned model, built on ``keras.distillation``.

The pruned model (the *student*) is fine-tuned on a mix of the labels' loss and the dense
model's (the *teacher's*) softened predictions (Hinton et al. 2015):

    loss = alpha · CE(y, student) + (1 − alpha) · T² · KL(softmax(teacher / T) ‖ softmax(student / T))

This is Keras' own :class:`keras.distillation.Distiller` with one
:class:`keras.distillation.LogitsDistillation`: ``alpha`` is the Distiller's
``student_loss_weight`` (Keras' convention, also that of the keras.io distillation example),
``temperature`` is LogitsDistillation's. So ``alpha=1`` is plain fine-tuning on the labels (Keras
then never runs the teacher) and ``alpha=0`` learns from the teacher only.

Two details differ from Keras' defaults, each for a reason:

* the distillation loss is ``keras.losses.KLDivergence()`` given as an *instance*: in Keras
  3.15.1 ``LogitsDistillation``'s default ``loss="kl_divergence"`` resolves to the function
  ``keras.losses.kl_divergence``, which LogitsDistillation does not recognise as KL (it checks
  for the class), so it is applied to raw, clipped logits instead of to the softmax
  probabilities (``tests/models/test_distill.py`` pins the difference);
* :class:`Distiller` here adds the student's own losses (``model.losses``: kernel
  regularizers, the ``slim`` criterion's λ·Σ|γ| penalty) to the Distiller's total, which
  ``keras.distillation.Distiller.compute_loss`` leaves out.

Callbacks given to :func:`distill_finetune` see the *student* as ``self.model`` (a
``kprune.PruningCallback`` drives the student's masks, a ``ModelCheckpoint`` saves the
student); progress bars and ``History`` see the Distiller's logs (``loss``,
``student_loss``, ``distillation_loss``, ``total_loss`` and the compiled metrics).
The student is trained in place: what comes out is the pruned model itself, its masks
enforced by their constraints as in any fit.

Example:
    >>> teacher = kprune.models.distill.frozen_copy(dense)       # before pruning
    >>> pruned = kprune.wrap(dense, recipe); kprune.Pruner(pruned).prune_now()
    >>> kprune.distill_finetune(pruned, teacher, train_ds, epochs=2, alpha=0.5, temperature=4.0)
    >>> small = kprune.compact(pruned)
"""

from __future__ import annotations

import keras

#: the defaults of ``finetune.distill`` (see recipes/README.md)
ALPHA = 0.5
TEMPERATURE = 4.0


def frozen_copy(model):
    """A copy of ``model`` (same architecture, same weights, own variables), not trainable.

    The teacher must not share variables with the model that is then pruned and fine-tuned.
    """
    teacher = keras.models.clone_model(model)
    teacher.set_weights(model.get_weights())
    teacher.trainable = False
    return teacher


class Distiller(keras.distillation.Distiller):
    """``keras.distillation.Distiller`` whose loss includes the student's ``losses``.

    Keras' Distiller returns ``α·student_loss + (1 − α)·distillation_loss`` and leaves out the
    regularization losses of the model (``Model.compute_loss`` adds them for an ordinary fit);
    this subclass adds them back, so a penalty the student carries (weight regularizers, the
    ``slim`` criterion's |γ| penalty) is trained under distillation as it is without.
    """

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        total = super().compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training)
        extra = self.student.losses
        if extra:
            total = keras.ops.add(total, keras.ops.sum(keras.ops.stack(
                [keras.ops.cast(v, total.dtype) for v in extra])))
        return total


def make_distiller(student, teacher, alpha: float = ALPHA, temperature: float = TEMPERATURE,
                   optimizer="sgd", metrics=("accuracy",), jit_compile="auto") -> Distiller:
    """A compiled :class:`Distiller` that fine-tunes ``student`` towards ``teacher``'s logits.

    Args:
        student: the (pruned) model to train; models output logits.
        teacher: the dense model (see :func:`frozen_copy`); Keras freezes it.
        alpha: weight of the labels' loss, in [0, 1] (default 0.5); ``1 − alpha`` weighs
            the distillation loss.
        temperature: softmax temperature, > 0 (default 4.0).
        optimizer: a Keras optimizer or its name (default ``"sgd"``).
        metrics: compiled metrics of the student's predictions (default accuracy).
        jit_compile: passed to ``compile`` (default ``"auto"``).

    Returns:
        The compiled Distiller; ``distiller.student`` is ``student`` itself.
    """
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"alpha must be in [0, 1]. Received: alpha={alpha!r}")
    if not float(temperature) > 0.0:
        raise ValueError(f"temperature must be > 0. Received: temperature={temperature!r}")
    distiller = Distiller(
        teacher=teacher, student=student,
        distillation_losses=keras.distillation.LogitsDistillation(
            temperature=float(temperature), loss=keras.losses.KLDivergence()),
        student_loss_weight=float(alpha))
    distiller.compile(optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=list(metrics) if metrics else None, jit_compile=jit_compile)
    return distiller


class OnStudent(keras.callbacks.Callback):
    """Runs ``callback`` with ``self.model`` = the student while a :class:`Distiller` fits.

    Args:
        callback: any Keras callback (e.g. ``kprune.PruningCallback``).
        student: the model the callback should see.
    """

    def __init__(self, callback, student):
        super().__init__()
        self.callback = callback
        self.student = student

    def set_model(self, model):
        super().set_model(model)
        self.callback.set_model(self.student)

    def set_params(self, params):
        super().set_params(params)
        self.callback.set_params(params)


def _forward(name):
    def hook(self, *args, **kwargs):
        return getattr(self.callback, name)(*args, **kwargs)
    hook.__name__ = name
    return hook


for _name in ("on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end",
              "on_train_batch_begin", "on_train_batch_end", "on_test_begin", "on_test_end",
              "on_test_batch_begin", "on_test_batch_end", "on_predict_begin", "on_predict_end",
              "on_predict_batch_begin", "on_predict_batch_end"):
    setattr(OnStudent, _name, _forward(_name))


def student_callbacks(callbacks, student) -> list:
    """``callbacks`` for a Distiller's fit: progress bars and History as given (they report the
    Distiller's logs), every other callback :class:`OnStudent`."""
    keep = (keras.callbacks.ProgbarLogger, keras.callbacks.History)
    return [cb if isinstance(cb, keep) else OnStudent(cb, student) for cb in callbacks or ()]


def distill_finetune(student, teacher, data, epochs: int = 1, alpha: float = ALPHA,
                     temperature: float = TEMPERATURE, optimizer="sgd", callbacks=(), verbose=0,
                     **fit_kwargs):
    """Fine-tunes ``student`` in place with knowledge distillation from ``teacher``.

    Args:
        student: the pruned model (wrapped or compacted); trained in place.
        teacher: the dense model before pruning (:func:`frozen_copy` of it); not trained.
        data: a dataset of ``(x, y)`` batches (integer labels).
        epochs: epochs (default 1).
        alpha: weight of the labels' loss in [0, 1] (default 0.5; 1 = no distillation).
        temperature: softmax temperature > 0 (default 4.0).
        optimizer: a Keras optimizer or its name (default ``"sgd"``).
        callbacks: Keras callbacks; they see the student as ``self.model`` (default none).
        verbose: ``fit``'s verbosity (default 0).
        **fit_kwargs: passed to ``Distiller.fit`` (``steps_per_epoch``, ``initial_epoch``...).

    Returns:
        The ``keras.callbacks.History`` of the Distiller's fit.

    Example:
        >>> teacher = kprune.models.distill.frozen_copy(dense)
        >>> history = kprune.distill_finetune(pruned, teacher, train_ds, epochs=2,
        ...     optimizer=keras.optimizers.SGD(0.01, momentum=0.9))
    """
    distiller = make_distiller(student, teacher, alpha, temperature, optimizer)
    return distiller.fit(data, epochs=epochs, callbacks=student_callbacks(callbacks, student),
                         verbose=verbose, **fit_kwargs)
