"""RMSD to a reference structure (Å), the most common pcoord of protein WE studies.

Superposition as ``MDAnalysis.analysis.rms.RMSD`` does it: the ``fit`` atoms are
centred and optimally rotated onto the reference's ``fit`` atoms (QCP,
``MDAnalysis.analysis.align.rotation_matrix``), the same transformation is applied to
``select``, and ``MDAnalysis.analysis.rms.rmsd`` compares ``select`` with the
reference's ``select``.
"""

from __future__ import annotations

import numpy as np

from .base import Coordinate, Option, box_or_none, need_masses, register

REFERENCE = Option("structure file with the topology's atoms (PDB, GRO, LAMMPS data, "
                   "...), read with the topology; default: the topology's own "
                   "coordinates", "path", None)
REFERENCE_FORMAT = Option("MDAnalysis format of the reference, if its suffix does not "
                          "tell", "text", None)


def whole_reference(ctx, coordinate, groups):
    """The reference Universe with ``groups`` (option names) made whole in it."""
    from .calculator import PcoordCalculator

    ref = ctx.reference("reference", "reference_format")
    if not hasattr(ref.atoms, "positions") or ref.trajectory.n_frames == 0:
        raise ctx.error("the topology has no coordinates; give a reference file",
                        "reference")
    triples = []
    for option, group in groups:
        ref_group = ref.atoms[group.ix]
        triples.append((ref_group, f"{coordinate.key}.reference",
                        f"{option} in the reference"))
    PcoordCalculator.make_whole(ref, triples, ctx._calc.source)
    return ref


@register
class RMSD(Coordinate):
    """RMSD of ``select`` after superposition of ``fit`` onto a reference, in Å."""

    type = "rmsd"
    summary = ("RMSD of select to the reference after optimal superposition of fit "
               "(fit: none = no superposition)")
    pbc_note = ("fit and select are made whole together; with fit: none the group is "
                "moved by whole box vectors to the image nearest the reference")
    options = {"select": Option("MDAnalysis selection whose RMSD is measured (e.g. "
                                "'backbone')", "selection"),
               "fit": Option("MDAnalysis selection superposed onto the reference "
                             "(default: select); none: no superposition",
                             "selection", None),
               "reference": REFERENCE, "reference_format": REFERENCE_FORMAT,
               "weights": Option("none (default) or mass: weights of the fit and the "
                                 "RMSD", "choice", "none", ("none", "mass"))}

    @classmethod
    def uses_box(cls, options):
        # fit: none picks the group's image nearest the reference with the box
        return str(options.get("fit")).strip().lower() == "none"

    def prepare(self, ctx):
        self.gs = ctx.select("select")
        self.no_fit = isinstance(self.fit, str) and self.fit.strip().lower() == "none"
        self.gf = None if self.no_fit else (
            self.gs if self.fit is None else ctx.select("fit"))
        union = self.gs if self.gf is None else self.gs | self.gf
        self._whole = [(union, f"{self.key}.select",
                        self.select if self.gf is None or self.gf is self.gs
                        else f"({self.fit}) or ({self.select})")]
        for g, option in ((self.gs, "select"), (self.gf, "fit")):
            if g is not None and self.weights == "mass":
                need_masses(ctx, g, option)
        ref = whole_reference(ctx, self, [("select and fit", union)])
        self.ref_sel = ref.atoms[self.gs.ix].positions.astype(np.float64)
        self.w_sel = self.gs.masses.astype(np.float64) if self.weights == "mass" \
            else None
        if self.gf is not None:
            self.w_fit = self.gf.masses.astype(np.float64) if self.weights == "mass" \
                else None
            ref_fit = ref.atoms[self.gf.ix].positions.astype(np.float64)
            self.ref_com = np.average(ref_fit, axis=0, weights=self.w_fit)
            self.ref_fit = ref_fit - self.ref_com
            if len(self.gf) < 3:
                raise ctx.error("a superposition needs at least 3 atoms; select more "
                                "or use fit: none", "fit" if self.fit else "select")
        else:
            self.ref_centre = np.average(self.ref_sel, axis=0, weights=self.w_sel)

    def compute(self, universe):
        from MDAnalysis.analysis.align import rotation_matrix
        from MDAnalysis.analysis.rms import rmsd

        mobile = self.gs.positions.astype(np.float64)
        if self.gf is None:
            box = box_or_none(universe)
            if box is not None:  # the image of the group nearest the reference
                from MDAnalysis.lib.distances import minimize_vectors

                d = np.average(mobile, axis=0, weights=self.w_sel) - self.ref_centre
                mobile -= d - minimize_vectors(d[None], box)[0]
            return np.atleast_1d(rmsd(mobile, self.ref_sel, weights=self.w_sel))
        fit = self.gf.positions.astype(np.float64)
        com = np.average(fit, axis=0, weights=self.w_fit)
        rot, _ = rotation_matrix(fit - com, self.ref_fit, weights=self.w_fit)
        moved = (mobile - com) @ rot.T + self.ref_com
        return np.atleast_1d(rmsd(moved, self.ref_sel, weights=self.w_sel))
