"""Search units: what a sparsity search chooses a sparsity for.

With filter granularity a unit is a *prunable channel group* (see :func:`kprune.groups`):
layers coupled by a residual ``Add`` share one group, so one unit, so a search can never
propose different sparsities for them. A unit is named after its first selected producer
layer. With weight granularity every selected layer is its own unit.

An allocation is ``{unit_name: sparsity}``; :func:`allocation_recipe` turns it into an
ordinary recipe (one ``config_list`` entry per unit) that ``kprune.wrap`` applies.
"""

from __future__ import annotations

import dataclasses

from kprune import graph
from kprune.errors import KPruneError, RecipeError
from kprune.wrappers.prune_wrapper import KERNEL_WEIGHTS, weight_attributes
from kprune.wrappers.selectors import flatten_layers, select


@dataclasses.dataclass(frozen=True)
class Unit:
    """One choice of a search.

    Attributes:
        name: the unit's name (its first selected producer layer).
        layers: the selected layers it prunes (producers of the group, or the one layer).
        size: channels in the group (filter granularity) or kernel entries (weight).
        group: the channel group's id in ``kprune.groups(model)`` (None for weight units).
        criterion: the importance criterion used for this unit.
    """

    name: str
    layers: tuple
    size: int
    group: int | None
    criterion: str


def base_prune(prune: dict) -> dict:
    """The recipe's ``prune`` section made searchable: one-shot, layerwise, no nested search.

    Entries with ``total_sparsity`` get ``sparsity: 0.0`` (the search sets every target).
    """
    granularity = prune["granularity"]
    if granularity not in ("filter", "weight"):
        raise RecipeError("prune.granularity", "a sparsity search allocates filters (channel groups) or "
                          "weights per layer. Allowed with prune.search: ['filter', 'weight'].", granularity)
    out = {k: v for k, v in prune.items() if k not in ("search",)}
    out["schedule"] = {"name": "oneshot"}
    out["scope"] = "layerwise"
    entries = []
    for entry in prune["config_list"]:
        entry = dict(entry)
        if not entry.get("exclude"):
            entry["total_sparsity"] = None
            entry["sparsity"] = 0.0
        entries.append(entry)
    out["config_list"] = entries
    return out


def find_units(model, prune: dict) -> list:
    """The units of ``model`` under a recipe's ``prune`` section, in graph order.

    Args:
        model: a plain (unwrapped) built Keras model.
        prune: a validated ``prune`` section.

    Returns:
        A list of :class:`Unit`. Groups that cannot be pruned (they reach the model output,
        come from the input, or are coupled with an excluded layer) are left out.

    Example:
        >>> [u.name for u in find_units(model, recipe.prune)][:2]
        ['conv1', 'stage1_block1_conv1']
    """

    specs, excluded = select(model, base_prune(prune))
    units = []
    if prune["granularity"] == "weight":
        for layer in flatten_layers(model):
            if layer.name in specs:
                size = sum(_prod(v.shape) for a, v in weight_attributes(layer).items() if a in KERNEL_WEIGHTS)
                units.append(Unit(layer.name, (layer.name,), size, None, specs[layer.name]["criterion"]))
    else:
        excluded = set(excluded)
        for g in graph.groups(model):
            producers = g.layer_names("producer")
            chosen = [n for n in producers if n in specs]
            # heads are pruned only with granularity: head, which a search does not allocate
            if not chosen or not g.prunable or g.unit != "channel" or set(producers) & excluded:
                continue
            units.append(Unit(chosen[0], tuple(chosen), int(g.size), int(g.id), specs[chosen[0]]["criterion"]))
    if not units:
        raise KPruneError(f"the recipe selects no prunable unit of model `{model.name}` for a search: every "
                          "selected layer's channels reach the model output, come from its input or are "
                          "coupled with an excluded layer. Select hidden Conv2D/Dense layers.")
    return units


def _prod(shape) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def allocation_recipe(prune: dict, units: list, allocation: dict) -> dict:
    """A recipe dict whose ``config_list`` has one entry per unit at its allocated sparsity.

    Args:
        prune: the original validated ``prune`` section (its excludes are kept).
        units: from :func:`find_units`.
        allocation: ``{unit_name: sparsity}`` (missing units get 0.0).

    Returns:
        ``{"prune": {...}}`` ready for :meth:`kprune.Recipe.from_dict` / :func:`kprune.wrap`.

    Example:
        >>> kprune.wrap(model, allocation_recipe(recipe.prune, units, {"conv1": 0.5}))
    """
    check_allocation(units, allocation)
    base = base_prune(prune)
    entries = [{"op_names": list(u.layers), "sparsity": float(allocation.get(u.name, 0.0)),
                "criterion": u.criterion} for u in units]
    entries += [e for e in base["config_list"] if e.get("exclude")]
    base["config_list"] = entries
    return {"prune": base}


def check_allocation(units: list, allocation: dict) -> None:
    """Raises KPruneError for unknown unit names or sparsities outside [0, 1)."""
    names = {u.name for u in units}
    for name, s in allocation.items():
        if name not in names:
            raise KPruneError(f"allocation names unit `{name}`, which is not a search unit of this model. "
                              f"Units: {sorted(names)}.")
        if not 0.0 <= float(s) < 1.0:
            raise KPruneError(f"allocation[{name!r}] must be a sparsity in [0, 1). Received: {s}.")


def layer_allocation(units: list, allocation: dict) -> dict:
    """``{layer_name: sparsity}`` for every selected layer of every unit."""
    return {layer: float(allocation.get(u.name, 0.0)) for u in units for layer in u.layers}
