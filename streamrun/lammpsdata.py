"""LAMMPS data files as structures, read at C speed.

In a WESTPA simulation of LAMMPS each segment starts from its parent's
``write_data`` file, and row 0 is computed from it. MDAnalysis' DATA reader
splits every line of the whole file in Python (Atoms, Velocities, Bonds, ...):
4.7 s for the 1,000,188 atoms of an fcc argon box here, 5.4 s for a 1M-atom water
box with bonds. This reader finds the Atoms section and hands it to numpy's C
parser (:func:`numpy.loadtxt`, correctly rounded, as Python's ``float``): 1.4 and
1.5 s for the same files (benchmarks/bench_large.py).

The result is MDAnalysis' (:class:`MDAnalysis.coordinates.LAMMPS.DATAReader`): the
positions of the Atoms section sorted by atom ID, as float32, and the box from the
header, both computed as MDAnalysis computes them; which columns hold x, y, z is
decided as MDAnalysis decides it (``atom_style``, else the first line's length).
Velocities are not read: streamrun never uses a start structure's velocities (a
streamed frame carries none, so they would be wrong from row 1 on). A file this
reader does not expect (compressed, an Atoms section it cannot find or whose rows
are not all numbers, a row count that is not the header's) is left to MDAnalysis'
reader, which reads it or says what is wrong.

:func:`register` adds the reader to MDAnalysis (format :data:`FORMAT`);
:func:`format_for` is what streamrun's calculator asks for each structure file.
"""

from __future__ import annotations

import io
import mmap
import re
import warnings

#: MDAnalysis format name of the reader :func:`register` adds.
FORMAT = "STREAMRUN_DATA"

_registered = False

#: A line that may open a section: a letter after optional blanks (an Atoms row
#: starts with its atom ID). A literal first character lets the search run in C.
_WORD_LINE = re.compile(rb"\n[ \t]*[A-Za-z]")


class Unusual(Exception):
    """The file is not the kind this reader handles; MDAnalysis' reader reads it."""


def register() -> str:
    """Make MDAnalysis read LAMMPS data files with this module (format
    :data:`FORMAT`); returns the format name. Imports MDAnalysis."""
    global _registered
    if _registered:
        return FORMAT
    from MDAnalysis.coordinates.LAMMPS import DATAReader

    class FastDATAReader(DATAReader):
        """MDAnalysis' DATA reader, with the Atoms section parsed by numpy's C
        parser (see :mod:`streamrun.lammpsdata`); velocities are not read."""

        format = FORMAT

        def _read_first_frame(self):
            try:
                positions, dimensions = read_positions(self.filename, self.n_atoms,
                                                       self.atom_style)
            except Unusual:
                super()._read_first_frame()
                return
            self.ts = self._Timestep.from_coordinates(positions, **self._ts_kwargs)
            self.ts.dimensions = dimensions
            self.ts.frame = 0
            if self.convert_units:
                self.convert_pos_from_native(self.ts._pos)  # in place, as DATAReader

    _registered = True
    return FORMAT


def format_for(path, fmt, reader_options=None) -> str | None:
    """The format to read the structure ``path`` with: :data:`FORMAT` where
    MDAnalysis would use its DATA reader (``fmt`` DATA, or a ``.data`` suffix),
    else ``fmt`` unchanged. Imports MDAnalysis."""
    from MDAnalysis.coordinates.LAMMPS import DATAReader
    from MDAnalysis.core._get_readers import get_reader_for

    try:
        reader = get_reader_for(str(path), format=fmt)
    except (ValueError, TypeError):
        return fmt  # MDAnalysis says what is wrong when it reads it
    if reader is DATAReader:
        return register()
    return fmt


def read_positions(path, n_atoms, atom_style=None):
    """Positions (float32, sorted by atom ID) and box (MDAnalysis' ``dimensions``,
    float32) of a LAMMPS data file, as MDAnalysis' DATA reader gives them.

    Parameters
    ----------
    path : path-like
    n_atoms : int
        Atoms of the topology; the Atoms section must have as many rows.
    atom_style : str, optional
        Columns of the Atoms section (``topology_options``), e.g. ``"id type x y
        z"``; without it, MDAnalysis' rule (x y z in columns 5-7 of a 7- or
        10-column row, else 4-6).

    Raises
    ------
    Unusual
        For a file that MDAnalysis' reader should read (or reject) instead.
    """
    from MDAnalysis.topology.LAMMPSParser import SECTIONS, DATAParser

    from .lazy import numpy as np

    with open(path, "rb") as f:
        if f.read(3) in (b"\x1f\x8b\x08", b"BZh"):
            raise Unusual("compressed")
        try:
            mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except (ValueError, OSError) as e:  # empty, or not a regular file
            raise Unusual(str(e)) from None
    with mm:
        header, body = _header_and_atoms(mm, SECTIONS)
        if body is None:
            raise Unusual("no Atoms section")
        first = _first_row(mm, *body)
        if first is None:
            raise Unusual("empty Atoms section")
        if atom_style is None:
            columns = (0, 4, 5, 6) if len(first) in (7, 10) else (0, 3, 4, 5)
        else:
            style = DATAParser._interpret_atom_style(atom_style)
            columns = tuple(style[k] for k in ("id", "x", "y", "z"))
        if max(columns) >= len(first):
            raise Unusual("fewer columns than x y z need")
        text = mm[body[0]:body[1]]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rows = np.loadtxt(io.BytesIO(text), usecols=columns, comments="#",
                              dtype=np.float64, ndmin=2, encoding="latin-1")
    except ValueError as e:  # a row that is not numbers where x y z should be
        raise Unusual(str(e)) from None
    del text
    if rows.shape[0] != n_atoms:
        raise Unusual(f"{rows.shape[0]} rows, {n_atoms} atoms")
    order = np.argsort(rows[:, 0].astype(np.int32))  # MDAnalysis sorts int32 IDs
    positions = rows[order, 1:].astype(np.float32)
    try:
        dimensions = DATAParser._parse_box(None, header)
    except (KeyError, ValueError) as e:
        raise Unusual(f"box: {e}") from None
    return positions, dimensions


def _header_and_atoms(mm, sections):
    """MDAnalysis' header dictionary (the lines before the first section) and the
    byte range of the Atoms section's rows (None if there is none).

    The section ends where the next line whose first word is a section name begins
    (MDAnalysis' rule); only a line that starts with a letter can be one, so the
    million rows in between are passed over by a regular expression (a search for
    newlines, in C)."""
    header, start, pos, in_header = {}, None, 0, True
    for line_start in _word_lines(mm):
        if line_start < pos:
            continue
        if in_header:
            for raw in mm[pos:line_start].splitlines():
                _header_line(_clean(raw), header)
        end = mm.find(b"\n", line_start)
        end = len(mm) if end < 0 else end + 1
        line, pos = _clean(mm[line_start:end]), end
        if not line or line.split()[0] not in sections:
            if in_header:
                _header_line(line, header)
            continue
        if start is not None:
            return header, (start, line_start)
        in_header = False
        if line == "Atoms":  # MDAnalysis' key: the line without its comment
            start = end
    return header, None if start is None else (start, len(mm))


def _word_lines(mm):
    """Offsets of the first line and of every line that starts with a letter."""
    yield 0
    for match in _WORD_LINE.finditer(mm):
        yield match.start() + 1


def _clean(raw) -> str:
    """A line as MDAnalysis' DATAParser.iterdata has it: no comment, stripped."""
    return raw.decode("latin-1").partition("#")[0].strip()


def _header_line(line, header):
    """Record a header line as DATAParser.grab_datafile does."""
    from MDAnalysis.topology.LAMMPSParser import HEADERS

    for token in HEADERS:
        if line and line.endswith(token):
            header[token] = line.split(token)[0]


def _first_row(mm, start, end):
    """The words of the first row of the Atoms section (comments and blank lines
    skipped), or None."""
    pos = start
    while pos < end:
        stop = mm.find(b"\n", pos, end)
        stop = end if stop < 0 else stop
        words = mm[pos:stop].decode("latin-1").partition("#")[0].split()
        if words:
            return words
        pos = stop + 1
    return None
