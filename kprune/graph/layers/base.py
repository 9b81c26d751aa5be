"""The layer registry's base: :class:`LayerRule`, the :class:`Ctx` a rule works in, and
``register`` / ``rule_for``.

A rule says everything kprune knows about one layer family:

* :meth:`LayerRule.channels` — how channels pass through a call (the graph walk: which weight
  slices carry each channel as producer, follower or consumer, which channels are coupled,
  which cannot be pruned and why);
* :meth:`LayerRule.resize` — how ``compact`` rewrites the layer's config for fewer channels
  (and :meth:`LayerRule.rebuild`, which makes the smaller layer from it);
* :meth:`LayerRule.masked_weights` and :attr:`LayerRule.kernels` — which weights a
  :class:`kprune.PruneWrapper` masks, and which of them weight-level pruning scores;
* :attr:`LayerRule.prunable` — whether a ``config_list`` may select the layer;
* :attr:`LayerRule.statistics` — how activation statistics treat it (``"pass"``: per-channel,
  the search for the activation after a pruned layer walks through; ``"activation"``: it is
  that activation; ``"stop"``).

Rules are found by the layer's class (its MRO: a subclass of ``Conv2D`` gets the conv rule) or
by class name (for classes kprune does not import, such as keras-hub layers).
"""

from __future__ import annotations

import math

import keras
import numpy as np

from kprune.errors import GraphError, UnsupportedLayerError
from kprune.graph.state import TInfo
from kprune.graph.walk import unwrap

#: attribute names of the weights a wrapper masks, in the order they are looked for
WEIGHT_NAMES = ("kernel", "bias", "depthwise_kernel", "pointwise_kernel", "gamma", "beta", "alpha", "embeddings")
#: the weights weight-level (fine-grained) pruning scores and masks
KERNEL_WEIGHTS = ("kernel", "depthwise_kernel", "pointwise_kernel", "embeddings")


def recreate(cls, config: dict):
    """``cls.from_config(config)``, tolerating a ``get_config`` that writes derived values its
    own ``__init__`` does not take (keras-hub's ``ViTPatchingAndEmbedding`` writes
    ``num_patches``): when Keras refuses such keys, they are dropped and the call is retried.
    Any other failure is raised as it came. The weights copied afterwards must fit the rebuilt
    layer exactly, so a dropped key that mattered cannot go unnoticed."""
    try:
        return cls.from_config(config)
    except (TypeError, ValueError) as exc:
        import re
        found = re.search(r"Unrecognized keyword arguments passed to \w+: \{(.*?)\}", str(exc))
        if not found:
            raise
        keys = set(re.findall(r"'(\w+)':", found.group(1)))
        if not keys or not keys <= set(config):
            raise
        return cls.from_config({k: v for k, v in config.items() if k not in keys})


def describe(layer) -> str:
    return f"{type(layer).__name__} '{getattr(layer, 'name', '?')}'"


def channel_count(tensor):
    shape = tensor.shape
    return shape[-1] if len(shape) >= 1 else None


def activation_is_zero_at_zero(activation) -> bool:
    """Whether ``activation(0) == 0`` (None is the identity)."""
    if activation is None:
        return True
    try:
        out = keras.ops.convert_to_numpy(activation(keras.ops.zeros((1, 2))))
    except Exception:  # noqa: BLE001
        return False
    return bool(np.all(out == 0.0))


def prod(dims, layer, what) -> int:
    """Product of known dimensions; a ``None`` among them is a :class:`GraphError`."""
    dims = list(dims)
    if any(d is None for d in dims):
        raise GraphError(
            f"Layer {layer.name!r} ({type(layer).__name__}) has an unknown {what} dimension "
            f"(received shape with None: {tuple(dims)}). Pass `input_shape=` to count() so "
            "that every non-batch dimension is known."
        )
    return int(math.prod(int(d) for d in dims))


def spatial(shape, data_format):
    """Spatial dimensions of a conv input/output shape."""
    return shape[2:] if data_format == "channels_first" else shape[1:-1]


def elements(shapes, layer, what="output") -> int:
    """Elements per example over several shapes."""
    return sum(prod(s[1:], layer, what) for s in shapes)


def shapes_of(specs):
    """Shapes of all tensors (or KerasTensors) in a nested structure, in order."""
    return [tuple(s.shape) for s in keras.tree.flatten(specs) if hasattr(s, "shape")]


def last_axis(axis, rank) -> bool:
    """Whether ``axis`` (an int or a list) includes the last axis of a rank-``rank`` tensor."""
    axes = axis if isinstance(axis, (list, tuple)) else [axis]
    return any(int(a) % rank == rank - 1 for a in axes)


class Ctx:
    """One call of a layer or operation during the graph walk, with the helpers rules use.

    Attributes:
        state: the :class:`~kprune.graph.state.ChannelState`.
        call: the :class:`~kprune.graph.walk.Call`.
        infos: channel info (:class:`~kprune.graph.state.TInfo`) of the call's inputs.
        op: the operation as it appears in the model (a kprune wrapper stays a wrapper:
            touches are recorded on it).
        layer: the layer itself (unwrapped).
        what: ``"Conv2D 'conv1'"``, for reasons.
        rank: rank of the first input.
        x: channel info of the first input (or None).
    """

    def __init__(self, state, call, infos):
        self.state, self.call, self.infos = state, call, infos
        self.op = call.op
        self.layer = unwrap(call.op)
        self.what = describe(self.layer)
        self.rank = len(call.in_tensors[0].shape) if call.in_tensors else 0
        self.x = infos[0] if infos else None

    # -- recording ------------------------------------------------------------------------------
    def producer(self, n, axis, activation=None, bias="bias", kernel="kernel") -> TInfo:
        """Fresh output channels carried by ``kernel`` along ``axis`` (and the bias)."""
        state, layer = self.state, self.layer
        labels = state.fresh(n, producer=True)
        state.touch(labels, self.op, kernel, axis, "producer")
        if "softmax" in getattr(activation, "__name__", ""):
            state.block(labels, f"softmax over the output channels of {self.what}")
        if bias and getattr(layer, "use_bias", True) and getattr(layer, bias, None) is not None:
            state.touch(labels, self.op, bias, 0, "producer")
        return TInfo(labels, np.full(n, activation_is_zero_at_zero(activation)))

    def consumer(self, weight, axis, info=None, positions=None, labels=None) -> None:
        """The input channels are read by ``weight`` along ``axis``."""
        info = self.x if info is None else info
        labels = info.labels if labels is None else labels
        self.state.touch(labels, self.op, weight, axis, "consumer", positions,
                         requires_zero=not bool(np.all(info.zero)))

    def follower(self, labels, weight, axis=0) -> None:
        """Per-channel parameters the channels pass through (BatchNorm gamma, depthwise kernel...)."""
        self.state.touch(labels, self.op, weight, axis, "follower")

    def block(self, labels, reason) -> None:
        self.state.block(labels, reason)

    def block_inputs(self, reason) -> None:
        for info in self.infos:
            self.state.block(info.labels, reason)

    # -- outputs --------------------------------------------------------------------------------
    def opaque(self, reason) -> list:
        """Outputs whose channels kprune cannot follow: fresh, unprunable labels."""
        outs = []
        for t in self.call.out_tensors:
            c = channel_count(t)
            n = int(c) if c is not None else 0
            outs.append(TInfo(self.state.fresh(n, reason=reason), np.zeros(n, bool)))
        return outs

    def unknown(self, reason=None) -> list:
        """Blocks the inputs and returns opaque outputs (``reason`` or "mapping unknown")."""
        self.block_inputs(reason or f"passes through {self.what}, whose channel mapping kprune does not know")
        return self.opaque(f"produced by {self.what}")

    def passthrough(self) -> list:
        """Channels unchanged, zero stays zero."""
        return [TInfo(self.x.labels, self.x.zero)]

    def elementwise(self, fn_call=None) -> list:
        """An element-wise op of its inputs: same-size inputs are united channel by channel;
        an input broadcast along the channel axis blocks its group."""
        fn_call = fn_call or self.call_layer
        state, call, infos, what = self.state, self.call, self.infos, self.what
        c = channel_count(call.out_tensors[0])
        if c is None:
            self.block_inputs(f"unknown channel count after {what}")
            return self.opaque(f"output of {what} with unknown channel count")
        full = [i for i in infos if len(i.labels) == c]
        for info in infos:
            if len(info.labels) != c:
                state.block(info.labels, f"broadcast along the channel axis by {what}")
        if not full:
            return self.opaque(f"output of {what} broadcast along channels")
        base = full[0].labels
        for other in full[1:]:
            state.union(base, other.labels)
        for value in call.node.arguments.args + tuple(call.node.arguments.kwargs.values()):
            shape = getattr(value, "shape", None)
            if isinstance(value, keras.KerasTensor) or shape is None:
                continue
            if len(shape) >= 1 and shape[-1] is not None and shape[-1] > 1:
                state.block(base, f"constant per-channel operand in {what}")
        zero = self._zero_flags(fn_call)
        return [TInfo(base, np.zeros(c, bool) if zero is None else zero)]

    def probed(self, fn_call=None) -> list:
        """Outputs of a weightless operation whose channel mapping is derived by running it
        (:func:`channel_sources`)."""
        sources = channel_sources(fn_call or self.call_layer, self.call)
        if isinstance(sources, str):
            self.block_inputs(f"{self.what} {sources}")
            return self.opaque(f"produced by {self.what}, which {sources}")
        outs = []
        for src in sources:
            labels = np.asarray([self.infos[i].labels[k] for i, k in src], dtype=np.int64)
            zero = np.asarray([bool(self.infos[i].zero[k]) for i, k in src], dtype=bool)
            outs.append(TInfo(labels, zero))
        return outs

    def call_layer(self, *args, **kwargs):
        return self.layer(*args, **kwargs)

    def _zero_flags(self, fn_call):
        """Evaluates an element-wise op with 0 at zero channels; the zero flags or None."""
        rng = np.random.default_rng(0)
        arrays = {}
        for t, info in zip(self.call.in_tensors, self.infos):
            n = len(info.labels)
            vals = np.where(info.zero, 0.0, 0.25 + rng.random(n)).astype("float32")
            arrays[id(t)] = vals.reshape((1,) * (max(len(t.shape), 1) - 1) + (n,))
        try:
            args, kwargs = self.call.node.arguments.fill_in(arrays)
            out = np.asarray(keras.ops.convert_to_numpy(fn_call(*args, **kwargs)))
        except Exception:  # noqa: BLE001 - a failed probe just means "not known to be zero"
            return None
        c = channel_count(self.call.out_tensors[0])
        if c is None or out.shape[-1] != c:
            return None
        return out.reshape(-1, c)[0] == 0.0


def channel_sources(fn_call, call, trials: int = 3):
    """Derive where each output channel of a weightless operation comes from, by running it.

    Each input gets distinct values per channel (constant along every other axis); an output
    channel whose value is, in every one of ``trials`` random assignments, exactly the value of
    the same input channel *is* that channel (slicing, gathering, split, stack, transpose or
    reshape that keeps the channel axis last, reductions over other axes). Anything else has
    no channel mapping: an output that mixes channels (a reduction or arithmetic over the
    channel axis), a reshape that folds channels into other axes, a selection by value.

    Args:
        fn_call: calls the operation (``fn_call(*args, **kwargs)``).
        call: the :class:`~kprune.graph.walk.Call`.
        trials: random assignments that must agree.

    Returns:
        ``[sources per output]`` where ``sources`` is an int array ``[C_out, 2]`` of
        ``(input index, input channel)``, or the reason (a string) why no mapping exists.
    """
    shapes = [tuple(t.shape) for t in call.in_tensors]
    if not shapes or any(d is None for sh in shapes for d in sh[1:]) or any(len(sh) < 2 for sh in shapes):
        return "has inputs of unknown or channel-less shape"
    sizes = [int(sh[-1]) for sh in shapes]
    total = sum(sizes)
    where = np.repeat(np.arange(len(sizes)), sizes)
    offset = np.concatenate([np.arange(n) for n in sizes])
    rng = np.random.default_rng(0)
    found = None
    for _ in range(trials):
        values = (rng.permutation(total) + 1).astype("float32") * rng.choice([-1.0, 1.0])
        arrays, start = {}, 0
        for t, sh, n in zip(call.in_tensors, shapes, sizes):
            arrays[id(t)] = np.broadcast_to(values[start:start + n], (1,) + sh[1:]).astype(t.dtype or "float32")
            start += n
        try:
            args, kwargs = call.node.arguments.fill_in(arrays)
            outs = [np.asarray(keras.ops.convert_to_numpy(o)) for o in keras.tree.flatten(fn_call(*args, **kwargs))]
        except Exception as exc:  # noqa: BLE001 - the reason is reported with the group
            return f"could not be evaluated to derive its channel mapping ({type(exc).__name__})"
        code = {float(v): i for i, v in enumerate(values)}
        result = []
        for out in outs:
            if out.ndim < 2:
                return "reduces the channel axis away"
            rows = out.reshape(-1, out.shape[-1])
            if not np.all(rows == rows[:1]):
                return "moves channels into other axes"
            idx = [code.get(float(v)) for v in rows[0]]
            if any(i is None for i in idx):
                return "mixes channels (its outputs are not input channels)"
            idx = np.asarray(idx, dtype=np.int64)
            result.append(np.stack([where[idx], offset[idx]], axis=1))
        if found is not None and any(not np.array_equal(a, b) for a, b in zip(found, result)):
            return "selects channels by value, not by position"
        found = result
    return found


class Sizes:
    """Channel counts of one call before and after ``compact`` (what :meth:`LayerRule.resize` gets).

    Attributes:
        in_n / out_n: kept channels of the first input / output.
        orig_in / orig_out: channels before.
        call: the :class:`~kprune.graph.walk.Call` (shapes of its tensors).
    """

    def __init__(self, in_n, out_n, orig_in, orig_out, call, removed_positions=None):
        self.in_n, self.out_n, self.orig_in, self.orig_out, self.call = in_n, out_n, orig_in, orig_out, call
        self._removed = removed_positions or {}

    def kept(self, weight: str, axis: int, size: int) -> int:
        """How many of the ``size`` positions along ``axis`` of ``weight`` stay (heads, groups)."""
        return size - len(self._removed.get(weight, {}).get(axis, ()))


class LayerRule:
    """Everything kprune knows about one layer family. Subclass it and override what differs.

    Attributes:
        prunable: a ``config_list`` may select the layer (it produces prunable units).
        kernels: weights that weight-level pruning scores and masks.
        statistics: ``"pass"``, ``"activation"`` or ``"stop"`` (see the module docstring).
    """

    prunable = False
    kernels = KERNEL_WEIGHTS
    statistics = "stop"
    #: its weights carry no MACs (normalizations, scales, PReLU): not listed as uncounted
    weights_without_macs = False

    def channels(self, ctx: Ctx) -> list:
        """How channels pass through one call; returns the outputs' :class:`TInfo`.

        Default: a layer without weights gets its mapping derived by running it
        (:meth:`Ctx.probed`); a layer with weights is unknown (its inputs' groups are blocked
        with the reason, its outputs are unprunable).
        """
        if not getattr(ctx.layer, "weights", None):
            return ctx.probed()
        return ctx.unknown()

    def resize(self, layer, config: dict, sizes: Sizes) -> dict:
        """The layer's config for ``sizes.in_n`` input and ``sizes.out_n`` output channels."""
        return config

    def rebuild(self, layer, config: dict):
        """The compacted layer from the config :meth:`resize` returned (default: the same class).
        A rule whose smaller layer its own class cannot express (per-block head counts of a
        keras-hub encoder) returns an instance of another, serializable class here."""
        return recreate(layer.__class__, config)

    def macs(self, layer, in_shapes, out_shapes):
        """MAC terms of one call for :func:`kprune.count`: ``[(weight or None, size, uses)]``
        (MACs = Σ weight.size × uses; ``size`` stands in when there is no weight), or None for a
        layer without MACs (see ``docs/counting.md`` for the convention)."""
        return None

    def ops(self, layer, in_shapes, out_shapes) -> int:
        """Other arithmetic operations of one call (bias adds, activations, normalization...)."""
        return 0

    def nni(self, layer, macs, in_shapes, out_shapes) -> int:
        """What NNI's ``count_flops_params(mode="full")`` reports for the same call."""
        return 0

    def input_shapes(self, layer, args, kwargs) -> list:
        """Input shapes of one call, as :meth:`macs` and :meth:`ops` expect them."""
        return shapes_of((args, kwargs))

    def masked_weights(self, layer) -> dict:
        """``{attribute: variable}`` of the trainable weights a wrapper masks: the usual names
        (``kernel``, ``bias``, ``gamma``...) first, then any other public attribute holding one of
        the layer's own trainable variables (a custom layer's ``self.scale = add_weight(...)``)."""
        out = {}
        ids = {id(v) for v in layer.trainable_weights}
        for name in WEIGHT_NAMES:
            attr = "_kernel" if name == "kernel" and hasattr(layer, "_kernel") else name
            var = getattr(layer, attr, None)
            if var is None or not hasattr(var, "assign") or id(var) not in ids:
                continue
            out[name] = var
        taken = {id(v) for v in out.values()}
        for name, var in vars(layer).items():
            if name.startswith("_") or id(var) not in ids or id(var) in taken or not hasattr(var, "assign"):
                continue
            out[name] = var
            taken.add(id(var))
        return out


class ProducerRule(LayerRule):
    """Base of layers whose kernels produce channels (conv, dense): a bias add and a fused
    activation cost one op per output element; NNI counts the bias as a FLOP."""

    prunable = True

    def ops(self, layer, in_shapes, out_shapes) -> int:
        out = elements(out_shapes, layer)
        n = out if getattr(layer, "bias", None) is not None else 0
        act = getattr(layer, "activation", None)
        if act is not None and act is not keras.activations.linear:
            n += out
        return n

    def nni(self, layer, macs, in_shapes, out_shapes) -> int:
        return macs + (elements(out_shapes, layer) if getattr(layer, "bias", None) is not None else 0)


_BY_CLASS: dict = {}
_BY_NAME: dict = {}
DEFAULT = LayerRule()


def register(layer, rule) -> None:
    """Teaches kprune a layer family.

    Args:
        layer: a layer (or ``keras.ops`` operation) class — subclasses inherit the rule — or a
            class name (for classes kprune does not import).
        rule: a :class:`LayerRule` subclass or instance.

    Raises:
        UnsupportedLayerError: when ``rule`` is not a LayerRule.

    Example:
        >>> class ScaleRule(kprune.layers.LayerRule):
        ...     def channels(self, ctx):
        ...         ctx.follower(ctx.x.labels, "scale")       # one scale per channel
        ...         return ctx.passthrough()
        ...     def resize(self, layer, config, sizes):
        ...         return {**config, "channels": sizes.in_n}
        >>> kprune.layers.register(Scale, ScaleRule())
    """
    if isinstance(rule, type) and issubclass(rule, LayerRule):
        rule = rule()
    if not isinstance(rule, LayerRule):
        raise UnsupportedLayerError(f"kprune.layers.register needs a kprune.layers.LayerRule (class or "
                                    f"instance). Received: {rule!r} for {layer!r}.")
    if isinstance(layer, str):
        _BY_NAME[layer] = rule
    else:
        _BY_CLASS[layer] = rule


def rule_for(layer) -> LayerRule:
    """The rule of ``layer`` (a kprune wrapper is seen as the layer it wraps)."""
    layer = unwrap(layer)
    for cls in type(layer).__mro__:
        rule = _BY_CLASS.get(cls) or _BY_NAME.get(cls.__name__)
        if rule is not None:
            return rule
    return DEFAULT


def is_prunable(layer) -> bool:
    """Whether a ``config_list`` may select ``layer`` (its rule says it produces prunable units)."""
    return rule_for(layer).prunable


def prunable_types() -> list:
    """Names of the ``keras.layers`` classes a ``config_list`` may select (for messages)."""
    names = []
    for name in dir(keras.layers):
        cls = getattr(keras.layers, name)
        if isinstance(cls, type) and issubclass(cls, keras.layers.Layer) and name[:1].isupper():
            for base in cls.__mro__:
                rule = _BY_CLASS.get(base) or _BY_NAME.get(base.__name__)
                if rule is not None:
                    if rule.prunable:
                        names.append(name)
                    break
    return sorted(names)


def masked_weights(layer) -> dict:
    """``{attribute: variable}`` of the weights a wrapper of ``layer`` masks (its rule decides)."""
    return rule_for(layer).masked_weights(layer)
