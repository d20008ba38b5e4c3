"""What every progress coordinate is: declared options, prepare once, one row per frame.

A coordinate follows the shape of MDAnalysis' ``AnalysisBase``, cut to what a stream
needs. Its class declares its options (with help text, defaults and checks) in
:attr:`Coordinate.options`; :meth:`Coordinate.prepare` makes the selections once;
:meth:`Coordinate.compute` turns the current :class:`Frame` into a 1-D array of
values. The groups a coordinate lists in :meth:`Coordinate.whole_groups` are whole
in every :class:`Frame` (see :mod:`streamrun.pcoords.pbc`).

Adding a coordinate is one module: subclass :class:`Coordinate`, decorate it with
:func:`register`, and import the module in ``streamrun/pcoords/__init__.py``.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from typing import Any, ClassVar

from ..boundaries import NON_PERIODIC_EDGE
from ..errors import ConfigError
from ..lazy import numpy as np
from .pbc import BoxVectors

#: type name -> Coordinate subclass; filled by :func:`register`.
REGISTRY: dict[str, type["Coordinate"]] = {}

REQUIRED = object()


@dataclass(frozen=True)
class Option:
    """One key a coordinate accepts.

    Parameters
    ----------
    help : str
        One line for ``--help`` and the README.
    kind : str
        ``selection``, ``selections`` (a list), ``choice``, ``flag``, ``number``,
        ``integer``, ``path`` (a file, relative to the config's folder) or ``text``.
    default : object
        :data:`REQUIRED` when the key must be given.
    choices : tuple of str
        For ``choice``.
    minimum : float, optional
        For ``number``/``integer``: values must be above it (strictly if
        ``exclusive``).
    """

    help: str
    kind: str = "text"
    default: Any = REQUIRED
    choices: tuple = ()
    minimum: float | None = None
    exclusive: bool = False

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def parse(self, value, source, key, resolve_path):
        """Check one value from the config; return it in its Python form."""
        def bad(what):
            shown = repr(value)
            shown = shown if len(shown) <= 80 else shown[:77] + "..."
            return ConfigError(f"must be {what}, got {shown}", source=source, key=key)

        if self.kind == "selection":
            if not isinstance(value, str) or not value.strip():
                raise bad("an MDAnalysis selection string")
            return value
        if self.kind == "selections":
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
                raise bad("a list of MDAnalysis selection strings")
            return list(value)
        if self.kind == "choice":
            if isinstance(value, bool) or value is None:  # YAML reads 'none' as a string
                value = str(value).lower() if value is not None else "none"
            if not isinstance(value, str) or value.lower() not in self.choices:
                raise bad(" or ".join(self.choices))
            return value.lower()
        if self.kind == "flag":
            if not isinstance(value, bool):
                raise bad("true or false")
            return value
        if self.kind in ("number", "integer"):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                    not math.isfinite(value) or \
                    (self.kind == "integer" and not float(value).is_integer()):
                raise bad("an integer" if self.kind == "integer" else "a number")
            value = int(value) if self.kind == "integer" else float(value)
            if self.minimum is not None and (
                    value < self.minimum or (self.exclusive and value == self.minimum)):
                raise ConfigError(f"must be {'>' if self.exclusive else '>='} "
                                  f"{self.minimum:g}, got {value:g}", source=source,
                                  key=key)
            return value
        if self.kind == "path":
            if not isinstance(value, str) or not value:
                raise bad("a file path")
            return resolve_path(value, key)
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise bad("a string")
        return str(value)


class Coordinate:
    """Base class of a progress coordinate.

    Subclasses set :attr:`type`, :attr:`units`, :attr:`summary`, :attr:`options`
    and :attr:`pbc_note`, and implement :meth:`prepare` and :meth:`compute`.

    Parameters
    ----------
    key : str
        Config key this coordinate came from, e.g. ``pcoord[0]`` (for messages).
    name : str or None
        Column name; defaults to :attr:`type`.
    **options
        The values of :attr:`options`, already checked by :meth:`parse`.

    Attributes
    ----------
    columns : int
        Values per frame; known once row 0 was computed.
    """

    type: ClassVar[str] = ""
    units: ClassVar[str] = "Å"
    summary: ClassVar[str] = ""
    #: what is made whole and how periodic boundaries enter (README, --help)
    pbc_note: ClassVar[str] = ""
    options: ClassVar[dict[str, Option]] = {}
    columns = 1

    def __init__(self, key: str, name: str | None = None, **options):
        self.key = key
        self.name = name or self.type
        for option, value in options.items():
            setattr(self, option, value)

    # -- configuration ---------------------------------------------------------
    @classmethod
    def all_options(cls) -> dict[str, Option]:
        """Every key of this type, ``type`` and ``name`` included."""
        return {"type": Option(cls.type),
                "name": Option("column name", default=None),
                **cls.options}

    @classmethod
    def parse(cls, item: dict, source, key, resolve_path) -> dict:
        """Check a config mapping of this type; return its options with defaults.

        Raises
        ------
        ConfigError
            Unknown or missing keys, or values of the wrong kind.
        """
        allowed = cls.all_options()
        for k in item:
            if k not in allowed:
                close = difflib.get_close_matches(str(k), list(allowed), n=1)
                hint = f" Did you mean '{close[0]}'?" if close else ""
                raise ConfigError(f"unknown key for type {cls.type}.{hint} Allowed: "
                                  f"{', '.join(allowed)}.", source=source,
                                  key=f"{key}.{k}")
        out = {}
        for k, option in cls.options.items():
            if k in item:
                out[k] = option.parse(item[k], source, f"{key}.{k}", resolve_path)
            elif option.required:
                raise ConfigError(f"missing; it is required for type {cls.type} ({option.help})",
                                  source=source, key=f"{key}.{k}")
            else:
                out[k] = option.default
        name = item.get("name")
        if name is not None:
            out["name"] = Option("column name").parse(name, source, f"{key}.name",
                                                      resolve_path)
        cls.check(out, source, key)
        return out

    @classmethod
    def check(cls, options: dict, source, key) -> None:
        """Checks across options (override when options depend on each other)."""

    @classmethod
    def uses_box(cls, options: dict) -> bool:
        """True when the values use minimum images between atoms or groups (so an
        engine that streams no box must keep the volume fixed)."""
        return "pbc" in cls.options and options.get("pbc") is not False

    # -- lifecycle ------------------------------------------------------------
    def prepare(self, ctx) -> None:
        """Make selections and reference data once.

        Parameters
        ----------
        ctx : streamrun.pcoords.calculator.PrepareContext
            ``ctx.select(option)`` gives the AtomGroup of an option's selection,
            ``ctx.error(message, option)`` a ConfigError naming the key,
            ``ctx.reference(option, format_option)`` a Universe of a reference
            structure with the topology's atoms.
        """

    def whole_groups(self) -> list:
        """Groups that must be whole (each a whole molecule or a compact cluster)
        whenever :meth:`compute` runs, as (AtomGroup, key, selection) triples;
        by default those :meth:`group` selected."""
        return list(getattr(self, "_whole", []))

    def group(self, ctx, option, whole=True, along=None):
        """Select an option's atoms; remember them as a whole group if asked
        (``along``: the axes it must be whole along, e.g. (False, False, True) for a
        coordinate that uses its z only; default all)."""
        atoms = ctx.select(option)
        if whole:
            self._whole = getattr(self, "_whole", [])
            self._whole.append((atoms, f"{self.key}.{option}", getattr(self, option),
                                *(() if along is None else (tuple(along),))))
        return atoms

    def compute(self, frame: "Frame") -> np.ndarray:
        """Values of the current frame."""
        raise NotImplementedError

    def column_names(self) -> list[str]:
        if self.columns == 1:
            return [self.name]
        return [f"{self.name}[{i}]" for i in range(self.columns)]


def register(cls):
    """Class decorator: make a coordinate available as ``type: <cls.type>``."""
    REGISTRY[cls.type] = cls
    return cls


def _valid_box(dimensions):
    if dimensions is None or not np.all(np.asarray(dimensions[:3]) > 0):
        return None
    return dimensions


class Frame:
    """The frame a :meth:`Coordinate.compute` call sees.

    Positions come from arrays, not from the Universe: the atoms the tracker keeps
    whole (:class:`~streamrun.pcoords.pbc.WholeTracker`) from its whole positions,
    every other atom as streamed. Per group, where its atoms are found is worked
    out once, on its first use, so a frame costs what the groups cost, whatever
    the system size.

    Parameters
    ----------
    universe : MDAnalysis.Universe
        Its timestep holds the current frame (time, step, box); plugins read it.
    tracked : numpy.ndarray
        Sorted indices of the atoms kept whole.
    boundaries : streamrun.boundaries.Boundaries
        What the engine treats as periodic, and its box origin.

    Attributes
    ----------
    universe : MDAnalysis.Universe
    dimensions : numpy.ndarray or None
        The frame's box (MDAnalysis dimensions, Å and degrees), None without one.
    boundaries : streamrun.boundaries.Boundaries
    """

    def __init__(self, universe, tracked, boundaries):
        self.universe = universe
        self.boundaries = boundaries
        self._tracked = tracked
        self._plans = {}   # id(group) -> _GroupPlan
        self._shared = {}  # atom indices (bytes) -> _GroupPlan: equal groups share
        self._serial = 0   # frame counter: a plan's positions are this frame's
        self._raw = self._whole = self.dimensions = self._search = None
        self._vectors = BoxVectors()
        self._mask = np.array(boundaries.periodic, dtype=bool)

    def update(self, raw, whole, dimensions, search=None):
        """Point at the next frame: every atom as streamed (``raw``, (n_atoms, 3)),
        the tracked atoms whole (``whole``, (len(tracked), 3)), the box, and the box
        for distance functions (``search``: see
        :meth:`~streamrun.boundaries.Boundaries.search_box`)."""
        self._raw, self._whole = raw, whole
        self.dimensions = _valid_box(dimensions)
        self._search = search
        self._serial += 1

    def box(self, pbc=None, along=None):
        """The box for MDAnalysis' distance functions: None without a periodic
        dimension or when ``pbc`` is false; non-periodic box vectors, and those not
        in ``along`` (axes asked for), stretched so that no minimum image is taken
        along them."""
        if pbc is False or self._search is None or along is None or all(along):
            return None if pbc is False else self._search
        dims = np.array(self._search, dtype=np.float64)
        dims[:3][~np.asarray(along)] = NON_PERIODIC_EDGE
        return dims

    def in_box(self, point, pbc=None) -> np.ndarray:
        """A point relative to the engine's box origin, wrapped into the box along
        its periodic box vectors only (when ``pbc`` is not false)."""
        box, inv = self._vectors(self.dimensions)
        point = np.asarray(point, dtype=np.float64) - self.boundaries.origin_at(box)
        if pbc is False or box is None or not self._mask.any():
            return point
        frac = point @ inv
        frac[self._mask] -= np.floor(frac[self._mask])
        return frac @ box

    def _plan(self, group):
        plan = self._plans.get(id(group))
        if plan is None:
            key = group.ix.tobytes()
            plan = self._shared.get(key) or _GroupPlan(group, self._tracked)
            self._shared[key] = self._plans[id(group)] = plan
            plan.groups.append(group)  # keeps the group, and so its id, alive
        return plan

    def positions(self, group) -> np.ndarray:
        """Positions of an AtomGroup in this frame, float64, Å, read-only (shared
        by every coordinate that asks this frame); whole for the atoms the tracker
        keeps whole."""
        plan = self._plan(group)
        if plan.serial != self._serial:
            plan.positions = plan.take(self._raw, self._whole)
            plan.positions.flags.writeable = False
            plan.serial = self._serial
        return plan.positions

    def masses(self, group) -> np.ndarray:
        """The group's masses (float64), read from the topology once."""
        plan = self._plan(group)
        if plan.masses is None:
            plan.masses = np.asarray(group.masses, dtype=np.float64)
            plan.fractions = plan.masses / plan.masses.sum()
        return plan.masses

    def centre(self, group, center: str = "mass") -> np.ndarray:
        """Centre of mass (``mass``) or of geometry of a (whole) group, float64;
        as ``AtomGroup.center_of_mass`` / ``center_of_geometry``."""
        pos = self.positions(group)
        if len(pos) == 1:
            return pos[0].copy()
        if center == "mass":
            self.masses(group)
            return self._plans[id(group)].fractions @ pos
        return pos.mean(axis=0)


class _GroupPlan:
    """Where a group's atoms are in a :class:`Frame`'s arrays, found once."""

    __slots__ = ("groups", "take", "masses", "fractions", "positions", "serial")

    def __init__(self, group, tracked):
        ix = group.ix
        loc = np.minimum(np.searchsorted(tracked, ix), max(tracked.size - 1, 0))
        hit = tracked[loc] == ix if tracked.size else np.zeros(ix.size, bool)
        if hit.all():    # every atom kept whole
            self.take = lambda raw, whole: whole[loc]
        elif not hit.any():  # none: as streamed
            self.take = lambda raw, whole: raw[ix].astype(np.float64)
        else:
            where = np.flatnonzero(hit)
            loc = loc[hit]

            def take(raw, whole):
                pos = raw[ix].astype(np.float64)
                pos[where] = whole[loc]
                return pos
            self.take = take
        self.groups, self.masses, self.fractions = [], None, None
        self.positions, self.serial = None, -1


def along_molecule(ctx, coordinate, *groups) -> bool:
    """True when ``groups`` are of one molecule and the coordinate is measured along
    it (kept whole, no minimum image): unless ``pbc: true`` asks for the minimum
    image anyway."""
    return getattr(coordinate, "pbc", None) is not True and ctx.one_molecule(*groups)


def need_masses(ctx, group, option):
    """Refuse mass weighting when the topology has no (positive) masses."""
    masses = getattr(group, "masses", None)
    if masses is None or not np.all(np.asarray(masses) > 0):
        raise ctx.error("the topology has no masses for these atoms; use center: "
                        "geometry (or weights: none), or a topology with masses",
                        option)


AXES = Option("Cartesian components used: x, y, z, xy, xz, yz or xyz (default); the "
              "minimum image and the half-box rule apply along these only", "choice",
              "xyz", ("xyz", "x", "y", "z", "xy", "xz", "yz"))


def axes_mask(axes: str) -> tuple:
    """``xy`` -> (True, True, False)."""
    return tuple(a in axes for a in "xyz")


CENTER = Option("mass (default) or geometry: the group's centre", "choice", "mass",
                ("mass", "geometry"))
PBC = Option("minimum images along the engine's periodic dimensions (default: as "
             "the engine; false: none; true where the system has no periodic "
             "dimension is an error)", "flag", None)
GROUP_A = Option("MDAnalysis selection of the first group", "selection")
GROUP_B = Option("MDAnalysis selection of the second group", "selection")
