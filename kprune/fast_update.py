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

    Python keeps how many weights each kernel has pruned (read from its mask once). A step
    whose targets grew prunes only the ``Δk`` new weights: one ``tf.function`` call finds
    them with ``top_k`` and zeroes them, mask and weight, with ``scatter_nd_update`` — nothing
    else is written. A step whose targets did not change costs no TensorFlow call at all; a
    target that fell (rare: a schedule never lowers it) is done by recomputing the mask.

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
        self.pruned = [int(np.sum(np.asarray(m.numpy()) == 0)) for _, _, m, _ in self.items]
        self._fn = tf.function(self._grow, reduce_retracing=True)

    def __call__(self, targets: dict, step: int) -> None:
        """Prunes each kernel to ``targets[layer]`` and writes ``step`` into the model."""
        import tensorflow as tf

        ks = [allocation.n_pruned(n, targets[name]) for name, _, _, n in self.items]
        if any(k < done for k, done in zip(ks, self.pruned)):
            for i, k in enumerate(ks):
                if k < self.pruned[i]:
                    self._shrink(i, k)
        deltas = [max(0, k - done) for k, done in zip(ks, self.pruned)]
        if any(deltas):
            self._fn(tf.constant(deltas, dtype=tf.int32), tf.constant(step, dtype=tf.int64))
        else:
            self.step_var.assign(step)
        self.pruned = [max(k, done) if k >= done else k for k, done in zip(ks, self.pruned)]

    def _shrink(self, i: int, k: int) -> None:
        """The target fell: the first ``k`` pruned entries by position stay pruned (host path)."""
        _, var, mask, _ = self.items[i]
        m = np.asarray(mask.numpy())
        flat = m.ravel().copy()
        flat[np.flatnonzero(flat == 0)[k:]] = 1
        mask.assign(flat.reshape(m.shape))
        self.pruned[i] = k

    def _grow(self, deltas, step):
        import tensorflow as tf

        for i, (_, var, mask, _) in enumerate(self.items):
            delta = deltas[i]
            value = tf.convert_to_tensor(var)
            unpruned = tf.reshape(tf.convert_to_tensor(mask), [-1]) != 0
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
