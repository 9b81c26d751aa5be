"""Parts of the :class:`kprune.Pruner`: statistics per update, and the per-layer mask updates.

Data-driven criteria get their activations and gradients collected once per mask update
(:mod:`kprune.pruning.statistics`). Filter granularity goes through channel groups
(``Pruner._update_filters``); the other granularities (weight, channel, n:m, block) mask
each selected layer's own kernels, as described in :mod:`kprune.pruning.granularity`.
"""

from __future__ import annotations

import numpy as np

from kprune.pruning import allocation, granularity
from kprune.errors import KPruneError, RecipeError, UnsupportedLayerError, require_finite
from kprune.wrappers.prune_wrapper import KERNEL_WEIGHTS, PruneWrapper, weight_attributes

_MAIN_KERNELS = ("kernel", "pointwise_kernel")


class LayerUnits:
    """Mixin of :class:`kprune.Pruner`: statistics and the per-layer granularities."""

    # -- statistics ---------------------------------------------------------------------------
    def _statistics(self, jobs) -> dict:
        from kprune.pruning import statistics
        stats = {"activations": {}, "gradients": {}}
        act_layers, grad_vars = {}, {}
        for entry, kind, params, crit, members, units in jobs:
            if not ({"activations", "gradients"} & set(crit.needs)):
                continue
            if self.data is None:
                raise KPruneError(
                    f"criterion `{crit.name}` (prune.config_list[{entry}]) scores with "
                    f"{' and '.join(n for n in crit.needs if n != 'weights')} measured on data, but no data "
                    "was given. Pass a dataset of (x, y) batches: kprune.PruningCallback(data=ds) inside "
                    "model.fit, or kprune.Pruner(model, data=ds).prune_now(); the recipe pipeline uses "
                    "its training set.")
            batches = crit.batches or int(self.plan.get("statistics_batches", 10))
            layers = self._scored_layers(kind, members, units)
            if "activations" in crit.needs:
                act_layers.setdefault(batches, set()).update(name for name, _ in layers)
            if "gradients" in crit.needs:
                for name, attr in layers:
                    grad_vars.setdefault(batches, {})[(name, attr)] = self._variable(name, attr)
        for batches, names in act_layers.items():
            stats["activations"].update(statistics.collect_activations(
                self.model, self.data, sorted(names), batches, cache=self._stat_cache))
        for batches, variables in grad_vars.items():
            got = statistics.collect_gradients(self.model, self.data, variables, batches, loss=self.loss,
                                               cache=self._stat_cache)
            stats["gradients"].update({(b, k): v for k, v in got.items() for b in [batches]})
        return stats

    def _scored_layers(self, kind, members, units):
        """(layer name, weight attr) pairs a criterion scores for one entry."""
        if kind == "filter":
            return [(m.layer.name, m.weight) for g, _ in units for m in g.members
                    if m.role == "producer" and m.weight in _MAIN_KERNELS]
        return [(w.name, a) for w in members for a in self._kernel_attrs(w, kind)]

    def _variable(self, name, attr):
        layer = self._layer(name)
        inner = layer.layer if isinstance(layer, PruneWrapper) else layer
        return weight_attributes(inner)[attr]

    def _layer(self, name):
        if name in self._by_name:
            return self._by_name[name]
        from kprune.wrappers.selectors import flatten_layers
        return next(l for l in flatten_layers(self.model) if l.name == name)

    def _stats_for(self, stats, crit, name, attr) -> dict:
        batches = crit.batches or int(self.plan.get("statistics_batches", 10))
        return {"activations": stats["activations"].get(name),
                "gradients": stats["gradients"].get((batches, (name, attr))),
                "seed": int(self.plan.get("seed", 0)), "name": f"{name}/{attr}"}

    @staticmethod
    def _kernel_attrs(w, kind) -> list:
        attrs = [a for a in w.masks if a in KERNEL_WEIGHTS]
        if kind == "channel":
            # the kernel that reads the layer input (SeparableConv: the depthwise one)
            return [a for a in ("kernel", "depthwise_kernel") if a in attrs][:1]
        return attrs

    def _frozen(self, w, attr):
        return None if self.soft else np.asarray(w.masks[attr].numpy()) == 0

    def _update_layers(self, kind, params, entry, members, crit, targets, stats):
        spec = members[0].spec
        is_global = self._is_global(spec, crit)
        if kind == "n:m":
            return self._update_nm(params, entry, members, crit, targets, stats, is_global)
        items = []  # (wrapper, attr, unit scores, unit costs, frozen units, to_mask)
        for w in members:
            for attr in self._kernel_attrs(w, kind):
                value = require_finite(np.asarray(w.weights_by_attr()[attr].numpy()), w.name, attr, "scored")
                kw = self._stats_for(stats, crit, w.name, attr)
                frozen = self._frozen(w, attr)
                if kind == "weight":
                    scores = crit(value, None, **kw)
                    items.append((w, attr, scores, None, frozen, lambda keep, s=value.shape: keep.reshape(s)))
                elif kind == "channel":
                    axis = granularity.input_axis(w.layer, attr, value.ndim)
                    scores = crit(value, axis, **kw)
                    cost = np.full(value.shape[axis], value.size / value.shape[axis])
                    fz = None if frozen is None else np.all(np.moveaxis(frozen, axis, 0).reshape(
                        value.shape[axis], -1), axis=1)
                    items.append((w, attr, scores, cost, fz,
                                  lambda keep, s=value.shape, a=axis: granularity.expand_axis(keep, s, a)))
                else:  # block
                    shape = self._block_shape(entry)
                    out_axis = value.ndim - 2 if type(w.layer).__name__.endswith("Transpose") else value.ndim - 1
                    granularity.input_axis(w.layer, attr, value.ndim)  # rejects EinsumDense
                    scores = granularity.block_scores(crit(value, None, **kw), shape, out_axis)
                    cost = granularity.block_sizes(value.shape, shape, out_axis)
                    fz = None if frozen is None else granularity.block_scores(frozen, shape, out_axis) == 1.0
                    items.append((w, attr, scores, cost, fz,
                                  lambda keep, s=value.shape, b=shape, o=out_axis:
                                  granularity.expand_blocks(keep, s, b, o)))
        if is_global:
            keeps = allocation.global_keep([it[2] for it in items], targets[members[0].name],
                                           costs=None if kind == "weight" else [it[3] for it in items],
                                           max_per_unit=spec["max_sparsity_per_layer"],
                                           frozen=None if self.soft else [it[4] for it in items])
        elif kind == "channel":
            keeps = [allocation.channel_keep(it[2], targets[it[0].name], 1, int(self.plan.get("min_keep", 1)),
                                             it[4]) for it in items]
        else:
            keeps = [allocation.weight_mask(it[2], targets[it[0].name], it[4]) for it in items]
        for (w, attr, _, _, _, expand), keep in zip(items, keeps):
            w.set_mask(attr, expand(np.asarray(keep, dtype=bool)))

    def _block_shape(self, entry):
        shape = self.plan.get("block_shape") or [1, 4]
        if len(shape) != 2 or any(int(v) < 1 for v in shape):
            raise RecipeError("prune.block_shape", "must be two positive integers [rows, cols].", shape)
        return tuple(int(v) for v in shape)

    def _update_nm(self, params, entry, members, crit, targets, stats, is_global):
        n, m = params
        spec = members[0].spec
        path = f"prune.config_list[{entry}]"
        if is_global:
            raise RecipeError("prune.scope", f"granularity `{n}:{m}` keeps {n} of every {m} weights inside "
                              "each layer, so it has no global ranking; use scope: layerwise.", "global")
        final = spec["sparsity"] if spec.get("sparsity") is not None else spec["total_sparsity"]
        if abs(final - (m - n) / m) > 1e-6:
            raise RecipeError(f"{path}.sparsity", f"granularity `{n}:{m}` prunes {m - n} of every {m} weights, "
                              f"i.e. sparsity {(m - n) / m:g}; set sparsity: {(m - n) / m:g}.", final)
        for w in members:
            for attr in self._kernel_attrs(w, "n:m"):
                value = require_finite(np.asarray(w.weights_by_attr()[attr].numpy()), w.name, attr, "scored")
                axis = granularity.input_axis(w.layer, attr, value.ndim)
                scores = crit(value, None, **self._stats_for(stats, crit, w.name, attr))
                try:
                    keep = granularity.nm_keep(scores, n, m, axis, sparsity=targets[w.name],
                                               frozen=self._frozen(w, attr))
                except UnsupportedLayerError as e:
                    raise UnsupportedLayerError(f"{path}.granularity `{n}:{m}` on layer `{w.name}` ({attr}): {e} "
                                                f"Allowed here: an N:M whose M divides the layer's input "
                                                "channels.") from None
                w.set_mask(attr, keep)
