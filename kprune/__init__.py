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


def _kprune_initializing(besides: str = "") -> bool:
    """Whether a kprune module (other than ``besides``) is being executed right now (an import
    of it has not finished)."""
    for name, module in list(_sys.modules.items()):
        if name == besides or not (name == "kprune" or name.startswith("kprune.")):
            continue
        if getattr(getattr(module, "__spec__", None), "_initializing", False):
            return True
    return False


def _register_with_keras(besides: str = ""):
    """Import the modules that register kprune's Keras classes. When Keras is imported by a
    kprune module that is itself being imported (``from kprune.wrappers import PruneWrapper``
    first thing), those modules would need the half-executed one: registration then waits until
    that outermost kprune module has finished executing (:class:`_ImportHook`)."""
    import importlib
    global _registered
    if _registered:
        return
    if any(name not in _sys.modules for name in _REGISTERING) and _kprune_initializing(besides):
        _install_hook()  # the hook retries when the kprune module being executed has finished
        return
    for module in _REGISTERING:
        importlib.import_module(module)
    _registered = True


_registered = False


class _ImportHook:
    """A ``sys.meta_path`` finder that finds what the other finders find, and runs code after
    two kinds of module have executed: ``keras`` and any ``kprune.*`` module; once Keras is
    imported, each of them tries :func:`_register_with_keras` (which waits while another kprune
    module is still executing). It removes itself once kprune is registered. A
    ``find_spec("keras")`` that only checks whether Keras exists returns the real spec and
    consumes nothing."""

    _busy = False

    def find_spec(self, name, path=None, target=None):
        if self._busy or _registered or not (name == "keras" or name.startswith("kprune.")):
            return None
        import importlib.util
        self._busy = True
        try:
            spec = importlib.util.find_spec(name)  # what the other finders find
        finally:
            self._busy = False
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        exec_module = spec.loader.exec_module

        def exec_then_register(module):
            exec_module(module)
            if "keras" in _sys.modules:
                _register_with_keras(besides=name)
            if _registered and self in _sys.meta_path:
                _sys.meta_path.remove(self)

        spec.loader.exec_module = exec_then_register
        return spec


def _install_hook():
    if not any(isinstance(f, _ImportHook) for f in _sys.meta_path):
        _sys.meta_path.insert(0, _ImportHook())


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


# last, so that the modules registration imports find this one complete
if "keras" in _sys.modules:
    _register_with_keras(besides="kprune")
else:
    _install_hook()
