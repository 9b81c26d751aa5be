"""Selectors: which layers an NNI-style ``config_list`` picks, and with what target.

An entry matches a layer when every key it gives matches (``op_types`` AND ``op_names`` AND
``op_names_re``). For a layer matched by several entries the last one wins; a layer matched
by any ``exclude: true`` entry is never pruned.
"""

from __future__ import annotations

import re

import keras

from kprune.errors import KPruneError, UnsupportedLayerError
from kprune.graph.walk import unwrap
from kprune.graph.layers import is_prunable, prunable_types


def flatten_layers(model) -> list:
    """All leaf layers of a model, nested Functional/Sequential models expanded, in order."""
    out = []
    for layer in model.layers:
        if isinstance(layer, keras.Model) and hasattr(layer, "layers"):
            out.extend(flatten_layers(layer))
        else:
            out.append(layer)
    return out


def layer_type(layer) -> str:
    """Class name of a layer, seen through kprune wrappers."""
    return type(unwrap(layer)).__name__


def _matches(layer, entry) -> bool:
    if entry.get("op_types") and layer_type(layer) not in entry["op_types"]:
        return False
    if entry.get("op_names") and layer.name not in entry["op_names"]:
        return False
    if entry.get("op_names_re") and not any(re.fullmatch(rx, layer.name) for rx in entry["op_names_re"]):
        return False
    return True


def _unit(spec) -> str:
    """What a spec prunes: attention heads, or anything else (channels, weights)."""
    return "head" if spec["granularity"] == "head" else "other"


def specs_of(spec) -> list:
    """A layer's specs: its own, then one for its other kind of unit (``also``), if any."""
    return [spec, *spec.get("also", [])] if spec else []


def target_key(wrapper, entry: int):
    """The key of ``wrapper``'s target for config entry ``entry`` (:meth:`kprune.Pruner.targets`):
    the layer's name, or ``(name, entry)`` for its second kind of unit (``spec["also"]``)."""
    return wrapper.name if wrapper.spec["entry"] == entry else (wrapper.name, entry)


def select(model, prune: dict) -> dict:
    """Resolves ``prune["config_list"]`` against a model.

    Args:
        model: a Keras model (nested models are searched too).
        prune: the validated ``prune`` section of a :class:`kprune.Recipe`.

    Returns:
        ``(specs, excluded)``: ``{layer_name: spec}`` and the sorted names of excluded layers;
        spec is ``{"entry", "sparsity", "total_sparsity",
        "max_sparsity_per_layer", "criterion", "granularity", "scope"}``. A layer selected for
        its attention heads by one entry and for its channels (MLP units) by another keeps both:
        the later spec, with the other under ``"also"`` (see :func:`specs_of`); otherwise a later
        entry replaces an earlier one for the same layer.

    Raises:
        UnsupportedLayerError: a selector matched a layer kprune cannot prune.
        KPruneError: an entry matched no layer, or op_names names a missing layer.
    """
    layers = flatten_layers(model)
    names = {l.name for l in layers}
    excluded = set()
    chosen = {}
    for i, entry in enumerate(prune["config_list"]):
        for n in entry.get("op_names") or []:
            if n not in names:
                raise KPruneError(f"prune.config_list[{i}].op_names: no layer named `{n}` in model "
                                  f"`{model.name}`. Layers: {sorted(names)[:40]}")
        matched = [l for l in layers if _matches(l, entry)]
        if entry["exclude"]:
            excluded.update(l.name for l in matched)
            continue
        if not matched:
            raise KPruneError(f"prune.config_list[{i}] matched no layer of model `{model.name}` "
                              f"(op_types={entry.get('op_types')}, op_names={entry.get('op_names')}, "
                              f"op_names_re={entry.get('op_names_re')}). Layer types present: "
                              f"{sorted({layer_type(l) for l in layers})}.")
        bad = [l for l in matched if not is_prunable(l)]
        if bad:
            raise UnsupportedLayerError(
                f"prune.config_list[{i}] matches layer `{bad[0].name}` of type {layer_type(bad[0])}, "
                f"which kprune cannot prune. Prunable types: {prunable_types()} and layers taught with kprune.layers.register. Narrow the "
                f"selector (e.g. add op_types) or exclude it with {{op_names: [{bad[0].name}], exclude: true}}.")
        for l in matched:
            spec = {
                "entry": i,
                "sparsity": entry["sparsity"],
                "total_sparsity": entry["total_sparsity"],
                "max_sparsity_per_layer": entry["max_sparsity_per_layer"],
                "criterion": entry["criterion"] or prune["criterion"],
                "granularity": entry["granularity"] or prune["granularity"],
                "scope": prune["scope"],
            }
            before = chosen.get(l.name)
            if before is not None and _unit(before) != _unit(spec):
                # heads and MLP units of one layer (a keras-hub block) are selected by two
                # entries, one per kind of unit: the layer keeps both
                mine = [x for x in specs_of(before) if _unit(x) != _unit(spec)]
                spec["also"] = mine[:1]
            chosen[l.name] = spec
    out = {k: v for k, v in chosen.items() if k not in excluded}
    if not out:
        raise KPruneError(f"prune.config_list selects no layer of model `{model.name}` to prune "
                          f"(entries: {len(prune['config_list'])}, excluded: {sorted(excluded)}). It needs at "
                          "least one entry with a `sparsity` whose selector matches a layer that no "
                          f"`exclude: true` entry removes; prunable types: {prunable_types()}.")
    return out, sorted(excluded)
