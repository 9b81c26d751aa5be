"""A small declarative schema for recipes: types, allowed values, defaults, key paths.

Every field is described once here; :mod:`kprune.config.recipe` validates against it and fills
defaults. Errors name the dotted key path, the value received and what is allowed.
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import Any, Callable

from kprune.errors import RecipeError

_REQUIRED = object()


@dataclasses.dataclass(frozen=True)
class Field:
    """One recipe key.

    Args:
        kind: ``"int"``, ``"float"``, ``"bool"``, ``"str"``, ``"list"``, ``"dict"`` (a nested
            :class:`Section`), ``"any"``.
        default: value used when the key is absent (``_REQUIRED`` makes it mandatory).
        choices: allowed values for strings (exact match).
        low, high: inclusive numeric bounds (``high_open`` makes the upper bound exclusive).
        item: for lists, the :class:`Field` of each item.
        section: for nested dicts, their :class:`Section`.
        nullable: ``None`` allowed.
        check: extra validator ``f(value) -> error message or None``.
        doc: one line shown in errors and in ``recipes/README.md``.
    """

    kind: str
    default: Any = None
    choices: tuple | None = None
    low: float | None = None
    high: float | None = None
    high_open: bool = False
    item: "Field | None" = None
    section: "Section | None" = None
    nullable: bool = False
    check: Callable[[Any], str | None] | None = None
    doc: str = ""


@dataclasses.dataclass(frozen=True)
class Section:
    """A mapping of known keys; unknown keys are errors."""

    fields: dict
    doc: str = ""


def positive(value):
    """A ``Field.check`` for numbers that must be > 0 (``low`` alone allows the bound itself)."""
    return None if value > 0 else "must be > 0."


def _type_name(field: Field) -> str:
    return {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string",
            "list": "a list", "dict": "a mapping", "any": "any value"}[field.kind]


def validate(value, field: Field, path: str, lines: dict | None = None):
    """Validates ``value`` against ``field`` and returns it with defaults filled.

    Args:
        value: the parsed YAML/dict value.
        field: its schema.
        path: dotted key path used in errors (``""`` for the root).
        lines: optional map key path -> YAML line number, to point at the source line.

    Returns:
        The validated value (ints promoted to floats where a number is expected, nested
        sections completed with defaults).
    """
    lines = lines or {}
    if field.kind == "custom":
        return field.check(value, path, lines)

    def fail(msg, received=RecipeError._MISSING):
        raise RecipeError(path, msg, received, line=lines.get(path))

    if value is None:
        if field.nullable or field.kind == "any":
            return None
        fail(f"must be {_type_name(field)}, not null.", value)
    kind = field.kind
    if kind == "bool":
        if not isinstance(value, bool):
            fail("must be true or false.", value)
    elif kind == "int":
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            if isinstance(value, numbers.Real) and not isinstance(value, bool) and float(value).is_integer():
                value = int(value)
            else:
                fail("must be an integer.", value)
        value = int(value)  # numpy integers too
    elif kind == "float":
        if isinstance(value, bool) or not isinstance(value, numbers.Real):  # numpy floats and ints are Real
            fail("must be a number.", value)
        value = float(value)
        if value != value or value in (float("inf"), float("-inf")):
            fail("must be a finite number" + (f"{_range_text(field)}." if _range_text(field) else "."), value)
    elif kind == "str":
        if not isinstance(value, str):
            fail("must be a string" + (f", one of {list(field.choices)}." if field.choices else "."), value)
        if field.choices is not None and value not in field.choices:
            fail(f"must be one of {list(field.choices)}.", value)
    elif kind == "list":
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list):
            fail("must be a list.", value)
        if field.item is not None:
            value = [validate(v, field.item, f"{path}[{i}]", lines) for i, v in enumerate(value)]
    elif kind == "dict":
        if not isinstance(value, dict):
            fail("must be a mapping (key: value).", value)
        value = validate_section(value, field.section, path, lines)
    if kind in ("int", "float"):
        if field.low is not None and value < field.low:
            fail(f"must be >= {field.low}{_range_text(field)}.", value)
        if field.high is not None and (value > field.high or (field.high_open and value >= field.high)):
            fail(f"must be {'<' if field.high_open else '<='} {field.high}{_range_text(field)}.", value)
    if field.check is not None:
        msg = field.check(value)
        if msg:
            fail(msg, value)
    return value


def _range_text(field: Field) -> str:
    if field.low is not None and field.high is not None:
        close = ")" if field.high_open else "]"
        return f" (allowed range [{field.low}, {field.high}{close})"
    return ""


def validate_section(value: dict, section: Section, path: str, lines: dict | None = None) -> dict:
    """Validates a mapping: no unknown keys, required keys present, defaults filled."""
    lines = lines or {}
    out = {}
    for key in value:
        if key not in section.fields:
            sub = f"{path}.{key}" if path else str(key)
            known = ", ".join(sorted(section.fields))
            raise RecipeError(sub, f"unknown key. Allowed keys here: {known}.", line=lines.get(sub))
    for key, field in section.fields.items():
        sub = f"{path}.{key}" if path else key
        if key in value:
            out[key] = validate(value[key], field, sub, lines)
        elif field.default is _REQUIRED:
            raise RecipeError(sub, f"is required ({field.doc or _type_name(field)}).", line=lines.get(path))
        elif field.default is None:
            out[key] = None
        else:
            out[key] = validate(_copy(field.default), field, sub, lines)
    return out


def _copy(value):
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


REQUIRED = _REQUIRED
