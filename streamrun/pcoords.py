"""Progress coordinates: from one frame's positions to one pcoord row.

Each coordinate follows the shape of MDAnalysis' AnalysisBase, cut to what a stream
needs: :meth:`Coordinate.prepare` once (selections are made here, never per frame),
then :meth:`Coordinate.compute` per frame, returning a 1-D array of ``columns``
values. :class:`PcoordCalculator` holds the Universe whose single timestep is
overwritten with each streamed frame. Lengths are in Å.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
import warnings
from pathlib import Path

import numpy as np

from .errors import ConfigError, PcoordError


class Coordinate:
    """Base class of a progress coordinate.

    Attributes
    ----------
    name : str
        Column name (one name; several columns get ``name[i]``).
    columns : int
        Number of values per frame; known after :meth:`prepare`.
    key : str
        Config key this coordinate came from (for error messages).
    """

    columns = 1

    def __init__(self, key: str, name: str):
        self.key, self.name = key, name

    def prepare(self, universe, source) -> None:
        """Select atoms etc. Raise :class:`ConfigError` naming ``self.key``."""

    def compute(self, universe) -> np.ndarray:
        raise NotImplementedError

    def column_names(self) -> list[str]:
        if self.columns == 1:
            return [self.name]
        return [f"{self.name}[{i}]" for i in range(self.columns)]


def _select(universe, selection, key, source):
    try:
        group = universe.select_atoms(selection)
    except Exception as e:  # MDAnalysis raises SelectionError, ValueError, ...
        raise ConfigError(f"selection {selection!r} is not valid MDAnalysis selection "
                          f"syntax: {e}", source=source, key=key) from None
    if len(group) == 0:
        raise ConfigError(f"selection {selection!r} selects no atoms in the topology; "
                          f"check names/types against the topology file",
                          source=source, key=key)
    return group


class Distance(Coordinate):
    """Distance between the centres of two atom groups, in Å.

    The minimum-image convention is applied whenever the frame has a box and
    ``pbc`` is true (IMD v3 streams the box every frame).
    """

    def __init__(self, key, name, a, b, center="mass", pbc=True):
        super().__init__(key, name or "distance")
        self.sel_a, self.sel_b, self.center, self.pbc = a, b, center, pbc

    def prepare(self, universe, source):
        from MDAnalysis.lib.distances import calc_bonds

        self._calc_bonds = calc_bonds
        self.a = _select(universe, self.sel_a, f"{self.key}.a", source)
        self.b = _select(universe, self.sel_b, f"{self.key}.b", source)
        if self.center == "mass":
            for group, k in ((self.a, "a"), (self.b, "b")):
                if not hasattr(group, "masses") or group.masses.sum() <= 0:
                    raise ConfigError("the topology has no masses for these atoms; "
                                      "use center: geometry or a topology with masses",
                                      source=source, key=f"{self.key}.{k}")

    def _centre(self, group):
        if len(group) == 1:
            return group.positions[0]
        if self.center == "mass":
            return group.center_of_mass()
        return group.center_of_geometry()

    def compute(self, universe):
        box = universe.dimensions if self.pbc else None
        if box is not None and not np.all(box[:3] > 0):
            box = None
        ca = np.asarray(self._centre(self.a), dtype=np.float64)
        cb = np.asarray(self._centre(self.b), dtype=np.float64)
        return np.atleast_1d(self._calc_bonds(ca, cb, box=box))


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


class Plugin(Coordinate):
    """A user function ``f(universe, *groups)`` returning a number or a 1-D array.

    ``groups`` are the AtomGroups of ``selections``, made once. The Universe's
    positions (and box) are the current frame's.
    """

    def __init__(self, key, name, function, selections=(), columns=None,
                 base_dir=Path(".")):
        super().__init__(key, name or function.rpartition(":")[2])
        self.spec, self.selections = function, list(selections)
        self.expected_columns = columns
        self.base_dir = base_dir

    def prepare(self, universe, source):
        self.func = load_function(self.spec, self.base_dir, f"{self.key}.function",
                                  source)
        self.groups = [_select(universe, s, f"{self.key}.selections[{i}]", source)
                       for i, s in enumerate(self.selections)]
        try:
            inspect.signature(self.func).bind(universe, *self.groups)
        except TypeError:
            raise ConfigError(f"{self.spec} cannot be called as f(universe"
                              f"{', group' * len(self.groups)}) with the "
                              f"{len(self.groups)} selection(s) given",
                              source=source, key=f"{self.key}.function") from None

    def compute(self, universe):
        return self.func(universe, *self.groups)


def build_coordinate(spec, base_dir):
    options = dict(spec.options)
    name = options.pop("name", None)
    if spec.type == "distance":
        return Distance(spec.key, name, **options)
    if spec.type == "plugin":
        return Plugin(spec.key, name, base_dir=base_dir, **options)
    raise ValueError(spec.type)


class PcoordCalculator:
    """Turns frames into pcoord rows for a configured list of coordinates.

    Parameters
    ----------
    config : streamrun.config.Config

    Attributes
    ----------
    universe : MDAnalysis.Universe
        Topology plus the start structure; each frame overwrites its timestep.
    n_atoms : int
    columns : int
    """

    def __init__(self, config):
        import MDAnalysis as mda

        self.source = config.source
        kwargs = dict(config.topology_options)
        if config.topology_format:
            kwargs["topology_format"] = config.topology_format
        if config.start is not None and not config.start.is_file():
            raise ConfigError(f"start structure '{config.start}' does not exist; check "
                              f"the path (and the files: set-up that should make it)",
                              source=config.source,
                              key="get_pcoord.structure" if config.mode == "pcoord"
                              else "start")
        coords = [] if config.start is None else [str(config.start)]
        if config.start_format:
            kwargs["format"] = config.start_format
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # MDAnalysis guesses; fine for pcoords
            try:
                self.universe = mda.Universe(str(config.topology), *coords, **kwargs)
            except Exception as e:
                what = f"topology '{config.topology}'" + (
                    f" with start structure '{config.start}'" if coords else "")
                raise ConfigError(f"MDAnalysis could not read the {what}: "
                                  f"{type(e).__name__}: {e}. Check the file, "
                                  f"topology_format and topology_options",
                                  source=config.source,
                                  key="start" if coords else "topology") from None
        self.n_atoms = len(self.universe.atoms)
        self._ts = self.universe.trajectory.ts
        self.start_dimensions = self.universe.dimensions
        # The pcoord first, then each aux dataset: one row holds them all and
        # :meth:`split` cuts it into datasets.
        specs = {"pcoord": config.pcoords,
                 **{name: aux_specs for name, (aux_specs, _) in config.aux.items()}}
        self.datasets = {name: [build_coordinate(s, config.base_dir) for s in group]
                         for name, group in specs.items()}
        self.coordinates = [c for group in self.datasets.values() for c in group]
        for c in self.coordinates:
            c.prepare(self.universe, config.source)
        self.columns = None
        self._box_key = None

    def _evaluate(self, frame_label):
        values = []
        for c in self.coordinates:
            try:
                v = np.asarray(c.compute(self.universe), dtype=np.float64).ravel()
            except Exception as e:
                raise PcoordError(f"{c.key} ({c.name}) failed on {frame_label}: "
                                  f"{type(e).__name__}: {e}") from e
            if self.columns is None:  # first call (start structure): learn widths
                expected = getattr(c, "expected_columns", None)
                if expected is not None and v.size != expected:
                    raise PcoordError(f"{c.key} ({c.name}) returned {v.size} values "
                                      f"but columns: {expected} is configured")
                c.columns = v.size
            elif v.size != c.columns:
                raise PcoordError(f"{c.key} ({c.name}) returned {v.size} values on "
                                  f"{frame_label}, but {c.columns} on the start "
                                  f"structure; it must return the same number")
            values.append(v)
        row = np.concatenate(values)
        if not np.all(np.isfinite(row)):
            raise PcoordError(f"non-finite pcoord value {row.tolist()} on {frame_label}")
        return row

    def start_row(self) -> np.ndarray:
        """Row 0: the coordinates of the start structure."""
        row = self._evaluate("the start structure")
        self.columns = row.size
        return row

    def frame_row(self, positions, box=None, label="a frame") -> np.ndarray:
        """Row for one streamed frame.

        Parameters
        ----------
        positions : numpy.ndarray, shape (n_atoms, 3)
            Å; copied into the Universe's timestep.
        box : numpy.ndarray, shape (3, 3), optional
            Box vectors in Å (IMD v3). Without it the start structure's box is kept.
        """
        ts = self._ts
        if isinstance(positions, np.ndarray) and positions.dtype == np.float32 and \
                positions.flags.c_contiguous and positions.shape == ts._pos.shape:
            # No copy: imdclient keeps the frame until the next get_imdframe(), and
            # the row is computed before that (saves ~70 µs per 100k-atom frame).
            ts._pos = positions
            ts.has_positions = True
        else:
            ts.positions = positions
        if box is not None:
            key = np.asarray(box).tobytes()
            if key != self._box_key:  # NVT: the box never changes
                from MDAnalysis.lib.mdamath import triclinic_box

                ts.dimensions = triclinic_box(*np.asarray(box, dtype=np.float64))
                self._box_key = key
        return self._evaluate(label)

    def column_names(self, dataset="pcoord") -> list[str]:
        """Column names of one dataset (``pcoord`` or an aux name)."""
        return [n for c in self.datasets[dataset] for n in c.column_names()]

    def split(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """Cut full rows (shape (n, columns)) into {dataset: rows}; needs
        :meth:`start_row` to have run (it learns each coordinate's width)."""
        out, first = {}, 0
        for name, group in self.datasets.items():
            width = sum(c.columns for c in group)
            out[name] = rows[:, first:first + width]
            first += width
        return out
