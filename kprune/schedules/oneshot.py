"""``oneshot`` and ``constant`` schedules."""

from __future__ import annotations

from kprune.config import schema as S
from kprune.schedules.base import register
from kprune.schedules.base import Schedule

F = S.Field


@register("oneshot")
class OneShot(Schedule):
    """Prunes once, to the final sparsity, before step ``at_step`` (default 0).

    Args:
        at_step: step at which masks are computed (default 0), or
        at_epoch: the same in epochs.
    """

    name = "oneshot"
    SCHEMA = S.Section({
        "name": F("str", "oneshot"),
        "at_step": F("int", None, low=0, nullable=True),
        "at_epoch": F("float", None, low=0, nullable=True),
    })

    def _at(self):
        return self._steps("at_step", "at_epoch", 0)

    def updates_at(self, step):
        return step == self._at()

    def sparsity(self, step, final):
        return final

    def last_update_step(self):
        return self._at()


@register("constant")
class Constant(Schedule):
    """Keeps the final sparsity and recomputes masks every ``frequency`` steps (or epochs).

    With ``soft: true`` in the recipe this is soft filter pruning (SFP): pruned weights keep
    training and may come back at the next update.

    Args:
        start_step / start_epoch: first update (default 0).
        end_step / end_epoch: last update (default: never stops).
        frequency: steps (or epochs, when the schedule is in epochs) between updates.
    """

    name = "constant"
    SCHEMA = S.Section({
        "name": F("str", "constant"),
        "start_step": F("int", None, low=0, nullable=True),
        "end_step": F("int", None, low=0, nullable=True),
        "start_epoch": F("float", None, low=0, nullable=True),
        "end_epoch": F("float", None, low=0, nullable=True),
        "frequency": F("float", 1, low=0, check=lambda v: "must be > 0." if v <= 0 else None),
    })

    def updates_at(self, step):
        start = self._steps("start_step", "start_epoch", 0)
        end = self._steps("end_step", "end_epoch", None)
        if step < start or (end is not None and step > end):
            return False
        return (step - start) % self._frequency() == 0

    def sparsity(self, step, final):
        return final

    def last_update_step(self):
        return self._steps("end_step", "end_epoch", None)
