"""Flattened, topologically ordered traversal of a Keras functional graph.

Nested functional and Sequential models are inlined: their inner layers appear as calls of
the outer graph, and their inner tensors are aliased to the outer tensors they stand for.
Both the channel analysis (:mod:`kprune.graph.analysis`) and the model rebuild
(:mod:`kprune.graph.surgery`) walk the graph through this one module, so they always agree on
what a tensor is.

Tensors are identified by *keys*: ``(call_path, id(keras_tensor))`` where ``call_path`` is
the tuple of node ids of the nested-model calls that lead to the tensor (a nested model
called twice has two sets of inner tensors).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import keras
from keras import tree

from kprune.errors import GraphError


@dataclass
class Call:
    """One call of a (non-model) operation in the flattened graph.

    Attributes:
        op: the operation as it appears in the model (a kprune wrapper stays a wrapper).
        node: the Keras ``Node`` of that call (its ``arguments`` can be filled in).
        in_keys: keys of ``node.arguments.keras_tensors``, in that order.
        out_keys: keys of ``node.outputs`` (flattened), in that order.
        in_tensors: the symbolic input tensors (for shapes).
        out_tensors: the symbolic output tensors (for shapes).
    """

    op: object
    node: object
    in_keys: list
    out_keys: list
    in_tensors: list
    out_tensors: list


@dataclass
class FlatGraph:
    """A model's graph with nested models inlined.

    Attributes:
        calls: calls in topological order.
        input_keys / input_tensors: the top-level model inputs (flattened).
        output_keys / output_tensors: the top-level model outputs (flattened).
        inputs_struct / outputs_struct: the nesting of inputs and outputs.
    """

    calls: list = field(default_factory=list)
    input_keys: list = field(default_factory=list)
    input_tensors: list = field(default_factory=list)
    output_keys: list = field(default_factory=list)
    output_tensors: list = field(default_factory=list)
    inputs_struct: object = None
    outputs_struct: object = None


def functional_of(model):
    """Return the ``Functional`` graph that runs ``model``.

    Args:
        model: a functional ``keras.Model`` or a built ``keras.Sequential``.

    Returns:
        The functional object whose ``_nodes_by_depth`` describes the graph.

    Raises:
        GraphError: for subclassed models and unbuilt Sequential models.
    """
    from keras.src.models.functional import Functional

    if isinstance(model, keras.Sequential):
        fn = getattr(model, "_functional", None)
        if fn is None:
            raise GraphError(
                f"Sequential model '{model.name}' has no graph yet. Received: an unbuilt "
                "Sequential. Build it first, e.g. give it a `keras.Input(shape=...)` as "
                "first layer or call `model.build(input_shape)`."
            )
        return fn
    if isinstance(model, Functional):
        return model
    raise GraphError(
        f"Model '{getattr(model, 'name', model)}' of type {type(model).__name__} is a "
        "subclassed model; kprune can only analyse functional and Sequential models "
        "(their graph is visible). Rebuild it with the functional API."
    )


def is_graph_model(op) -> bool:
    """Whether ``op`` is a model whose graph can be inlined."""
    from keras.src.models.functional import Functional

    if isinstance(op, keras.Sequential):
        return getattr(op, "_functional", None) is not None
    return isinstance(op, Functional)


def flatten_graph(model) -> FlatGraph:
    """Inline nested models and list every call in topological order.

    Args:
        model: a functional or Sequential Keras model.

    Returns:
        A :class:`FlatGraph`.

    Example:
        >>> flat = flatten_graph(model)
        >>> [type(c.op).__name__ for c in flat.calls][:2]
        ['Conv2D', 'BatchNormalization']
    """
    fn = functional_of(model)
    flat = FlatGraph(inputs_struct=fn._inputs_struct, outputs_struct=fn._outputs_struct)
    alias: dict = {}
    flat.input_tensors = list(fn.inputs)
    flat.input_keys = [((), id(t)) for t in fn.inputs]
    _walk(fn, (), alias, flat.calls)
    flat.output_tensors = list(fn.outputs)
    flat.output_keys = [_key(t, (), alias) for t in fn.outputs]
    return flat


def _key(tensor, prefix, alias):
    return alias.get(id(tensor), (prefix, id(tensor)))


def _walk(fn, prefix, alias, calls):
    for depth in sorted(fn._nodes_by_depth, reverse=True):
        for node in fn._nodes_by_depth[depth]:
            op = node.operation
            if op is None or node.is_input:
                continue
            in_tensors = list(node.arguments.keras_tensors)
            in_keys = [_key(t, prefix, alias) for t in in_tensors]
            out_tensors = list(node.outputs)
            if is_graph_model(op):
                inner = functional_of(op)
                inner_inputs = list(inner.inputs)
                if len(inner_inputs) != len(in_tensors):
                    raise GraphError(
                        f"Nested model '{op.name}' has {len(inner_inputs)} inputs but is "
                        f"called on {len(in_tensors)} tensors; kprune cannot inline it."
                    )
                inner_prefix = prefix + (id(node),)
                inner_alias = {id(t): k for t, k in zip(inner_inputs, in_keys)}
                _walk(inner, inner_prefix, inner_alias, calls)
                inner_outs = [_key(t, inner_prefix, inner_alias) for t in inner.outputs]
                if len(inner_outs) != len(out_tensors):
                    raise GraphError(
                        f"Nested model '{op.name}' returns {len(inner_outs)} tensors but "
                        f"its call node has {len(out_tensors)} outputs."
                    )
                for t, k in zip(out_tensors, inner_outs):
                    alias[id(t)] = k
                continue
            out_keys = [_key(t, prefix, alias) for t in out_tensors]
            calls.append(Call(op, node, in_keys, out_keys, in_tensors, out_tensors))


class MaskedLayer:
    """The interface of a layer wrapper that holds pruning masks (implemented by
    :class:`kprune.PruneWrapper`).

    The graph sees such a wrapper as the layer it wraps: channel groups, ``compact`` and
    statistics read the inner layer's weights through it, with the masks applied.

    Attributes:
        layer: the wrapped Keras layer.
        masks: ``{weight attribute: mask variable}`` (same shape as the weight).

    Methods:
        set_mask(attr, mask): sets one mask and zeroes the masked entries of the weight.
    """

    # annotations only: a class attribute `layer` would shadow the sublayer that PyTorch's
    # nn.Module (Keras' torch backend) keeps in `_modules` and finds through __getattr__
    layer: object
    masks: dict

    def set_mask(self, attr, mask):  # pragma: no cover - an interface method
        raise TypeError(f"{type(self).__name__} must define set_mask(attr, mask).")


def unwrap(op):
    """Return the layer a mask wrapper (:class:`MaskedLayer`) holds, or ``op`` itself.

    Other wrappers (``TimeDistributed``, ``Bidirectional``) are returned unchanged.
    """
    return op.layer if isinstance(op, MaskedLayer) else op


def weight_at(layer, path: str):
    """The variable at attribute ``path`` of ``layer`` (``"kernel"``, or a dotted path into a
    sublayer such as ``"_query_dense.kernel"``; a number indexes a list of sublayers, as in
    ``"encoder_layers.0.mha._query_dense.kernel"``)."""
    for part in path.split("."):
        layer = layer[int(part)] if part.isdigit() and not hasattr(layer, part) else getattr(layer, part)
    return layer


def fill_in(call: Call, values: dict):
    """Return ``(args, kwargs)`` of ``call`` with tensors replaced from ``values`` (by key)."""
    tensor_dict = {id(t): values[k] for t, k in zip(call.in_tensors, call.in_keys)}
    return call.node.arguments.fill_in(tensor_dict)


def flat_outputs(outputs) -> list:
    """Flatten an operation's outputs into a list."""
    return tree.flatten(outputs)
