"""From one frame's positions to one row of every configured coordinate.

:class:`PcoordCalculator` holds the Universe (topology + start structure) whose
single timestep each streamed frame overwrites, as the engine sent it (a trajectory
written from the stream keeps that). The atoms of every group the coordinates need
whole are followed by :class:`~streamrun.pcoords.pbc.WholeTracker`; the built-in
coordinates read them from a :class:`~streamrun.pcoords.base.Frame`. For plugins,
which read the Universe, the whole positions are written into the timestep while
they run and put back afterwards.
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError, PcoordError
from ..lazy import numpy as np
from .base import REGISTRY, Frame
from .pbc import GuessedBonds, WholeTracker, bonded_fragments


#: Topologies this process holds, by file identity (see :func:`load_topology`).
_TOPOLOGIES: dict = {}


@dataclass
class _Held:
    """A topology this process keeps for its next Universe when the on-disk cache
    does not hold it: pickled (a Universe unpickles its own copy: 0.22 s for a
    1M-atom topology with bonds, a third of ``Topology.copy()``), or as a Topology
    when MDAnalysis cannot pickle it. Neither when the cache holds it: the next
    Universe reads it from there (the process keeps tens of MiB less, 65 for that
    topology)."""

    blob: object
    topology: object
    outcome: object  # topocache.Outcome

    def fresh(self):
        """A Topology of the caller's own, or None: take it from the cache."""
        if self.blob is not None:
            import pickle

            return pickle.loads(self.blob)
        return None if self.topology is None else self.topology.copy()


def parsed_topology(path, fmt=None, options=None):
    """The parsed topology of ``path``, a Topology of the caller's own (see
    :func:`load_topology`)."""
    return load_topology(path, fmt, options)[0]


def load_topology(path, fmt=None, options=None):
    """The parsed topology of ``path`` and what the on-disk cache did with it.

    The topology is parsed once per simulation: a segment takes it from the
    on-disk cache (:mod:`streamrun.topocache`) once a segment parsed that file. A
    process remembers each file it read while the file, its format and options
    are unchanged (a WESTPA worker on the warm path runs many segments with one
    topology: only their start coordinates differ), and keeps the topology itself
    when the cache cannot. Each call returns a Topology of its own.

    Parameters
    ----------
    path : pathlib.Path
    fmt : str, optional
        ``topology_format``.
    options : dict, optional
        ``topology_options`` (keyword arguments of the parser).

    Returns
    -------
    topology : MDAnalysis.core.topology.Topology
    outcome : streamrun.topocache.Outcome
    """
    from MDAnalysis.core._get_readers import get_parser_for

    from .. import topocache

    options = dict(options or {})
    fmt = fmt or lammps_data_format(path, "topology")
    st = path.stat()
    key = (str(path), st.st_ino, st.st_size, st.st_mtime_ns, fmt, repr(sorted(
        options.items())))
    held = _TOPOLOGIES.get(key)
    if held is not None:
        topology = held.fresh()
        if topology is not None:
            return topology, held.outcome
    parser = get_parser_for(str(path), format=fmt)

    def parse():
        with parser(str(path)) as p:
            return p.parse(**options)

    topology, blob, outcome = topocache.fetch(
        path, f"{parser.__module__}.{parser.__qualname__}", options, parse)
    _TOPOLOGIES.clear()  # one topology per simulation: keep the latest
    if outcome.state == "off":
        _TOPOLOGIES[key] = _Held(blob, topology.copy() if blob is None else None,
                                 outcome)
    else:
        _TOPOLOGIES[key] = _Held(None, None, outcome)
    return topology, outcome


class PrepareContext:
    """What :meth:`Coordinate.prepare` receives for one coordinate.

    Attributes
    ----------
    universe : MDAnalysis.Universe
    coordinate : Coordinate
    """

    def __init__(self, calculator, coordinate):
        self.universe = calculator.universe
        self.coordinate = coordinate
        self._calc = calculator

    def error(self, message, option=None) -> ConfigError:
        """A ConfigError naming this coordinate's key (and option)."""
        key = self.coordinate.key + (f".{option}" if option else "")
        return ConfigError(message, source=self._calc.source, key=key)

    def select(self, option, selection=None, universe=None):
        """The AtomGroup of an option's selection (or of ``selection``, reported
        under ``option``); never empty."""
        selection = getattr(self.coordinate, option) if selection is None \
            else selection
        universe = universe or self.universe
        try:
            group = universe.select_atoms(selection)
        except Exception as e:  # SelectionError, ValueError, NoDataError, ...
            reason = str(e)
            missing = re.search(r"has no attribute '(\w+)'", reason)
            if isinstance(e, AttributeError) and missing:
                # MDAnalysis 2.x: 'Topology' object has no attribute 'names'
                raise self.error(
                    f"selection {selection!r}: the topology "
                    f"'{self._calc.config.topology}' has no atom "
                    f"{missing.group(1)} (it has: {_attributes(universe)}); select "
                    f"with what it has (a LAMMPS data file: 'type 3', 'id 1' for "
                    f"atom IDs, 'resid 1' for molecule IDs), or give a topology with "
                    f"{missing.group(1)}", option) from None
            if "NoDataError" in type(e).__name__ or "has no" in reason:
                hint = (f"the topology lacks what it refers to ({reason}); select "
                        f"with what the topology has (e.g. type, index, resid)")
            else:
                hint = f"not valid MDAnalysis selection syntax ({reason})"
            raise self.error(f"selection {selection!r}: {hint}", option) from None
        if len(group) == 0:
            raise self.error(f"selection {selection!r} selects no atoms in the "
                             f"topology; check names/types against the topology file",
                             option)
        return group

    def box(self, dimensions, pbc=None):
        """The box for MDAnalysis' distance functions on a structure whose box is
        ``dimensions`` (e.g. a reference), under the engine's boundaries."""
        return None if pbc is False else self._calc.boundaries.search_box(dimensions)

    def one_molecule(self, *groups) -> bool:
        """True when every atom of ``groups`` belongs to one molecule (one bonded
        fragment of the topology): such groups are measured along the molecule,
        which is kept whole, never by a minimum image between them."""
        ix = np.concatenate([g.ix for g in groups])
        labels = self._calc.fragments(ix)
        if labels is None:
            return False
        return np.unique(labels[0][ix]).size == 1

    def reference(self, option, format_option=None):
        """A Universe of the reference structure named by ``option`` (the topology
        with the reference's coordinates; default the topology's own), with the
        coordinate's whole groups made whole."""
        path = getattr(self.coordinate, option)
        fmt = getattr(self.coordinate, format_option, None) if format_option else None
        return self._calc.reference_universe(path, fmt, self.coordinate.key + "."
                                             + option)


def one_line(error, limit=400) -> str:
    """An exception as one line for a message: MDAnalysis' messages span lines and
    end in links and a list of every format (the key's own check names those)."""
    text = " ".join(str(error).split())
    for tail in (" You can use 'Universe(topology", " See https://",
                 " For missing formats", " You can supply a description of the "
                 "atom_style"):
        text = text.split(tail)[0]
    if len(text) > limit:
        text = text[:limit - 1] + "…"
    return f"{type(error).__name__}: {text}"


def _has_reader(path, fmt) -> bool:
    """True when MDAnalysis reads coordinates from ``path`` (in format ``fmt``, by
    default its suffix's), as ``mda.Universe(path)`` decides it."""
    from MDAnalysis.core._get_readers import get_reader_for

    try:
        get_reader_for(str(path), format=fmt)
    except (ValueError, TypeError):
        return False
    return True


def lammps_data_format(path, kind) -> str | None:
    """``DATA`` for a LAMMPS data file named the LAMMPS way, ``data.NAME`` (as in
    LAMMPS' examples), whose suffix is no format MDAnalysis knows for ``kind``
    (``topology`` or ``coordinates``); None otherwise (MDAnalysis goes by the
    suffix)."""
    from MDAnalysis.core._get_readers import _PARSERS, _READERS

    if path is None:
        return None
    name = Path(path).name
    if not name.lower().startswith("data.") or not Path(name).suffix:
        return None
    known = _PARSERS if kind == "topology" else _READERS
    return None if Path(name).suffix[1:].upper() in known else "DATA"


#: Columns of LAMMPS atom styles, as MDAnalysis' ``atom_style`` names them.
ATOM_STYLES = {"atomic": "id type x y z", "charge": "id type charge x y z",
               "molecular": "id resid type x y z", "bond": "id resid type x y z",
               "angle": "id resid type x y z", "full": "id resid type charge x y z"}


def _topology_advice(error, config) -> str:
    """What to do when MDAnalysis could not read the topology: for a LAMMPS data
    file whose atom style it cannot tell, the ``atom_style`` its Atoms header
    names."""
    if "atom_style" in str(error) and "atom_style" not in config.topology_options:
        style = _atoms_header(config.topology)
        columns = ATOM_STYLES.get(style)
        if columns:
            return (f"Its Atoms section is atom_style {style}: set topology_options: "
                    f"{{atom_style: '{columns}'}}")
        return ("Set topology_options: {atom_style: '...'} to its columns (e.g. 'id "
                "type x y z' for atom_style atomic)")
    return "Check the file, topology_format and topology_options"


def _atoms_header(path) -> str | None:
    """The atom style LAMMPS' write_data notes on the Atoms line (``Atoms #
    atomic``), or None."""
    try:
        with open(path, errors="replace") as f:
            for number, line in enumerate(f):
                if line.startswith("Atoms"):
                    _, _, style = line.partition("#")
                    return style.strip() or None
                if number > 100_000:
                    return None
    except OSError:
        return None
    return None


def _attributes(universe) -> str:
    """The per-atom attributes a topology gave (names, types, masses, ...)."""
    names = sorted({a.attrname for a in universe._topology.read_attributes}
                   - {"indices", "resindices", "segindices"})
    return ", ".join(names) or "nothing but positions"


class PcoordCalculator:
    """Turns frames into pcoord rows for a configured list of coordinates.

    Parameters
    ----------
    config : streamrun.config.Config
    boundaries : streamrun.boundaries.Boundaries
        Which box vectors the engine treats as periodic, and its box origin
        (``EngineAdapter.boundaries``).

    Attributes
    ----------
    universe : MDAnalysis.Universe
        Topology plus the start structure; each frame overwrites its timestep.
    n_atoms : int
    columns : int
    datasets : dict
        ``pcoord`` and each aux dataset name -> its coordinates.
    """

    def __init__(self, config, boundaries):
        self.config = config
        self.source = config.source
        self.boundaries = boundaries
        self._fragments = False  # not looked for yet
        self._guessed = None     # GuessedBonds for a topology without bonds
        #: what the on-disk topology cache did (:class:`streamrun.topocache.Outcome`)
        self.topology_cache = None
        self.universe = self._load(config.start, config.start_format,
                                   "get_pcoord.structure" if config.mode == "pcoord"
                                   else "start")
        self.n_atoms = len(self.universe.atoms)
        self._ts = self.universe.trajectory.ts
        if not boundaries.any:
            # e.g. OpenMM's default 2 nm box of a System without periodic
            # boundaries: no period, so not in a trajectory written from the stream
            self._ts.dimensions = None
        self.start_dimensions = self.universe.dimensions
        self._references = {}
        # The pcoord first, then each aux dataset: one row holds them all and
        # :meth:`split` cuts it into datasets.
        specs = {"pcoord": config.pcoords,
                 **{name: aux_specs for name, (aux_specs, _) in config.aux.items()}}
        self.datasets = {name: [build_coordinate(s, config.base_dir) for s in group]
                         for name, group in specs.items()}
        self.coordinates = [c for group in self.datasets.values() for c in group]
        groups = []
        for c in self.coordinates:
            c.prepare(PrepareContext(self, c))
            groups += c.whole_groups()
            self._check_boundaries(c)
        ix = [g[0].ix for g in groups]
        self.tracker = WholeTracker(self.universe, groups, config.source,
                                    self.fragments(np.concatenate(ix) if ix else None))
        self.frame = Frame(self.universe, self.tracker.ix, boundaries)
        self._universe_readers = [c for c in self.coordinates
                                  if getattr(c, "reads_universe", False)]
        self.columns = None
        self._box_key = self._stream_box_key = False  # False: none seen yet
        self._search = None
        self._frame_interval = config.engine.frame_interval
        self._dt = None
        self._time_factor = 1.0

    def fragments(self, ix=None):
        """Molecules of the topology (see :func:`~streamrun.pcoords.pbc.
        bonded_fragments`), found once. A topology without bonds gets them guessed
        for the chains of the atoms ``ix`` (:class:`~streamrun.pcoords.pbc.
        GuessedBonds`); None when there are none and none can be guessed."""
        if self._fragments is False:
            self._fragments = bonded_fragments(self.universe)
            if self._fragments is None and self.boundaries.any:
                self._guessed = GuessedBonds(self.universe, self.boundaries.search_box(
                    self.start_dimensions))
        if self._fragments is not None or self._guessed is None or ix is None:
            return self._fragments
        return self._guessed.fragments(ix)

    def bonds_note(self) -> str | None:
        """What check and the dry run say about guessed bonds (None: the
        topology's own bonds, or none needed)."""
        g = self._guessed
        if g is None:
            return None
        if g.problem:
            return (f"the topology has no bonds and none could be guessed "
                    f"({g.problem}): groups of several atoms are joined compactly")
        if g.atoms_guessed:
            return (f"guessed for {g.atoms_guessed} atoms of {int(g.explored.sum())} "
                    f"residues from the start structure (the topology has none; "
                    f"MDAnalysis' van der Waals criterion, residue chains only)")
        return None

    def _check_boundaries(self, c):
        """Refuse what the engine's boundaries make impossible, naming the key."""
        b = self.boundaries
        if b.stand_in:
            return
        if getattr(c, "pbc", None) is True and not b.any:
            raise ConfigError(f"pbc: true asks for minimum images, but the system has "
                              f"no periodic dimension ({b.describe()}); remove "
                              f"pbc: true (values are plain Cartesian)",
                              source=self.source, key=f"{c.key}.pbc")
        if getattr(c, "uses_origin", False) and b.origin is None:
            raise ConfigError("a position relative to the box origin needs the "
                              "engine's box origin, which streamrun reads from a "
                              "LAMMPS data file's xlo ylo zlo; give start: (or "
                              "topology:) as a LAMMPS data file, or set relative_to",
                              source=self.source, key=f"{c.key}.select")

    # -- loading ------------------------------------------------------------
    def _load(self, structure, fmt, key):
        import MDAnalysis as mda

        from .. import amber, lammpsdata

        config = self.config
        kwargs = dict(config.topology_options)
        topology_format = config.topology_format or lammps_data_format(
            config.topology, "topology")
        if structure is not None and not structure.is_file():
            raise ConfigError(f"structure '{structure}' does not exist; check the path "
                              f"(and the files: set-up that should make it)",
                              source=config.source, key=key)
        told = fmt
        if structure is not None and not fmt:
            structure, fmt = self._by_suffix(structure, key)
        elif fmt and fmt.upper() == amber.FORMAT:
            amber.register()  # streamrun's reader of Amber NetCDF restarts
        if structure is None:  # the topology file's own coordinates, as
            fmt = fmt or topology_format  # mda.Universe(topology) reads them
            coords = [str(config.topology)] if _has_reader(config.topology, fmt) \
                else []
        else:
            coords = [str(structure)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # MDAnalysis guesses; fine for pcoords
            try:
                topology, outcome = load_topology(config.topology, topology_format,
                                                  config.topology_options)
            except Exception as e:
                raise self._topology_error(e, topology_format) from None
            try:
                if coords:
                    # a LAMMPS data file: its positions parsed in C (lammpsdata)
                    read_as = lammpsdata.format_for(coords[0], fmt)
                    if read_as:
                        kwargs["format"] = read_as
                u = mda.Universe(topology, *coords, **kwargs)
            except Exception as e:
                if structure is None:  # the topology file's own coordinates
                    raise self._topology_error(e, topology_format) from None
                how = "" if not fmt else f" as {fmt}" if told else \
                    f" as {fmt} (told by its suffix and content)"
                raise ConfigError(
                    f"MDAnalysis could not read the structure '{structure}'{how} "
                    f"with the topology '{config.topology}': "
                    f"{one_line(e).rstrip('.')}. " + self._read_advice(e, key),
                    source=config.source, key=key) from None
        if self.topology_cache is None:
            self.topology_cache = outcome
        return self._one_frame(u, structure, fmt, key)

    def _topology_error(self, error, topology_format) -> ConfigError:
        config = self.config
        told = f" as {topology_format}" if topology_format else ""
        return ConfigError(f"MDAnalysis could not read the topology "
                           f"'{config.topology}'{told}: {one_line(error)}. "
                           f"{_topology_advice(error, config)}",
                           source=config.source, key="topology")

    def _by_suffix(self, structure, key):
        """The file to read for ``structure`` and its MDAnalysis format (None: let
        MDAnalysis tell by the suffix).

        MDAnalysis picks a reader by suffix. With ``gen_istates: true`` WESTPA
        hands get_pcoord ``istates/<iter>/<id>``, a name without one, usually a
        link to the real file: that file's suffix tells the format. Amber
        coordinate files are told by their content, under their suffixes
        (:data:`streamrun.amber.SUFFIXES`, which MDAnalysis mostly does not know)
        or under none (:func:`streamrun.amber.mdanalysis_format`).
        """
        from .. import amber

        path = target = structure
        if not structure.suffix:
            target = Path(os.path.realpath(structure))
            path = target if target.suffix else structure
        fmt = amber.mdanalysis_format(path) or lammps_data_format(path, "coordinates")
        if fmt or path.suffix:
            return path, fmt
        link = f" (a link to '{target}')" if target != structure else ""
        raise ConfigError(f"'{structure}'{link} has no file suffix, so MDAnalysis "
                          f"cannot tell its format; set {self._format_key(key)} "
                          f"(e.g. DATA, GRO, PDB, TPR, INPCRD)", source=self.source,
                          key=key)

    @staticmethod
    def _format_key(key):
        """The config key that names the MDAnalysis format of the structure read
        under ``key``: ``start_format``, ``get_pcoord.format``,
        ``pcoord[0].reference_format``, ..."""
        return "get_pcoord.format" if key == "get_pcoord.structure" else \
            f"{key}_format"

    @classmethod
    def _read_advice(cls, error, key):
        """What to do when MDAnalysis could not read a structure (``key``)."""
        from .. import amber

        if "same number of atoms" in str(error):
            return ("The structure must hold the topology's atoms, in its order; "
                    f"check {key} against the topology")
        return (f"Check the file, or set {cls._format_key(key)} to its MDAnalysis "
                f"format (e.g. PDB, GRO, DATA, INPCRD, NCDF). Amber files are read "
                f"without it: ASCII restarts ({', '.join(amber.ASCII_SUFFIXES)}) and "
                f"NetCDF ({', '.join(amber.NETCDF_SUFFIXES)}, or any name), told "
                f"apart by their content")

    def _one_frame(self, u, structure, fmt, key):
        """``u`` with one frame to read: its coordinates must exist (a prmtop or
        PSF has none), a trajectory gives its last frame, and an ASCII Amber
        restart its box (MDAnalysis' INPCRD reader skips the box line)."""
        from .. import amber

        if not hasattr(u, "trajectory") or u.trajectory.n_frames == 0:
            raise ConfigError(
                f"the topology '{self.config.topology}' holds no coordinates (an "
                f"Amber prmtop has none); set {key} to a structure file (e.g. the "
                f"basis state's .rst7)",
                source=self.source, key=key)
        if u.trajectory.n_frames > 1:
            u.trajectory[-1]  # where the trajectory ended (see streamrun.amber)
        if structure is not None and str(fmt).upper() in ("INPCRD", "RESTRT"):
            box = amber.ascii_box(structure)
            if box is not None:
                u.trajectory.ts.dimensions = box
        return u

    def reference_universe(self, path, fmt, key):
        """A reference structure read with the topology (cached per file)."""
        cache = (str(path), fmt)
        if cache not in self._references:
            u = self._load(path, fmt, key)  # None: the topology's own coordinates
            if len(u.atoms) != self.n_atoms:
                raise ConfigError(f"the reference has {len(u.atoms)} atoms, the "
                                  f"topology {self.n_atoms}", source=self.source,
                                  key=key)
            self._references[cache] = u
        return self._references[cache]

    def make_whole(self, universe, groups):
        """Make ``groups`` (as :meth:`Coordinate.whole_groups` gives them) whole in
        a reference Universe, in place, under the engine's boundaries."""
        ix = [g[0].ix for g in groups]
        tracker = WholeTracker(universe, groups, self.source,
                               self.fragments(np.concatenate(ix) if ix else None))
        if tracker.ix.size:
            pos = universe.atoms.positions
            pos[tracker.ix] = tracker.start(
                pos, self.boundaries.search_box(universe.dimensions))
            universe.atoms.positions = pos

    # -- rows ---------------------------------------------------------------
    def _search_box(self, dimensions):
        """The box MDAnalysis' distance functions get (see
        :meth:`~streamrun.boundaries.Boundaries.search_box`), worked out again only
        when the box changes (never under NVT)."""
        key = None if dimensions is None else np.asarray(dimensions).tobytes()
        if key != self._box_key:
            self._box_key = key
            self._search = self.boundaries.search_box(dimensions)
        return self._search

    def _evaluate(self, frame_label, whole):
        ts, ix = self._ts, self.tracker.ix
        self.frame.update(ts.positions, whole, ts.dimensions,
                          self._search_box(ts.dimensions))
        saved = box = None
        if self._universe_readers and ix.size:
            saved = ts.positions[ix]
            ts.positions[ix] = whole
        partly = self.boundaries.any and not self.boundaries.all
        if self._universe_readers and partly and ts.dimensions is not None:
            # plugins apply minimum images with universe.dimensions: give them the
            # box whose non-periodic vectors take no image
            box, ts.dimensions = ts.dimensions.copy(), self._search
        try:
            values = [self._compute(c, frame_label) for c in self.coordinates]
        finally:
            if saved is not None:  # what the engine sent, for a trajectory sink
                ts.positions[ix] = saved
            if box is not None:
                ts.dimensions = box
        row = np.concatenate(values)
        if not np.all(np.isfinite(row)):
            raise PcoordError(f"non-finite pcoord value {row.tolist()} on {frame_label}")
        return row

    def _compute(self, c, frame_label):
        try:
            v = np.asarray(c.compute(self.frame), dtype=np.float64).ravel()
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
        return v

    def start_row(self) -> np.ndarray:
        """Row 0: the coordinates of the start structure (timestep frame 0)."""
        ts = self._ts
        whole = self.tracker.start(ts.positions, self._search_box(self.start_dimensions))
        ts.frame = 0
        ts.data.setdefault("step", 0)
        if "time" not in ts.data:  # the start structure's file told none
            ts.time = 0.0
        row = self._evaluate("the start structure", whole)
        self.columns = row.size
        return row

    def frame_row(self, positions, box=None, label="a frame", index=None, step=None,
                  time=None) -> np.ndarray:
        """Row for one streamed frame.

        Parameters
        ----------
        positions : numpy.ndarray, shape (n_atoms, 3)
            Å; put in the Universe's timestep.
        box : numpy.ndarray, shape (3, 3), optional
            Box vectors in Å (IMD v3). Without it the start structure's box is kept.
        label : str
            For messages.
        index : int, optional
            Row number (1 for the first streamed frame): ``ts.frame``.
        step : int, optional
            The engine's MD step (IMD v3); else ``index * frame_interval``.
        time : float, optional
            Time as streamed (IMD v3), converted to ps with the adapter's factor;
            else ``step * dt`` when the engine adapter knows dt, relative to the
            segment's start.
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
        if box is not None and self.boundaries.any:
            key = np.asarray(box).tobytes()
            if key != self._stream_box_key:  # NVT: the box never changes
                from MDAnalysis.lib.mdamath import triclinic_box

                ts.dimensions = triclinic_box(*np.asarray(box, dtype=np.float64))
                self._stream_box_key = key
        if index is not None:
            ts.frame = index
        if time is not None:
            time = None if self._time_factor is None else time * self._time_factor
        elif index is not None and step is None:
            step = index * self._frame_interval
            if self._dt is not None:
                time = step * self._dt
        if step is not None:
            ts.data["step"] = int(step)
        if time is not None:
            ts.time = float(time)
        whole = self.tracker.follow(ts.positions, self._search_box(ts.dimensions),
                                    label)
        return self._evaluate(label, whole)

    def set_time_units(self, dt_ps, stream_time_to_ps):
        """The MD time step in ps (for ``ts.time`` when the stream carries no time)
        and the factor from the stream's time to ps (None: no time is reported)."""
        self._dt, self._time_factor = dt_ps, stream_time_to_ps

    # -- naming -------------------------------------------------------------
    def column_names(self, dataset="pcoord") -> list[str]:
        """Column names of one dataset (``pcoord`` or an aux name)."""
        return [n for c in self.datasets[dataset] for n in c.column_names()]

    def column_labels(self, dataset="pcoord") -> list[str]:
        """Column names with units, e.g. ``na_cl [Å]``."""
        return [f"{n} [{c.units}]" for c in self.datasets[dataset]
                for n in c.column_names()]

    def split(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """Cut full rows (shape (n, columns)) into {dataset: rows}; needs
        :meth:`start_row` to have run (it learns each coordinate's width)."""
        out, first = {}, 0
        for name, group in self.datasets.items():
            width = sum(c.columns for c in group)
            out[name] = rows[:, first:first + width]
            first += width
        return out


def build_coordinate(spec, base_dir):
    """A Coordinate from a checked :class:`streamrun.config.PcoordSpec`."""
    options = dict(spec.options)
    if spec.type == "plugin":
        options["base_dir"] = base_dir
    return REGISTRY[spec.type](spec.key, **options)
