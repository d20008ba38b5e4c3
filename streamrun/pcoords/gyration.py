"""Radius of gyration (Å) of a whole group, as ``AtomGroup.radius_of_gyration``:
sqrt(sum w_i |r_i - c|^2 / sum w_i), c the weighted centre, w the masses or 1."""

from __future__ import annotations

from ..lazy import numpy as np
from .base import Coordinate, Option, need_masses, register


@register
class RadiusOfGyration(Coordinate):
    """Radius of gyration of a group, in Å."""

    type = "rg"
    summary = "radius of gyration of select (mass-weighted unless weights: none)"
    pbc_note = "select is made whole"
    options = {"select": Option("MDAnalysis selection (e.g. 'protein')", "selection"),
               "weights": Option("mass (default, as MDAnalysis' radius_of_gyration) "
                                 "or none", "choice", "mass", ("mass", "none"))}

    def prepare(self, ctx):
        self.gs = self.group(ctx, "select")
        if self.weights == "mass":
            need_masses(ctx, self.gs, "select")

    def compute(self, frame):
        pos = frame.positions(self.gs)
        if self.weights == "mass":
            w = frame.masses(self.gs)
            pos = pos - frame.centre(self.gs, "mass")
            return np.atleast_1d(np.sqrt(np.einsum("i,ij,ij->", w, pos, pos) / w.sum()))
        pos = pos - pos.mean(axis=0)
        return np.atleast_1d(np.sqrt(np.einsum("ij,ij->", pos, pos) / len(pos)))
