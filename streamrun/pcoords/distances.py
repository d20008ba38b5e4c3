"""Distances, positions and counts (Å, or a number of atoms).

Computed with ``MDAnalysis.lib.distances``: ``calc_bonds`` between centres,
``distance_array`` between atom pairs, ``capped_distance`` for counts,
``minimize_vectors`` and ``apply_PBC`` for positions; each applies the minimum
image with the frame's box when ``pbc`` is true.
"""

from __future__ import annotations

import numpy as np

from .base import CENTER, GROUP_A, GROUP_B, PBC, Coordinate, Option, box_or_none, \
    centre, need_masses, register


@register
class Distance(Coordinate):
    """Distance between the centres of two groups, in Å."""

    type = "distance"
    summary = "distance between the centres of groups a and b"
    pbc_note = ("a and b are each made whole; minimum image between the two centres "
                "when pbc")
    options = {"a": GROUP_A, "b": GROUP_B,
               "center": CENTER, "pbc": PBC}

    def prepare(self, ctx):
        self.ga, self.gb = self.group(ctx, "a"), self.group(ctx, "b")
        if self.center == "mass":
            need_masses(ctx, self.ga, "a")
            need_masses(ctx, self.gb, "b")

    def compute(self, universe):
        from MDAnalysis.lib.distances import calc_bonds

        return np.atleast_1d(calc_bonds(centre(self.ga, self.center),
                                        centre(self.gb, self.center),
                                        box=box_or_none(universe, self.pbc)))


@register
class MinDistance(Coordinate):
    """Smallest distance between an atom of a and an atom of b, in Å."""

    type = "min_distance"
    summary = "closest distance between an atom of a and an atom of b"
    pbc_note = "per atom pair, minimum image when pbc (nothing needs to be whole)"
    options = {"a": GROUP_A, "b": GROUP_B,
               "pbc": PBC}

    def prepare(self, ctx):
        self.ga = self.group(ctx, "a", whole=False)
        self.gb = self.group(ctx, "b", whole=False)

    def compute(self, universe):
        from MDAnalysis.lib.distances import distance_array

        d = distance_array(self.ga.positions, self.gb.positions,
                           box=box_or_none(universe, self.pbc))
        return np.atleast_1d(d.min())


@register
class Position(Coordinate):
    """One Cartesian component of a group's centre, in Å."""

    type = "position"
    summary = ("one component (x, y or z) of the centre of select, in the box or "
               "relative to the centre of relative_to (e.g. membrane permeation)")
    pbc_note = ("select (and relative_to) made whole; without relative_to the centre "
                "is wrapped into the box when pbc, with it the vector between the "
                "centres is the minimum image when pbc")
    options = {"select": Option("MDAnalysis selection of the group", "selection"),
               "axis": Option("x, y or z", "choice", "z", ("x", "y", "z")),
               "relative_to": Option("MDAnalysis selection whose centre is the origin "
                                     "(default: the box origin)", "selection", None),
               "center": CENTER, "pbc": PBC}

    def prepare(self, ctx):
        self.gs = self.group(ctx, "select")
        self.gr = None if self.relative_to is None else self.group(ctx, "relative_to")
        self._axis = "xyz".index(self.axis)
        if self.center == "mass":
            for g, option in ((self.gs, "select"), (self.gr, "relative_to")):
                if g is not None:
                    need_masses(ctx, g, option)

    def compute(self, universe):
        from MDAnalysis.lib.distances import apply_PBC, minimize_vectors

        box = box_or_none(universe, self.pbc)
        c = centre(self.gs, self.center)
        if self.gr is not None:
            c = c - centre(self.gr, self.center)
            if box is not None:
                c = minimize_vectors(c[None], box)[0]
        elif box is not None:
            c = apply_PBC(c[None], box)[0]
        return np.atleast_1d(float(c[self._axis]))


@register
class Count(Coordinate):
    """Number of atoms of b within a cutoff of any atom of a (a coordination number)."""

    type = "count"
    units = "atoms"
    summary = ("number of atoms of b (not in a) within cutoff of any atom of a, as "
               "MDAnalysis' 'b and around cutoff a'")
    pbc_note = "per atom pair, minimum image when pbc (nothing needs to be whole)"
    options = {"a": Option("MDAnalysis selection of the central atoms", "selection"),
               "b": Option("MDAnalysis selection of the atoms counted", "selection"),
               "cutoff": Option("distance in Å (an atom at exactly cutoff counts)",
                                "number", minimum=0, exclusive=True),
               "pbc": PBC}

    def prepare(self, ctx):
        self.ga = self.group(ctx, "a", whole=False)
        self.gb = self.group(ctx, "b", whole=False) - self.ga
        if len(self.gb) == 0:
            raise ctx.error("every atom of b is also in a; nothing left to count", "b")

    def compute(self, universe):
        from MDAnalysis.lib.distances import capped_distance

        pairs = capped_distance(self.ga.positions, self.gb.positions,
                                max_cutoff=self.cutoff,
                                box=box_or_none(universe, self.pbc),
                                return_distances=False)
        return np.atleast_1d(float(np.unique(pairs[:, 1]).size))
