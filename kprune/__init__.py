"""kprune: pruning for Keras 3 — masks, dependency-aware filter removal, search, TFLite.

The public API (see docs/architecture.md for the layout of the package)::

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
from kprune.config.recipe import Recipe  # noqa: E402
from kprune.wrappers import PruneWrapper, sparsity, strip, wrap  # noqa: E402
from kprune.pruning.pruner import Pruner  # noqa: E402
from kprune.callbacks import PruningCallback  # noqa: E402

__version__ = "0.1.0"


_LAZY = {
    "count": ("kprune.counting", "count"),
    "groups": ("kprune.graph", "groups"),
    "compact": ("kprune.graph", "compact"),
    "LotteryTicket": ("kprune.callbacks.lottery", "LotteryTicket"),
    "recalibrate_bn": ("kprune.pruning.batchnorm", "recalibrate_bn"),
}
_SUBPACKAGES = ("config", "wrappers", "criteria", "schedules", "pruning", "graph", "counting", "callbacks",
                "search", "models", "data", "runner", "export")


def __getattr__(name):
    # heavier modules load on first use
    import importlib
    if name in _LAZY:
        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    if name == "layers":  # the layer registry: kprune.layers.register(LayerClass, rule)
        return importlib.import_module("kprune.graph.layers")
    if name in _SUBPACKAGES:
        return importlib.import_module(f"kprune.{name}")
    raise AttributeError(f"module 'kprune' has no attribute {name!r}")


__all__ = ["Recipe", "wrap", "strip", "compact", "count", "sparsity", "groups", "PruneWrapper", "LotteryTicket",
           "recalibrate_bn",
           "Pruner", "PruningCallback", "KPruneError", "RecipeError", "UnsupportedLayerError",
           "GraphError", "DataError", "ExportError"]
