"""How each Keras layer moves channels: the rules behind :func:`kprune.graph.analysis.groups`.

Every tensor carries one integer *label* per position of its last (channel) axis; two
positions with the same label (after union-find) are the same prunable channel. A rule
reads the labels of a call's inputs, records which weight slices each label touches
(:class:`Touch`), merges labels that must be pruned together, marks labels that must not be
pruned (with the reason), and returns the labels of the outputs.

Each tensor also carries a ``zero`` flag per channel: whether that channel is exactly 0
once its group is pruned (producer filters, biases and followers such as BatchNorm gamma and
beta zeroed). A consumer that sees a channel which is *not* exactly zero (for example after
``sigmoid``, whose value at 0 is 0.5) is marked ``requires_zero``: its input slice must be
zeroed as well before the channel can be removed exactly.
"""

from __future__ import annotations

import keras
import numpy as np
from keras.src.layers.convolutional.base_conv import BaseConv
from keras.src.layers.convolutional.base_conv_transpose import BaseConvTranspose
from keras.src.layers.convolutional.base_depthwise_conv import BaseDepthwiseConv
from keras.src.layers.convolutional.base_separable_conv import BaseSeparableConv
from keras.src.layers.pooling.base_global_pooling import BaseGlobalPooling
from keras.src.layers.pooling.base_pooling import BasePooling

from kprune.graph.state import ChannelState, TInfo, Touch  # noqa: F401 - re-exported
from kprune.graph.walk import unwrap

L = keras.layers

# Layers that never change channels and map 0 to 0.
PASSTHROUGH = (
    L.Dropout, L.GaussianNoise, L.GaussianDropout, L.AlphaDropout, L.ActivityRegularization,
    L.Identity, BasePooling, L.ZeroPadding1D, L.ZeroPadding2D, L.ZeroPadding3D,
    L.Cropping1D, L.Cropping2D, L.Cropping3D, L.UpSampling1D, L.UpSampling2D,
    L.UpSampling3D, L.Resizing, L.Masking,
)
PASSTHROUGH_NAMES = {"StochasticDepth", "TFOpLambda_identity"}
# Layers applied per element whose value at 0 is measured (probe).
ELEMENTWISE = (L.Activation, L.ReLU, L.LeakyReLU, L.ELU, L.Rescaling)
MERGES = (L.Add, L.Subtract, L.Multiply, L.Average, L.Maximum, L.Minimum)
MERGE_NAMES = {"CustomScaleLayer"}
# keras.ops operations (functional-API arithmetic) treated as element-wise.
ELEMENTWISE_OPS = {
    "Add", "Subtract", "Multiply", "Divide", "TrueDivide", "Maximum", "Minimum", "Power",
    "Negative", "Abs", "Absolute", "Square", "Sqrt", "Exp", "Log", "Tanh", "Sigmoid",
    "Relu", "Relu6", "Silu", "Swish", "Gelu", "HardSigmoid", "HardSilu", "HardSwish",
    "LeakyRelu", "Elu", "Selu", "Softplus", "Softsign", "Mish", "Clip", "Cast", "Sign",
    "Round", "Floor", "Ceil", "Reciprocal", "Erf", "Celu", "Glu", "Identity",
}
# Custom per-channel scale layers: class name -> (weight attribute, config key of C).
SCALE_FOLLOWERS = {"LayerScale": ("gamma", "projection_dim")}


def _desc(layer) -> str:
    return f"{type(layer).__name__} '{getattr(layer, 'name', '?')}'"


def _channels(tensor):
    shape = tensor.shape
    return shape[-1] if len(shape) >= 1 else None


def _opaque(state, call, reason) -> list[TInfo]:
    """Outputs of an op kprune does not understand: fresh, unprunable labels."""
    outs = []
    for t in call.out_tensors:
        c = _channels(t)
        n = int(c) if c is not None else 0
        outs.append(TInfo(state.fresh(n, reason=reason), np.zeros(n, bool)))
    return outs


def _block_inputs(state, infos, reason):
    for info in infos:
        state.block(info.labels, reason)


def _probe(fn_call, call, infos) -> np.ndarray | None:
    """Evaluate an element-wise op with 0 at zero channels; return the zero flags or None."""
    rng = np.random.default_rng(0)
    arrays = {}
    for t, info in zip(call.in_tensors, infos):
        n = len(info.labels)
        vals = np.where(info.zero, 0.0, 0.25 + rng.random(n)).astype("float32")
        rank = max(len(t.shape), 1)
        arrays[id(t)] = vals.reshape((1,) * (rank - 1) + (n,))
    try:
        args, kwargs = call.node.arguments.fill_in(arrays)
        out = keras.ops.convert_to_numpy(fn_call(*args, **kwargs))
    except Exception:  # noqa: BLE001 - a failed probe just means "not known to be zero"
        return None
    out = np.asarray(out)
    c = _channels(call.out_tensors[0])
    if c is None or out.shape[-1] != c:
        return None
    return out.reshape(-1, c)[0] == 0.0


def _act_zero(activation) -> bool:
    """Whether ``activation(0) == 0``."""
    if activation is None:
        return True
    try:
        out = keras.ops.convert_to_numpy(activation(keras.ops.zeros((1, 2))))
    except Exception:  # noqa: BLE001
        return False
    return bool(np.all(out == 0.0))


def _elementwise(state, call, infos, fn_call, what) -> list[TInfo]:
    c = _channels(call.out_tensors[0])
    if c is None:
        _block_inputs(state, infos, f"unknown channel count after {what}")
        return _opaque(state, call, f"output of {what} with unknown channel count")
    full = [i for i in infos if len(i.labels) == c]
    for info in infos:
        if len(info.labels) != c:
            state.block(info.labels, f"broadcast along the channel axis by {what}")
    if not full:
        return _opaque(state, call, f"output of {what} broadcast along channels")
    base = full[0].labels
    for other in full[1:]:
        state.union(base, other.labels)
    # Constant operands with a channel axis would need slicing too.
    for value in call.node.arguments.args + tuple(call.node.arguments.kwargs.values()):
        shape = getattr(value, "shape", None)
        if isinstance(value, keras.KerasTensor) or shape is None:
            continue
        if len(shape) >= 1 and shape[-1] is not None and shape[-1] > 1:
            state.block(base, f"constant per-channel operand in {what}")
    zero = _probe(fn_call, call, infos)
    if zero is None:
        zero = np.zeros(c, bool)
    return [TInfo(base, zero)]


def _producer(state, layer, n, kernel_axis, activation=None, bias="bias", kernel="kernel"):
    labels = state.fresh(n, producer=True)
    state.touch(labels, layer, kernel, kernel_axis, "producer")
    if "softmax" in getattr(activation, "__name__", ""):
        state.block(labels, f"softmax over the output channels of {_desc(unwrap(layer))}")
    inner = unwrap(layer)
    if bias and getattr(inner, "use_bias", True) and getattr(inner, bias, None) is not None:
        state.touch(labels, layer, bias, 0, "producer")
    zero = np.full(n, _act_zero(activation))
    return TInfo(labels, zero)


def _consumer(state, layer, info, weight, axis, positions=None, labels=None):
    labels = info.labels if labels is None else labels
    state.touch(labels, layer, weight, axis, "consumer", positions,
                requires_zero=not bool(np.all(info.zero)))


def _channels_last(layer) -> bool:
    return getattr(layer, "data_format", "channels_last") in (None, "channels_last")


def _last_axis(axis, rank) -> bool:
    axes = axis if isinstance(axis, (list, tuple)) else [axis]
    return any(int(a) % rank == rank - 1 for a in axes)


def apply_rule(state: ChannelState, call, infos: list[TInfo]) -> list[TInfo]:
    """Apply the channel rule of ``call.op`` and return the outputs' channel info."""
    op = call.op
    layer = unwrap(op)
    name = type(layer).__name__
    what = _desc(layer)
    unknown = f"passes through {what}, whose channel mapping kprune does not know"
    if not isinstance(layer, keras.layers.Layer):
        if name in ELEMENTWISE_OPS:
            return _elementwise(state, call, infos, layer, f"operation {name}")
        return _probed(state, call, infos, layer, what)
    if not _channels_last(layer):
        _block_inputs(state, infos, f"{what} uses channels_first")
        return _opaque(state, call, f"produced by channels_first {what}")
    rank = len(call.in_tensors[0].shape) if call.in_tensors else 0
    x = infos[0] if infos else None

    if isinstance(layer, BaseSeparableConv):
        m = layer.depth_multiplier
        _consumer(state, op, x, "depthwise_kernel", layer.depthwise_kernel.ndim - 2)
        cin = len(x.labels)
        _consumer(state, op, x, "pointwise_kernel", layer.pointwise_kernel.ndim - 2,
                  positions=np.arange(cin * m), labels=np.repeat(x.labels, m))
        return [_producer(state, op, layer.filters, layer.pointwise_kernel.ndim - 1,
                          layer.activation, kernel="pointwise_kernel")]
    if isinstance(layer, BaseDepthwiseConv):
        m = layer.depth_multiplier
        nd = layer.kernel.ndim
        state.touch(x.labels, op, "kernel", nd - 2, "follower")
        out_labels = np.repeat(x.labels, m)
        if layer.use_bias:
            state.touch(out_labels, op, "bias", 0, "follower")
        zero = np.full(len(out_labels), _act_zero(layer.activation))
        return [TInfo(out_labels, zero)]
    if isinstance(layer, (BaseConv, BaseConvTranspose)):
        groups = getattr(layer, "groups", 1)
        cin = len(x.labels)
        if groups != 1 and groups == cin and isinstance(layer, BaseConv) and layer.filters % cin == 0:
            # depthwise written as a grouped conv: channel c owns outputs c*m .. c*m+m-1
            out_labels = np.repeat(x.labels, layer.filters // cin)
            state.touch(out_labels, op, "kernel", layer.kernel.ndim - 1, "follower")
            if layer.use_bias:
                state.touch(out_labels, op, "bias", 0, "follower")
            return [TInfo(out_labels, np.full(len(out_labels), _act_zero(layer.activation)))]
        nd = layer.kernel.ndim
        cin_axis, cout_axis = (nd - 1, nd - 2) if isinstance(layer, BaseConvTranspose) else (nd - 2, nd - 1)
        if groups != 1:
            return [_grouped_conv(state, op, layer, x, cin_axis, cout_axis)]
        _consumer(state, op, x, "kernel", cin_axis)
        return [_producer(state, op, layer.filters, cout_axis, layer.activation)]
    if isinstance(layer, L.Dense):
        _consumer(state, op, x, "kernel", 0)
        return [_producer(state, op, layer.units, 1, layer.activation)]
    if isinstance(layer, L.EinsumDense):
        return _einsum_dense(state, call, op, layer, x, what)
    if isinstance(layer, L.Embedding):
        return [_producer(state, op, layer.output_dim, 1, None, bias=None, kernel="embeddings")]
    if isinstance(layer, L.BatchNormalization):
        if not _last_axis(layer.axis, rank) or (isinstance(layer.axis, (list, tuple)) and len(layer.axis) > 1):
            _block_inputs(state, infos, f"{what} normalizes a non-channel axis")
            return [x]
        for w in ("gamma", "beta", "moving_mean", "moving_variance"):
            if getattr(layer, w, None) is not None:
                state.touch(x.labels, op, w, 0, "follower")
        return [TInfo(x.labels, np.full(len(x.labels), bool(layer.scale)))]
    if isinstance(layer, L.GroupNormalization):
        return _group_norm(state, op, layer, x, rank, what)
    if isinstance(layer, (L.LayerNormalization, L.UnitNormalization)):
        if _last_axis(layer.axis, rank):
            state.block(x.labels, f"normalized over channels by {what} (removing channels "
                        "changes its mean and variance)")
        for w in ("gamma", "beta"):
            v = getattr(layer, w, None)
            if v is not None and v.ndim == 1 and v.shape[0] == len(x.labels):
                state.touch(x.labels, op, w, 0, "follower")
        return [TInfo(x.labels, np.zeros(len(x.labels), bool))]
    if isinstance(layer, L.PReLU):
        alpha = layer.alpha
        if alpha.shape[-1] == len(x.labels) and len(x.labels) > 1:
            state.touch(x.labels, op, "alpha", alpha.ndim - 1, "follower")
        return [TInfo(x.labels, x.zero)]
    if name in SCALE_FOLLOWERS:
        weight, _ = SCALE_FOLLOWERS[name]
        state.touch(x.labels, op, weight, 0, "follower")
        return [TInfo(x.labels, np.ones(len(x.labels), bool))]
    if isinstance(layer, (L.Softmax,)) or (
        isinstance(layer, L.Activation) and getattr(layer.activation, "__name__", "") in ("softmax", "log_softmax")
    ):
        axis = getattr(layer, "axis", -1)
        if _last_axis(axis, rank):
            state.block(x.labels, f"softmax over channels in {what}")
        return [TInfo(x.labels, np.zeros(len(x.labels), bool))]
    if isinstance(layer, L.Normalization):
        state.block(x.labels, f"per-channel statistics of {what}")
        return [TInfo(x.labels, np.zeros(len(x.labels), bool))]
    if isinstance(layer, PASSTHROUGH) or name in PASSTHROUGH_NAMES:
        return [TInfo(x.labels, x.zero)]
    if isinstance(layer, ELEMENTWISE):
        outs = _elementwise(state, call, infos, layer, what)
        if isinstance(layer, L.Rescaling) and max(np.size(layer.scale), np.size(layer.offset)) > 1:
            state.block(outs[0].labels, f"per-channel scale or offset of {what}")
        return outs
    if isinstance(layer, MERGES) or name in MERGE_NAMES:
        return _elementwise(state, call, infos, lambda *a, **k: layer(*a, **k), what)
    if isinstance(layer, L.Concatenate):
        return _concatenate(state, call, layer, infos, what)
    if isinstance(layer, BaseGlobalPooling):
        return [TInfo(x.labels, x.zero)]
    if isinstance(layer, (L.Flatten, L.Reshape)):
        return _reshape(state, call, x, what)
    if isinstance(layer, L.Permute):
        if tuple(layer.dims)[-1] == rank - 1:
            return [TInfo(x.labels, x.zero)]
    if not layer.weights:
        return _probed(state, call, infos, lambda *a, **k: layer(*a, **k), what)
    _block_inputs(state, infos, unknown)
    return _opaque(state, call, f"produced by {what}")


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


def _probed(state, call, infos, fn_call, what) -> list[TInfo]:
    """Outputs of a weightless operation whose channel mapping is derived by running it."""
    sources = channel_sources(fn_call, call)
    if isinstance(sources, str):
        _block_inputs(state, infos, f"{what} {sources}")
        return _opaque(state, call, f"produced by {what}, which {sources}")
    outs = []
    for src in sources:
        labels = np.asarray([infos[i].labels[k] for i, k in src], dtype=np.int64)
        zero = np.asarray([bool(infos[i].zero[k]) for i, k in src], dtype=bool)
        outs.append(TInfo(labels, zero))
    return outs


def _grouped_conv(state, op, layer, x, cin_axis, cout_axis):
    """A convolution with ``groups`` G > 1 (ResNeXt, RegNet): the same channel positions are
    pruned in every group, as Torch-Pruning does, so ``groups`` stays G.

    The kernel holds ``C_in / G`` input channels: input channel ``c`` is read at kernel position
    ``c % (C_in / G)``, so the G input channels at one position are one channel of the graph
    (united). Output filter ``j`` of every group is united
    with filter ``j`` of the other groups.
    """
    g, cin = layer.groups, len(x.labels)
    per_in = cin // g
    by_group_in = x.labels.reshape(g, per_in)
    for i in range(1, g):
        state.union(by_group_in[0], by_group_in[i])
    _consumer(state, op, x, "kernel", cin_axis, positions=np.arange(cin) % per_in)
    out = _producer(state, op, layer.filters, cout_axis, layer.activation)
    per_out = layer.filters // g
    by_group = out.labels.reshape(g, per_out)
    for i in range(1, g):
        state.union(by_group[0], by_group[i])
    return out


def _concatenate(state, call, layer, infos, what):
    rank = len(call.out_tensors[0].shape)
    if layer.axis % rank == rank - 1:
        labels = np.concatenate([i.labels for i in infos])
        zero = np.concatenate([i.zero for i in infos])
        return [TInfo(labels, zero)]
    return _elementwise(state, call, infos, lambda *a, **k: layer(*a, **k), what)


def _reshape(state, call, x, what):
    in_shape = tuple(call.in_tensors[0].shape[1:])
    out_shape = tuple(call.out_tensors[0].shape[1:])
    if any(d is None for d in in_shape + out_shape) or not in_shape or not out_shape:
        state.block(x.labels, f"{what} with unknown shape")
        return _opaque(state, call, f"produced by {what} with unknown shape")
    c = in_shape[-1]
    src = np.broadcast_to(np.arange(c), in_shape).reshape(out_shape)
    src2 = src.reshape(-1, out_shape[-1])
    if not np.all(src2 == src2[:1]):
        state.block(x.labels, f"{what} mixes channels with other axes")
        return _opaque(state, call, f"produced by channel-mixing {what}")
    mapping = src2[0]
    return [TInfo(x.labels[mapping], x.zero[mapping])]


def _group_norm(state, op, layer, x, rank, what):
    if not _last_axis(layer.axis, rank):
        state.block(x.labels, f"{what} normalizes a non-channel axis")
        return [TInfo(x.labels, np.zeros(len(x.labels), bool))]
    c = len(x.labels)
    size = c // layer.groups
    for g in range(layer.groups):
        seg = x.labels[g * size:(g + 1) * size]
        state.union(np.full(size, seg[0]), seg)
    for w in ("gamma", "beta"):
        if getattr(layer, w, None) is not None:
            state.touch(x.labels, op, w, 0, "follower")
    return [TInfo(x.labels, np.ones(c, bool))]


def einsum_axes(layer):
    """Return ``(kernel_in_axis, kernel_out_axis)`` of an EinsumDense whose channel is clear.

    The layer must contract the input's last axis against one kernel axis and produce its
    output's last axis from one kernel axis (bias, if any, only on that axis); otherwise
    ``None`` is returned.
    """
    eq = layer.equation.replace(" ", "")
    try:
        ins, out = eq.split("->")
        inp, ker = ins.split(",")
    except ValueError:
        return None
    if "." in inp or "." in ker:
        inp, ker, out = inp.replace("...", ""), ker, out.replace("...", "")
        if "." in ker:
            return None
    a, b = inp[-1], out[-1]
    if a in out or ker.count(a) != 1 or b in inp or ker.count(b) != 1:
        return None
    bias_axes = layer.bias_axes or ""
    if bias_axes not in ("", b):
        return None
    return ker.index(a), ker.index(b)


def _einsum_dense(state, call, op, layer, x, what):
    axes = einsum_axes(layer)
    if axes is None:
        state.block(x.labels, f"{what} has no clear channel axis (equation {layer.equation})")
        return _opaque(state, call, f"produced by {what}")
    _consumer(state, op, x, "kernel", axes[0])
    n = int(call.out_tensors[0].shape[-1])
    return [_producer(state, op, n, axes[1], layer.activation,
                      bias="bias" if layer.bias_axes else None)]
