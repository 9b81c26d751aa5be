"""BatchNorm recalibration: re-estimate moving statistics after pruning, touching nothing else.

Removing filters changes the distribution every later layer sees, so the BatchNormalization
moving mean and variance recorded on the dense model are stale right after pruning. Used as
they are, they make every criterion look close to chance before fine-tuning and hide the
criteria's real differences. :func:`recalibrate_bn` replaces them with statistics measured on
a few batches of data, as a cumulative average (PyTorch's ``momentum=None``): with batch
``i`` (0-based) the layer's momentum is ``i / (i + 1)``, so after ``n`` batches

    moving_mean     = (1/n) Σ_i mean_i
    moving_variance = (1/n) Σ_i var_i          (Keras' per-batch biased variance)

the mean of the per-batch statistics, whatever the old values were. Trainable weights,
masks, optimizer state and every other variable keep their values.
"""

from __future__ import annotations

import keras

from kprune.errors import DataError
from kprune.wrappers.prune_wrapper import statistics_only


def batchnorm_layers(model) -> list:
    """The BatchNormalization layers of ``model``: nested models and kprune wrappers looked through.

    Args:
        model: a Keras model (plain or wrapped by :func:`kprune.wrap`).

    Returns:
        The layers, in model order, each once.
    """
    found, seen = [], set()

    def visit(layer):
        if id(layer) in seen:
            return
        seen.add(id(layer))
        if isinstance(layer, keras.layers.BatchNormalization):
            found.append(layer)
        elif isinstance(layer, keras.layers.Wrapper):
            visit(layer.layer)
        elif isinstance(layer, keras.Model) and hasattr(layer, "layers"):
            for sub in layer.layers:
                visit(sub)

    for layer in model.layers:
        visit(layer)
    return found


def _inputs(batch):
    if isinstance(batch, (tuple, list)):
        return batch[0]
    if isinstance(batch, dict) and "x" in batch:
        return batch["x"]
    return batch


def recalibrate_bn(model, data, batches: int = 20) -> int:
    """Re-estimates every BatchNorm moving mean/variance of ``model`` on ``batches`` batches.

    Each batch runs forward in training mode (so BatchNorm layers normalize with the batch
    statistics, as during training); the moving statistics become the cumulative average
    described in the module docstring. No other variable changes: no optimizer step is
    taken, and momenta and ``trainable`` flags are restored afterwards (frozen BatchNorm
    layers are recalibrated too). Dropout layers, if any, are active during these passes,
    as they are in training.

    Args:
        model: a Keras model, plain or wrapped (BatchNorm layers inside kprune wrappers and
            nested models are found).
        data: an iterable of ``(x, y)`` or ``x`` batches (e.g. a ``tf.data.Dataset``).
        batches: how many batches to use (default 20); fewer if ``data`` ends first.

    Returns:
        The number of batches used (0 when the model has no BatchNorm layer).

    Raises:
        DataError: when ``batches < 1`` or ``data`` yields no batch.

    Example:
        >>> small = kprune.compact(pruned)
        >>> kprune.recalibrate_bn(small, kprune.data.load("fashion_mnist", "train"), batches=20)
        20
    """
    if not isinstance(batches, int) or isinstance(batches, bool) or batches < 1:
        raise DataError(f"recalibrate_bn: `batches` must be an integer >= 1. Received: batches={batches!r}.")
    bns = batchnorm_layers(model)
    if not bns:
        return 0
    renorm = [bn.name for bn in bns if getattr(bn, "renorm", False)]
    if renorm:
        raise DataError(f"recalibrate_bn: BatchNormalization layers with renorm=True are not supported "
                        f"(their statistics follow another update rule). Received layers: {renorm}.")
    saved = [(bn.momentum, bn.trainable) for bn in bns]
    used = 0
    try:
        for bn in bns:
            bn.trainable = True
        for batch in data:
            if used >= batches:
                break
            for bn in bns:
                bn.momentum = used / (used + 1)
            with statistics_only():  # BN statistics only: a wrapped model needs no Pruner here
                model(_inputs(batch), training=True)
            used += 1
    finally:
        for bn, (momentum, trainable) in zip(bns, saved):
            bn.momentum = momentum
            bn.trainable = trainable
    if used == 0:
        raise DataError("recalibrate_bn: `data` yielded no batch; pass a non-empty dataset "
                        "(e.g. kprune.data.load(name, 'train')).")
    return used
