"""``compact``: rebuild a model with its pruned filters and channels physically removed.

For every prunable channel group, the channels whose weights are already zero (see
:func:`kprune.graph.masks.channel_mask_from_weights`) are deleted from every member weight:
producer filters and biases, follower parameters (BatchNorm gamma/beta/moving statistics,
depthwise kernels), consumer input slices (conv input channels, Dense rows after Flatten).
Layers get reduced ``filters``/``units``; everything else is copied unchanged. Weight-level
zeros that do not empty a whole channel stay in the weights.

The result is a plain Keras functional model (no kprune objects). Nested models are inlined:
a Sequential holding a ``keras.applications`` model comes back as one flat functional model
with the same layer names.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import tree

from kprune.errors import GraphError, require_finite
from kprune.graph.analysis import analyze
from kprune.graph.masks import channel_mask_from_weights, masked_value
from kprune.graph.layers import Sizes, rule_for
from kprune.graph.walk import fill_in, flat_outputs, unwrap, weight_at

L = keras.layers


def plan_removal(analysis, min_channels: int = 1):
    """Decide which channels go.

    Args:
        analysis: the model's :class:`~kprune.graph.analysis.Analysis`.
        min_channels: channels kept in a group whose channels are all zero (default 1),
            so no layer ends with zero filters.

    Returns:
        ``(removed_roots, deletions)``: the removed channel labels (array) and a dict
        ``(id(layer), weight) -> {axis: sorted positions to delete}``.
    """
    removed = []
    deletions: dict = {}
    cache: dict = {}
    for g in analysis.groups:
        if not g.prunable:
            continue
        drop = channel_mask_from_weights(g, cache=cache)
        if drop.all():
            drop = drop.copy()
            drop[: min(min_channels, g.size)] = False
        if not drop.any():
            continue
        removed.append(g.roots[drop])
        for m in g.members:
            axes = deletions.setdefault((id(m.inner), m.weight), {})
            axes.setdefault(m.axis, []).append(m.index[drop].ravel())
    for axes in deletions.values():
        for axis in axes:
            axes[axis] = np.unique(np.concatenate(axes[axis]))
    removed = np.concatenate(removed) if removed else np.zeros(0, np.int64)
    return removed, deletions


def _kept_count(analysis, removed, key) -> int:
    labels = analysis.infos[key].labels
    return int(np.sum(~np.isin(analysis.roots[labels], removed)))


def _unchanged(call, layer, analysis, removed, deletions) -> bool:
    """Whether compaction leaves ``layer`` as it is: none of its weights lose a slice and every
    tensor it reads or writes keeps all its channels (then its config needs no resizing, which
    also covers layers whose labels are not their channels, as a channels_first layer's)."""
    return (not any(lid == id(layer) for lid, _ in deletions)
            and all(_kept_count(analysis, removed, k) == len(analysis.infos[k].labels)
                    for k in (*call.in_keys, *call.out_keys)))


def _new_config(call, layer, analysis, removed, deletions) -> dict:
    if _unchanged(call, layer, analysis, removed, deletions):
        return layer.get_config()
    out_n = _kept_count(analysis, removed, call.out_keys[0]) if call.out_keys else None
    in_n = _kept_count(analysis, removed, call.in_keys[0]) if call.in_keys else None
    orig_in = len(analysis.infos[call.in_keys[0]].labels) if call.in_keys else None
    orig_out = len(analysis.infos[call.out_keys[0]].labels) if call.out_keys else None
    removed_positions = {w: axes for (lid, w), axes in deletions.items() if lid == id(layer)}
    sizes = Sizes(in_n, out_n, orig_in, orig_out, call, removed_positions)
    return rule_for(layer).resize(layer, layer.get_config(), sizes)


def _rebuild_op(call, analysis, removed, deletions, used_names: set):
    op = call.op
    layer = unwrap(op)
    if not isinstance(layer, keras.layers.Layer):
        try:
            return layer.__class__.from_config(layer.get_config())
        except Exception:  # noqa: BLE001 - stateless operations can be reused as they are
            return layer
    try:
        cfg = _new_config(call, layer, analysis, removed, deletions)
    except Exception as exc:  # noqa: BLE001 - get_config() refused (e.g. a Python function in __init__)
        return _as_it_is(call, layer, analysis, removed, deletions, used_names, exc)
    base, n = cfg.get("name", layer.name), 1
    while cfg.get("name", base) in used_names:
        cfg["name"] = f"{base}_{n}"
        n += 1
    used_names.add(cfg.get("name", base))
    try:
        return rule_for(layer).rebuild(layer, cfg)
    except Exception as exc:  # noqa: BLE001
        return _as_it_is(call, layer, analysis, removed, deletions, used_names, exc)


def _as_it_is(call, layer, analysis, removed, deletions, used_names: set, exc):
    """A layer Keras cannot re-create from its config: a weightless one that keeps all its channels
    (a Lambda's Python function, a custom layer without get_config) computes the same in the
    smaller model and is used as it is; any other is refused, naming it and the way out."""
    if not layer.weights and _unchanged(call, layer, analysis, removed, deletions):
        used_names.add(layer.name)
        return layer
    raise GraphError(
        f"kprune.compact could not re-create layer '{layer.name}' ({type(layer).__name__}) "
        f"from its config: {str(exc).strip()}. Layers must implement get_config()/from_config()."
    ) from exc


def _copy_weights(old_op, new_layer, deletions: dict) -> None:
    old_layer = unwrap(old_op)
    attrs, masked = {}, {}
    for (lid, weight) in deletions:
        if lid == id(old_layer):
            attrs[id(weight_at(old_layer, weight))] = weight
    if old_layer is not old_op:  # kprune wrapper: bake its masks in, as strip() does
        for weight in old_op.masks:
            masked[id(weight_at(old_layer, weight))] = weight
    old_w, new_w = old_layer.weights, new_layer.weights
    if len(old_w) != len(new_w):
        raise GraphError(
            f"Layer '{old_layer.name}' has {len(old_w)} weights but its rebuilt copy has "
            f"{len(new_w)}; kprune.compact cannot copy them."
        )
    for ov, nv in zip(old_w, new_w):
        if id(ov) in masked:
            value = masked_value(old_op, masked[id(ov)], ov)
        else:
            value = keras.ops.convert_to_numpy(ov)
        weight = attrs.get(id(ov))
        if weight is not None:
            for axis, idx in sorted(deletions[(id(old_layer), weight)].items()):
                value = np.delete(value, idx, axis=axis)
        if tuple(value.shape) != tuple(nv.shape):
            raise GraphError(
                f"Weight '{ov.path}' of layer '{old_layer.name}' has shape {value.shape} after "
                f"removing pruned channels, but the rebuilt layer expects {tuple(nv.shape)}."
            )
        nv.assign(value)


def compact(model, min_channels: int = 1) -> keras.Model:
    """Return a smaller plain-Keras model with the zeroed (masked) channels removed.

    Args:
        model: a wrapped model (masks already in its weights) or a plain/stripped one.
        min_channels: channels kept in a group whose channels are all zero (default 1).

    Returns:
        A new functional ``keras.Model`` with reduced ``filters``/``units`` that computes
        the same outputs as ``model`` in inference mode.

    Example:
        >>> small = kprune.compact(kprune.strip(pruned))
        >>> small.count_params() < pruned.count_params()
        True
    """
    analysis = analyze(model)
    removed, deletions = plan_removal(analysis, min_channels)
    flat = analysis.flat
    values: dict = {}
    used_names: set = set()
    for t, k in zip(flat.input_tensors, flat.input_keys):
        name = t._keras_history.operation.name
        used_names.add(name)
        values[k] = keras.Input(batch_shape=t.shape, dtype=t.dtype, name=name)
    new_ops: dict = {}
    pairs = []
    for call in flat.calls:
        new = new_ops.get(id(call.op))
        if new is None:
            new = _rebuild_op(call, analysis, removed, deletions, used_names)
            new_ops[id(call.op)] = new
            if isinstance(new, keras.layers.Layer):
                pairs.append((call.op, new))
        args, kwargs = fill_in(call, values)
        outs = flat_outputs(new(*args, **kwargs))
        for k, o in zip(call.out_keys, outs):
            values[k] = o
    inputs = tree.pack_sequence_as(flat.inputs_struct, [values[k] for k in flat.input_keys])
    outputs = tree.pack_sequence_as(flat.outputs_struct, [values[k] for k in flat.output_keys])
    small = keras.Model(inputs, outputs, name=model.name)
    for old, new in pairs:
        for v in old.weights:
            require_finite(keras.ops.convert_to_numpy(v), old.name, v.path.rsplit("/", 1)[-1], "compacted")
        _copy_weights(old, new, deletions)
    return small
