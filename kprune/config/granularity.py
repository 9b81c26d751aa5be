"""The granularity grammar of a recipe: ``weight``, ``filter``, ``channel``, ``block`` or ``"N:M"``.

What each granularity prunes, and the functions that build its masks, are in
:mod:`kprune.pruning.granularity`.
"""

from __future__ import annotations

import re

KINDS = ("weight", "filter", "channel", "n:m", "block", "head")
_NM = re.compile(r"^\s*(\d+)\s*:\s*(\d+)\s*$")


def parse(value: str) -> tuple:
    """``"2:4"`` -> ``("n:m", (2, 4))``; ``"filter"`` -> ``("filter", None)``.

    Raises:
        ValueError: for anything else (the recipe turns it into a RecipeError).
    """
    if value in KINDS and value != "n:m":
        return value, None
    m = _NM.match(str(value))
    if m:
        n, mm = int(m.group(1)), int(m.group(2))
        if 0 < n < mm:
            return "n:m", (n, mm)
        raise ValueError(f"an N:M granularity needs 0 < N < M. Received: {value!r}")
    raise ValueError(f"must be one of ['weight', 'filter', 'channel', 'block', 'head'] or 'N:M' such as "
                     f"'2:4'. Received: {value!r}")


def check(value) -> str | None:
    """Recipe validator: an error message or None."""
    try:
        parse(value)
    except ValueError as e:
        return str(e).split(". Received")[0] + "."
    return None
