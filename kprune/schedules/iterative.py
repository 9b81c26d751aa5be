"""``iterative``: lottery-ticket iterative magnitude pruning (Frankle & Carbin 2019).

Training runs in ``rounds + 1`` phases of equal length. Phase 0 trains the dense model; at
the start of phase ``r`` (1 ≤ r ≤ rounds) masks are recomputed to

    s_r = 1 − (1 − P) ** (r / rounds)

(i.e. each round prunes ``1 − (1 − P) ** (1 / rounds)`` of the surviving weights), then
the survivors are rewound to their values at the rewind point and the optimizer state is
reset (:meth:`kprune.Pruner.rewind`). ``rewind: init`` rewinds to the weights at pruning
step 0; ``rewind: {step: k}`` to those at step k ("late rewinding", Frankle et al. 2020).

Without ``round_steps``/``round_epochs`` the schedule never fires on its own: drive the
rounds with :class:`kprune.LotteryTicket` (or :meth:`kprune.Pruner.next_round`) around
``model.fit``.
"""

from __future__ import annotations

from kprune.config import schema as S
from kprune.errors import RecipeError
from kprune.schedules.base import register
from kprune.schedules.base import Schedule

F = S.Field


def _rewind_check(value, path, lines):
    if value == "init" or value is None:
        return "init"
    if isinstance(value, dict) and set(value) == {"step"} and isinstance(value["step"], int) \
            and not isinstance(value["step"], bool) and value["step"] >= 0:
        return {"step": int(value["step"])}
    raise RecipeError(path, "must be `init` or a mapping {step: k} with an integer k >= 0 (late rewinding).",
                      value, line=lines.get(path))


def round_sparsity(r: int, rounds: int, final: float) -> float:
    """Target after ``r`` of ``rounds`` rounds: ``1 − (1 − final) ** (r / rounds)``.

    Example:
        >>> round(round_sparsity(1, 2, 0.75), 6)
        0.5
    """
    r = max(0, min(r, rounds))
    return 1.0 - (1.0 - final) ** (r / rounds)


@register("iterative")
class Iterative(Schedule):
    """Lottery-ticket rounds: prune a fixed fraction of survivors, rewind, retrain.

    Args:
        rounds: number of pruning rounds (default 5).
        rewind: ``"init"`` (default) or ``{"step": k}``.
        round_steps / round_epochs: length of each training phase; without it the rounds are
            driven by :class:`kprune.LotteryTicket`.

    Example:
        >>> s = Iterative(rounds=2, round_steps=10).bind(None)
        >>> [t for t in range(40) if s.updates_at(t)], s.sparsity(25, 0.75)
        ([10, 20], 0.75)
    """

    name = "iterative"
    SCHEMA = S.Section({
        "name": F("str", "iterative"),
        "rounds": F("int", 5, low=1),
        "rewind": F("custom", "init", check=_rewind_check),
        "round_steps": F("int", None, low=1, nullable=True),
        "round_epochs": F("float", None, low=0, nullable=True,
                          check=lambda v: "must be > 0." if v is not None and v <= 0 else None),
    })

    @classmethod
    def check(cls, config, path, lines):
        if config.get("round_steps") is not None and config.get("round_epochs") is not None:
            raise RecipeError(path, "give one of round_steps or round_epochs, not both.",
                              {k: config[k] for k in ("round_steps", "round_epochs")}, line=lines.get(path))

    @property
    def in_epochs(self) -> bool:
        return self._config.get("round_epochs") is not None

    @property
    def rounds(self) -> int:
        return int(self._config.get("rounds", 5))

    @property
    def rewind_step(self) -> int:
        """The pruning step whose weights survivors are rewound to."""
        rw = self._config.get("rewind", "init")
        return 0 if rw in (None, "init") else int(rw["step"])

    def round_length(self):
        """Steps per training phase, or None when rounds are driven by hand."""
        return self._steps("round_steps", "round_epochs", None)

    def round_at(self, step: int) -> int:
        """Number of pruning rounds done before ``step`` runs (0 … rounds)."""
        length = self.round_length()
        return 0 if not length else min(self.rounds, step // length)

    def updates_at(self, step):
        length = self.round_length()
        return bool(length) and step > 0 and step % length == 0 and step // length <= self.rounds

    def sparsity(self, step, final):
        return round_sparsity(self.round_at(step), self.rounds, final)

    def last_update_step(self):
        length = self.round_length()
        return None if not length else length * self.rounds
