"""Name → object registries, one per family (criteria, schedules, searches).

The families (:data:`CRITERIA`, :data:`SCHEDULES`, :data:`SEARCHES`) live here, below the
packages that fill them: a member registers with the family's decorator when its module is
imported, and the first lookup of a name imports the family's package, so the recipe validates
names without importing the families (see ``docs/architecture.md``). Unknown names raise a :class:`RecipeError` listing the
known ones.
"""

from __future__ import annotations

import importlib

from kprune.config import schema as S
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

    def __init__(self, family: str, package: str | None = None):
        self.family = family
        self.package = package
        self._items = {}
        self._loaded = package is None

    def _load(self):
        """Imports the family's package once, so that its members have registered."""
        if not self._loaded:
            self._loaded = True
            importlib.import_module(self.package)

    def register(self, name: str):
        def deco(obj):
            if name in self._items and self._items[name] is not obj:
                raise ValueError(f"{self.family} `{name}` is already registered.")
            self._items[name] = obj
            return obj
        return deco

    def names(self) -> list:
        self._load()
        return sorted(self._items)

    def lookup(self, name, path: str = ""):
        self._load()
        if isinstance(name, str) and name in self._items:
            return self._items[name]
        raise RecipeError(path or self.family, f"unknown {self.family}. Allowed: {self.names()}.", name)

    def validate(self, value, path: str, lines=None, schema=lambda cls: cls.SCHEMA, nullable: bool = False) -> dict:
        """Validates a ``{name: ..., **keys}`` config against the named member's schema.

        A bare string is read as ``{"name": value}``. The member class gives its
        :class:`kprune.config.schema.Section` (``schema(cls)``) and cross-field ``check``; errors name
        the key path and, for YAML, the line.
        """
        lines = lines or {}
        if isinstance(value, str):
            value = {"name": value}
        if not isinstance(value, dict) or "name" not in value:
            raise RecipeError(path, f"must be {'null or ' if nullable else ''}a mapping with a `name` "
                              f"(one of {self.names()}).", value, line=lines.get(path))
        cls = self.lookup(value["name"], f"{path}.name")
        out = S.validate_section(value, schema(cls), path, lines)
        cls.check(out, path, lines)
        return out

    def __contains__(self, name):
        self._load()
        return name in self._items


#: the plug-in families, each filled by its package's modules as they are imported
CRITERIA = Registry("criterion", "kprune.criteria")
SCHEDULES = Registry("schedule", "kprune.schedules")
SEARCHES = Registry("search", "kprune.search")
