"""ADMM pruning (Zhang et al. 2018; NNI's ADMMPruner): train toward the sparse structure, then cut.

Pruning is posed as ``min loss(W)`` subject to ``W ∈ S`` (the weights that survive the
target allocation) and solved with the alternating direction method of multipliers, with
``Z`` the copy of ``W`` that lives in ``S`` and ``U`` the scaled dual variable:

1. **W-step** — train ``training_steps`` steps on ``loss(W) + ρ/2 · ||W − Z + U||²`` (the
   penalty is attached as the weights' regularizers, so ``model.fit`` and any loop that adds
   ``model.losses`` include it);
2. **Z-step** — ``Z = Π_S(W + U)``: keep what the recipe's criterion keeps at the unit's
   sparsity (whole filters of a channel group, or single weights), zero the rest — the
   same pruning path a recipe takes, so ``round_to``, ``min_keep`` and coupled channels hold;
3. **dual step** — ``U ← U + W − Z``.

``rounds`` such iterations run, ρ multiplied by ``rho_growth`` after each (``U`` rescaled by
the ratio, as scaled ADMM requires). Then ``W`` is **hard-pruned** to the final structure:
the trained weights are masked at the allocation. After each round the hard-pruned
candidate is scored (one evaluation per round), and ``||W − Z||`` (the primal residual, the
norm of what hard pruning will remove) is recorded in ``result.extras["admm"]``.

The allocation is ``allocation`` when given (tightened to the budget if it is over), else
one sparsity for every unit, the smallest that meets the budget (as ``uniform``).
AutoCompress calls :func:`admm_prune` with its simulated-annealing allocation.
"""

from __future__ import annotations

import weakref

import keras
import numpy as np

from kprune.config import schema as S
from kprune.errors import KPruneError
from kprune.search.base import Search, register, tighten
from kprune.search.units import check_allocation
from kprune.wrappers.wrap import find_wrappers

F = S.Field


def _allocation_check(value):
    if not isinstance(value, dict) or not value:
        return "must be a mapping {unit_name: sparsity} (or null for one sparsity sized to the budget)."
    for unit, s in value.items():
        if not isinstance(unit, str) or isinstance(s, bool) or not isinstance(s, (int, float)) or not 0 <= s < 1:
            return f"must map unit names to sparsities in [0, 1); entry {unit!r}: {s!r} is not."
    return None


ADMM_FIELDS = {
    "rho": F("float", 1e-3, check=S.positive,
             doc="initial penalty weight ρ of ρ/2·||W − Z + U||²"),
    "rho_growth": F("float", 1.0, low=1.0, doc="ρ multiplier after each ADMM round"),
    "training_steps": F("int", 100, low=1, doc="training steps per ADMM round (W-step)"),
}


class AdmmPenalty:
    """``on · ρ/2 · Σ (x − target)²`` (plus an ``inner`` regularizer), a weight's ADMM penalty.

    ``target`` (``Z − U``), ``rho`` and ``on`` (1.0 for weights the structure prunes, else
    0.0) are Keras variables, so a traced train step sees their updates. Installed as
    ``variable.regularizer`` during the W-steps only.

    Example:
        >>> p = AdmmPenalty(keras.Variable([1.0, 1.0]), keras.Variable(2.0))
        >>> float(p(keras.ops.convert_to_tensor([0.0, 3.0])))
        5.0
    """

    def __init__(self, target, rho, on=None, inner=None):
        self.target = target
        self.rho = rho
        self.on = on
        self.inner = inner

    def __call__(self, x):
        out = 0.5 * self.rho * keras.ops.sum(keras.ops.square(x - keras.ops.cast(self.target, x.dtype)))
        if self.on is not None:
            out = out * self.on
        return out + self.inner(x) if self.inner is not None else out


class _Penalties:
    """One :class:`AdmmPenalty` per masked weight of a builder's model, created once.

    The same variables serve every ADMM run on the model, so a train step traced during an
    earlier run (a ``finetune`` that compiles once) still reads the current targets; on
    exit the regularizers are removed and ρ is set to 0, so such a stale trace adds nothing.
    """

    def __init__(self, slots):
        self.slots = slots
        self.rho = keras.Variable(0.0, trainable=False, name="admm_rho")
        self.penalties = []
        for _, _, var in slots:
            target = keras.Variable(np.zeros(tuple(var.shape), "float32"), trainable=False, name="admm_target")
            on = keras.Variable(0.0, trainable=False, name="admm_on")
            self.penalties.append(AdmmPenalty(target, self.rho, on, inner=var.regularizer))
        self.previous = None

    def install(self, masks):
        """Penalizes the weights whose structure ``masks`` have zeros."""
        self.previous = [var.regularizer for _, _, var in self.slots]
        for (_, _, var), p, m in zip(self.slots, self.penalties, masks):
            p.on.assign(1.0 if np.any(m == 0) else 0.0)
            var.regularizer = p
        return self

    def set(self, z, u, rho):
        for p, zi, ui in zip(self.penalties, z, u):
            if float(p.on.numpy()):
                p.target.assign(np.asarray(zi - ui, dtype="float32"))
        self.rho.assign(float(rho))

    def remove(self):
        self.rho.assign(0.0)
        if self.previous is not None:
            for (_, _, var), previous in zip(self.slots, self.previous):
                var.regularizer = previous
        self.previous = None


_PENALTIES = weakref.WeakKeyDictionary()


def _slots(builder) -> list:
    """``[(weight index, mask index, variable)]`` for every masked weight of the wrapped model."""
    index = {id(v): i for i, v in enumerate(builder.wrapped.weights)}
    out = []
    for w in find_wrappers(builder.wrapped):
        for attr, var in w.weights_by_attr().items():
            out.append((index[id(var)], index[id(w.masks[attr])], var))
    return out


def project(builder, allocation: dict, state: list, values: list, slots: list):
    """``Π_S``: ``values`` (one array per slot) pruned to ``allocation`` by the recipe's criterion.

    Returns ``(projected values, masks)``; the model is left holding ``state``.
    """
    trial = list(state)
    for (wi, _, _), v in zip(slots, values):
        trial[wi] = v
    builder.build(allocation, from_state=trial)
    weights = builder.wrapped.weights
    masks = [np.asarray(weights[mi].numpy()) for _, mi, _ in slots]
    builder.restore(state)
    return [v * m for v, m in zip(values, masks)], masks


def _norm(arrays) -> float:
    return float(np.sqrt(sum(float(np.sum(np.square(a, dtype=np.float64))) for a in arrays)))


def _round(ctx, allocation, slots, penalty, state, z, u, rho, steps, seed):
    """One ADMM iteration from (W in ``state``, Z, U): W-step, Z-step, dual step."""
    builder = ctx.builder
    builder.restore(state)
    penalty.set(z, u, rho)
    ctx.finetune_fn(builder.wrapped, int(steps), int(seed))
    state = builder.snapshot()
    w = [state[wi] for wi, _, _ in slots]
    z, _ = project(builder, allocation, state, [wi + ui for wi, ui in zip(w, u)], slots)
    u = [ui + wi - zi for ui, wi, zi in zip(u, w, z)]
    return state, z, u, _norm([wi - zi for wi, zi in zip(w, z)])


def admm_prune(ctx, allocation: dict, rounds: int, rho: float, rho_growth: float, steps: int,
               prefix: str = "", seed_offset: int = 0) -> dict:
    """Runs ADMM toward ``allocation`` from the builder's base, resumable round by round.

    After the call the builder's base is the ADMM-trained state (masks of the base, not yet
    hard-pruned); ``ctx.evaluate(allocation)`` builds the hard-pruned candidate from it.

    Args:
        ctx: the :class:`~kprune.search.context.SearchContext`.
        allocation: ``{unit: sparsity}``, the structure ``S``.
        rounds: ADMM iterations.
        rho: initial ρ; ``rho_growth`` multiplies it after each round.
        steps: training steps per W-step (``ctx.finetune_fn(model, steps, seed)``).
        prefix: prefix of the state keys and trajectory tags (AutoCompress rounds).
        seed_offset: added to the search seed for the training seeds.

    Returns:
        ``{"score": the last round's score, "history": [{"round", "rho", "distance", "score"}],
        "initial_distance": ||W0 − Π(W0)||}``.
    """
    if ctx.finetune_fn is None:
        raise KPruneError("admm trains the model: give the recipe's `data` section or pass "
                          "finetune=callable(model, steps, seed) to kprune.search.run.")
    builder = ctx.builder
    slots = _slots(builder)
    carried = None  # (state, z, u) of the last computed or loaded round; None while replay skips
    history, initial, rec = [], None, None
    # the structure's zeros decide which weights carry the penalty (the same in every round)
    _, masks = project(builder, allocation, list(builder.base), [builder.base[wi] for wi, _, _ in slots], slots)
    if builder not in _PENALTIES:
        _PENALTIES[builder] = _Penalties(slots)
    penalty = _PENALTIES[builder].install(masks)
    try:
        for r in range(rounds):
            rec, carried, initial = _admm_round(ctx, allocation, slots, penalty, carried, initial, r, rho,
                                                rho_growth, steps, prefix, seed_offset, history)
    finally:
        penalty.remove()
    return {"score": rec["score"], "history": history, "initial_distance": initial}


def _admm_round(ctx, allocation, slots, penalty, carried, initial, r, rho, rho_growth, steps, prefix,
                seed_offset, history):
    """Round ``r`` of :func:`admm_prune`: load, replay or compute the iterate, then score it."""
    builder = ctx.builder
    n, k = len(builder.base), len(slots)
    key = f"{prefix}admm:{r}"
    rho_r = rho * rho_growth ** r
    saved = ctx.load_state(key)
    if saved is not None:
        carried = (saved[:n], saved[n:n + k], saved[n + k:n + 2 * k])
        stats = saved[-1]
    elif ctx.replaying:
        carried, stats = None, None
    else:
        if carried is None:  # round 0: Z0 = Π(W0), U0 = 0
            state = list(builder.base)
            w0 = [state[wi] for wi, _, _ in slots]
            z0, _ = project(builder, allocation, state, w0, slots)
            initial = _norm([a - b for a, b in zip(w0, z0)])
            carried = (state, z0, [np.zeros_like(a) for a in w0])
        state, z, u = carried
        if r > 0:
            u = [ui * (rho * rho_growth ** (r - 1) / rho_r) for ui in u]
        state, z, u, distance = _round(ctx, allocation, slots, penalty, state, z, u, rho_r, steps,
                                       ctx.seed + seed_offset + r)
        carried = (state, z, u)
        stats = np.array([distance, initial if initial is not None else np.nan])
        ctx.save_state(key, list(state) + list(z) + list(u) + [stats])
    info = {"round": r, "rho": rho_r}
    if stats is not None:
        info["distance"] = float(stats[0])
        if r == 0:
            info["initial_distance"] = float(stats[1])
    if carried is not None:
        builder.set_base(list(carried[0]))
    rec = ctx.evaluate(allocation, tag=f"{prefix}admm:{r}", info=info)
    ctx.accept(rec)
    info = rec.get("info", {})
    if r == 0:
        initial = info.get("initial_distance", initial)
    history.append({"round": r, "rho": rho_r, "distance": info.get("distance"), "score": rec["score"]})
    return rec, carried, initial


@register("admm")
class Admm(Search):
    """ADMM-regularized training toward a sparse structure, then hard pruning.

    Args:
        allocation: ``{unit: sparsity}`` to reach (default None: one sparsity for every
            unit, the smallest that meets the budget).
        rounds: ADMM iterations (default 5).
        rho: initial penalty weight ρ (default 1e-3).
        rho_growth: ρ multiplier after each round, >= 1 (default 1.0).
        training_steps: training steps per round (default 100).
        **common: ``constraint``, ``budget``, ``max_sparsity``... (see :mod:`kprune.search.base`).

    Example:
        >>> result = Admm(constraint="flops", budget=0.5, rounds=4).run(model, recipe)
        >>> [h["distance"] for h in result.extras["admm"]["history"]]   # shrinking
    """

    name = "admm"
    FIELDS = {
        "allocation": F("any", None, check=_allocation_check, doc="{unit: sparsity} to reach (null: uniform)"),
        "rounds": F("int", 5, low=1, doc="ADMM iterations"),
        **ADMM_FIELDS,
    }

    def target(self, ctx) -> dict:
        """The allocation ADMM drives toward, within the budget."""
        cfg = self.config
        given = cfg["allocation"]
        start = {u.name: 0.0 for u in ctx.units}
        if given is not None:
            check_allocation(ctx.units, given)
            start.update({k: float(v) for k, v in given.items()})
        return tighten(start, ctx.resource, ctx.limit, cfg["max_sparsity"])

    def search(self, ctx) -> dict:
        cfg = self.config
        allocation = self.target(ctx)
        out = admm_prune(ctx, allocation, cfg["rounds"], cfg["rho"], cfg["rho_growth"], cfg["training_steps"])
        ctx.state["extras"] = {"admm": {"history": out["history"], "initial_distance": out["initial_distance"]}}
        return {"allocation": allocation, "score": out["score"]}
