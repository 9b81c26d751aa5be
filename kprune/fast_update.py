"""Per-step magnitude pruning in one compiled TensorFlow function.

Schedules that recompute masks at every step (AGP with ``frequency: 1``, TFMOT's worst case)
make the host-side update — read each kernel, select, write mask and weight — the largest
cost of a training step on small models. For the common case, *level* (|w|) criterion,
``weight`` granularity, per-layer targets, hard pruning, this module does the whole update in
one ``tf.function`` call that never leaves the TensorFlow runtime.

It computes exactly the masks of the host path (:func:`kprune.allocation.weight_mask`):
already-pruned weights are pruned first (by position), then the ``k − frozen`` smallest
``|w|`` among the others, ties broken by position. Because hard-pruned weights stay pruned,
each step only has to *add* the few weights the schedule's sparsity grew by, which
``tf.math.top_k`` finds in ``O(n log Δk)`` instead of a full selection over the kernel.
"""

from __future__ import annotations

import numpy as np

from kprune import allocation


def eligible(pruner) -> bool:
    """Whether ``pruner``'s update can run in the compiled fast path."""
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

        self.items = []  # (wrapper name, weight variable, mask variable, size)
        for w in pruner.active:
            for attr in pruner._kernel_attrs(w, "weight"):
                var = w.weights_by_attr()[attr]
                self.items.append((w.name, var, w.masks[attr], int(np.prod(var.shape))))
        self.step_var = pruner.active[0].pruning_step
        self._last = None
        self._fn = tf.function(self._grow, reduce_retracing=True)

    def __call__(self, targets: dict, step: int) -> bool:
        """Prunes each kernel to ``targets[layer]``, writes ``step``; False if a target fell."""
        import tensorflow as tf

        ks = [allocation.n_pruned(n, targets[name]) for name, _, _, n in self.items]
        if self._last is not None and any(k < last for k, last in zip(ks, self._last)):
            self._last = None
            return False
        if ks == self._last:
            self.step_var.assign(step)
        else:
            self._fn(tf.constant(ks, dtype=tf.int32), tf.constant(step, dtype=tf.int64))
            self._last = ks
        return True

    def _grow(self, ks, step):
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
        self.step_var.assign(step)
