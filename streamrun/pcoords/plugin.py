"""User-written coordinates: ``f(universe, *groups)`` returning a number or a 1-D
array, imported from a module or a .py file."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from pathlib import Path

from ..errors import ConfigError
from .base import Coordinate, Option, register


def load_function(spec: str, base_dir: Path, key: str, source):
    """Import ``package.module:function`` or ``path/to/file.py:function``."""
    if ":" not in spec:
        raise ConfigError(f"{spec!r} must look like 'package.module:function' or "
                          f"'path/to/file.py:function'", source=source, key=key)
    where, _, attr = spec.rpartition(":")
    try:
        if where.endswith(".py") or "/" in where or "\\" in where:
            path = Path(where)
            if not path.is_absolute():
                path = base_dir / path
            if not path.is_file():
                raise ConfigError(f"plugin file '{path}' does not exist",
                                  source=source, key=key)
            modname = f"streamrun_plugin_{path.stem}_{abs(hash(str(path)))}"
            spec_ = importlib.util.spec_from_file_location(modname, path)
            module = importlib.util.module_from_spec(spec_)
            sys.modules[modname] = module
            spec_.loader.exec_module(module)
        else:
            module = importlib.import_module(where)
    except ConfigError:
        raise
    except Exception as e:
        raise ConfigError(f"could not import plugin {where!r}: "
                          f"{type(e).__name__}: {e}", source=source, key=key) from None
    func = getattr(module, attr, None)
    if not callable(func):
        raise ConfigError(f"plugin module {where!r} has no function {attr!r}",
                          source=source, key=key)
    return func


@register
class Plugin(Coordinate):
    """A user function ``f(universe, *groups)`` returning a number or a 1-D array.

    ``groups`` are the AtomGroups of ``selections``, made once and whole (each a
    molecule or a compact cluster) whenever ``f`` runs. The Universe holds the
    current frame: ``universe.trajectory.ts.frame`` is the row (0 = the start
    structure), ``ts.time`` the time in ps, ``ts.data['step']`` the MD step and
    ``universe.dimensions`` the box.
    """

    type = "plugin"
    units = "user"
    summary = "your function f(universe, *groups) -> number or 1-D array"
    pbc_note = ("each selection made whole (unless whole: false); the function "
                "applies minimum images itself with universe.dimensions: None "
                "without a periodic dimension, non-periodic edges stretched to "
                "1e6 Å in a partly periodic box")
    options = {"function": Option("'package.module:function' or "
                                  "'path/to/file.py:function'", "text"),
               "selections": Option("list of MDAnalysis selections passed as whole "
                                    "AtomGroups after the Universe", "selections", []),
               "columns": Option("number of values the function returns (default: "
                                 "found from the start structure)", "integer", None,
                                 minimum=1),
               "whole": Option("make each selection whole before the call (default "
                               "true); false passes the atoms as the engine sent them, "
                               "for functions that only use minimum-image pair "
                               "distances of large groups", "flag", True)}

    def __init__(self, key, name=None, base_dir=Path("."), columns=None, **options):
        super().__init__(key, name or str(options["function"]).rpartition(":")[2],
                         **options)
        self.spec, self.base_dir = self.function, base_dir
        self.expected_columns = columns  # self.columns is learned from row 0

    def prepare(self, ctx):
        self.func = load_function(self.spec, self.base_dir, f"{self.key}.function",
                                  ctx._calc.source)
        self.groups = []
        self._whole = []
        for i, s in enumerate(self.selections):
            group = ctx.select(f"selections[{i}]", selection=s)
            self.groups.append(group)
            if self.whole:
                self._whole.append((group, f"{self.key}.selections[{i}]", s))
        try:
            inspect.signature(self.func).bind(ctx.universe, *self.groups)
        except TypeError:
            raise ctx.error(f"{self.spec} cannot be called as f(universe"
                            f"{', group' * len(self.groups)}) with the "
                            f"{len(self.groups)} selection(s) given",
                            "function") from None

    #: the function reads the Universe, so the calculator puts whole positions there
    reads_universe = True

    def compute(self, frame):
        return self.func(frame.universe, *self.groups)
