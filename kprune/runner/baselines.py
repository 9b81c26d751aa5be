"""Architectures of the baselines: the uniform-width model matched to a target, the scratch model.

* **uniform-width** — the zoo model at the width multiplier whose parameter or FLOPs count
  is closest to the target's: a ``params``/``flops`` budget directly, and for a
  ``sparsity`` target the count of the base recipe's layerwise L1 pruning at that sparsity
  (with layerwise filter pruning every criterion gives the same channel counts).
* **scratch** — a pruned cell's compacted architecture with fresh weights (Liu et al. 2019,
  "Rethinking the value of network pruning").
"""

from __future__ import annotations

import copy


def width_count(name: str, input_shape, num_classes: int, width: float, measure: str) -> int:
    """``params`` or ``flops`` of zoo model ``name`` at ``width``."""
    from kprune import models
    from kprune.counting.counter import count
    c = count(models.get(name, input_shape=tuple(input_shape), num_classes=num_classes, width=width))
    return int(c.params if measure == "params" else c.flops)


def match_width(name: str, input_shape, num_classes: int, max_width: float, measure: str, reference: float,
                iterations: int = 14) -> tuple:
    """The width in ``(0, max_width]`` whose count is closest to ``reference``.

    Counts grow with the width (in steps, channel counts are rounded); bisection finds the
    largest width at or under the reference, then the closer of it and the next step wins.

    Args:
        name, input_shape, num_classes: the zoo model.
        max_width: the largest width considered (the base recipe's).
        measure: ``"params"`` or ``"flops"``.
        reference: the count to match.
        iterations: bisection steps (default 14: width resolution ``max_width / 16384``).

    Returns:
        ``(width, count)``.

    Example:
        >>> match_width("lenet5", (28, 28, 1), 10, 1.0, "params", 20000)[1]   # doctest: +SKIP
        19896
    """
    cache = {}

    def f(w):
        w = round(w, 6)
        if w not in cache:
            cache[w] = width_count(name, input_shape, num_classes, w, measure)
        return cache[w]

    if f(max_width) <= reference:
        return max_width, f(max_width)
    lo, hi = max_width / 2 ** iterations, max_width
    if f(lo) >= reference:
        return round(lo, 6), f(lo)
    for _ in range(iterations):
        mid = (lo + hi) / 2
        if f(mid) <= reference:
            lo = mid
        else:
            hi = mid
    best = min((lo, hi), key=lambda w: (abs(f(w) - reference), w))
    return round(best, 6), f(best)


def sparsity_reference(dense, base_raw: dict, sparsity: float, measure: str) -> int:
    """Count of the compacted model that the base recipe's pruning at ``sparsity`` gives, with
    the ``l1`` criterion and no search (the architecture a layerwise pruner reaches)."""
    import kprune
    from kprune.counting.counter import count
    from kprune.runner.sweep import _with_sparsity
    from kprune.config.recipe import Recipe
    prune = copy.deepcopy(base_raw.get("prune") or {})
    prune.pop("search", None)
    prune["criterion"] = "l1"
    prune["schedule"] = {"name": "oneshot"}
    entries = prune.get("config_list") or Recipe.from_dict({}).prune["config_list"]
    prune["config_list"] = [_with_sparsity(e, sparsity) for e in entries]
    wrapped = kprune.wrap(dense, Recipe.from_dict({"prune": prune}))
    kprune.Pruner(wrapped).prune_now()
    c = count(kprune.compact(wrapped))
    return int(c.params if measure == "params" else c.flops)


def reinitialized(model, seed: int):
    """A copy of ``model``'s architecture with freshly initialized weights (seeded)."""
    import keras
    keras.utils.set_random_seed(int(seed))
    return keras.models.clone_model(model)
