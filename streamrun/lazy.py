"""numpy, imported on first use.

streamrun starts the engine before it imports numpy and MDAnalysis (the engine then
starts up while they load). Modules on that path write ``from .lazy import numpy as
np`` instead of ``import numpy as np``: the name is a module object that imports
numpy when one of its attributes is first read, then holds numpy's attributes
itself, so later reads cost what they cost on numpy (no proxy call per access).
numpy is never put in ``sys.modules`` in a lazy state: other libraries import the
real one.
"""

from __future__ import annotations

import importlib
import types


class _LazyModule(types.ModuleType):
    """Stands for the module of its name; imports it when first used."""

    def __getattr__(self, name):  # only for names not yet in this object's dict
        module = importlib.import_module(self.__name__)
        self.__dict__.update(module.__dict__)
        return getattr(module, name)


numpy = _LazyModule("numpy")
