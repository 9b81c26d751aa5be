"""Name → object registries, one per family (criteria, schedules, searches).

Each family module owns a :class:`Registry`; new members register with its decorator and
are found by ``get(name)`` from YAML. Unknown names raise a :class:`RecipeError` listing the
known ones.
"""

from __future__ import annotations

from kprune.errors import RecipeError


class Registry:
    """A named family of objects.

    Args:
        family: human name used in errors, e.g. ``"criterion"``.

    Example:
        >>> criteria = Registry("criterion")
        >>> @criteria.register("level")
        ... def level(weights): ...
    """

    def __init__(self, family: str):
        self.family = family
        self._items = {}

    def register(self, name: str):
        def deco(obj):
            if name in self._items and self._items[name] is not obj:
                raise ValueError(f"{self.family} `{name}` is already registered.")
            self._items[name] = obj
            return obj
        return deco

    def names(self) -> list:
        return sorted(self._items)

    def lookup(self, name, path: str = ""):
        if isinstance(name, str) and name in self._items:
            return self._items[name]
        raise RecipeError(path or self.family, f"unknown {self.family}. Allowed: {self.names()}.", name)

    def __contains__(self, name):
        return name in self._items
