"""Fraction of native contacts Q (dimensionless), as ``MDAnalysis.analysis.contacts``.

Native contacts are the (a, b) atom pairs closer than ``radius`` in the reference
structure (``contacts.contact_matrix``). Q of a frame is MDAnalysis'
``hard_cut_q`` (a contact is formed while r <= its reference distance r0),
``soft_cut_q`` (Best, Hummer & Eaton, PNAS 110, 17874 (2013):
1 / (1 + exp(beta (r - lambda r0))) averaged) or ``radius_cut_q`` (r <= radius).
Only the native pairs' distances are computed per frame.
"""

from __future__ import annotations

from ..lazy import numpy as np
from .base import GROUP_A, GROUP_B, PBC, Coordinate, Option, register
from .rms import REFERENCE, REFERENCE_FORMAT, whole_reference


@register
class NativeContacts(Coordinate):
    """Fraction of the reference's contacts between a and b formed in the frame."""

    type = "contacts"
    units = "fraction"
    summary = ("fraction of native contacts Q between a and b relative to the "
               "reference (hard_cut, soft_cut or radius_cut, as MDAnalysis)")
    pbc_note = ("per atom pair, minimum image along the periodic dimensions (nothing "
                "needs to be whole)")
    options = {"a": GROUP_A, "b": GROUP_B,
               "reference": REFERENCE, "reference_format": REFERENCE_FORMAT,
               "radius": Option("Å; pairs closer than this in the reference are the "
                                "native contacts (default 4.5)", "number", 4.5,
                                minimum=0, exclusive=True),
               "method": Option("hard_cut (default), soft_cut or radius_cut", "choice",
                                "hard_cut", ("hard_cut", "soft_cut", "radius_cut")),
               "beta": Option("soft_cut: softness, 1/Å (default 5.0)", "number", 5.0,
                              minimum=0, exclusive=True),
               "lambda_constant": Option("soft_cut: tolerance factor on r0 (default "
                                         "1.8; 1.5 for coarse-grained)", "number",
                                         1.8, minimum=0, exclusive=True),
               "pbc": PBC}

    def prepare(self, ctx):
        from MDAnalysis.analysis.contacts import contact_matrix
        from MDAnalysis.lib.distances import distance_array

        self.ga = self.group(ctx, "a", whole=False)
        self.gb = self.group(ctx, "b", whole=False)
        ref = whole_reference(ctx, self, [])
        r0 = distance_array(ref.atoms[self.ga.ix].positions,
                            ref.atoms[self.gb.ix].positions,
                            box=ctx.box(ref.dimensions, self.pbc))
        native = contact_matrix(r0, self.radius)
        self.ia, self.ib = np.nonzero(native)
        if self.ia.size == 0:
            raise ctx.error(f"no pair of a and b atoms is closer than radius "
                            f"{self.radius:g} Å in the reference, so there is no "
                            f"native contact; check the selections or radius",
                            "radius")
        self.r0 = r0[native]

    def compute(self, frame):
        from MDAnalysis.analysis import contacts
        from MDAnalysis.lib.distances import calc_bonds

        r = calc_bonds(frame.positions(self.ga)[self.ia],
                       frame.positions(self.gb)[self.ib], box=frame.box(self.pbc))
        if self.method == "soft_cut":
            q = contacts.soft_cut_q(r, self.r0, beta=self.beta,
                                    lambda_constant=self.lambda_constant)
        elif self.method == "radius_cut":
            q = contacts.radius_cut_q(r, self.r0, self.radius)
        else:
            q = contacts.hard_cut_q(r, self.r0)
        return np.atleast_1d(float(q))
