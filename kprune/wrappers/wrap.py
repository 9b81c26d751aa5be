"""``wrap``, ``strip`` and ``sparsity``: moving between plain and masked Keras models."""

from __future__ import annotations

import keras
import numpy as np

from kprune import graph
from kprune.config.recipe import Recipe
from kprune.errors import KPruneError, UnsupportedLayerError
from kprune.graph.layers.base import recreate
from kprune.wrappers.prune_wrapper import KERNEL_WEIGHTS, PruneWrapper, weight_attributes
from kprune.wrappers import short_form, stateless
from kprune.wrappers.selectors import flatten_layers, select, specs_of


def find_wrappers(model) -> list:
    """All :class:`PruneWrapper` layers of a model (nested models searched), in graph order."""
    return [l for l in flatten_layers(model) if isinstance(l, PruneWrapper)]


def is_wrapped(model) -> bool:
    return bool(find_wrappers(model))


def _check_model(model, what: str):
    if not isinstance(model, keras.Model):
        raise UnsupportedLayerError(f"kprune.{what} expects a keras.Model. Received: {type(model).__name__}.")
    if not (isinstance(model, keras.Sequential) or type(model).__name__ == "Functional"
            or getattr(model, "_is_graph_network", False) or hasattr(model, "_functional")):
        raise UnsupportedLayerError(
            f"kprune.{what} needs a Functional or Sequential model, but `{model.name}` is a subclassed "
            f"model ({type(model).__name__}): its call() is Python code whose graph kprune cannot "
            "rebuild. Either build the same network with the functional API, or wrap the layers "
            "yourself inside your model: `self.conv = kprune.PruneWrapper(keras.layers.Conv2D(...), "
            "spec={'sparsity': 0.5, 'criterion': 'level', 'granularity': 'weight', 'entry': 0})` and "
            "drive them with kprune.Pruner.")
    if not model.built:
        raise UnsupportedLayerError(f"model `{model.name}` is not built; call it on data or give "
                                    "keras.Input an input shape first.")


def _fresh(layer):
    if not isinstance(layer, keras.layers.Layer):
        return layer  # a keras.ops operation node (x + 3, x * y, x[..., :c]): stateless, reused
    if type(layer) is keras.layers.Lambda:
        # a Lambda's config holds Python bytecode, which Keras refuses to deserialize in safe
        # mode; the function is already in memory, so the copy reuses it
        return keras.layers.Lambda(layer.function, output_shape=layer._output_shape, mask=layer.mask,
                                   arguments=dict(layer.arguments), name=layer.name, dtype=layer.dtype_policy)
    try:
        return recreate(layer.__class__, layer.get_config())
    except Exception:  # noqa: BLE001
        if layer.weights or isinstance(layer, keras.Model):
            raise  # a copy must not share weights with the user's model: refused by _clone, naming the layer
        return layer  # weightless and not re-creatable (a Python function in __init__): reused, as an op is


def _built_copy(layer):
    """A fresh copy of ``layer``, built as the original was (a layer called on several inputs,
    such as attention, is built from all their shapes, which a wrapper's build cannot give)."""
    new = _fresh(layer)
    config = layer.get_build_config() if layer.built else None
    if config and not new.built:
        new.build_from_config(config)
    return new


def _clone(model, make):
    """Clones ``model`` with ``make(layer) -> new layer`` and copies weights old -> new."""
    pairs = []

    def fn(layer):
        try:
            new = make(layer)
        except KPruneError:
            raise
        except Exception as e:  # noqa: BLE001 - re-raised naming the layer
            raise UnsupportedLayerError(
                f"kprune could not re-create layer `{layer.name}` ({type(layer).__name__}) of model "
                f"`{model.name}` from its config (get_config/from_config): {type(e).__name__}: {e}. Every layer "
                "of a model must round-trip through its config to be wrapped (as keras.models.clone_model "
                "requires); the layer's get_config needs fixing.") from e
        pairs.append((layer, new))
        return new

    inputs = None
    if not isinstance(model, keras.Sequential):
        # keep the input names (clone_model would invent new ones)
        inputs = [keras.Input(batch_shape=t.shape, dtype=t.dtype, name=t._keras_history[0].name)
                  for t in model.inputs]
        inputs = keras.tree.pack_sequence_as(model.input, inputs)
    try:
        clone = keras.models.clone_model(model, input_tensors=inputs, clone_function=fn,
                                         call_function=None if inputs is None else _call, recursive=True)
    except KPruneError:
        raise
    except Exception as e:  # noqa: BLE001 - re-raised with context
        raise UnsupportedLayerError(f"kprune could not rebuild model `{model.name}` layer by layer: "
                                    f"{type(e).__name__}: {e}") from e
    for old, new in pairs:
        _copy_weights(old, new)
    return clone


def _call(layer, *args, **kwargs):
    # a node recorded for one layer class may carry kwargs (e.g. mask=None) that its
    # replacement (wrapper <-> inner layer) does not accept
    if "mask" in kwargs and not getattr(layer, "_call_has_mask_arg", False):
        kwargs.pop("mask")
    if "training" in kwargs and not getattr(layer, "_call_has_training_arg", False):
        kwargs.pop("training")
    return layer(*args, **kwargs)


def _copy_weights(old, new):
    if isinstance(new, PruneWrapper) and not isinstance(old, PruneWrapper):
        new.layer.set_weights(old.get_weights())
    elif isinstance(old, PruneWrapper) and not isinstance(new, PruneWrapper):
        old_vars = {id(v): a for a, v in old.weights_by_attr().items()}
        values = []
        for v in old.layer.weights:
            val = np.asarray(v.numpy())
            attr = old_vars.get(id(v))
            if attr is not None:
                val = val * np.asarray(old.masks[attr].numpy(), dtype=val.dtype)
            values.append(val)
        new.set_weights(values)
    elif isinstance(old, keras.layers.Layer) and old.weights:
        new.set_weights(old.get_weights())


def wrap(model, recipe=None, soft: bool = False, **keywords):
    """Returns a new model whose selected layers are wrapped with pruning masks.

    Two forms: ``wrap(model, recipe)`` (a recipe, dict or YAML path), or the keyword short form
    ``wrap(model, sparsity=0.5, criterion="l1", granularity="filter", schedule="oneshot",
    op_types=("Conv2D", "Dense"), exclude=(), **other_prune_keys)``, whose defaults are the ones
    shown (L1 filter pruning, see :mod:`kprune.wrappers.short_form`); it builds a recipe dict
    validated by the same schema, and errors name the keyword.

    Layers chosen by the recipe's ``config_list`` become :class:`PruneWrapper` layers with
    their pruning target. For filter granularity, every other layer coupled to a pruned
    filter (the BatchNormalization that follows it, depthwise convs, the consumers' input
    channels, layers joined by residual adds) is wrapped too, passively, so that a pruned
    channel is exactly zero everywhere. Weights are copied; the input model is unchanged.

    Args:
        model: a built Functional or Sequential Keras model (nested models allowed).
        recipe: a :class:`kprune.Recipe`, a dict, or a YAML path (only ``prune`` is used); default
            ``None``: the short form's keywords make the recipe.
        soft: soft pruning (pruned weights keep training, SFP); default ``False``, or the
            recipe's ``prune.soft``.
        **keywords: the short form (``sparsity`` required; ``criterion``, ``granularity``,
            ``schedule``, ``op_types``, ``exclude`` and any other ``prune`` key), only without ``recipe``.

    Returns:
        A new Keras model with the same names, inputs and outputs.

    Example:
        >>> model = kprune.wrap(model, {"prune": {"criterion": "level",
        ...     "config_list": [{"op_types": ["Dense"], "sparsity": 0.8}]}})
        >>> model = kprune.wrap(plain_model, sparsity=0.5)    # L1 filter pruning, one-shot
    """

    if recipe is None:
        recipe = short_form.recipe(**keywords)
    elif keywords:
        raise TypeError(f"kprune.wrap takes a recipe or keywords, not both. Received: recipe and "
                        f"{', '.join(f'{k}=' for k in sorted(keywords))}. Put the values into the recipe's "
                        "`prune` section, or drop the recipe.")
    recipe = Recipe.coerce(recipe)
    soft = bool(soft or recipe.prune.get("soft", False))
    _check_model(model, "wrap")
    if is_wrapped(model):
        raise UnsupportedLayerError(f"model `{model.name}` is already wrapped; call kprune.strip(model) "
                                    "first to re-wrap it with another recipe.")
    prune = recipe.prune
    try:
        specs, excluded = select(model, prune)
    except KPruneError as e:
        if not keywords:
            raise
        raise short_form.rename(e, keywords) from None
    plan = {k: v for k, v in prune.items() if k != "config_list"}
    plan["excluded"] = excluded
    passive = set()
    filtered = {n for n, s in specs.items() if any(x["granularity"] == "filter" for x in specs_of(s))}
    if filtered:
        passive = _coupled_layers(model, filtered)

    def make(layer):
        if layer.name in specs:
            return PruneWrapper(_built_copy(layer), spec=specs[layer.name], plan=plan, soft=soft)
        if layer.name in passive and weight_attributes(layer):
            return PruneWrapper(_built_copy(layer), spec=None, plan=plan, soft=soft)
        return _fresh(layer)

    return _clone(model, make)


def _coupled_layers(model, producers: set) -> set:
    """Names of the layers that share a channel group with any of ``producers``."""

    names = set()
    for group in graph.groups(model):
        members = {m.layer.name for m in group.members}
        if members & producers:
            names |= members
    return names - producers


def strip(model):
    """Returns a plain Keras model: wrappers removed, masks baked into the weights.

    Shapes are unchanged (use :func:`kprune.compact` to remove pruned filters). The result
    contains no kprune objects and loads without kprune.
    """
    _check_model(model, "strip")
    return _clone(model, lambda layer: _fresh(layer.layer if isinstance(layer, PruneWrapper) else layer))


def sparsity(model) -> dict:
    """Fraction of zeros in each prunable layer's kernel-like weights.

    Works on wrapped and plain models; returns ``{layer_name: fraction}`` plus ``"total"``
    (zeros over all those weights together). Inside a JAX ``fit`` (a callback's
    ``on_train_batch_end``) the live weights are synced into the model first.
    """
    stateless.sync(model)
    out, zeros, total = {}, 0, 0
    for layer in flatten_layers(model):
        inner = layer.layer if isinstance(layer, PruneWrapper) else layer
        kernels = [v for a, v in weight_attributes(inner).items() if a in KERNEL_WEIGHTS]
        if not kernels:
            continue
        z = sum(int(np.sum(np.asarray(v.numpy()) == 0)) for v in kernels)
        n = sum(int(np.prod(v.shape)) for v in kernels)
        out[layer.name] = z / n if n else 0.0
        zeros, total = zeros + z, total + n
    out["total"] = zeros / total if total else 0.0
    return out
