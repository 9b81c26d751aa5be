"""The :class:`Schedule` base class and its step/epoch unit handling."""

from __future__ import annotations

import abc

from kprune.errors import RecipeError
from kprune.config.registry import SCHEDULES

#: decorator registering a member of the family by name
register = SCHEDULES.register


class Schedule(abc.ABC):
    """Base class: subclasses define ``SCHEMA``, ``updates_at`` and ``sparsity``.

    Keys ending in ``_epoch`` (and ``frequency`` when the schedule is in epochs) are turned
    into steps by :meth:`bind`.
    """

    SCHEMA = None
    name = None

    def __init__(self, **config):
        self._config = dict(config)
        self._spe = None

    @classmethod
    def from_config(cls, config: dict) -> "Schedule":
        return cls(**{k: v for k, v in config.items() if k != "name"})

    def get_config(self) -> dict:
        return {"name": self.name, **self._config}

    @classmethod
    def check(cls, config: dict, path: str, lines: dict):
        """Cross-field checks; raises RecipeError."""
        steps = [k for k in ("start_step", "end_step", "at_step") if config.get(k) is not None]
        epochs = [k for k in ("start_epoch", "end_epoch", "at_epoch") if config.get(k) is not None]
        if steps and epochs:
            raise RecipeError(path, f"mixes step keys {steps} with epoch keys {epochs}; use one unit.",
                              {k: config[k] for k in steps + epochs}, line=lines.get(path))

    @property
    def in_epochs(self) -> bool:
        return any(self._config.get(k) is not None for k in ("start_epoch", "end_epoch", "at_epoch"))

    def bind(self, steps_per_epoch):
        """Fixes the number of steps per epoch (needed for epoch-based settings); returns self."""
        if self.in_epochs and not steps_per_epoch:
            raise RecipeError("prune.schedule", "is given in epochs, so the number of steps per "
                              "epoch must be known: call fit() with a dataset of known length or pass "
                              "steps_per_epoch to PruningCallback/Pruner.", self.get_config())
        self._spe = steps_per_epoch
        return self

    def _steps(self, key_step: str, key_epoch: str, default=None):
        if self._config.get(key_epoch) is not None:
            return int(round(self._config[key_epoch] * self._spe))
        if self._config.get(key_step) is not None:
            return int(self._config[key_step])
        return default

    def _frequency(self) -> int:
        f = self._config.get("frequency", 1)
        return max(1, int(round(f * self._spe))) if self.in_epochs else int(f)

    @abc.abstractmethod
    def updates_at(self, step: int) -> bool:
        """Whether masks are recomputed before training step ``step``."""

    @abc.abstractmethod
    def sparsity(self, step: int, final: float) -> float:
        """The target sparsity at ``step`` for a layer whose final target is ``final``."""

    def last_update_step(self):
        """The step of the last scheduled update (``None`` if it never ends)."""
        return None
