"""The keyword short form of :func:`kprune.wrap`: ``wrap(model, sparsity=0.5)``.

The keywords are turned into a recipe dict and validated by the same schema as a YAML recipe
(:meth:`kprune.Recipe.from_dict`); an error names the keyword, not the recipe key it became.

Defaults are what most structured-pruning users want, and differ from a recipe's ``prune``
defaults (``level``/``weight``, which zero single weights and leave the model as large as it
was): ``criterion="l1"``, ``granularity="filter"`` (whole filters and Dense units, which
:func:`kprune.compact` then removes), ``schedule="oneshot"`` and ``op_types=("Conv2D",
"Dense")``. Channels that reach a model output are never pruned (the classifier keeps all its
classes). ``sparsity`` has no default.
"""

from __future__ import annotations

import re

from kprune.errors import RecipeError

DEFAULTS = {"criterion": "l1", "granularity": "filter", "schedule": "oneshot", "op_types": ("Conv2D", "Dense")}


def _keyword(path: str) -> str:
    """The short-form keyword a recipe key path came from."""
    if path.startswith("prune.config_list[0]."):
        return path.rsplit(".", 1)[-1]
    if path.startswith("prune.config_list[1]"):
        return "exclude"
    if path.startswith("prune.schedule"):
        return "schedule"
    if path.startswith("prune.config_list"):
        return "op_types"
    return re.sub(r"^prune\.", "", path).split(".", 1)[0].split("[", 1)[0]


def recipe_dict(criterion=None, granularity=None, sparsity=None, schedule=None, op_types=None, exclude=None,
                **options) -> dict:
    """The recipe dict of the short form (see the module docstring for the defaults).

    Args:
        criterion: importance criterion (default ``"l1"``).
        granularity: ``"filter"`` (default), ``"channel"``, ``"weight"``, ``"n:m"``, ``"block"``.
        sparsity: fraction of each selected layer's units to prune, in ``[0, 1)`` (required).
        schedule: schedule name or dict, e.g. ``{"name": "agp", "start_epoch": 0, "end_epoch": 4}``
            (default ``"oneshot"``).
        op_types: layer class names to prune (default ``("Conv2D", "Dense")``).
        exclude: layer names left unpruned (default none).
        **options: any other ``prune`` key of a recipe (``round_to=8``, ``scope="global"``, ...).

    Returns:
        ``{"prune": {...}}``, not yet validated.
    """
    if "config_list" in options:
        raise TypeError("kprune.wrap(model, config_list=...) is the recipe form: pass "
                        "kprune.wrap(model, {'prune': {'config_list': [...]}}) instead of mixing it with keywords.")
    if sparsity is None:
        err = RecipeError("sparsity", "needs a target")
        err.args = ("kprune.wrap(model, sparsity=...): the short form needs a target, the fraction of each "
                    "selected layer's filters (or weights) to prune, e.g. kprune.wrap(model, sparsity=0.5). "
                    "Received: sparsity=None",)
        raise err
    entry = {"op_types": list(op_types if op_types is not None else DEFAULTS["op_types"]), "sparsity": sparsity}
    if isinstance(op_types, str):
        entry["op_types"] = [op_types]
    config_list = [entry]
    if exclude:
        config_list.append({"op_names": [exclude] if isinstance(exclude, str) else list(exclude), "exclude": True})
    prune = {"criterion": criterion if criterion is not None else DEFAULTS["criterion"],
             "granularity": granularity if granularity is not None else DEFAULTS["granularity"],
             "schedule": schedule if schedule is not None else DEFAULTS["schedule"],
             "config_list": config_list, **options}
    return {"prune": prune}


def recipe(**keywords):
    """Validates the short form's keywords as a recipe; errors name the keyword.

    Example:
        >>> recipe(sparsity=0.5).prune["criterion"]
        'l1'
    """
    from kprune.config.recipe import Recipe

    data = recipe_dict(**keywords)
    try:
        return Recipe.from_dict(data)
    except RecipeError as e:
        key = _keyword(e.path or "")
        message = re.sub(r" Received: .*$", "", str(e).split(": ", 1)[-1], flags=re.S)
        received = keywords.get(key, e.received)
        err = RecipeError(key, message, received)
        err.args = (f"kprune.wrap(model, {key}=...): {message} Received: {key}={received!r}",)
        raise err from None


def rename(error, keywords: dict):
    """A selector error about ``prune.config_list[i]`` re-worded with the short-form keyword
    (``op_types`` for entry 0, ``exclude`` for entry 1); other errors are returned unchanged."""
    m = re.match(r"prune\.config_list\[(\d+)\](?:\.\w+)?:? ?", str(error))
    if not m:
        return error
    key = "op_types" if m.group(1) == "0" else "exclude"
    value = keywords.get(key, DEFAULTS.get(key))
    new = type(error)(f"kprune.wrap(model, {key}=...): {str(error)[m.end():]} Received: {key}={value!r}")
    return new
