"""Statistics for data-driven criteria: post-activation outputs and loss gradients.

Both collectors leave the model as they found it: no weight update, no optimizer step, and
BatchNormalization moving statistics untouched.

* :func:`collect_activations` runs the model's graph in **inference mode**
  (``training=False``: BatchNorm uses its moving statistics, dropout is off) and reads, for
  each pruned layer, the output of the activation that follows it (see
  :func:`activation_sources`).
* :func:`collect_gradients` computes the gradient of the loss on each batch with
  ``tf.GradientTape`` (``jax.grad`` under JAX) in **training mode** through ``model.stateless_call``: BatchNorm
  normalizes with the batch statistics, as during the training the criteria's papers
  measure (Molchanov et al. 2019, SNIP at initialization, where moving statistics are still
  the initial 0/1), but the updated moving statistics it returns are discarded.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import keras
import numpy as np

from kprune.errors import DataError, KPruneError
from kprune.graph.layers import rule_for
from kprune.graph.walk import fill_in, flat_outputs, flatten_graph, unwrap



@dataclass
class ActivationStats:
    """Per-channel accumulators of a layer's post-activation output.

    Attributes:
        zeros: number of exact zeros in each channel (over samples and positions).
        total: sum of each channel's values.
        count: number of values seen per channel.
        source: the layer whose output was observed (``"<layer>+relu"`` when none followed
            and ReLU was applied to the layer's output, as NNI does by default).
    """

    zeros: np.ndarray
    total: np.ndarray
    count: int
    source: str = ""

    @property
    def apoz(self) -> np.ndarray:
        """Average Percentage of Zeros per channel (Hu et al. 2016)."""
        return np.asarray(self.zeros, np.float64) / max(self.count, 1)

    @property
    def mean(self) -> np.ndarray:
        """Mean value per channel."""
        return np.asarray(self.total, np.float64) / max(self.count, 1)

    def add(self, output: np.ndarray, channel_axis: int = -1):
        """Accumulates one batch of outputs (channels along ``channel_axis``)."""
        a = np.moveaxis(np.asarray(output, dtype=np.float64), channel_axis, -1)
        a = a.reshape(-1, a.shape[-1])
        self.zeros = self.zeros + np.sum(a == 0.0, axis=0)
        self.total = self.total + a.sum(axis=0)
        self.count += a.shape[0]
        return self


@dataclass
class GradientStats:
    """Accumulated gradient statistics of one weight over ``batches`` mini-batches.

    Attributes:
        grad: mean gradient (shape of the weight).
        gw2: mean of ``(g * w)^2`` per weight.
        gw_axis2: for each axis ``a``, the mean over batches of ``(sum over the other axes
            of g * w)^2`` (one value per index of ``a``: Taylor's filter/channel scores).
        batches: number of batches.
    """

    grad: np.ndarray
    gw2: np.ndarray
    gw_axis2: list = field(default_factory=list)
    batches: int = 0

    @classmethod
    def from_batches(cls, weight, grads) -> "GradientStats":
        """Builds the statistics from a weight and a list of per-batch gradients.

        Example:
            >>> s = GradientStats.from_batches(np.array([2.0]), [np.array([1.0]), np.array([3.0])])
            >>> s.grad, s.gw2
            (array([2.]), array([20.]))
        """
        w = np.asarray(weight, dtype=np.float64)
        s = cls(np.zeros_like(w), np.zeros_like(w), [np.zeros(n) for n in w.shape], 0)
        for g in grads:
            s._add(w, np.asarray(g, dtype=np.float64))
        return s._finish()

    def _add(self, w, g):
        gw = g * w
        self.grad = self.grad + g
        self.gw2 = self.gw2 + gw * gw
        for a in range(w.ndim):
            other = tuple(i for i in range(w.ndim) if i != a)
            self.gw_axis2[a] = self.gw_axis2[a] + np.square(gw.sum(axis=other))
        self.batches += 1

    def _finish(self):
        n = max(self.batches, 1)
        self.grad, self.gw2 = self.grad / n, self.gw2 / n
        self.gw_axis2 = [v / n for v in self.gw_axis2]
        return self


# -- data -------------------------------------------------------------------------------------
def iter_batches(data, batches: int, batch_size: int = 32):
    """Yields up to ``batches`` tuples ``(x, y, sample_weight)`` from ``data``.

    Args:
        data: a ``tf.data.Dataset`` or any iterable of batches (``x``, ``(x,)``, ``(x, y)``
            or ``(x, y, sample_weight)``), or a tuple ``(x, y)`` of arrays (split into
            batches of ``batch_size``).
        batches: the most batches to yield.
        batch_size: for array inputs (default 32).
    """
    if isinstance(data, tuple) and 1 <= len(data) <= 3 and all(hasattr(a, "shape") for a in data) \
            and len({int(a.shape[0]) for a in data}) == 1:
        n = int(data[0].shape[0])
        data = [tuple(a[i:i + batch_size] for a in data) for i in range(0, n, batch_size)]
    if hasattr(data, "shape"):
        raise DataError(f"statistics need batches with labels: pass a tf.data.Dataset of (x, y) or a "
                        f"tuple (x, y) of arrays. Received: an array of shape {tuple(data.shape)}.")
    seen = 0
    for item in data:
        if seen >= batches:
            break
        if isinstance(item, (tuple, list)):
            x = item[0]
            y = item[1] if len(item) > 1 else None
            sw = item[2] if len(item) > 2 else None
        else:
            x, y, sw = item, None, None
        yield x, y, sw
        seen += 1
    if seen == 0:
        raise DataError("the data given for pruning statistics yielded no batch.")


# -- activations ------------------------------------------------------------------------------
@dataclass
class Source:
    """Where a layer's post-activation output is read."""

    key: tuple
    relu: bool
    via: str
    channel_axis: int


def _type(op) -> str:
    return type(unwrap(op)).__name__


def activation_sources(model, names) -> dict:
    """Finds, for each layer name, the tensor holding its post-activation output.

    The search starts at the layer's output. If the layer has its own non-linear
    ``activation``, that output is used. Otherwise the single consumer chain is followed
    through per-channel layers (rule ``statistics = "pass"`` in :mod:`kprune.graph.layers`, e.g.
    BatchNormalization) and ``Add`` (channels stay aligned) to the first activation layer (rule
    ``statistics = "activation"``). When the
    chain branches, reaches the model output or a layer that mixes channels first, ReLU is
    applied to the last tensor reached (NNI's default ``activation: relu``).

    Returns:
        ``{name: Source}``.
    """

    flat = flatten_graph(model)
    consumers = {}
    for call in flat.calls:
        for k in call.in_keys:
            consumers.setdefault(k, []).append(call)
    outputs = set(flat.output_keys)
    out = {}
    for name in names:
        call = next((c for c in flat.calls if c.op.name == name), None)
        if call is None:
            raise KPruneError(f"layer `{name}` is not called in the graph of model `{model.name}`.")
        layer = unwrap(call.op)
        axis = 1 if getattr(layer, "data_format", "channels_last") == "channels_first" else -1
        key, via = call.out_keys[0], layer.name
        act = getattr(layer, "activation", None)
        if act is not None and getattr(act, "__name__", "") not in ("linear", "identity"):
            out[name] = Source(key, False, via, axis)
            continue
        relu = True
        while key not in outputs:
            nxt = consumers.get(key, [])
            if len(nxt) != 1:
                break
            c = nxt[0]
            kind = rule_for(c.op).statistics
            if kind == "activation":
                key, via, relu = c.out_keys[0], c.op.name, False
                break
            if kind == "pass" or (_type(c.op) == "Add" and len({tuple(x.shape[-1:]) for x in c.in_tensors}) == 1):
                key, via = c.out_keys[0], c.op.name
                continue
            break
        out[name] = Source(key, relu, via if not relu else f"{via}+relu", axis)
    return out


#: backends on which kprune collects activation and gradient statistics
STATISTICS_BACKENDS = ("tensorflow", "jax", "torch")


def check_backend(criterion: str, needs) -> None:
    """Raises a :class:`KPruneError` when statistics cannot be collected on this Keras backend."""
    backend = keras.backend.backend()
    if backend not in STATISTICS_BACKENDS:
        what = " and ".join(n for n in needs if n in ("activations", "gradients"))
        raise KPruneError(
            f"criterion `{criterion}` scores with {what} measured on data, which kprune collects on the "
            f"{' and '.join(STATISTICS_BACKENDS)} backends only. Received: KERAS_BACKEND={backend!r}. "
            "Fix: run with KERAS_BACKEND=tensorflow or jax, or choose a criterion that reads only weights "
            "(level, l1, l2, fpgm, random, slim...); see docs/backends.md.")


def _graph_runner(model, keys):
    """A compiled function computing the flat-graph tensors ``keys`` in inference mode: a
    ``tf.function`` under TensorFlow; under JAX the graph runs eagerly (jitting it would freeze
    the weights of the first call as constants), under PyTorch eagerly without autograd."""
    from keras import tree

    flat = flatten_graph(model)
    wanted = set(keys)
    last = max(i for i, c in enumerate(flat.calls) if wanted & set(c.out_keys))
    calls = flat.calls[:last + 1]

    def run(x):
        values = dict(zip(flat.input_keys, tree.flatten(x)))
        for call in calls:
            args, kwargs = fill_in(call, values)
            if getattr(call.op, "_call_has_training_arg", False):
                kwargs["training"] = False
            for k, o in zip(call.out_keys, flat_outputs(call.op(*args, **kwargs))):
                values[k] = o
        return [values[k] for k in keys]

    if keras.backend.backend() == "torch":
        import torch
        return torch.no_grad()(run)  # inference: no autograd graph through the parameters
    if keras.backend.backend() != "tensorflow":
        return run
    import tensorflow as tf
    return tf.function(run, reduce_retracing=True)


def collect_activations(model, data, names, batches: int = 10, cache: dict | None = None) -> dict:
    """Per-channel post-activation statistics of the named layers on ``batches`` batches.

    Args:
        model: a functional or Sequential model (wrapped or not; nested models allowed).
        data: see :func:`iter_batches` (labels are not needed).
        names: layer names.
        batches: how many batches (default 10).
        cache: a dict kept between calls on the same model (the Pruner's) so that the traced
            graph function is reused (default None).

    Returns:
        ``{name: ActivationStats}``.

    Example:
        >>> stats = collect_activations(model, ds, ["conv1"], batches=2)
        >>> stats["conv1"].apoz.shape
        (16,)
    """
    cache = {} if cache is None else cache
    names = tuple(sorted(names))
    if ("act", names) not in cache:
        sources = activation_sources(model, names)
        keys = list(dict.fromkeys(s.key for s in sources.values()))
        cache[("act", names)] = (sources, keys, _graph_runner(model, keys))
    sources, keys, run = cache[("act", names)]
    acc = {}
    for x, _, _ in iter_batches(data, batches):
        values = dict(zip(keys, run(x)))
        for name, src in sources.items():
            v = keras.ops.convert_to_numpy(values[src.key])
            if src.relu:
                v = np.maximum(v, 0.0)
            c = v.shape[src.channel_axis]
            s = acc.setdefault(name, ActivationStats(np.zeros(c), np.zeros(c), 0, src.via))
            s.add(v, src.channel_axis)
    return acc


# -- gradients --------------------------------------------------------------------------------
def loss_function(model, loss=None):
    """The loss used for gradient statistics: ``loss`` if given, else the compiled one, else
    sparse categorical cross-entropy (``from_logits`` unless the model ends in softmax)."""
    if loss is not None:
        return keras.losses.get(loss) if isinstance(loss, str) else loss
    compiled = getattr(model, "_compile_loss", None)
    if compiled is not None and getattr(model, "loss", None) is not None:
        return lambda y, p, sw=None: compiled(y, p, sw)
    last = model.layers[-1] if getattr(model, "layers", None) else None
    act = getattr(getattr(last, "layer", last), "activation", None)
    softmax = getattr(act, "__name__", "") == "softmax" or type(last).__name__ == "Softmax"
    return keras.losses.SparseCategoricalCrossentropy(from_logits=not softmax)


def collect_gradients(model, data, variables: dict, batches: int = 10, loss=None,
                      cache: dict | None = None) -> dict:
    """Gradient statistics of the loss w.r.t. the given variables over ``batches`` batches.

    Args:
        model: a Keras model.
        data: see :func:`iter_batches`; batches must carry labels.
        variables: ``{key: variable}`` for trainable variables of ``model``.
        batches: how many batches (default 10).
        loss: a loss callable or name (default: see :func:`loss_function`).
        cache: a dict kept between calls on the same model, to reuse the traced function.

    Returns:
        ``{key: GradientStats}``.
    """
    trainable = list(model.trainable_variables)
    position = {id(v): i for i, v in enumerate(trainable)}
    missing = [k for k, v in variables.items() if id(v) not in position]
    if missing:
        raise KPruneError(f"gradient statistics need trainable weights; not trainable: {missing[:5]}.")
    keys = list(variables)
    chosen = [position[id(variables[k])] for k in keys]
    non_trainable = list(model.non_trainable_variables)
    loss_fn = loss_function(model, loss)
    cache = {} if cache is None else cache
    tag = ("grad", tuple(chosen), id(loss))
    if tag not in cache:
        cache[tag] = _gradient_fn(model, trainable, non_trainable, chosen, loss_fn)
    grads_of = cache[tag]
    weights = {k: np.asarray(variables[k].numpy(), dtype=np.float64) for k in keys}
    acc = {k: GradientStats(np.zeros_like(w), np.zeros_like(w), [np.zeros(n) for n in w.shape], 0)
           for k, w in weights.items()}
    for x, y, _ in iter_batches(data, batches):
        if y is None:
            raise DataError("gradient statistics need labels: the data must yield (x, y) batches.")
        for k, g in zip(keys, grads_of(x, y)):
            g = np.zeros_like(weights[k]) if g is None else keras.ops.convert_to_numpy(g).astype(np.float64)
            acc[k]._add(weights[k], g)
    return {k: s._finish() for k, s in acc.items()}


def _gradient_fn(model, trainable, non_trainable, chosen, loss_fn):
    """A compiled function (x, y) -> gradients of the loss w.r.t. ``trainable[chosen]``, in
    training mode through ``stateless_call`` (the new non-trainable values are dropped):
    ``tf.GradientTape`` in a ``tf.function`` under TensorFlow, ``jax.grad`` under ``jax.jit``
    under JAX (the variables' values are arguments, so later weights are seen),
    ``torch.autograd.grad`` eagerly under PyTorch."""
    if keras.backend.backend() == "jax":
        return _jax_gradient_fn(model, trainable, non_trainable, chosen, loss_fn)
    if keras.backend.backend() == "torch":
        return _torch_gradient_fn(model, trainable, non_trainable, chosen, loss_fn)
    import tensorflow as tf

    @tf.function(reduce_retracing=True)
    def grads_of(x, y):
        values = [tf.convert_to_tensor(v.value) for v in trainable]
        fixed = [tf.convert_to_tensor(v.value) for v in non_trainable]
        with tf.GradientTape() as tape:
            tape.watch(values)
            pred, _ = model.stateless_call(values, fixed, x, training=True)
            value = loss_fn(y, pred)
        return tape.gradient(value, [values[i] for i in chosen])

    return grads_of


def _jax_gradient_fn(model, trainable, non_trainable, chosen, loss_fn):
    import jax

    def loss_of(picked, values, fixed, x, y):
        values = list(values)
        for i, v in zip(chosen, picked):
            values[i] = v
        pred, _ = model.stateless_call(values, fixed, x, training=True)
        return loss_fn(y, pred)

    grad = jax.jit(jax.grad(loss_of))

    def grads_of(x, y):
        values = [v.value for v in trainable]
        fixed = [v.value for v in non_trainable]
        return grad([values[i] for i in chosen], values, fixed, x, y)

    return grads_of


def _torch_gradient_fn(model, trainable, non_trainable, chosen, loss_fn):
    """Eager ``torch.autograd.grad`` of the loss w.r.t. detached copies of the chosen values
    (the model's own parameters and their ``.grad`` are left alone)."""
    import torch

    def grads_of(x, y):
        values = [v.value.detach() for v in trainable]
        picked = [values[i].clone().requires_grad_(True) for i in chosen]
        for i, v in zip(chosen, picked):
            values[i] = v
        fixed = [v.value.detach() for v in non_trainable]
        pred, _ = model.stateless_call(values, fixed, x, training=True)
        return torch.autograd.grad(loss_fn(y, pred), picked, allow_unused=True)

    return grads_of


class Collected:
    """The statistics gathered for one mask update, handed to criteria as keyword arguments.

    Args:
        activations: ``{layer name: ActivationStats}``.
        gradients: ``{(batches, (layer name, weight)): GradientStats}``.
        plan: the recipe's ``prune`` settings (``statistics_batches``, ``seed``).
    """

    def __init__(self, activations=None, gradients=None, plan=None):
        self.activations = activations or {}
        self.gradients = gradients or {}
        self.plan = plan or {}

    def batches(self, crit) -> int:
        return crit.batches or int(self.plan.get("statistics_batches", 10))

    def kwargs(self, crit, name: str, attr: str) -> dict:
        """What ``crit`` receives besides the kernel when scoring ``name``'s weight ``attr``."""
        return {"activations": self.activations.get(name),
                "gradients": self.gradients.get((self.batches(crit), (name, attr))),
                "seed": int(self.plan.get("seed", 0)), "name": f"{name}/{attr}"}


def gather(requests, model, data, variable, plan, loss=None, cache: dict | None = None) -> Collected:
    """Collects, once per update, the activations and gradients the criteria ask for.

    Args:
        requests: ``[(criterion, entry, [(layer name, weight), ...])]``, one per job.
        model: the wrapped model.
        data: the dataset (required when a criterion needs activations or gradients).
        variable: ``variable(layer name, weight) -> Keras variable``.
        plan: the recipe's ``prune`` settings.
        loss: loss for gradient criteria (default: the compiled loss).
        cache: dict reused across updates (compiled functions).

    Returns:
        A :class:`Collected`.

    Raises:
        KPruneError: when a criterion needs data and none was given.
    """
    stats = Collected(plan=plan)
    act_layers, grad_vars = {}, {}
    for crit, entry, layers in requests:
        if not ({"activations", "gradients"} & set(crit.needs)):
            continue
        if data is None:
            raise KPruneError(
                f"criterion `{crit.name}` (prune.config_list[{entry}]) scores with "
                f"{' and '.join(n for n in crit.needs if n != 'weights')} measured on data, but no data "
                "was given. Pass a dataset of (x, y) batches: kprune.PruningCallback(data=ds) inside "
                "model.fit, or kprune.Pruner(model, data=ds).prune_now(); the recipe pipeline uses "
                "its training set.")
        check_backend(crit.name, crit.needs)
        batches = stats.batches(crit)
        if "activations" in crit.needs:
            act_layers.setdefault(batches, set()).update(name for name, _ in layers)
        if "gradients" in crit.needs:
            for name, attr in layers:
                grad_vars.setdefault(batches, {})[(name, attr)] = variable(name, attr)
    for batches, names in act_layers.items():
        stats.activations.update(collect_activations(model, data, sorted(names), batches, cache=cache))
    for batches, variables in grad_vars.items():
        got = collect_gradients(model, data, variables, batches, loss=loss, cache=cache)
        stats.gradients.update({(batches, k): v for k, v in got.items()})
    return stats
