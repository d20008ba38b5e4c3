"""Angles and dihedrals between group centres (degrees), with
``MDAnalysis.lib.distances.calc_angles`` / ``calc_dihedrals``."""

from __future__ import annotations

from ..lazy import numpy as np
from .base import CENTER, PBC, Coordinate, Option, along_molecule, need_masses, \
    register


class _Centres(Coordinate):
    units = "degrees"
    pbc_note = ("each group made whole; groups of one molecule: along the molecule "
                "(no minimum image); else minimum image between consecutive centres "
                "along the periodic dimensions")
    letters = ()

    def prepare(self, ctx):
        self.groups = [self.group(ctx, x) for x in self.letters]
        self.along = along_molecule(ctx, self, *self.groups)
        if self.center == "mass":
            for g, x in zip(self.groups, self.letters):
                need_masses(ctx, g, x)

    def _box(self, frame):
        return None if self.along else frame.box(self.pbc)

    def _centres(self, frame):
        return [frame.centre(g, self.center) for g in self.groups]


def _sel(what):
    return Option(f"MDAnalysis selection of the {what}", "selection")


@register
class Angle(_Centres):
    """Angle a-b-c at the centre of b, in degrees [0, 180]."""

    type = "angle"
    summary = "angle between the centres of a, b, c (at b), in [0, 180]"
    letters = ("a", "b", "c")
    options = {"a": _sel("first group"), "b": _sel("vertex group"),
               "c": _sel("third group"), "center": CENTER, "pbc": PBC}

    def compute(self, frame):
        from MDAnalysis.lib.distances import calc_angles

        a, b, c = self._centres(frame)
        return np.atleast_1d(np.degrees(calc_angles(a, b, c, box=self._box(frame))))


@register
class Dihedral(_Centres):
    """Dihedral a-b-c-d, in degrees (-180, 180] (IUPAC sign convention)."""

    type = "dihedral"
    summary = ("dihedral between the centres of a, b, c, d (e.g. single atoms for "
               "phi/psi), in (-180, 180]")
    letters = ("a", "b", "c", "d")
    options = {"a": _sel("first group"), "b": _sel("second group"),
               "c": _sel("third group"), "d": _sel("fourth group"),
               "center": CENTER, "pbc": PBC}

    def compute(self, frame):
        from MDAnalysis.lib.distances import calc_dihedrals

        value = float(np.degrees(calc_dihedrals(*self._centres(frame),
                                                box=self._box(frame))))
        return np.atleast_1d(180.0 if value <= -180.0 else value)
