"""Schedules: when masks are updated and to what sparsity.

A schedule is a pure function of the training step. After :meth:`Schedule.bind` with the
number of steps per epoch, ``updates_at(step)`` says whether masks are recomputed before
that step and ``sparsity(step, final)`` gives the target at that step.

Example:
    >>> s = get({"name": "agp", "start_step": 0, "end_step": 100, "frequency": 10})
    >>> s.bind(steps_per_epoch=None).sparsity(50, final=0.8)  # 0.8 * (1 - 0.5 ** 3)
    0.7
"""

from kprune.config.registry import SCHEDULES as _REGISTRY
from kprune.schedules.base import Schedule

from kprune.schedules.base import register  # noqa: E402
names = _REGISTRY.names

from kprune.schedules import agp, iterative, oneshot  # noqa: E402,F401  (registration)


def get(identifier, path: str = "prune.schedule") -> Schedule:
    """Resolves a schedule from a name, a config dict or an instance."""
    if isinstance(identifier, Schedule):
        return identifier
    if isinstance(identifier, str):
        identifier = {"name": identifier}
    config = validate(identifier, path)
    cls = _REGISTRY.lookup(config["name"], f"{path}.name")
    return cls.from_config(config)


def validate(value, path: str = "prune.schedule", lines=None) -> dict:
    """Validates a schedule config dict (unknown keys, types, ranges) and fills defaults."""
    return _REGISTRY.validate(value, path, lines)
