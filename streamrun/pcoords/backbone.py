"""Backbone dihedrals φ, ψ (and side-chain χ1) of every selected residue, in degrees.

One column per angle per residue, residue by residue in the topology's order and
phi, psi, chi1 within a residue, named as cpptraj's ``multidihedral`` names its
data sets: ``phi:2``, ``psi:2``, ``chi1:2`` (angle, then the residue's resid).
The atoms are those of MDAnalysis: φ is C(i-1)-N-CA-C and ψ is N-CA-C-N(i+1), as
``MDAnalysis.analysis.dihedrals.Ramachandran`` selects them (the neighbour is the
residue of the same segid with resid ∓ 1); χ1 is N-CA-CB-γ with the IUPAC γ atom
(CG, CG1, OG, OG1 or SG), as ``Residue.chi1_selection``; ``Janin`` agrees where it
has a χ1 (it leaves out Ser, Thr, Cys, Val and others). Values are in (-180, 180]
with the IUPAC sign, all angles of a frame in one
``MDAnalysis.lib.distances.calc_dihedrals`` call.

An angle whose atoms a residue lacks has no column, as in cpptraj and
``Ramachandran``: φ of a chain's first residue and ψ of its last, angles of caps
(ACE, NME), χ1 of Gly and Ala. Where the topology has bonds, consecutive atoms of
an angle must be bonded (cpptraj's rule), so consecutive resids across a chain
break make no angle. The columns are fixed by the topology before the engine
runs.
"""

from __future__ import annotations

import difflib

from ..errors import ConfigError
from ..lazy import numpy as np
from .base import PBC, Coordinate, Option, register

#: per angle: the four atoms as (residue offset, accepted atom names)
ANGLES = {
    "phi": ((-1, ("C",)), (0, ("N",)), (0, ("CA",)), (0, ("C",))),
    "psi": ((0, ("N",)), (0, ("CA",)), (0, ("C",)), (1, ("N",))),
    "chi1": ((0, ("N",)), (0, ("CA",)), (0, ("CB",)),
             (0, ("CG", "CG1", "OG", "OG1", "SG"))),
}

MISSING, SEVERAL = -1, -2


class _Names(tuple):
    """Angle names, shown as YAML writes a list (``[phi, psi]``)."""

    def __str__(self):
        return f"[{', '.join(self)}]"

    __repr__ = __str__


class _AngleList(Option):
    """A list of angle names (``[phi, psi]``, or ``phi psi`` as one string)."""

    def parse(self, value, source, key, resolve_path):
        items = value.replace(",", " ").split() if isinstance(value, str) else value
        if not isinstance(items, list) or not items or \
                not all(isinstance(a, str) for a in items):
            shown = repr(value)[:80]
            raise ConfigError(f"must be a list of angles from {', '.join(self.choices)}"
                              f", e.g. [phi, psi]; got {shown}", source=source, key=key)
        items = [a.strip().lower() for a in items]
        for a in items:
            if a not in self.choices:
                close = difflib.get_close_matches(a, self.choices, n=1)
                hint = f" Did you mean '{close[0]}'?" if close else ""
                raise ConfigError(f"unknown angle {a!r}; the angles are "
                                  f"{', '.join(self.choices)}.{hint}", source=source,
                                  key=key)
        return _Names(a for a in self.choices if a in items)  # columns' order


@register
class Backbone(Coordinate):
    """φ, ψ (and χ1) of every selected residue, one column each, in degrees."""

    type = "backbone"
    units = "degrees"
    summary = ("dihedrals phi, psi (and chi1) of every selected residue in "
               "(-180, 180], as MDAnalysis' Ramachandran; one column per angle, "
               "residue by residue, named as cpptraj: phi:2, psi:2, phi:3, ... "
               "(angle:resid; with name: A, A:phi:2)")
    pbc_note = ("each dihedral's atoms are bonded along one chain: with the "
                "topology's bonds (TPR, PSF, LAMMPS data) the chain is made whole "
                "and measured along the molecule (no minimum image); without bonds "
                "(a PDB or GRO), or with pbc: true, each bond vector is the minimum "
                "image along the periodic dimensions, as in Ramachandran")
    options = {
        "select": Option("MDAnalysis selection of the residues (each residue with a "
                         "selected atom), e.g. 'protein and resid 2-14'; the "
                         "neighbours' C and N are read from the residues before and "
                         "after (same segid, resid -1 / +1), selected or not",
                         "selection", "protein"),
        "angles": _AngleList("which dihedrals: phi (C-N-CA-C, from the previous "
                             "residue's C), psi (N-CA-C-N, to the next residue's N), "
                             "chi1 (N-CA-CB-CG; gamma atom CG, CG1, OG, OG1 or SG). "
                             "An angle a residue lacks has no column, as in cpptraj "
                             "(Ramachandran leaves out the whole first and last "
                             "residue): phi of a chain's first residue, psi of its "
                             "last, chi1 of Gly and Ala, caps; streamrun check and "
                             "--dry-run list the columns",
                             "choices", _Names(("phi", "psi")),
                             ("phi", "psi", "chi1")),
        "pbc": PBC,
    }

    def __init__(self, key, name=None, **options):
        super().__init__(key, name, **options)
        self.prefix = f"{name}:" if name else ""

    def prepare(self, ctx):
        u = ctx.universe
        residues = ctx.select("select").residues
        try:
            names = np.asarray(u.atoms.names, dtype=str)
        except Exception:  # NoDataError: e.g. a LAMMPS data file
            raise ctx.error("the topology has no atom names, and dihedrals are found "
                            "by name (N, CA, C, CB, ...); give a topology with atom "
                            "names (PDB, GRO, PSF, TPR)", "select") from None
        quads, labels, resids, protein, twice = _find(u, names, residues, self.angles)
        if twice is not None:
            res, angle = twice
            raise ctx.error(f"residue {res.resname} {res.resid} (or its neighbour) has "
                            f"several atoms of one name among those of {angle}, e.g. "
                            f"alternate locations; keep one location in the "
                            f"topology", "select")
        keep, bonded = _chains(u, quads)
        self.along = bonded and self.pbc is not True
        quads = quads[keep]
        labels = [x for x, k in zip(labels, keep) if k]
        resids = [x for x, k in zip(resids, keep) if k]
        self._check(ctx, residues, protein, labels, resids)

        ix = np.unique(quads)
        self.atoms = u.atoms[ix]
        self._quads = np.searchsorted(ix, quads)
        self._names = [f"{self.prefix}{a}:{r}" for a, r in zip(labels, resids)]
        self.columns = len(self._names)
        if self.along:  # kept whole: the chain, or each angle (several chains)
            where = f"{self.key}.select"
            self._whole = [(self.atoms, where, self.select)] \
                if ctx.one_molecule(self.atoms) else \
                [(u.atoms[q], where, self.select) for q in quads]

    def _check(self, ctx, residues, protein, labels, resids):
        """Refuse a selection without residues that have N, CA and C, one that gives
        no column of an asked angle, or the same column twice (one resid in two
        chains)."""
        if not protein:
            kinds = sorted(set(residues.resnames))
            shown = ", ".join(kinds[:6]) + (", ..." if len(kinds) > 6 else "")
            raise ctx.error(
                f"selection {self.select!r} ({len(residues)} residue(s): {shown}) "
                f"has no {' or '.join(self.angles)} dihedral: each needs atoms named "
                f"N, CA and C in the residue (and C of the residue before, N of the "
                f"one after, CB and CG for chi1); select protein residues, e.g. "
                f"'protein and resid 2-14'", "select")
        for angle in self.angles:
            if angle not in labels:
                atoms = " - ".join("/".join(w) for _, w in ANGLES[angle])
                raise ctx.error(f"no residue of {self.select!r} has {angle} "
                                f"({atoms}); remove {angle} or select residues that "
                                f"have it", "angles")
        seen = set()
        for a, r in zip(labels, resids):
            if (a, r) in seen:
                raise ctx.error(f"selection {self.select!r} has two residues with "
                                f"resid {r} (several chains?), so {a}:{r} would be two "
                                f"columns; give each chain its own backbone coordinate "
                                f"with a name (a prefix: A:{a}:{r})", "select")
            seen.add((a, r))

    def compute(self, frame):
        from MDAnalysis.lib.distances import calc_dihedrals

        pos = frame.positions(self.atoms)
        a, b, c, d = (pos[i] for i in self._quads.T)
        values = np.degrees(calc_dihedrals(
            a, b, c, d, box=None if self.along else frame.box(self.pbc)))
        values[values <= -180.0] = 180.0
        return values

    def column_names(self) -> list[str]:
        return list(self._names)


def _find(u, names, residues, angles):
    """The angles of ``residues`` whose atoms exist, by name.

    Returns
    -------
    quads : numpy.ndarray, shape (n, 4)
        Atom indices of each angle.
    labels, resids : list
        Its angle name and the resid of its residue.
    protein : bool
        Whether any of ``residues`` has atoms named N, CA and C.
    twice : tuple or None
        (Residue, angle) of the first angle with two atoms of one name.
    """
    resindex, n_res = u.atoms.resindices, len(u.residues)
    atom_of = {}  # atom names -> per residue of the system: atom, MISSING, SEVERAL
    for parts in ANGLES.values():
        for _, wanted in parts:
            if wanted not in atom_of:
                atom_of[wanted] = _one_per_residue(names, resindex, n_res, wanted)
    neighbour = _neighbours(u, residues)
    quads, labels, resids = [], [], []
    for r, resid in zip(residues.ix, residues.resids):
        for angle in angles:
            atoms = []
            for offset, wanted in ANGLES[angle]:
                other = neighbour[offset].get(r) if offset else r
                atoms.append(MISSING if other is None else int(atom_of[wanted][other]))
            if MISSING in atoms:
                continue
            if SEVERAL in atoms:
                return None, None, None, None, (u.residues[r], angle)
            quads.append(atoms)
            labels.append(angle)
            resids.append(int(resid))
    protein = np.all([atom_of[(n,)][residues.ix] >= 0 for n in ("N", "CA", "C")],
                     axis=0).any()
    return (np.asarray(quads, dtype=np.intp).reshape(-1, 4), labels, resids,
            bool(protein), None)


def _one_per_residue(names, resindex, n_res, wanted):
    """Per residue of the system: the index of its atom named one of ``wanted``,
    MISSING, or SEVERAL."""
    hit = np.flatnonzero(np.isin(names, wanted))
    atom = np.full(n_res, MISSING, dtype=np.intp)
    atom[resindex[hit]] = hit
    atom[np.bincount(resindex[hit], minlength=n_res) > 1] = SEVERAL
    return atom


def _neighbours(u, residues):
    """{-1: {residue ix: previous residue ix}, 1: {...: next}}: the residue of the
    same segid with resid - 1 / + 1, the adjacent one if it is (as MDAnalysis'
    ``_get_prev_residues_by_resid``), else the first such residue."""
    segids, resids = u.residues.segids, u.residues.resids
    first = {}
    for i, key in enumerate(zip(segids, resids)):
        first.setdefault(key, i)
    out = {}
    for step in (-1, 1):
        found = {}
        for r in residues.ix:
            key = (segids[r], resids[r] + step)
            j = r + step
            if 0 <= j < len(resids) and (segids[j], resids[j]) == key:
                found[r] = j
            elif key in first:
                found[r] = first[key]
        out[step] = found
    return out


def _chains(u, quads):
    """Which angles are chains of bonded atoms, and whether all are known to be.

    Returns (keep, along): ``keep`` is False for an angle two of whose consecutive
    atoms both have bonds in the topology, but not to each other (a chain break
    between consecutive resids); ``along`` is True when the topology bonds every
    consecutive pair of every kept angle (each angle is then of one molecule).
    """
    keep = np.ones(len(quads), dtype=bool)
    try:
        bonds = np.asarray(u.bonds.to_indices(), dtype=np.intp).reshape(-1, 2)
    except Exception:  # NoDataError: the topology has no bonds
        return keep, False
    if bonds.size == 0 or quads.size == 0:
        return keep, False
    n = len(u.atoms)
    codes = np.unique(bonds.min(axis=1) * n + bonds.max(axis=1))
    degree = np.bincount(bonds.ravel(), minlength=n)
    first, second = quads[:, :3], quads[:, 1:]
    bonded = np.isin(np.minimum(first, second) * n + np.maximum(first, second), codes)
    known = (degree[first] > 0) & (degree[second] > 0)
    keep = ~(known & ~bonded).any(axis=1)
    return keep, bool(keep.any() and bonded[keep].all())
