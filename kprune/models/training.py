"""Training helpers driven by a recipe's ``train``/``finetune`` section.

Models of the zoo output logits; losses here use ``from_logits=True``.
"""

from __future__ import annotations

import keras
import numpy as np


def learning_rate(cfg: dict, steps_per_epoch: int, epochs: int):
    """The learning rate (a float or a Keras schedule) for ``cfg["lr_schedule"]``.

    ``constant``; ``cosine`` decays to 0 over the run; ``step`` divides by 10 at 50 % and 75 %.
    """
    lr = cfg["optimizer"]["learning_rate"]
    total = max(1, int(steps_per_epoch) * max(1, int(epochs)))
    kind = cfg.get("lr_schedule", "constant")
    if kind == "cosine":
        return keras.optimizers.schedules.CosineDecay(lr, decay_steps=total)
    if kind == "step":
        return keras.optimizers.schedules.PiecewiseConstantDecay(
            [int(total * 0.5), int(total * 0.75)], [lr, lr * 0.1, lr * 0.01])
    return lr


def make_optimizer(cfg: dict, steps_per_epoch: int, epochs: int):
    """A Keras optimizer from a ``train``-style section (decoupled weight decay)."""
    opt = cfg["optimizer"]
    lr = learning_rate(cfg, steps_per_epoch, epochs)
    wd = cfg.get("weight_decay") or None
    name = opt["name"]
    if name == "sgd":
        return keras.optimizers.SGD(lr, momentum=opt["momentum"], nesterov=opt["nesterov"], weight_decay=wd)
    if name == "adam":
        return keras.optimizers.Adam(lr, weight_decay=wd)
    if name == "adamw":
        return keras.optimizers.AdamW(lr, weight_decay=wd or 0.004)
    return keras.optimizers.RMSprop(lr, momentum=opt["momentum"], weight_decay=wd)


def compile_model(model, cfg: dict, steps_per_epoch: int, epochs: int, jit_compile="auto"):
    """Compiles ``model`` for classification with the section's optimizer and schedule."""
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(optimizer=make_optimizer(cfg, steps_per_epoch, epochs), loss=loss,
                  metrics=["accuracy"], jit_compile=jit_compile)
    return model


def accuracy(model, dataset) -> float:
    """Top-1 accuracy of a logits/probabilities model on a ``(x, y)`` dataset (inference mode)."""
    correct = total = 0
    for x, y in dataset:
        pred = np.argmax(keras.ops.convert_to_numpy(model(x, training=False)), axis=-1)
        y = np.asarray(y).reshape(-1)
        correct += int(np.sum(pred == y))
        total += y.size
    return correct / max(total, 1)


def steps_in(dataset) -> int:
    """Number of batches of a finite dataset (counts them if the cardinality is unknown)."""
    if not hasattr(dataset, "cardinality"):  # kprune.data.arrays.ArrayBatches, a list of batches
        return len(dataset)
    import tensorflow as tf
    n = int(dataset.cardinality())
    if n >= 0:
        return n
    if n == int(tf.data.INFINITE_CARDINALITY):
        raise ValueError("the dataset is infinite; give train.steps_per_epoch.")
    return sum(1 for _ in dataset)
