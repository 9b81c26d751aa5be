"""The :class:`Criterion` base class and the rules every criterion declares.

A criterion is a pure function of one kernel (plus, for some, statistics gathered on data):

* ``crit(kernel)`` returns elementwise scores (``weight``, ``n:m`` and ``block``
  granularities aggregate these);
* ``crit(kernel, axis=a)`` returns one score per index of axis ``a`` (``filter``: the
  output-channel axis, ``channel``: the input-channel axis).

Higher score = more important = kept. Statistics arrive as keyword arguments:

* ``activations``: :class:`kprune.pruning.statistics.ActivationStats` of the layer's output channels,
* ``gradients``: :class:`kprune.pruning.statistics.GradientStats` of this weight,
* ``gamma``: the BatchNormalization scale that follows the layer (per output channel),
* ``seed`` and ``name``: for seeded random scores.
"""

from __future__ import annotations

from kprune.errors import KPruneError, RecipeError
from kprune.config.registry import CRITERIA

#: decorator registering a member of the family by name
register = CRITERIA.register

#: granularities built from elementwise scores.
ELEMENTWISE = ("weight", "n:m", "block")
#: granularities built from per-axis scores.
STRUCTURED = ("filter", "channel", "head")
ALL = ELEMENTWISE + STRUCTURED


class Criterion:
    """Scores units of one layer; higher = more important.

    Attributes:
        name: registry name.
        granularities: granularity kinds it supports (subset of :data:`ALL`).
        needs: what it reads: ``"weights"``, ``"activations"``, ``"gradients"``, ``"bn"``.
        scope: ``None`` (the recipe's ``prune.scope`` decides), ``"global"`` or
            ``"layerwise"`` (the criterion fixes its scope, e.g. ShrinkBench's
            ``global_magnitude``; a recipe that sets the other scope is an error).
        batches: number of batches of statistics it uses (``None``: ``prune.statistics_batches``).
        paper: the reference, shown in errors and docs.
        group_power: with ``prune.group_score: all``, a channel's score is
            ``(sum over the group's weights of score ** group_power) ** (1 / group_power)``:
            1 sums the members' scores (the L1 norm of everything the channel's removal
            deletes, for ``l1``), 2 gives the L2 norm of it (``l2``).
        scores_scale: whether ``prune.group_score: all`` scores BatchNorm scales (gamma) too
            (``fpgm``: no — a distance between scalars says nothing about a filter).
    """

    name = None
    granularities = ALL
    needs = ("weights",)
    scope = None
    batches = None
    paper = ""
    group_power = 1
    scores_scale = True

    def scores_group(self) -> bool:
        """Whether the criterion can score every member of a channel group
        (``prune.group_score: all``): it reads weights (and their gradients) only, which
        consumers and BatchNorm scales have as well as producers; output activations and the
        scale after a layer belong to producers alone."""
        return not ({"activations", "bn"} & set(self.needs))

    @classmethod
    def from_config(cls, config: dict) -> "Criterion":
        """A criterion from :meth:`get_config`'s output (criteria take no arguments)."""
        extra = sorted(k for k in config if k != "name")
        if extra:
            raise RecipeError("prune.criterion", f"criterion `{cls.name}` takes no settings; remove "
                              f"{extra}.", config)
        return cls()

    def get_config(self) -> dict:
        """``{"name": ...}``: the registry name (criteria take no arguments)."""
        return {"name": self.name}

    def __call__(self, kernel, axis=None, **stats):
        """Scores ``kernel``: elementwise if ``axis`` is None, else one score per index of ``axis``."""
        raise TypeError(f"{type(self).__name__} must define __call__(kernel, axis=None, **stats).")

    def check(self, granularity: str, scope: str, path: str = "prune.criterion"):
        """Raises :class:`RecipeError` if this criterion cannot run at ``granularity``/``scope``.

        Args:
            granularity: a granularity kind (``"weight"``, ``"filter"``, ``"channel"``,
                ``"n:m"``, ``"block"``).
            scope: the scope the recipe asks for (``"layerwise"`` or ``"global"``).
            path: key path used in the error.
        """
        if granularity not in self.granularities:
            raise RecipeError(path, f"criterion `{self.name}` supports granularities "
                              f"{list(self.granularities)}, not `{granularity}`.", self.name)
        if self.scope is not None and scope != self.scope:
            raise RecipeError("prune.scope", f"criterion `{self.name}` is {self.scope} by definition "
                              f"({self.paper or 'see docs/criteria.md'}); remove `scope` or set "
                              f"scope: {self.scope}.", scope)

    def install(self, groups, plan: dict) -> int:
        """Training-time hook, run when pruning starts: e.g. a sparsity penalty on the weights
        the criterion reads (``slim``). Default: nothing.

        Args:
            groups: the channel groups this criterion prunes (``filter`` granularity).
            plan: the recipe's ``prune`` settings.

        Returns:
            How many variables changed (a compiled train step is rebuilt when > 0).
        """
        return 0

    def __repr__(self):
        return f"<criterion {self.name}>"


def require(stats: dict, key: str, criterion: str):
    """Returns ``stats[key]`` or raises a :class:`KPruneError` saying how to provide it."""
    value = stats.get(key)
    if value is None:
        what = {"activations": "activation statistics", "gradients": "gradient statistics",
                "gamma": "the scale (gamma) of a BatchNormalization after the layer"}[key]
        raise KPruneError(f"criterion `{criterion}` needs {what}, which were not provided. "
                          + ("Put a BatchNormalization (with scale=True) right after each pruned layer, "
                             "or choose another criterion." if key == "gamma" else
                             "Score through kprune.Pruner(model, data=ds) or "
                             "kprune.PruningCallback(data=ds), which collect them."))
    return value


def reduce_axis(x, axis):
    """Axes of ``x`` other than ``axis`` (for per-axis sums)."""
    axis = axis % x.ndim
    return tuple(i for i in range(x.ndim) if i != axis)
