"""Default scoring and short fine-tuning for searches, from a recipe's ``data`` section.

With ``recalibrate_bn: N`` (``prune.search`` or ``prune``) every candidate's BatchNorm
statistics are re-estimated on N training batches before it is scored (pruning changes the
statistics the next layers see; without it a BatchNorm network's candidates score near chance).

The default evaluator is top-1 accuracy on the first ``eval_take`` examples of the
validation split (the end of the training split, never the test split), read once and
kept in memory. The default fine-tuning runs ``steps`` optimizer steps of the recipe's
``finetune`` section (or ``train`` when fine-tuning has no epochs) on the training split,
shuffled with the given seed, with the validation examples held out; pruned weights stay zero (mask constraints).
"""

from __future__ import annotations

import keras
import numpy as np

from kprune import data
from kprune.models import training
from kprune.pruning.batchnorm import recalibrate_bn


def default_evaluator(recipe, take: int | None = 1000):
    """``evaluator(model) -> accuracy`` on the recipe's validation data.

    Args:
        recipe: a :class:`kprune.Recipe` (its ``data`` section is used).
        take: validation examples used (default 1000; None: all).

    Returns:
        A callable scoring a model (logits or probabilities) by top-1 accuracy.

    Example:
        >>> evaluate = default_evaluator(kprune.Recipe.from_dict({"data": {"name": "fashion_mnist"}}), take=256)
        >>> 0.0 <= evaluate(model) <= 1.0
        True
    """

    d = recipe.data
    ds = data.load(d["name"], split="validation", batch_size=d["batch_size"], shuffle=False,
                   data_dir=d["data_dir"], take=take)
    batches = [(np.asarray(x), np.asarray(y).reshape(-1)) for x, y in ds]

    def evaluate(model) -> float:
        correct = total = 0
        for x, y in batches:
            pred = np.argmax(keras.ops.convert_to_numpy(model(x, training=False)), axis=-1)
            correct += int(np.sum(pred == y))
            total += y.size
        return correct / max(total, 1)

    return evaluate


def default_recalibration(recipe, batches: int):
    """``recalibrate(model)``: BatchNorm statistics re-estimated on ``batches`` training batches.

    The batches (the recipe's training split, validation examples held out, no shuffling)
    are read once, at the first call. Returns None when ``batches`` is 0.

    Example:
        >>> recal = default_recalibration(recipe, 10)
        >>> recal(candidate)   # moving mean/variance of every BatchNorm layer re-estimated
    """
    if not batches:
        return None
    cache = []

    def recalibrate(model) -> None:
        if not cache:
            d = recipe.data
            ds = data.load(d["name"], split="train", batch_size=d["batch_size"], shuffle=False,
                           data_dir=d["data_dir"], take=d["take"], validation_fraction=0.1)
            cache.extend(x for x, _ in ds.take(int(batches)))
        recalibrate_bn(model, cache, batches=len(cache))

    return recalibrate


def default_finetune(recipe):
    """``finetune(model, steps, seed)``: a few steps of the recipe's fine-tuning optimizer.

    Args:
        recipe: a :class:`kprune.Recipe` (``data`` and ``finetune``/``train`` sections).

    Returns:
        A callable that compiles ``model`` and trains it for ``steps`` batches in place.
    """

    d = recipe.data
    cfg = recipe.finetune if recipe.finetune["epochs"] > 0 else recipe.train

    def finetune(model, steps: int, seed: int) -> None:
        import keras
        ds = data.load(d["name"], split="train", batch_size=d["batch_size"], augment=d["augment"],
                       shuffle=True, seed=int(seed), data_dir=d["data_dir"], take=d["take"],
                       validation_fraction=0.1)
        training.compile_model(model, cfg, steps, 1)
        keras.utils.set_random_seed(int(seed))
        model.fit(ds.repeat(), steps_per_epoch=int(steps), epochs=1, verbose=0)

    return finetune
