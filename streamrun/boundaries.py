"""Periodic boundaries as the engine has them: one home for the facts every
coordinate asks about the system's box.

The engine, not the structure file, decides what is periodic: an OpenMM System
without periodic boundaries still carries a default 2 nm box in its state XML, a
LAMMPS ``boundary p p f`` slab streams a box whose z edge is no period, and LAMMPS
puts its box at ``xlo ylo zlo``, not at 0. Each engine adapter tells a
:class:`Boundaries` (``EngineAdapter.boundaries``); the pcoord calculator asks it for
the box it hands to MDAnalysis' distance functions and for the box origin.

How a partly periodic box reaches MDAnalysis: :meth:`Boundaries.search_box` gives
the frame's box with every non-periodic box vector stretched to
:data:`NON_PERIODIC_EDGE` Å. A minimum image, a wrap or a whole-making step along
such a vector is then a shift by a million Å, which no real displacement reaches,
so nothing is ever moved along it, while the periodic vectors keep their images
exactly as the engine has them.
"""

from __future__ import annotations

from dataclasses import dataclass

from .lazy import numpy as np

#: Length (Å) a non-periodic box vector is stretched to for MDAnalysis' distance
#: functions: far beyond any system, so no image along it is ever nearer.
NON_PERIODIC_EDGE = 1.0e6

#: Values of the ``engine.periodic`` config key besides the axis letters.
NONE, AUTO = "none", "auto"


def parse_axes(text: str) -> tuple[bool, bool, bool] | None:
    """``xyz``, ``xy``, ``z``, ``none`` ... -> periodic flags; None if not valid."""
    text = str(text).strip().lower()
    if text in (NONE, "no", "false"):
        return (False, False, False)
    if not text or any(c not in "xyz" for c in text) or len(set(text)) != len(text):
        return None
    return tuple(axis in text for axis in "xyz")


def axes_text(periodic) -> str:
    """Periodic flags -> ``xyz``, ``xy``, ``none``."""
    return "".join(a for a, p in zip("xyz", periodic) if p) or NONE


@dataclass(frozen=True)
class Boundaries:
    """Which box vectors are periodic in the engine, and where its box starts.

    Parameters
    ----------
    periodic : tuple of bool
        Per box vector (a, b, c; along x, y, z for an orthorhombic box).
    source : str
        Where that came from, for check's output and messages (e.g.
        ``in.lammps line 7: boundary p p f``).
    origin : tuple of float, optional
        Box origin in the engine's coordinates (Å): LAMMPS' ``xlo ylo zlo``; 0 for
        engines whose box starts at 0 (GROMACS, OpenMM, NAMD).
    origin_source : str
        Where the origin came from.
    stand_in : bool
        True for the stand-in of a check that runs no engine where only the running
        engine tells (an OpenMM System): no box, and nothing refused for it.
    start_box : tuple, optional
        Box vectors (3x3, Å) the origin belongs to, when the engine keeps the
        box's centre fixed as the box changes size (LAMMPS' barostats dilate about
        the centre, NAMD's about ``cellOrigin``); None when the origin stays put
        (GROMACS, OpenMM: the box starts at 0).
    """

    periodic: tuple
    source: str
    origin: tuple | None = (0.0, 0.0, 0.0)
    origin_source: str = ""
    start_box: tuple | None = None
    stand_in: bool = False

    @property
    def any(self) -> bool:
        return any(self.periodic)

    @property
    def all(self) -> bool:
        return all(self.periodic)

    @property
    def axes(self) -> str:
        return axes_text(self.periodic)

    def describe(self) -> str:
        """One line: per dimension what is periodic, and where that came from."""
        if self.all:
            what = "x y z (fully periodic)"
        elif not self.any:
            what = "none (no periodic box: plain Cartesian coordinates)"
        else:
            what = f"{' '.join(a for a, p in zip('xyz', self.periodic) if p)} " \
                   f"(not {' '.join(a for a, p in zip('xyz', self.periodic) if not p)})"
        origin = ""
        if self.origin is not None and any(self.origin):
            origin = (f"; box origin ({', '.join(f'{v:g}' for v in self.origin)}) Å"
                      + (f" from {self.origin_source}" if self.origin_source else ""))
        return f"{what}, from {self.source}{origin}"

    def search_box(self, dimensions):
        """The box for MDAnalysis' distance functions (dimensions, Å and degrees):
        None without a periodic dimension or without a box, the frame's box when
        fully periodic, else the box with its non-periodic vectors stretched to
        :data:`NON_PERIODIC_EDGE`."""
        if not self.any or dimensions is None:
            return None
        dims = np.asarray(dimensions, dtype=np.float64)
        if dims.shape != (6,) or not np.all(dims[:3] > 0):
            return None
        if self.all:
            return dims
        dims = dims.copy()
        for i, periodic in enumerate(self.periodic):
            if not periodic:
                dims[i] = NON_PERIODIC_EDGE
        return dims

    def origin_at(self, box=None):
        """The box origin (Å) for a frame whose box vectors are ``box`` (rows)."""
        origin = np.zeros(3) if self.origin is None else \
            np.asarray(self.origin, dtype=np.float64)
        if self.start_box is None or box is None:
            return origin
        shift = 0.5 * (np.asarray(self.start_box).sum(axis=0)
                       - np.asarray(box).sum(axis=0))
        # only periodic dimensions are scaled by a barostat
        return origin + np.where(self.periodic, shift, 0.0)


def stand_in() -> Boundaries:
    """No box, for checks that cannot know the engine's boundaries (values are not
    shown; selections, plugins and columns are checked)."""
    return Boundaries((False, False, False), "a stand-in", stand_in=True)


def from_config(value: str, source_key="engine.periodic") -> Boundaries | None:
    """The boundaries ``engine.periodic`` states, or None for ``auto``."""
    if value == AUTO:
        return None
    return Boundaries(parse_axes(value), f"{source_key}: {value}")
