"""RMSD to a reference structure (Å), the most common pcoord of protein WE studies.

Superposition as ``MDAnalysis.analysis.rms.RMSD`` does it: the ``fit`` atoms are
centred and optimally rotated onto the reference's ``fit`` atoms with QCP
(``MDAnalysis.lib.qcprot.CalcRMSDRotationalMatrix``, weights relative to their
mean). When ``select`` is the fit group, the RMSD is QCP's own, as in
``rms.RMSD``; otherwise the fit's rotation is applied to ``select`` and
``MDAnalysis.analysis.rms.rmsd`` compares it with the reference's ``select``.
"""

from __future__ import annotations

from ..lazy import numpy as np
from .base import Coordinate, Option, need_masses, register

REFERENCE = Option("structure file with the topology's atoms (PDB, GRO, LAMMPS data, "
                   "...), read with the topology; default: the topology's own "
                   "coordinates", "path", None)
REFERENCE_FORMAT = Option("MDAnalysis format of the reference, if its suffix does not "
                          "tell", "text", None)


def whole_reference(ctx, coordinate, groups):
    """The reference Universe with ``groups`` (option names) made whole in it."""
    ref = ctx.reference("reference", "reference_format")
    if not hasattr(ref.atoms, "positions") or ref.trajectory.n_frames == 0:
        raise ctx.error("the topology has no coordinates; give a reference file",
                        "reference")
    triples = []
    for option, group in groups:
        ref_group = ref.atoms[group.ix]
        triples.append((ref_group, f"{coordinate.key}.reference",
                        f"{option} in the reference"))
    ctx._calc.make_whole(ref, triples)
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
        self.w_sel = self._weights(self.gs)
        if self.gf is not None:
            self.w_fit = self._weights(self.gf)
            ref_fit = ref.atoms[self.gf.ix].positions.astype(np.float64)
            self.ref_com = np.average(ref_fit, axis=0, weights=self.w_fit)
            self.ref_fit = ref_fit - self.ref_com
            self._rot = np.empty(9)
            if len(self.gf) < 3:
                raise ctx.error("a superposition needs at least 3 atoms; select more "
                                "or use fit: none", "fit" if self.fit else "select")
        else:
            self.ref_centre = np.average(self.ref_sel, axis=0, weights=self.w_sel)

    def _weights(self, group):
        """Mass weights relative to their mean (as rms.rmsd), or None."""
        if self.weights != "mass":
            return None
        w = group.masses.astype(np.float64)
        return w / w.mean()

    def compute(self, frame):
        from MDAnalysis.analysis.rms import rmsd
        from MDAnalysis.lib.qcprot import CalcRMSDRotationalMatrix

        mobile = frame.positions(self.gs)
        if self.gf is None:
            box = frame.box()
            if box is not None:  # the image of the group nearest the reference
                from MDAnalysis.lib.distances import minimize_vectors

                d = np.average(mobile, axis=0, weights=self.w_sel) - self.ref_centre
                mobile = mobile - (d - minimize_vectors(d[None], box)[0])
            return np.atleast_1d(rmsd(mobile, self.ref_sel, weights=self.w_sel))
        fit = mobile if self.gf is self.gs else frame.positions(self.gf)
        com = fit.mean(axis=0) if self.w_fit is None else self.w_fit @ fit / len(fit)
        # QCP's rotation takes the centred fit atoms onto the centred reference
        value = CalcRMSDRotationalMatrix(self.ref_fit, fit - com, len(fit), self._rot,
                                         self.w_fit)
        if self.gf is self.gs:
            return np.atleast_1d(value)
        moved = (mobile - com) @ self._rot.reshape(3, 3) + self.ref_com
        return np.atleast_1d(rmsd(moved, self.ref_sel, weights=self.w_sel))
