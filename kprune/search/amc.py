"""AMC: AutoML for Model Compression (He et al. 2018), resource-constrained, with a DDPG agent.

An episode walks the units in graph order. At unit ``t`` the agent sees a state embedding
and answers a **preserve ratio** ``a_t`` (the unit keeps ``a_t`` of its channels, or of its
weights with weight granularity; sparsity ``1 − a_t``):

* **state** (12 numbers, each in [0, 1]): the paper's 11 — unit index ``t``, input channels
  ``n``, output channels ``c``, output height ``h`` and width ``w``, stride, kernel size, the
  unit's resource (what pruning it fully, down to ``max_sparsity``, would save, in the
  budgeted resource: FLOPs, params or latency), the resource reduced so far, the resource of
  the units still to come, the previous action — plus the layer type (1 convolution, 0
  otherwise) as in the authors' code. Static features are min-max normalised over the units,
  the dynamic ones are fractions of the original resource.
* **action bound** (the paper's resource-constrained setting): the action is clipped to
  ``[1 − max_sparsity, 1]`` and then to the largest preserve ratio that still lets the budget
  be met if every later unit were pruned to ``max_sparsity`` — so every episode's allocation
  is within the budget, by construction.
* **reward**: ``R_err = −error`` — the evaluator's score of the pruned candidate (for
  accuracy, ``1 − error``: the constant is removed by the agent's moving-average baseline).
  Every transition of an episode gets the episode's reward (discount 1, AMC's setting).
  Transitions store the agent's action before the bound (the bound is part of the
  environment, as in the authors' code); the state's previous action is the bounded one.

Exploration: ``warmup`` episodes of uniformly random actions, then the actor's action plus
truncated normal noise ``σ = init_delta · delta_decay^(episode − warmup)``. After every
episode past the warm-up the agent makes one DDPG update per transition. The warm-up episodes
are one batch of candidates (their actions do not depend on rewards), and so is each round of
``parallel_episodes`` later episodes (default 1): batches are evaluated in parallel with an
executor's workers (``prune.search.executor``), with the same result as in one process. The best
allocation seen (the best policy) is returned; ``Search.run`` builds and compacts it.

The agent is NumPy (:mod:`kprune.search.ddpg`) and uses the search's generator only, so a
search is bitwise reproducible for a seed and a resumed search retrains the same agent while
its evaluations are replayed from the checkpoint.
"""

from __future__ import annotations

import math

import numpy as np

from kprune.config import schema as S
from kprune.errors import RecipeError
from kprune.search.base import Search, register
from kprune.search.ddpg import DDPG, truncated_normal
from kprune.wrappers.selectors import flatten_layers

F = S.Field


@register("amc")
class AMC(Search):
    """AMC's DDPG agent choosing each unit's preserve ratio under a resource budget.

    Args:
        episodes: search episodes, warm-up included (default 400).
        warmup: episodes with random actions before the agent acts and learns (default 100).
        hidden: hidden width of actor and critic (default 300).
        lr_actor, lr_critic: Adam learning rates (defaults 1e-4, 1e-3).
        tau: soft target update rate (default 0.01).
        batch_size: DDPG minibatch (default 64).
        memory: replay buffer capacity, in episodes (default 100).
        init_delta: initial exploration noise σ (default 0.5).
        delta_decay: σ multiplier per episode after the warm-up (default 0.95).
        moving_alpha: rate of the reward moving average (default 0.5).
        parallel_episodes: episodes played per round after the warm-up with the same agent,
            evaluated as one batch, then observed and learned from in order (default 1: the
            paper's agent, which learns after every episode).
        **common: ``constraint``, ``budget``, ``max_sparsity``... (see :mod:`kprune.search.base`).

    Example:
        >>> result = AMC(constraint="flops", budget=0.5, episodes=300, warmup=50).run(model, recipe)
        >>> result.extras["amc"]["rewards"][:3]   # one reward per episode
    """

    name = "amc"
    FIELDS = {
        "episodes": F("int", 400, low=1, doc="search episodes (warm-up included)"),
        "warmup": F("int", 100, low=0, doc="episodes of random actions before learning"),
        "hidden": F("int", 300, low=1, doc="hidden width of actor and critic"),
        "lr_actor": F("float", 1e-4, check=S.positive, doc="actor learning rate (Adam)"),
        "lr_critic": F("float", 1e-3, check=S.positive, doc="critic learning rate (Adam)"),
        "tau": F("float", 0.01, low=0.0, high=1.0, check=S.positive, doc="soft target update rate"),
        "batch_size": F("int", 64, low=1, doc="DDPG minibatch size"),
        "memory": F("int", 100, low=1, doc="replay buffer capacity, in episodes"),
        "init_delta": F("float", 0.5, low=0.0, doc="initial exploration noise σ"),
        "delta_decay": F("float", 0.95, low=0.0, high=1.0, doc="noise multiplier per episode after warm-up"),
        "moving_alpha": F("float", 0.5, low=0.0, high=1.0, doc="rate of the reward moving average"),
        "parallel_episodes": F("int", 1, low=1, doc="episodes per round after the warm-up, played with the "
                               "same agent and evaluated as one batch (1: the paper's sequential agent)"),
    }

    @classmethod
    def check(cls, config, path, lines):
        if config["warmup"] >= config["episodes"]:
            raise RecipeError(f"{path}.warmup", f"must be below episodes ({config['episodes']}) so that the "
                              "agent acts and learns after the random warm-up.", config["warmup"],
                              line=lines.get(f"{path}.warmup"))

    # -- the environment -----------------------------------------------------------------------
    def embedding(self, ctx) -> np.ndarray:
        """The static part of the states: ``(units, 12)``, min-max normalised per column."""
        layers = {l.name: l for l in flatten_layers(ctx.builder.wrapped)}
        cap = self.config["max_sparsity"]
        orig = ctx.resource({})
        rows = []
        for t, u in enumerate(ctx.units):
            layer = layers[u.layers[0]]
            inner = getattr(layer, "layer", layer)
            shape = _shape(layer, "output")
            kernel = getattr(inner, "kernel_size", (1,))
            strides = getattr(inner, "strides", (1,))
            h = shape[0] if len(shape) >= 2 else 1
            w = shape[1] if len(shape) >= 3 else 1
            n_in = (_shape(layer, "input") or (1,))[-1] or 1
            c_out = shape[-1] if shape else u.size
            saving = orig - ctx.resource({u.name: cap})
            conv = 1.0 if "Conv" in type(inner).__name__ else 0.0
            rows.append([t, conv, n_in, c_out, h, w, strides[0], kernel[0], saving, 0.0, 0.0, 1.0])
        emb = np.array(rows, dtype=np.float64)
        for j in range(9):
            lo, hi = emb[:, j].min(), emb[:, j].max()
            emb[:, j] = (emb[:, j] - lo) / (hi - lo) if hi > lo else 0.0
        self._savings = np.array([orig - ctx.resource({u.name: cap}) for u in ctx.units]) / orig
        return emb

    def state(self, ctx, emb, t: int, decided: dict, previous: float) -> np.ndarray:
        """Unit ``t``'s state: the static row plus reduced-so-far, rest, previous action."""
        orig = ctx.resource({})
        s = emb[t].copy()
        s[9] = (orig - ctx.resource(decided)) / orig
        s[10] = float(self._savings[t + 1:].sum())
        s[11] = previous
        return np.clip(s, 0.0, 1.0)

    def bound(self, ctx, t: int, decided: dict) -> float:
        """The largest preserve ratio of unit ``t`` that leaves the budget reachable.

        The later units are assumed pruned to ``max_sparsity``; the smallest sparsity of unit
        ``t`` whose predicted resource then fits is found by bisection over its distinct
        channel counts (or a 1e-4 grid for weight units).
        """
        cap = self.config["max_sparsity"]
        unit = ctx.units[t]
        rest = {u.name: cap for u in ctx.units[t + 1:]}

        def fits(s):
            return ctx.resource({**decided, unit.name: s, **rest}) <= ctx.limit * (1 + 1e-12)

        if fits(0.0):
            return 1.0
        if ctx.cost_model.granularity == "filter":
            options = sorted({min(cap, n / unit.size) for n in range(0, int(math.floor(cap * unit.size)) + 1)} | {cap})
        else:
            options = sorted(set(np.round(np.linspace(0.0, cap, 10_001), 6).tolist()) | {cap})
        if not fits(options[-1]):
            return 1.0 - cap
        lo, hi = 0, len(options) - 1  # options[lo] does not fit, options[hi] does
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if fits(options[mid]):
                hi = mid
            else:
                lo = mid
        return 1.0 - options[hi]

    # -- the search ----------------------------------------------------------------------------------
    def play(self, ctx, emb, agent, episode: int, warm: bool, low: float) -> dict:
        """One episode's actions (random in the warm-up, else the actor's plus noise), not evaluated."""
        cfg = self.config
        rng = ctx.rng
        delta = 0.0 if warm else cfg["init_delta"] * cfg["delta_decay"] ** max(0, episode - cfg["warmup"])
        decided, states, actions, taken, previous = {}, [], [], [], 1.0
        for t, u in enumerate(ctx.units):
            s = self.state(ctx, emb, t, decided, previous)
            raw = rng.uniform(low, 1.0) if warm else truncated_normal(rng, agent.act(s), delta, low, 1.0)
            a = min(max(raw, low), self.bound(ctx, t, decided))
            decided[u.name] = float(min(1.0 - a, cfg["max_sparsity"]))
            states.append(s)
            actions.append(raw)  # the agent's action; the environment applied the bound
            taken.append(a)
            previous = a
        return {"decided": decided, "states": states, "actions": actions, "taken": taken, "delta": delta}

    def search(self, ctx) -> dict:
        cfg = self.config
        low = 1.0 - cfg["max_sparsity"]
        units = ctx.units
        emb = self.embedding(ctx)
        agent = DDPG(emb.shape[1], ctx.rng, hidden=cfg["hidden"], lr_actor=cfg["lr_actor"], lr_critic=cfg["lr_critic"],
                     tau=cfg["tau"], batch_size=cfg["batch_size"], memory=cfg["memory"] * len(units),
                     moving_alpha=cfg["moving_alpha"])
        best, rewards = None, []
        episode = 0
        while episode < cfg["episodes"]:
            warm = episode < cfg["warmup"]
            # A round of episodes played with the same agent: the whole warm-up (random actions
            # do not depend on the rewards), then ``parallel_episodes`` at a time. A round's
            # candidates are one batch (evaluated in parallel with an executor's workers).
            size = cfg["warmup"] - episode if warm else min(cfg["parallel_episodes"], cfg["episodes"] - episode)
            played = [self.play(ctx, emb, agent, episode + k, warm, low) for k in range(size)]
            records = ctx.evaluate_many([
                {"allocation": p["decided"], "tag": "warmup" if warm else "episode",
                 "info": {"episode": episode + k, "delta": p["delta"], "actions": [float(a) for a in p["taken"]]}}
                for k, p in enumerate(played)])
            for p, rec in zip(played, records):
                reward = rec["score"]
                rewards.append(reward)
                improved = best is None or reward > best["score"]
                if improved:
                    best = rec
                ctx.state["extras"] = {"amc": {"rewards": rewards, "best_episode": best["info"]["episode"]}}
                ctx.accept(rec, improved)
                states, actions = p["states"], p["actions"]
                for t in range(len(units)):
                    last = t == len(units) - 1
                    agent.observe(states[t], actions[t], reward, states[t] if last else states[t + 1], last)
                if not warm:
                    for _ in range(len(units)):
                        agent.update()
            episode += size
        return {"allocation": best["allocation"], "score": best["score"]}


def _shape(layer, which: str) -> tuple:
    """A layer's symbolic input or output shape in the model (empty when it has none)."""
    try:
        tensor = getattr(layer, which)
    except (AttributeError, ValueError):
        return ()
    if isinstance(tensor, (list, tuple)):
        tensor = tensor[0]
    return tuple(1 if d is None else int(d) for d in tensor.shape[1:])
