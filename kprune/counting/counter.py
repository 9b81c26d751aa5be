"""Parameters, MACs and FLOPs of a Keras model, per layer and total, dense and effective.

The convention (also in ``docs/counting.md``):

* **MACs** are the multiply-accumulates of layers that contract an input with a weight
  tensor, one MAC per product. A layer's MACs are ``kernel.size x uses`` where ``uses``
  is how often each kernel entry is applied:

  - ``Conv1D/2D/3D`` (any ``groups``): output positions (the spatial size of the output).
  - ``Conv1D/2D/3DTranspose``: input positions (each input pixel is scattered through
    the whole kernel).
  - ``DepthwiseConv1D/2D`` (any ``depth_multiplier``): output positions.
  - ``SeparableConv1D/2D``: output positions, for the depthwise and the pointwise kernel.
  - ``Dense``: the leading positions of its input (1 for a 2-D input, ``T`` for
    ``(batch, T, features)``).
  - ``EinsumDense``: output elements x the sizes of the contracted letters, divided by the
    kernel size; ``Dot`` (no weights): output elements x the contracted length.
  - ``SimpleRNN/LSTM/GRU``: timesteps, for the input and the recurrent kernel
    (``Bidirectional`` counts both directions; ``TimeDistributed`` multiplies its inner
    layer by the time steps).
  - ``MultiHeadAttention``: its four projections (query/output: query positions;
    key/value: key/value positions) plus the weightless ``heads x Tq x Tk x key_dim``
    scores and ``heads x Tq x Tv x value_dim`` context products.

  Bias additions are not MACs (they are the accumulator's initial value).
  **FLOPs = 2 x MACs**, always.
* **ops** count everything else, one per arithmetic operation or comparison, per output
  element: bias add 1 and fused activation 1 (on the layers above); BatchNormalization 2
  (inference scale-and-shift; usually folded into the preceding convolution, which is
  why it is not a MAC); Layer/Group/RMS/UnitNormalization 7 (mean, centre, square,
  variance sum, rsqrt-multiply, scale, shift); Rescaling and Normalization 2; pooling
  ``prod(pool_size)`` per output element; global pooling 1 per input element;
  Add/Subtract/Multiply/Maximum/Minimum ``n_inputs - 1``, Average ``n_inputs``;
  activation layers (ReLU, Activation, Softmax, ...) 1; MultiHeadAttention 1 per score
  (softmax) and per query element (scaling), plus its bias adds. Reshape, Flatten, Dropout,
  padding, cropping, Concatenate, upsampling and input layers are 0. Layers that have
  weights but no formula here get 0 MACs and 0 ops and their class names are listed in
  :attr:`Counts.uncounted`, so nothing is dropped silently.
* **params** are all weights, trainable and non-trainable (``model.count_params()``);
  ``trainable_params`` are the trainable ones (PyTorch's parameter count, which leaves
  out BatchNorm running statistics). A shared layer's weights count once.
* **Effective** counts are for masked (fine-grained pruned) models: ``nonzero_params``
  counts weight entries different from 0; ``effective_macs`` is
  ``nonzero(kernel) x uses`` summed over the same kernels, which is exact for every
  layer above (a zero weight never contributes a product); weightless products (``Dot``,
  attention scores and context) always count.

Wrapped layers (``keras.layers.Wrapper`` with ``.layer``, e.g. kprune's ``PruneWrapper``)
count as their inner layer: the wrapper's own variables (masks ``*_mask``, the pruning
step) are pruning state, not model parameters, so a wrapped model counts exactly like the
model it wraps. Nested models are flattened into rows of their own
layers; a layer called several times gives one row per call (its params on the first).
"""

from __future__ import annotations

import dataclasses
import math

import keras
import numpy as np

from kprune.errors import GraphError
from kprune.graph.layers import prod, rule_for, shapes_of

L = keras.layers

@dataclasses.dataclass(frozen=True)
class LayerCount:
    """Counts of one layer call.

    Attributes:
        name: the layer's name (a wrapped layer reports its inner layer's name).
        class_name: the (inner) layer's class name, e.g. ``"Conv2D"``.
        output_shape: the output shape with ``None`` batch, a tuple of shapes for layers
            with several outputs.
        params: weights of the layer (0 on calls after the first of a shared layer).
        macs: multiply-accumulates of this call.
        flops: ``2 * macs``.
        ops: other arithmetic operations (see the module docstring).
        nonzero_params: nonzero weight entries (0 on repeated calls).
        effective_macs: MACs that involve a nonzero weight.
    """

    name: str
    class_name: str
    output_shape: tuple
    params: int
    macs: int
    flops: int
    ops: int
    nonzero_params: int
    effective_macs: int


@dataclasses.dataclass(frozen=True)
class Counts:
    """Totals and per-layer rows returned by :func:`count`.

    Attributes:
        params: all weights (``model.count_params()`` for an unwrapped model).
        trainable_params: trainable weights only.
        macs: multiply-accumulates of one forward pass of one example.
        flops: ``2 * macs``.
        ops: other arithmetic operations (normalization, pooling, merges, activations,
            bias adds).
        nonzero_params: weight entries different from 0.
        effective_macs: MACs with a nonzero weight.
        effective_flops: ``2 * effective_macs``.
        nni_flops: the number NNI's ``count_flops_params(mode="full")`` reports for the
            same architecture (its "FLOPs" column): MACs of convolutions and dense layers
            plus one per bias addition, 2 per BatchNormalization element, 1 per
            LeakyReLU element and 1 per AveragePooling output element. For comparing
            with NNI's published tables only.
        per_layer: one :class:`LayerCount` per layer call, in graph order.
        uncounted: class names of layers with weights that no formula covers.
    """

    params: int
    trainable_params: int
    macs: int
    flops: int
    ops: int
    nonzero_params: int
    effective_macs: int
    effective_flops: int
    nni_flops: int = 0
    per_layer: list = dataclasses.field(default_factory=list)
    uncounted: tuple = ()

    def to_dict(self) -> dict:
        """Return a JSON-serialisable dict (per-layer rows as dicts, shapes as lists)."""

        def plain(value):
            if isinstance(value, tuple):
                return [plain(v) for v in value]
            return value

        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("per_layer", "uncounted")}
        out["uncounted"] = list(self.uncounted)
        out["per_layer"] = [{k: plain(v) for k, v in dataclasses.asdict(row).items()} for row in self.per_layer]
        return out


# ----------------------------------------------------------------------------- walking


class _Counter:
    def __init__(self):
        self.rows = []
        self.seen = {}  # id(variable) -> variable, for totals
        self.trainable = set()
        self.nnz = {}  # id(variable) -> nonzero count (cached)
        self.uncounted = []
        self.nni = 0

    def nonzero(self, v):
        if id(v) not in self.nnz:
            self.nnz[id(v)] = int(np.count_nonzero(keras.ops.convert_to_numpy(v)))
        return self.nnz[id(v)]

    def record(self, layer, args, kwargs, outputs):
        weights = list(getattr(layer, "weights", ()))  # keras.ops nodes are weightless operations
        inner = layer
        if isinstance(layer, L.Wrapper) and not isinstance(layer, L.TimeDistributed):
            inner = layer.layer
            weights = list(inner.weights)
        rule = rule_for(inner)
        in_shapes = rule.input_shapes(inner, args, kwargs)
        out_shapes = shapes_of(outputs)
        macs, eff, ops = self.layer_macs(inner, in_shapes, out_shapes)
        self.nni += rule.nni(inner, macs, in_shapes, out_shapes)
        new = [v for v in weights if id(v) not in self.seen]
        for v in new:
            self.seen[id(v)] = v
            if v.trainable:
                self.trainable.add(id(v))
        params = sum(int(math.prod(v.shape)) for v in new)
        out_shape = out_shapes[0] if len(out_shapes) == 1 else tuple(out_shapes)
        self.rows.append(
            LayerCount(
                name=layer.name,
                class_name=type(inner).__name__,
                output_shape=out_shape,
                params=params,
                macs=macs,
                flops=2 * macs,
                ops=ops,
                nonzero_params=sum(self.nonzero(v) for v in new),
                effective_macs=eff,
            )
        )

    def layer_macs(self, layer, in_shapes, out_shapes):
        if isinstance(layer, L.TimeDistributed):
            steps = prod([in_shapes[0][1]], layer, "time")
            drop = lambda shapes: [(s[0],) + tuple(s[2:]) for s in shapes]  # noqa: E731
            macs, eff, ops = self.layer_macs(layer.layer, drop(in_shapes), drop(out_shapes))
            return steps * macs, steps * eff, steps * ops
        if isinstance(layer, L.Bidirectional):
            results = [self.layer_macs(sub, in_shapes, out_shapes) for sub in (layer.forward_layer, layer.backward_layer)]
            return tuple(sum(r[i] for r in results) for i in range(3))
        rule = rule_for(layer)
        terms = rule.macs(layer, in_shapes, out_shapes)
        if terms is None:
            if getattr(layer, "weights", None) and not rule.weights_without_macs:
                self.uncounted.append(type(layer).__name__)
            return 0, 0, rule.ops(layer, in_shapes, out_shapes)
        macs = eff = 0
        for var, size, uses in terms:
            size = int(math.prod(var.shape)) if var is not None else size
            macs += size * uses
            eff += (self.nonzero(var) if var is not None else size) * uses
        return macs, eff, rule.ops(layer, in_shapes, out_shapes)

    def walk(self, model, inputs):
        if isinstance(model, keras.Sequential):
            functional = getattr(model, "_functional", None)
            if functional is None:
                raise GraphError(
                    f"Sequential model {model.name!r} is not built, so its shapes are unknown. "
                    "Pass `input_shape=` to count() or build the model first."
                )
            return self.walk(functional, inputs)
        _check_graph(model)

        def operation_fn(op):
            def call(*args, **kwargs):
                if isinstance(op, keras.Model):
                    return self.walk(op, args[0] if len(args) == 1 else list(args))
                outputs = op.compute_output_spec(*args, **kwargs)
                self.record(op, args, kwargs, outputs)
                return outputs

            return call

        return model._run_through_graph(inputs, operation_fn=operation_fn)


def _check_graph(model):
    if isinstance(model, keras.Sequential):
        return
    if not hasattr(model, "_run_through_graph") or not getattr(model, "_nodes_by_depth", None):
        raise GraphError(
            f"Model {model.name!r} ({type(model).__name__}) is subclassed and has no layer "
            "graph to count. Build it as a functional or Sequential model (keras.Input → "
            "layers → keras.Model), or count a functional model that calls it."
        )


def _input_specs(model, input_shape):
    if input_shape is None:
        if isinstance(model, keras.Sequential) and getattr(model, "_functional", None) is None:
            raise GraphError(
                f"Sequential model {model.name!r} is not built, so its shapes are unknown. "
                "Pass `input_shape=` (without the batch dimension) to count()."
            )
        return list(model.inputs)
    shapes = input_shape
    if not shapes or not isinstance(shapes[0], (list, tuple)):
        shapes = [shapes]
    shapes = [(None,) + tuple(int(d) if d is not None else None for d in s) for s in shapes]
    if isinstance(model, keras.Sequential) and getattr(model, "_functional", None) is None:
        model.build(shapes[0])
    dtypes = [t.dtype for t in model.inputs] or ["float32"]
    return [keras.KerasTensor(s, dtype=dtypes[min(i, len(dtypes) - 1)]) for i, s in enumerate(shapes)]


def count(model, input_shape=None) -> Counts:
    """Count parameters, MACs, FLOPs and other ops of a Keras model, per layer and total.

    Args:
        model: a functional or Sequential ``keras.Model`` (nested models and wrapped
            layers are fine; subclassed models without a graph are not).
        input_shape: optional input shape without the batch dimension (a list of shapes
            for several inputs). Default ``None`` uses the model's own inputs; give it to
            build an unbuilt Sequential model or to fix dimensions that are ``None``.

    Returns:
        :class:`Counts` for one example (batch size 1).

    Raises:
        GraphError: the model has no graph, or a dimension needed for MACs is unknown.

    Example:
        >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
        >>> c = count(model)
        >>> c.params, c.macs, c.flops
        (36, 32, 64)
    """
    _check_graph(model)
    counter = _Counter()
    specs = _input_specs(model, input_shape)
    try:
        counter.walk(model, specs)
    except (ValueError, TypeError) as err:
        raise GraphError(
            f"Could not propagate shapes through model {model.name!r} with input shapes "
            f"{[tuple(s.shape) for s in specs]}: {err}"
        ) from err
    rows = counter.rows
    macs = sum(r.macs for r in rows)
    eff = sum(r.effective_macs for r in rows)
    return Counts(
        params=sum(int(math.prod(v.shape)) for v in counter.seen.values()),
        trainable_params=sum(int(math.prod(counter.seen[i].shape)) for i in counter.trainable),
        macs=macs,
        flops=2 * macs,
        ops=sum(r.ops for r in rows),
        nonzero_params=sum(r.nonzero_params for r in rows),
        effective_macs=eff,
        effective_flops=2 * eff,
        nni_flops=counter.nni,
        per_layer=rows,
        uncounted=tuple(dict.fromkeys(counter.uncounted)),
    )
