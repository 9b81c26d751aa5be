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

    def validate(self, value, path: str, lines=None, schema=lambda cls: cls.SCHEMA, nullable: bool = False) -> dict:
        """Validates a ``{name: ..., **keys}`` config against the named member's schema.

        A bare string is read as ``{"name": value}``. The member class gives its
        :class:`kprune.config.schema.Section` (``schema(cls)``) and cross-field ``check``; errors name
        the key path and, for YAML, the line.
        """
        from kprune.config import schema as S
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
        return name in self._items
