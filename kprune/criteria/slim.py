"""``slim``: Network Slimming (Liu et al. 2017).

Each channel is scored by ``|gamma|``, the scale of the BatchNormalization that follows the
layer, and channels are ranked over the whole network with one threshold (so the criterion
is global by definition; ``scope: layerwise`` is an error). Training adds the sparsity
penalty ``λ · Σ |gamma|`` (``prune.slim_lambda``, default 1e-4) to drive unimportant
scales to zero: :func:`install_penalty` sets an L1 regularizer on those gamma variables,
which Keras adds to the loss at every training step (``model.losses``).
"""

from __future__ import annotations

import keras
import numpy as np

from kprune.criteria.base import register
from kprune.criteria.base import Criterion, require


@register("slim")
class Slim(Criterion):
    """|gamma| of the BatchNormalization after each pruned layer, ranked globally.

    Called with the gamma vector itself (the Pruner finds the BatchNormalization through the
    channel groups).

    Example:
        >>> Slim()(np.zeros((3, 2)), axis=1, gamma=np.array([0.5, -2.0]))
        array([0.5, 2. ])
    """

    name = "slim"
    granularities = ("filter",)
    needs = ("bn",)
    scope = "global"
    paper = "Liu et al. 2017, Learning Efficient Convolutional Networks through Network Slimming"

    def install(self, groups, plan: dict) -> int:
        """Sets the λ·Σ|gamma| penalty (``prune.slim_lambda``) on the BatchNorm gammas of ``groups``."""
        gammas = {}
        for g in groups:
            for m in g.members:
                if m.weight == "gamma" and type(m.inner).__name__ == "BatchNormalization":
                    gammas[id(m.variable())] = m.variable()
        return install_penalty(list(gammas.values()), float(plan.get("slim_lambda", 1e-4)))

    def __call__(self, kernel, axis=None, **stats):
        gamma = np.asarray(require(stats, "gamma", self.name), dtype=np.float64)
        if axis is not None and gamma.shape[0] != np.shape(kernel)[axis]:
            raise ValueError(f"slim: gamma has {gamma.shape[0]} channels, the kernel "
                             f"{np.shape(kernel)[axis]} along axis {axis}.")
        return np.abs(gamma)


@keras.saving.register_keras_serializable(package="kprune")
class SlimPenalty(keras.regularizers.Regularizer):
    """``λ · Σ |gamma|``, the Network Slimming sparsity penalty on one gamma variable.

    Args:
        lam: λ (default 1e-4).

    Example:
        >>> float(SlimPenalty(0.5)(keras.ops.convert_to_tensor([1.0, -2.0])))
        1.5
    """

    def __init__(self, lam=1e-4):
        self.lam = float(lam)

    def __call__(self, x):
        return self.lam * keras.ops.sum(keras.ops.abs(x))

    def get_config(self):
        return {"lam": self.lam}


def install_penalty(gammas, lam: float) -> int:
    """Sets :class:`SlimPenalty` as the regularizer of each gamma variable.

    Args:
        gammas: Keras variables (BatchNormalization ``gamma``).
        lam: λ; 0 removes a penalty installed before.

    Returns:
        How many variables changed (a compiled train step must be retraced to see them).
    """
    changed = 0
    for var in gammas:
        current = var.regularizer
        if lam > 0:
            if isinstance(current, SlimPenalty) and current.lam == lam:
                continue
            if current is not None and not isinstance(current, SlimPenalty):
                continue  # a user regularizer stays; do not stack a second one silently
            var.regularizer = SlimPenalty(lam)
            changed += 1
        elif isinstance(current, SlimPenalty):
            var.regularizer = None
            changed += 1
    return changed
