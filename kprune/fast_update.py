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

    Args:
        pruner: a :class:`kprune.Pruner` for which :func:`eligible` is True.

    Example:
        >>> fast = FastLevelUpdate(pruner)
        >>> fast(pruner.targets(step), step + 1)   # masks and weights updated in place
    """

    def __init__(self, pruner):
        import tensorflow as tf

        self.items = []  # (wrapper name, weight variable, mask variable, size)
        for w in pruner.active:
            for attr in pruner._kernel_attrs(w, "weight"):
                var = w.weights_by_attr()[attr]
                self.items.append((w.name, var, w.masks[attr], int(np.prod(var.shape))))
        self.step_var = pruner.active[0].pruning_step
        self._fn = tf.function(self._run, reduce_retracing=True)

    def __call__(self, targets: dict, step: int) -> None:
        """Prunes each kernel to ``targets[layer]`` and writes ``step`` into the model."""
        import tensorflow as tf

        ks = [allocation.n_pruned(n, targets[name]) for name, _, _, n in self.items]
        self._fn(tf.constant(ks, dtype=tf.int32), tf.constant(step, dtype=tf.int64))

    def _run(self, ks, step):
        import tensorflow as tf

        for i, (_, var, mask, n) in enumerate(self.items):
            k = ks[i]
            flat_w = tf.reshape(tf.convert_to_tensor(var), [-1])
            flat_m = tf.reshape(tf.cast(tf.convert_to_tensor(mask), tf.float32), [-1])
            frozen = flat_m == 0.0
            n_frozen = tf.reduce_sum(tf.cast(frozen, tf.int32))

            def grow(flat_w=flat_w, frozen=frozen, n_frozen=n_frozen, k=k):
                # the (k - frozen) smallest |w| among the unpruned, lower index first on ties
                key = tf.where(frozen, tf.constant(-np.inf, flat_w.dtype), -tf.abs(flat_w))
                _, idx = tf.math.top_k(tf.cast(key, tf.float32), k=k - n_frozen, sorted=True)
                hit = tf.scatter_nd(idx[:, None], tf.ones_like(idx, dtype=tf.bool), [n])
                return tf.logical_or(frozen, hit)

            def keep_first(frozen=frozen, k=k):
                # the target fell (or stayed): the first k frozen entries by position stay pruned
                rank = tf.cumsum(tf.cast(frozen, tf.int32))
                return tf.logical_and(frozen, rank <= k)

            pruned = tf.cond(k > n_frozen, grow, keep_first)
            new_mask = tf.reshape(tf.cast(tf.logical_not(pruned), mask.dtype), mask.shape)
            mask.assign(new_mask)
            var.assign(tf.convert_to_tensor(var) * tf.cast(new_mask, var.dtype))
        self.step_var.assign(step)
