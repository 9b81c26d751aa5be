"""kprune: pruning for Keras 3 — masks, dependency-aware filter removal, search, TFLite.

The public API (see DESIGN.md)::

    recipe = kprune.Recipe.from_yaml("recipes/resnet18.yaml")
    model = kprune.wrap(model, recipe)
    model.fit(ds, callbacks=[kprune.PruningCallback()])
    dense = kprune.strip(model)
    small = kprune.compact(model)
    kprune.count(small); kprune.sparsity(model); kprune.groups(model)
"""

import os as _os

_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from kprune.errors import (DataError, ExportError, GraphError, KPruneError,  # noqa: E402
                           RecipeError, UnsupportedLayerError)
from kprune.recipe import Recipe  # noqa: E402
from kprune.wrappers import PruneWrapper, sparsity, strip, wrap  # noqa: E402
from kprune.pruner import Pruner  # noqa: E402
from kprune.callbacks import PruningCallback  # noqa: E402

__version__ = "0.1.0"


def __getattr__(name):
    # heavier modules load on first use
    if name == "count":
        from kprune.counting import count
        return count
    if name == "groups":
        from kprune.graph import groups
        return groups
    if name == "LotteryTicket":
        from kprune.lottery import LotteryTicket
        return LotteryTicket
    if name == "recalibrate_bn":
        from kprune.batchnorm import recalibrate_bn
        return recalibrate_bn
    if name == "compact":
        from kprune.surgery import compact
        return compact
    if name in ("models", "data", "counting", "graph", "surgery", "export", "criteria", "schedules",
                "allocation", "selectors", "search", "statistics", "granularity", "lottery"):
        import importlib
        return importlib.import_module(f"kprune.{name}")
    raise AttributeError(f"module 'kprune' has no attribute {name!r}")


__all__ = ["Recipe", "wrap", "strip", "compact", "count", "sparsity", "groups", "PruneWrapper", "LotteryTicket",
           "recalibrate_bn",
           "Pruner", "PruningCallback", "KPruneError", "RecipeError", "UnsupportedLayerError",
           "GraphError", "DataError", "ExportError"]
