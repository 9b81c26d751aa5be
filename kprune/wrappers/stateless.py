"""Masks inside a stateless (JAX) train step.

Under TensorFlow a mask constraint reads its mask variable directly. Under JAX, Keras trains
statelessly: ``model.fit`` passes every variable's value into a jitted ``train_step(state,
data)``, applies the optimizer (and the variables' constraints) in a ``StatelessScope`` that
maps only the trainable and optimizer variables, and detaches the model's variables from their
values for the whole epoch. A constraint that read its mask variable there would get nothing
(or, in a hand-written jitted loop, a constant frozen at trace time).

So on JAX the masks' *current* values travel with the step: :func:`install` wraps the model's
``train_step`` so that it maps each mask variable to its entry of the step's non-trainable
state (:func:`mask_values`), and :func:`current` is what a constraint reads. Masks change only
between steps (the :class:`kprune.Pruner` writes them after ``model.jax_state_sync()``), and
they are enforced after every optimizer update inside the compiled step, as under TensorFlow.

A hand-written JAX loop does the same with :func:`mask_values`::

    with kprune.wrappers.stateless.mask_values(model, non_trainable_values):
        trainable_values, optimizer_values = optimizer.stateless_apply(
            optimizer_values, grads, trainable_values)
"""

from __future__ import annotations

import contextlib

import keras

from kprune.errors import KPruneError

_MAPPINGS = []  # a stack of {id(mask variable): value}; the innermost is last
_HOOK = "_kprune_stateless_hook"
_BUILT = "_kprune_stateless_train_function"


@contextlib.contextmanager
def mask_values(model, non_trainable_values):
    """Inside this block, mask constraints read the masks from ``non_trainable_values``.

    Args:
        model: the wrapped model.
        non_trainable_values: values of ``model.non_trainable_variables``, in that order (the
            second item of a JAX train step's ``state``).
    """
    values = list(non_trainable_values)
    variables = model.non_trainable_variables
    if len(values) != len(variables):
        raise KPruneError(f"mask_values: model `{model.name}` has {len(variables)} non-trainable variables. "
                          f"Received: {len(values)} values. Pass the values of model.non_trainable_variables, "
                          "in that order.")
    _MAPPINGS.append({id(v): value for v, value in zip(variables, values)})
    try:
        yield
    finally:
        _MAPPINGS.pop()


def current(mask):
    """The value a constraint must use for ``mask`` (a mask variable) right now."""
    for mapping in reversed(_MAPPINGS):
        value = mapping.get(id(mask))
        if value is not None:
            return value
    if keras.backend.backend() == "jax" and getattr(mask, "_value", 1) is None:
        raise KPruneError(
            f"the pruning mask `{mask.path}` was read inside a JAX train step that does not carry it: Keras "
            "runs model.fit on JAX statelessly, and masks reach the optimizer's constraints only when "
            "kprune.PruningCallback is among fit's callbacks. Received: a stateless train step with no "
            "mask values. Fix: model.fit(..., callbacks=[kprune.PruningCallback()]); in a hand-written "
            "loop, wrap optimizer.stateless_apply in kprune.wrappers.stateless.mask_values(model, "
            "non_trainable_values); to train without pruning, use kprune.strip(model).")
    return mask.value


def install(model) -> bool:
    """Wraps ``model.train_step`` so that a JAX step carries its masks (no-op elsewhere).

    The compiled train function is rebuilt on the wrapper, once: a later ``fit`` that finds
    it still in place (the model was not compiled again) reuses it, with no second tracing.
    :func:`uninstall` puts the model's own ``train_step`` back; the function built on the
    wrapper stays, so that a later ``fit`` whose train function Keras does not rebuild still
    enforces the masks.

    Returns:
        True if installed.
    """
    if keras.backend.backend() != "jax" or getattr(model, "optimizer", None) is None:
        return False
    uninstall(model)
    original = model.train_step

    def train_step(state, data):
        with mask_values(model, state[1]):
            return original(state, data)

    model.__dict__[_HOOK] = model.__dict__.get("train_step", _HOOK)
    model.__dict__["train_step"] = train_step
    built = model.__dict__.get(_BUILT)
    if built is None or model.train_function is not built:
        model.make_train_function(force=True)
        model.__dict__[_BUILT] = model.train_function
    return True


def uninstall(model) -> bool:
    """Undoes :func:`install` (the model's own ``train_step`` comes back)."""
    own = model.__dict__.pop(_HOOK, None)
    if own is None:
        return False
    if own is _HOOK:
        model.__dict__.pop("train_step", None)
    else:
        model.__dict__["train_step"] = own
    return True


def sync(model) -> None:
    """Writes a JAX ``fit``'s live state back into the model's variables (no-op elsewhere), so
    that the host can read weights and write masks between steps; the next step reads them back."""
    if keras.backend.backend() == "jax" and hasattr(model, "jax_state_sync"):
        model.jax_state_sync()
