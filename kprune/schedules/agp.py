"""Automated Gradual Pruning (Zhu & Gupta, 2017).

    s_t = s_f + (s_i - s_f) * (1 - (t - t0) / (n * dt)) ** power,  t = t0, t0 + dt, ..., t0 + n*dt

with ``power = 3`` in the paper. Works with any criterion (NNI's ``pruning_algorithm``).
"""

from __future__ import annotations

from kprune.config import schema as S
from kprune.errors import RecipeError
from kprune.schedules.base import register
from kprune.schedules.base import Schedule

F = S.Field


@register("agp")
class AGP(Schedule):
    """Gradual pruning from ``initial_sparsity`` to the final sparsity.

    Args:
        start_step / start_epoch: first update (t0), default 0.
        end_step / end_epoch: step (or epoch) at whose start the final sparsity is applied.
        frequency: steps (or epochs) between updates (dt), default 1.
        initial_sparsity: s_i, default 0.
        power: exponent, default 3.

    Example:
        >>> AGP(start_epoch=0, end_epoch=10, frequency=1).bind(100).sparsity(500, 0.9)
        0.7875
    """

    name = "agp"
    SCHEMA = S.Section({
        "name": F("str", "agp"),
        "start_step": F("int", None, low=0, nullable=True),
        "end_step": F("int", None, low=0, nullable=True),
        "start_epoch": F("float", None, low=0, nullable=True),
        "end_epoch": F("float", None, low=0, nullable=True),
        "frequency": F("float", 1, check=lambda v: "must be > 0." if v <= 0 else None),
        "initial_sparsity": F("float", 0.0, low=0.0, high=1.0, high_open=True),
        "power": F("float", 3.0, low=0.0, check=lambda v: "must be > 0." if v <= 0 else None),
    })

    @classmethod
    def check(cls, config, path, lines):
        super().check(config, path, lines)
        if config.get("end_step") is None and config.get("end_epoch") is None:
            raise RecipeError(f"{path}.end_step", "agp needs an end: give end_step or end_epoch.",
                              line=lines.get(path))
        start_key = "start_step" if config.get("start_step") is not None else "start_epoch"
        end_key = "end_step" if config.get("end_step") is not None else "end_epoch"
        start, end = config.get(start_key) or 0, config.get(end_key)
        if end <= start:
            raise RecipeError(f"{path}.{end_key}", f"must be after the start ({start_key}={start:g}); set "
                              f"{end_key} > {start:g}.", end, line=lines.get(f"{path}.{end_key}", lines.get(path)))

    def _range(self):
        return self._steps("start_step", "start_epoch", 0), self._steps("end_step", "end_epoch")

    def updates_at(self, step):
        start, end = self._range()
        if step < start or step > end:
            return False
        return step == end or (step - start) % self._frequency() == 0

    def sparsity(self, step, final):
        start, end = self._range()
        s_i = self._config.get("initial_sparsity", 0.0)
        p = self._config.get("power", 3.0)
        progress = min(1.0, max(0.0, (step - start) / (end - start)))
        return final + (s_i - final) * (1.0 - progress) ** p

    def last_update_step(self):
        return self._range()[1]
