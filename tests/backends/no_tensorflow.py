"""Makes TensorFlow look uninstalled in this process (for the subprocesses of the backend tests).

``block()`` must run before Keras is imported: Keras imports TensorFlow, when installed, to
recognise ``tf.TensorShape`` in ``get_config``, so ``"tensorflow" in sys.modules`` is no test
of kprune on a machine that has it. After ``block()``:

* ``importlib.util.find_spec("tensorflow")`` returns None, as without the package (kprune,
  Keras and PyTorch's dynamo probe with it);
* ``import tensorflow`` (or any submodule) raises ModuleNotFoundError.
"""

import importlib.abc
import importlib.machinery
import importlib.util
import sys


def _blocked(name: str) -> bool:
    return name == "tensorflow" or name.startswith("tensorflow.")


class _NoTensorFlow(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path=None, target=None):
        return importlib.machinery.ModuleSpec(name, self) if _blocked(name) else None

    def create_module(self, spec):
        raise ModuleNotFoundError(f"No module named {spec.name!r} (blocked by the backend test)", name=spec.name)

    def exec_module(self, module):  # never reached
        raise ModuleNotFoundError(module.__name__)


def block() -> None:
    if any(isinstance(f, _NoTensorFlow) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _NoTensorFlow())
    find_spec = importlib.util.find_spec
    importlib.util.find_spec = lambda name, package=None: None if _blocked(name) else find_spec(name, package)
