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

import sys as _sys  # noqa: E402

from kprune.errors import (DataError, ExportError, GraphError, KPruneError,  # noqa: E402
                           RecipeError, UnsupportedLayerError)
from kprune.config.recipe import Recipe  # noqa: E402

__version__ = "0.1.0"

# ``import kprune`` does not import Keras/TensorFlow (seconds), so that ``kprune-cli --help``
# and the recipe tools start at once. The Keras-backed names load on first use (``_LAZY``),
# and kprune's serializable classes register as soon as Keras is imported by anyone
# (``_register_with_keras``), so ``import kprune; keras.saving.load_model("wrapped.keras")``
# still needs no ``custom_objects``.
_REGISTERING = ("kprune.wrappers", "kprune.pruning.pruner", "kprune.callbacks")


def _kprune_initializing() -> bool:
    """Whether a kprune module is being executed right now (an import of it has not finished)."""
    for name, module in list(_sys.modules.items()):
        if (name == "kprune" or name.startswith("kprune.")) and getattr(getattr(module, "__spec__", None),
                                                                         "_initializing", False):
            return True
    return False


def _register_with_keras():
    """Import the modules that register kprune's Keras classes. When Keras is imported by a
    kprune module that is itself being imported (``from kprune.wrappers import PruneWrapper``
    first thing), those modules would need the half-executed one: registration then waits for
    the next import made after every kprune module has finished (:class:`_RegisterWhenIdle`)."""
    import importlib
    if any(name not in _sys.modules for name in _REGISTERING) and _kprune_initializing():
        if not any(isinstance(f, _RegisterWhenIdle) for f in _sys.meta_path):
            _sys.meta_path.insert(0, _RegisterWhenIdle())
        return
    for module in _REGISTERING:
        importlib.import_module(module)


class _RegisterWhenIdle:
    """A ``sys.meta_path`` finder that finds nothing: at the first import made while no kprune
    module is executing, it removes itself and runs :func:`_register_with_keras`."""

    def find_spec(self, name, path=None, target=None):
        if self in _sys.meta_path and not _kprune_initializing():
            _sys.meta_path.remove(self)
            _register_with_keras()
        return None


class _AfterKerasImport:
    """A ``sys.meta_path`` finder: runs :func:`_register_with_keras` once ``keras`` is imported.

    It stays installed until Keras really executes (a ``find_spec("keras")`` that only checks
    whether Keras exists does not consume it), then removes itself.
    """

    _busy = False

    def find_spec(self, name, path=None, target=None):
        if name != "keras" or self._busy:
            return None
        import importlib.util
        self._busy = True
        try:
            spec = importlib.util.find_spec("keras")
        finally:
            self._busy = False
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        exec_keras, finder = spec.loader.exec_module, self

        def exec_module(module):
            exec_keras(module)
            if finder in _sys.meta_path:
                _sys.meta_path.remove(finder)
            _register_with_keras()

        spec.loader.exec_module = exec_module
        return spec


if "keras" in _sys.modules:
    _register_with_keras()
elif not any(isinstance(f, _AfterKerasImport) for f in _sys.meta_path):
    _sys.meta_path.insert(0, _AfterKerasImport())


_LAZY = {
    "wrap": ("kprune.wrappers", "wrap"),
    "strip": ("kprune.wrappers", "strip"),
    "sparsity": ("kprune.wrappers", "sparsity"),
    "PruneWrapper": ("kprune.wrappers", "PruneWrapper"),
    "Pruner": ("kprune.pruning.pruner", "Pruner"),
    "PruningCallback": ("kprune.callbacks", "PruningCallback"),
    "count": ("kprune.counting", "count"),
    "groups": ("kprune.graph", "groups"),
    "compact": ("kprune.graph", "compact"),
    "LotteryTicket": ("kprune.callbacks.lottery", "LotteryTicket"),
    "recalibrate_bn": ("kprune.pruning.batchnorm", "recalibrate_bn"),
    "distill_finetune": ("kprune.models.distill", "distill_finetune"),
}
_SUBPACKAGES = ("config", "wrappers", "criteria", "schedules", "pruning", "graph", "counting", "callbacks",
                "search", "models", "data", "runner", "export")


def __getattr__(name):
    # heavier modules load on first use
    import importlib
    if name in _LAZY:
        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value  # later lookups skip __getattr__
        return value
    if name == "layers":  # the layer registry: kprune.layers.register(LayerClass, rule)
        return importlib.import_module("kprune.graph.layers")
    if name in _SUBPACKAGES:
        return importlib.import_module(f"kprune.{name}")
    raise AttributeError(f"module 'kprune' has no attribute {name!r}")


__all__ = ["Recipe", "wrap", "strip", "compact", "count", "sparsity", "groups", "PruneWrapper", "LotteryTicket",
           "recalibrate_bn", "distill_finetune",
           "Pruner", "PruningCallback", "KPruneError", "RecipeError", "UnsupportedLayerError",
           "GraphError", "DataError", "ExportError"]
