"""Per-step magnitude pruning in one compiled TensorFlow function.

Schedules that recompute masks at every step (AGP with ``frequency: 1``, TFMOT's worst case)
make the host-side update — read each kernel, select, write mask and weight — the largest
cost of a training step on small models. For the common case, *level* (|w|) criterion,
``weight`` granularity, per-layer targets, hard pruning, this module does the whole update in
one ``tf.function`` call that never leaves the TensorFlow runtime.

It computes exactly the masks of the host path (:func:`kprune.pruning.allocation.weight_mask`):
already-pruned weights are pruned first (by position), then the ``k − frozen`` smallest
``|w|`` among the others, ties broken by position. Because hard-pruned weights stay pruned,
each step only has to *add* the few weights the schedule's sparsity grew by, which
``tf.math.top_k`` finds in ``O(n log Δk)`` instead of a full selection over the kernel.

Inside ``model.fit`` (:class:`kprune.PruningCallback`, model compiled without XLA) the update
goes one step further: :func:`install_in_step` puts those operations *into the compiled
train step*, ahead of the forward pass, so a step whose masks change costs the host one small
variable write (the new per-layer counts) and no function call of its own.
"""

from __future__ import annotations

import numpy as np

from kprune.pruning import allocation
from kprune.pruning.updaters import kernel_attrs


def eligible(pruner) -> bool:
    """Whether ``pruner``'s update can run in the compiled fast path (TensorFlow only: it is a
    ``tf.function``; other backends take the host path, same masks)."""
    import keras
    if keras.backend.backend() != "tensorflow":
        return False
    if pruner.soft or pruner.schedule.name == "iterative" or getattr(pruner, "fast", True) is False:
        return False
    if getattr(pruner.model, "_distribute_strategy", None) is not None:
        return False
    for w in pruner.active:
        spec = w.spec
        if spec["criterion"] != "level" or spec["granularity"] != "weight":
            return False
        if spec["scope"] == "global" and spec.get("total_sparsity") is not None:
            return False
    return True


def _kernels(pruner) -> list:
    """``[(wrapper name, weight variable, mask variable, size)]`` of the kernels ``pruner`` prunes."""
    out = []
    for w in pruner.active:
        for attr in kernel_attrs(w, "weight"):
            var = w.weights_by_attr()[attr]
            out.append((w.name, var, w.masks[attr], int(np.prod(var.shape))))
    return out


class FastLevelUpdate:
    """The compiled update for a pruner's (wrapper, kernel) pairs.

    A step whose targets grew prunes only the new weights: one ``tf.function`` call counts
    each kernel's pruned weights, finds the ``Δk`` smallest unpruned ones with ``top_k`` and
    zeroes them, mask and weight, with ``scatter_nd_update`` — nothing else is written. A step
    whose targets did not change costs no TensorFlow call. A target that fell (a schedule
    never lowers it) is left to the host path (``__call__`` returns False).

    Args:
        pruner: a :class:`kprune.Pruner` for which :func:`eligible` is True.

    Example:
        >>> fast = FastLevelUpdate(pruner)
        >>> fast(pruner.targets(step), step + 1)   # masks and weights updated in place
        True
    """

    def __init__(self, pruner):
        import tensorflow as tf

        self.items = _kernels(pruner)  # (wrapper name, weight variable, mask variable, size)
        self.step_var = pruner.active[0].pruning_step
        self._last = None
        self._fn = tf.function(self._grow, reduce_retracing=True)
        # in-step mode (install_in_step): counts asked by the host / last applied by the step;
        # created once, since a compiled train step that captured them may be reused
        self.asked = None
        self.applied = None
        self._in_step = False

    @property
    def in_step(self) -> bool:
        """Whether the update runs inside the model's compiled train step."""
        return self._in_step

    def start_in_step(self):
        """Switches to in-step mode: ``__call__`` only writes the counts, :meth:`apply_pending`
        (traced into the train step) prunes."""
        import tensorflow as tf

        n = len(self.items)
        if self.asked is None:
            self.asked = tf.Variable(np.zeros(n, np.int32), trainable=False, name="kprune_asked")
            self.applied = tf.Variable(np.full(n, -1, np.int32), trainable=False, name="kprune_applied")
        self._last = None
        self.applied.assign(np.full(n, -1, np.int32))  # the first asked counts are applied
        self._in_step = True

    def stop_in_step(self):
        self._in_step = False
        self._last = None

    def same_layers(self, pruner) -> bool:
        """Whether this update prunes exactly ``pruner``'s kernels (so it can serve it)."""
        other = _kernels(pruner)
        return len(other) == len(self.items) and all(
            a[1] is b[1] and a[2] is b[2] for a, b in zip(other, self.items))

    def apply_pending(self):
        """Graph ops, run at the start of each train step: prunes to the asked counts if they
        changed since the last application; otherwise only one comparison runs."""
        import tensorflow as tf

        ks = tf.convert_to_tensor(self.asked)

        def grow():
            self._grow_ops(ks)
            self.applied.assign(ks)
            return tf.constant(True)

        return tf.cond(tf.reduce_any(tf.not_equal(ks, tf.convert_to_tensor(self.applied))),
                       grow, lambda: tf.constant(False))

    def __call__(self, targets: dict, step: int) -> bool:
        """Prunes each kernel to ``targets[layer]``, writes ``step``; False if a target fell."""
        import tensorflow as tf

        ks = [allocation.n_pruned(n, targets[name]) for name, _, _, n in self.items]
        if self._last is not None and any(k < last for k, last in zip(ks, self._last)):
            self._last = None
            if self.in_step:  # the host rewrites the masks: the next counts must be applied again
                self.applied.assign(np.full(len(self.items), -1, np.int32))
            return False
        if self.in_step:
            # the train step that follows applies them (the step is saved at epoch ends/saves)
            if ks != self._last:
                self.asked.assign(np.asarray(ks, np.int32))
                self._last = ks
            return True
        if ks == self._last:
            self.step_var.assign(step)
        else:
            self._fn(tf.constant(ks, dtype=tf.int32), tf.constant(step, dtype=tf.int64))
            self._last = ks
        return True

    def _grow(self, ks, step):
        self._grow_ops(ks)
        self.step_var.assign(step)

    def _grow_ops(self, ks):
        import tensorflow as tf

        for i, (_, var, mask, n) in enumerate(self.items):
            value = tf.convert_to_tensor(var)
            unpruned = tf.reshape(tf.convert_to_tensor(mask), [-1]) != 0
            delta = tf.maximum(ks[i] - (n - tf.reduce_sum(tf.cast(unpruned, tf.int32))), 0)
            # the delta smallest |w| among the unpruned; top_k prefers the lower index on ties
            key = tf.where(unpruned, -tf.abs(tf.cast(tf.reshape(value, [-1]), tf.float32)),
                           tf.constant(-np.inf, tf.float32))
            _, idx = tf.math.top_k(key, k=delta, sorted=True)
            dims = [int(d) for d in value.shape]
            strides = [int(np.prod(dims[j + 1:])) for j in range(len(dims))]
            where = tf.stack([(idx // st) % d for d, st in zip(dims, strides)], axis=1)  # flat → N-d
            mask.value.scatter_nd_update(where, tf.zeros([delta], mask.dtype))
            var.value.scatter_nd_update(where, tf.zeros([delta], var.dtype))


_HOOK = "_kprune_in_step_hook"
_CACHE = "_kprune_in_step_cache"


class _Hook:
    """What install_in_step changed on a model (a plain object: Keras' saving skips it)."""

    def __init__(self, fast, own, keras_function):
        self.fast, self.own, self.keras_function = fast, own, keras_function


class _Cache:
    """The compiled train function with the update, and the plain one it was built beside."""

    def __init__(self, keras_function, hooked, fast):
        self.keras_function, self.hooked, self.fast = keras_function, hooked, fast


def install_in_step(pruner) -> bool:
    """Moves ``pruner``'s level update into ``pruner.model``'s compiled train step.

    Applies where the compiled update does (:func:`eligible`, ``pruner.fast`` not False) and the
    model is compiled without XLA (``top_k`` of a data-dependent size cannot be XLA-compiled;
    with ``jit_compile=True`` the update stays one ``tf.function`` call per changed step). The
    model's ``train_step`` is wrapped so that :meth:`FastLevelUpdate.apply_pending` runs before
    it, and ``model.train_function`` is replaced by a function built on that wrapper.
    :func:`uninstall_in_step` puts the plain ones back. The wrapped function is kept on the
    model and reused by the next ``fit`` (no second tracing) as long as the model was not
    compiled again and the same layers are pruned.

    Returns:
        True if installed.
    """
    model = pruner.model
    uninstall_in_step(model)
    if pruner.fast is False or not eligible(pruner) or getattr(model, "optimizer", None) is None:
        return False
    if model.jit_compile:
        return False
    keras_function = model.train_function  # built by fit() just before, or kept from a former fit
    cache = model.__dict__.get(_CACHE)
    reuse = (cache is not None and keras_function is not None and cache.keras_function is keras_function
             and cache.fast.same_layers(pruner))
    if reuse:
        fast = cache.fast
    elif pruner.fast_path is not None and pruner.fast_path.same_layers(pruner):
        fast = pruner.fast_path
    else:
        fast = FastLevelUpdate(pruner)
    pruner.use_fast_path(fast)
    fast.start_in_step()
    original = model.train_step

    def train_step(data):
        fast.apply_pending()
        return original(data)

    # a train_step set on the instance itself (not the class) is put back by uninstall
    model.__dict__[_HOOK] = _Hook(fast, model.__dict__.get("train_step"), keras_function)
    model.__dict__["train_step"] = train_step
    if reuse:
        model.train_function = cache.hooked
    else:
        model.make_train_function(force=True)
        model.__dict__[_CACHE] = _Cache(keras_function, model.train_function, fast)
    return True


def uninstall_in_step(model) -> bool:
    """Removes the hook of :func:`install_in_step`: the model's own ``train_step`` and the
    plain compiled train function come back (the wrapped one stays cached for the next fit)."""
    hook = model.__dict__.pop(_HOOK, None)
    if hook is None:
        return False
    if hook.own is None:
        model.__dict__.pop("train_step", None)
    else:
        model.__dict__["train_step"] = hook.own
    hook.fast.stop_in_step()
    model.train_function = hook.keras_function
    return True
