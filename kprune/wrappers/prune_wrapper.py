"""``PruneWrapper``: a Keras layer wrapper that holds the pruning masks of one layer.

Masks are non-trainable variables with the shape of the weight they mask. They are enforced
at two moments, so that masked weights are exactly zero whenever the layer runs:

* when masks change (:meth:`PruneWrapper.apply_masks`, called by the pruner), and
* after every optimizer update, through the variable's ``constraint`` (Keras optimizers
  apply ``variable.constraint`` after each step, inside the compiled train step).

The forward pass is the wrapped layer's own, untouched: no extra multiply per call, which
keeps training overhead low and makes the wrapper work under ``jit_compile``, mixed precision
and distribution strategies. With ``soft=True`` (soft filter pruning) no constraint is
installed: pruned weights are zeroed at each mask update but keep training in between.

Training a selected layer that no :class:`kprune.Pruner` ever saw (``model.fit`` without
:class:`kprune.PruningCallback`) raises :class:`kprune.errors.KPruneError` when the train
step is traced, as TFMOT does: such a model would otherwise train unpruned, silently. The
check is plain Python at trace time and costs nothing per step; inference, stripped and
compacted models are not affected.
"""

from __future__ import annotations

import contextlib

import keras
import numpy as np

from kprune.errors import KPruneError, UnsupportedLayerError
from kprune.graph import layers as _layers
from kprune.graph.walk import MaskedLayer
from kprune.wrappers import stateless

#: weights that fine-grained (weight-level) pruning masks, by attribute name (the registry's default).
KERNEL_WEIGHTS = _layers.KERNEL_WEIGHTS


def weight_attributes(layer) -> dict:
    """Maps attribute name -> variable for the weights a wrapper of ``layer`` masks.

    Keras layers store their weights as attributes (``kernel``, ``bias``, ``gamma``...); the
    attribute name is what masks, criteria and graph members refer to. The layer's rule in the
    registry (:mod:`kprune.graph.layers`) decides which.
    """
    return _layers.masked_weights(layer)


class _MaskConstraint:
    """Multiplies a variable by its mask (after any user constraint)."""

    def __init__(self, mask, inner=None):
        self.mask = mask
        self.inner = inner

    def __call__(self, w):
        if self.inner is not None:
            w = self.inner(w)
        # under JAX the mask's value comes with the stateless train step (see stateless.py)
        return w * keras.ops.cast(stateless.current(self.mask), w.dtype)


_SPEC_DEFAULTS = {"entry": 0, "sparsity": None, "total_sparsity": None, "max_sparsity_per_layer": 0.99,
                  "criterion": "level", "granularity": "weight", "scope": "layerwise"}


def _complete_spec(spec, name: str) -> dict:
    """A per-layer spec with defaults filled (hand-built wrappers give only a few keys)."""
    if not isinstance(spec, dict):
        raise UnsupportedLayerError(f"PruneWrapper `{name}`: spec must be a dict such as {{'sparsity': 0.5, "
                                    f"'criterion': 'l1', 'granularity': 'weight'}}. Received: spec={spec!r}")
    out = {**_SPEC_DEFAULTS, **spec}
    if (out["sparsity"] is None) == (out["total_sparsity"] is None):
        raise UnsupportedLayerError(f"PruneWrapper `{name}`: spec needs exactly one of `sparsity` (this layer) "
                                    f"or `total_sparsity` (global scope). Received: spec={spec!r}")
    if out.get("also"):
        out["also"] = [_complete_spec(s, name) for s in out["also"]]
    return out


_STATISTICS_ONLY = [0]


@contextlib.contextmanager
def statistics_only():
    """Training-mode calls inside this block update statistics only (BatchNorm recalibration),
    never weights, so they need no Pruner (see :class:`PruneWrapper`)."""
    _STATISTICS_ONLY[0] += 1
    try:
        yield
    finally:
        _STATISTICS_ONLY[0] -= 1


def _no_pruner(name: str):
    raise KPruneError(
        f"layer `{name}` is wrapped for pruning, but the model is being trained with no kprune.Pruner "
        "attached, so no mask would ever be computed and the model would train unpruned. Received: a "
        "training call (training=True) before any Pruner or PruningCallback saw this model. Fix: "
        "model.fit(..., callbacks=[kprune.PruningCallback()]); in a custom training loop create "
        "kprune.Pruner(model) before the first step and call pruner.on_step() at each step; to train "
        "without pruning, use kprune.strip(model).")


@keras.saving.register_keras_serializable(package="kprune")
class PruneWrapper(MaskedLayer, keras.layers.Wrapper):
    """Wraps one layer and holds a mask for each of its trainable weights.

    Args:
        layer: the Keras layer to wrap (Conv*, Dense, DepthwiseConv*, SeparableConv*,
            Conv*Transpose, EinsumDense, or a per-channel layer such as BatchNormalization
            that must follow a pruned filter).
        spec: per-layer pruning target (``None`` for a passive wrapper whose masks are set by a
            channel group): ``{"sparsity" | "total_sparsity", "criterion", "granularity",
            "entry", ...}``.
        plan: the recipe's shared ``prune`` settings (schedule, scope, dependency awareness...).
        soft: soft pruning — no constraint keeps masked weights at zero between updates.
        **kwargs: Keras layer arguments (``name`` defaults to the wrapped layer's name).

    Example:
        >>> w = PruneWrapper(keras.layers.Dense(4))
        >>> y = w(np.ones((1, 3), "float32"))
        >>> sorted(w.masks)
        ['bias', 'kernel']
    """

    def __init__(self, layer, spec=None, plan=None, soft=False, **kwargs):
        if isinstance(layer, PruneWrapper):
            raise UnsupportedLayerError(f"layer `{layer.name}` is already wrapped by kprune.")
        kwargs.setdefault("name", layer.name)
        super().__init__(layer, **kwargs)
        self.spec = _complete_spec(spec, layer.name) if spec else None
        self.plan = dict(plan) if plan else None
        self.soft = bool(soft)
        self.masks = {}
        self._pruner = None  # weak reference to the Pruner driving this layer
        self._saves_step = False
        self._call_has_training = bool(getattr(layer, "_call_has_training_arg", True))

    def build(self, input_shape=None):
        if not self.layer.built:
            self.layer.build(input_shape)
        self.masks = {}
        for attr, var in weight_attributes(self.layer).items():
            # a sublayer's weight has a dotted attribute path ("_query_dense.kernel")
            self.masks[attr] = self.add_weight(
                name=f"{attr.strip('_').replace('.', '_')}_mask", shape=tuple(var.shape), initializer="ones",
                trainable=False, dtype=var.dtype)
        self.pruning_step = self.add_weight(name="pruning_step", shape=(), initializer="zeros",
                                            trainable=False, dtype="int64")
        self._install_constraints()
        self.built = True

    def _install_constraints(self):
        for attr, var in self.weights_by_attr().items():
            inner = var.constraint
            if isinstance(inner, _MaskConstraint):
                inner = inner.inner
            var.constraint = None if self.soft else _MaskConstraint(self.masks[attr], inner)

    def weights_by_attr(self) -> dict:
        """Attribute name -> weight variable of the wrapped layer, for masked weights."""
        found = weight_attributes(self.layer)
        return {a: found[a] for a in self.masks}

    def apply_masks(self):
        """Multiplies every masked weight by its mask (called after masks change)."""
        for attr, var in self.weights_by_attr().items():
            var.assign(var * keras.ops.cast(self.masks[attr], var.dtype))

    def set_mask(self, attr: str, mask):
        """Sets one mask (numpy or tensor of the weight's shape) and zeroes the weight."""
        if attr not in self.masks:
            raise KeyError(f"layer `{self.name}` has no mask for `{attr}`; it has {sorted(self.masks)}.")
        mask = np.asarray(mask, dtype=self.masks[attr].dtype)
        self.masks[attr].assign(mask)
        var = self.weights_by_attr()[attr]
        value = keras.ops.convert_to_numpy(var)
        var.assign(value * mask.astype(value.dtype))

    def attach_pruner(self, pruner_ref, saves_step: bool = False) -> None:
        """Records the :class:`kprune.Pruner` that drives this layer (a weak reference).

        Args:
            pruner_ref: ``weakref.ref`` to the Pruner.
            saves_step: whether this layer writes the Pruner's live step when the model is
                saved (one layer per model does).
        """
        self._pruner = pruner_ref
        self._saves_step = bool(saves_step)

    def save_own_variables(self, store):
        """Saves masks and the pruning step; a :class:`kprune.Pruner` attached to this layer
        writes its live step first, so a checkpoint taken mid-epoch (``ModelCheckpoint``,
        ``BackupAndRestore``, ``model.save``) resumes at the exact step (no per-step write)."""
        pruner = self._pruner() if self._pruner is not None and self._saves_step else None
        if pruner is not None and getattr(pruner, "model", None) is not None:
            self.pruning_step.assign(int(pruner.step))
        super().save_own_variables(store)

    def call(self, inputs, *args, training=None, **kwargs):
        # further arguments reach the wrapped layer as they came (attention: value, key, masks)
        if training is True and self.spec and self._pruner is None and not _STATISTICS_ONLY[0]:
            _no_pruner(self.name)  # a Python check when the train step is traced: free per step
        if self._call_has_training:
            return self.layer(inputs, *args, training=training, **kwargs)
        return self.layer(inputs, *args, **kwargs)

    def get_build_config(self):
        # the wrapped layer's own build config (an attention layer is built from several shapes)
        return {"layer": self.layer.get_build_config()}

    def build_from_config(self, config):
        if "layer" not in config:  # files written before the wrapper saved its layer's config
            return super().build_from_config(config)
        if not self.layer.built and config["layer"]:
            self.layer.build_from_config(config["layer"])
        self.build()

    def compute_output_spec(self, *args, **kwargs):
        # the wrapped layer's own spec: its compute_output_shape when it has one, else a
        # symbolic trace of its call (custom layers need not implement compute_output_shape)
        kwargs.pop("training", None)
        return self.layer.compute_output_spec(*args, **kwargs)

    def get_config(self):
        config = super().get_config()
        config.update({"spec": self.spec, "plan": self.plan, "soft": self.soft})
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        layer = keras.saving.deserialize_keras_object(config.pop("layer"), custom_objects=custom_objects)
        return cls(layer, **config)
