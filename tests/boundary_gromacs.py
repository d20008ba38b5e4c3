"""A GROMACS system periodic in x and y only, written by the tests.

:func:`write_slab` turns ``example_sims/nacl_gromacs/start.gro`` (Na+, Cl- and 346
SPC/E waters in a 2.2 nm cubic box, amber99sb-ildn, every molecule whole) into a
water slab between two walls: every molecule is put into the box along z by its
first atom, the slab is moved up by :data:`GAP` and the box z edge is stretched to
``2.2 + 2 * GAP`` nm, so that the walls at z = 0 and z = Lz (mdp ``nwall = 2``)
are at least ``GAP - 0.1`` nm from every atom. Along x and y the box stays
periodic (``pbc = xy``) and the molecules stay whole, some sticking out of the box.

What GROMACS 2022.5 needs for ``pbc = xy`` (seen here; grompp's own words):

- the Verlet scheme (the only one since 2020: ``cutoff-scheme = group`` is "The
  group cutoff scheme has been removed since GROMACS 2020. Please use the Verlet
  cutoff scheme.") accepts ``pbc = xy`` only with walls: without ``nwall = 2``
  grompp stops with "With Verlet lists only full pbc or pbc=xy with walls is
  supported" (and "The box volume is required for calculating rlist ...");
- with walls and PME, ``ewald-geometry = 3dc`` (without it, a warning: "With
  pbc=xy you should use ewald-geometry=3dc"); reaction-field works too;
- ``pbc = no`` is refused the same way ("With Verlet lists only full pbc or
  pbc=xy with walls is supported"): upstream GROMACS 2022 cannot run a
  non-periodic system at all.

mdrun's IMD (``-imdport 0 -imdwait``, ``IMD-group`` in the mdp) runs with this
system as with a fully periodic one.

:func:`write_slab` also picks the groups the tests measure (one water each, as
``resid`` selections):

- ``low`` and ``high``: the waters nearest the lower and the upper wall, apart
  along z by more than half the box z edge: a minimum image along z (which the
  engine does not have) would take the wrong image of one of them;
- ``crosser``: a water whose centre sits just inside the x edge at ``x = Lx``,
  given a velocity of :data:`PUSH` nm/ps along +x, so that its centre crosses
  the edge in the first streamed frames.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

EXAMPLE = Path(__file__).resolve().parents[1] / "example_sims" / "nacl_gromacs"

#: Distance (nm) between the original cubic box and each wall.
GAP = 0.3
#: Velocity (nm/ps) along +x given to the crossing water.
PUSH = 3.0

TOPOLOGY = """\
; Na+ and Cl- in SPC/E water between two walls, amber99sb-ildn
#include "amber99sb-ildn.ff/forcefield.itp"
#include "amber99sb-ildn.ff/spce.itp"
#include "amber99sb-ildn.ff/ions.itp"

[ system ]
Na+ Cl- in an SPC/E water slab

[ molecules ]
NA   1
CL   1
SOL  346
"""

#: The segment's mdp; ``{pbc}`` is the whole pbc line (with the walls it needs).
SLAB_MDP = """\
; One streamrun segment: a water slab periodic in x and y, walls at z = 0 and Lz.
integrator      = sd
dt              = {dt}
nsteps          = {nsteps}
tc-grps         = System
tau-t           = 1.0
ref-t           = 300
ld-seed         = 1234
gen-vel         = no
continuation    = yes
constraints     = h-bonds
cutoff-scheme   = Verlet
coulombtype     = PME
rcoulomb        = 0.9
rvdw            = 0.9
{pbc}
pcoupl          = no            ; IMD v2 streams no box
; the reference: a .trr at the streamed steps (step 0 included)
nstxout         = {every}
nstvout         = 0
nstfout         = 0
nstxout-compressed = 0
nstenergy       = 0
nstlog          = 0
nstcalcenergy   = {every}
IMD-group       = System
"""

#: ``pbc = xy`` and what GROMACS 2022 needs with it.
PBC_XY = """\
pbc             = xy
nwall           = 2
wall-type       = 9-3
wall-atomtype   = OW OW
wall-density    = 33 33
ewald-geometry  = 3dc"""


@dataclass
class Slab:
    """What :func:`write_slab` wrote.

    Attributes
    ----------
    folder : Path
    start, topology, mdp : Path
        ``start.gro`` (positions and velocities), ``topol.top``, ``md.mdp``.
    pbc_line : int
        Line of ``md.mdp`` that sets ``pbc``.
    box : numpy.ndarray, shape (3,)
        Box edges in Å (orthorhombic).
    positions : numpy.ndarray
        Start positions in Å, every molecule whole.
    low, high, crosser : int
        ``resid`` of the water nearest the lower wall, nearest the upper wall,
        and of the water pushed across the x edge.
    """

    folder: Path
    start: Path
    topology: Path
    mdp: Path
    pbc_line: int
    box: np.ndarray
    positions: np.ndarray
    low: int
    high: int
    crosser: int


def _read_gro(path):
    """(the 20 name columns of each atom line, positions and velocities in
    thousandths of a nm and ten-thousandths of a nm/ps as integers, box in nm)."""
    lines = Path(path).read_text().splitlines()
    n = int(lines[1])
    atoms = lines[2:2 + n]
    names = [line[:20] for line in atoms]
    x = np.array([[round(float(line[20 + 8 * i:28 + 8 * i]) * 1000) for i in range(3)]
                  for line in atoms], dtype=np.int64)
    v = np.array([[round(float(line[44 + 8 * i:52 + 8 * i]) * 10000) for i in range(3)]
                  for line in atoms], dtype=np.int64)
    box = np.array(lines[2 + n].split(), dtype=float)
    return names, x, v, box


def _write_gro(path, title, names, x, v, box_milli):
    out = [title, f"{len(names):5d}"]
    for name, (a, b, c), (u, w, z) in zip(names, x, v):
        out.append(f"{name}{a / 1000:8.3f}{b / 1000:8.3f}{c / 1000:8.3f}"
                   f"{u / 10000:8.4f}{w / 10000:8.4f}{z / 10000:8.4f}")
    out.append("".join(f"{e / 1000:10.5f}" for e in box_milli))
    Path(path).write_text("\n".join(out) + "\n")


def write_mdp(folder, *, nsteps, every, dt=0.002, pbc=PBC_XY, name="md.mdp"):
    """Write the segment mdp with ``pbc`` (the pbc line and what goes with it);
    returns (path, line number of the ``pbc`` key)."""
    path = Path(folder) / name
    text = SLAB_MDP.format(nsteps=nsteps, every=every, dt=dt, pbc=pbc)
    path.write_text(text)
    number = next(i for i, line in enumerate(text.splitlines(), 1)
                  if line.split("=")[0].strip().lower() == "pbc")
    return path, number


def write_slab(folder, *, nsteps=200, every=10, dt=0.002):
    """Write ``start.gro``, ``topol.top`` and ``md.mdp`` (``pbc = xy``, walls) of
    the water slab into ``folder``; see the module docstring.

    Returns
    -------
    Slab
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    names, x, v, box = _read_gro(EXAMPLE / "start.gro")
    edge = np.rint(box * 1000).astype(np.int64)  # 2200 2200 2200
    gap = round(GAP * 1000)
    # molecules: NA, CL, then waters of 3 atoms; each put into the box along z
    # by its first atom (exact: integer thousandths of a nm)
    starts = [0, 1] + list(range(2, len(names), 3))
    sizes = [1, 1] + [3] * ((len(names) - 2) // 3)
    for first, size in zip(starts, sizes):
        shift = (x[first, 2] // edge[2]) * edge[2]
        x[first:first + size, 2] -= shift
    x[:, 2] += gap
    new_edge = edge.copy()
    new_edge[2] = edge[2] + 2 * gap
    assert x[:, 2].min() >= gap - 100 and x[:, 2].max() <= new_edge[2] - gap + 100

    masses = np.array([15.9994, 1.008, 1.008])
    waters = (x[2:].reshape(-1, 3, 3) * masses[:, None]).sum(axis=1) / masses.sum()
    resid = np.arange(len(waters)) + 3  # resids 1 and 2 are the ions
    low = int(resid[np.argmin(waters[:, 2])])
    high = int(resid[np.argmax(waters[:, 2])])
    # the water whose centre is nearest 0.04 nm inside the x edge at Lx
    inside = edge[0] - waters[:, 0]
    candidates = np.flatnonzero((inside > 20) & (inside < 80) &
                                ~np.isin(resid, (low, high)))
    pick = candidates[np.argmin(np.abs(inside[candidates] - 40))]
    crosser = int(resid[pick])
    atoms = 2 + 3 * pick + np.arange(3)
    v[atoms, 0] = round(PUSH * 10000)

    start = folder / "start.gro"
    _write_gro(start, "Na+ Cl- in an SPC/E water slab (pbc = xy, walls at 0 and Lz)",
               names, x, v, new_edge)
    topology = folder / "topol.top"
    topology.write_text(TOPOLOGY)
    mdp, pbc_line = write_mdp(folder, nsteps=nsteps, every=every, dt=dt)
    return Slab(folder, start, topology, mdp, pbc_line,
                new_edge.astype(np.float64) / 100.0,  # thousandths of nm -> Å
                x.astype(np.float64) / 100.0, low, high, crosser)


def grompp(gmx, folder, mdp="md.mdp", tpr="seg.tpr"):
    """Run ``gmx grompp`` in ``folder``; returns the CompletedProcess (check it)."""
    import subprocess

    return subprocess.run([gmx, "-quiet", "grompp", "-f", mdp, "-c", "start.gro",
                           "-p", "topol.top", "-o", tpr, "-po", "seg-out.mdp"],
                          cwd=folder, capture_output=True, text=True, timeout=120,
                          env=_gmx_env())


def _gmx_env():
    import os

    return {**os.environ, "GMX_MAXBACKUP": "-1"}


def copy_slab(slab: Slab, folder) -> Slab:
    """A copy of the slab's files (and whatever grompp made) in ``folder``."""
    folder = Path(folder)
    shutil.copytree(slab.folder, folder, dirs_exist_ok=True)
    return Slab(folder, folder / slab.start.name, folder / slab.topology.name,
                folder / slab.mdp.name, slab.pbc_line, slab.box, slab.positions,
                slab.low, slab.high, slab.crosser)
