"""Small periodic molecular systems for the pcoord tests, written by the tests.

Plain Python and numpy; every builder writes into a folder (a test's ``tmp_path``)
and returns what the test needs to know about what it wrote.

- :func:`write_chain_system` -- bead-spring chains (LAMMPS ``atom_style full``,
  ``units real``, bonds in the data file) in a Lennard-Jones solvent, in a small
  orthorhombic or triclinic box. The data file holds *wrapped* coordinates with
  *zero* image flags and at least one chain split across the box, the start
  structure a user gets from ``write_data`` + an editor, or from a wrapped frame.
- :func:`write_chain_input` -- the LAMMPS segment input for it: NVT, ``fix imd``
  version 3 with or without ``unwrap on``, and a ``dump`` of the streamed steps
  (step 0 included) for the reference.
- :func:`write_split_protein` -- imdclient's ubiquitin-in-TIP3P system (amber99sb-ildn)
  with every atom shifted so that the protein sits on a box corner, then wrapped
  atom by atom: a start structure with the protein split across the box.
- :func:`read_dump`, :func:`split_bonds` -- what the tests assert about their premises
  (a molecule split at row 0, atoms crossing the box during the run).
- References: :func:`whole_universe` (the engine's own trajectory with molecules whole
  by construction, no make-whole heuristic), one ``ref_<type>`` function per built-in
  coordinate with MDAnalysis' analysis code, :func:`mismatches` (readable
  differences), and :func:`cutoff_margin` / :func:`wrap_margin` (no count, contact
  or wrapped centre sits within rounding of its threshold, so the comparison is
  well-posed).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

# --- streaming a segment ----------------------------------------------------------

#: The aux plugin of the pcoord tests: what a plugin sees of each frame (row, step,
#: time in ps, the Rg of its whole group, the box).
FRAME_INFO = """\
def info(u, group):
    ts = u.trajectory.ts
    return [ts.frame, ts.data['step'], ts.time, group.radius_of_gyration(),
            *u.dimensions]
"""


def stream_segment(folder, setup, coordinates, info_selection):
    """Stream one segment in-process in ``folder``: the config ``setup`` (engine and
    topology keys) with ``coordinates`` as the pcoord and an aux dataset ``info``
    (:data:`FRAME_INFO` on ``info_selection``); returns (config, result)."""
    from streamrun import segment
    from streamrun.config import load

    (folder / "frameinfo.py").write_text(FRAME_INFO)
    cfg = {**setup, "pcoord": coordinates,
           "aux": {"info": [{"type": "plugin", "function": "frameinfo.py:info",
                             "selections": [info_selection]}]}}
    (folder / "streamrun.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    config = load(folder / "streamrun.yaml", [f"engine.workdir={folder}"], environ={})
    return config, segment.run_segment(config)


# --- LAMMPS bead-spring chains ---------------------------------------------------

#: atom_style full as MDAnalysis reads it
ATOM_STYLE = "id resid type charge x y z"

CHAIN_INPUT = """\
# Bead-spring chains (type 1) in a Lennard-Jones solvent (type 2), units real.
# streamrun passes streamrun_port, streamrun_every, streamrun_nsteps (-var).
variable        seed index 12345
variable        start index start.data
variable        dumpfile index check.lammpstrj

units           real
atom_style      full
boundary        p p p
pair_style      lj/cut 8.0
pair_modify     mix geometric shift yes
bond_style      harmonic
special_bonds   lj 0.0 1.0 1.0
read_data       ${{start}}
pair_coeff      1 1 0.20 3.2
pair_coeff      2 2 0.15 3.2
bond_coeff      1 100.0 {bond:.4f}

neighbor        2.0 bin
neigh_modify    every 1 delay 0 check yes

velocity        all create {temperature} ${{seed}} dist gaussian mom yes
fix             bath all langevin {temperature} {temperature} 200.0 ${{seed}}
fix             move all nve
timestep        2.0
thermo          {thermo}

# the reference: the same steps as the stream, step 0 included; wrapped x y z,
# image flags and unwrapped xu yu zu
dump            check all custom ${{streamrun_every}} ${{dumpfile}} id mol type &
                x y z ix iy iz xu yu zu
dump_modify     check sort id format float %20.15g

fix             stream all imd ${{streamrun_port}} version 3 trate ${{streamrun_every}} {unwrap}velocities off forces off nowait off
run             ${{streamrun_nsteps}}
"""


@dataclass
class ChainSystem:
    """What :func:`write_chain_system` wrote.

    Attributes
    ----------
    data : Path
        LAMMPS data file (the topology and the start structure).
    reference : Path
        XYZ file (no box): the start structure with every chain whole, moved by a
        third of a lattice step, for ``reference:`` keys.
    perturbed : Path
        PDB file (CRYST1 box): the start structure whole, every coordinate moved
        by a Gaussian of 0.25 Å, a reference whose contact distances differ from
        the start's (a ``hard_cut`` Q counts ``r <= r0``: at the reference
        structure itself every contact sits on its cutoff).
    box : numpy.ndarray, shape (3, 3)
        Box vectors (rows a, b, c) in Å.
    positions : numpy.ndarray
        The wrapped start positions written to the data file.
    images : numpy.ndarray of int, shape (n_atoms, 3)
        Lattice vectors (in units of a, b, c) that make every molecule of the start
        structure whole: ``positions + images @ box``. Known from the
        construction, so the reference needs no make-whole heuristic.
    bonds : numpy.ndarray, shape (n_bonds, 2)
        0-based atom indices.
    n_chains, chain_length : int
        Chain ``i`` is ``resid i+1``, atoms ``index i*chain_length`` to
        ``(i+1)*chain_length - 1``; the solvent is type 2, one resid per atom.
    bond_length : float
        Mean bond length of the lattice chains (the bonds' rest length), Å.
    """

    data: Path
    reference: Path
    perturbed: Path
    box: np.ndarray
    positions: np.ndarray
    images: np.ndarray
    bonds: np.ndarray
    n_chains: int
    chain_length: int
    bond_length: float


def _snake(n):
    """Lattice sites (i, j, k) of an n x n x n cube in an order in which every site
    is a lattice neighbour of the one before (a 3-D boustrophedon)."""
    layer = []
    for j in range(n):
        row = range(n) if j % 2 == 0 else range(n - 1, -1, -1)
        layer += [(i, j) for i in row]
    sites = []
    for k in range(n):
        sites += [(i, j, k) for i, j in (layer if k % 2 == 0 else layer[::-1])]
    return sites


def wrap(positions, box):
    """Atoms into the primary cell [0, 1) in fractional coordinates (any box);
    returns (wrapped positions, the integer lattice vectors taken off)."""
    frac = positions @ np.linalg.inv(box)
    images = np.floor(frac)
    frac -= images
    over = frac >= 1.0  # -1e-17 wraps to 1.0 in floating point
    frac[over] -= 1.0
    images[over] += 1.0
    return frac @ box, images.astype(int)


def write_chain_system(folder, *, tilt=(0.0, 0.0, 0.0), length=18.0, n_side=5,
                       n_chains=6, chain_length=10, chain_gap=20, seed=2024,
                       first_bead=(8.9, 2.0, 16.5), name="start"):
    """Write bead-spring chains in LJ solvent, with chains split across the box.

    The ``n_side**3`` lattice sites of the box are visited in a snake order; chain
    ``c`` takes the ``chain_length`` sites starting at ``c * chain_gap`` (so that
    each bond is one lattice step), the other sites are solvent atoms. Every
    position is jittered by up to 0.15 Å (no two distances tie, e.g. with a
    ``count`` cutoff). All atoms are then shifted so that the first bead sits at
    ``first_bead`` and wrapped into the box, and written with zero image flags.

    With the defaults (an 18 Å box, chains of 10 beads 3.6 Å apart, 14 Å long, so
    longer than half the box), every chain is split across the box. Chain 1
    (resid 1) runs from x = 8.9 Å in +x across the box edge, so that each of its
    beads is within half a box of its first bead although the chain is split:
    MDAnalysis' ``make_whole`` takes such a molecule for whole (a shortcut for
    orthorhombic boxes) and leaves it broken; so are chains 3 to 6. Chain 2 is
    split the plain way (``make_whole`` mends it).

    Parameters
    ----------
    folder : path-like
    tilt : (xy, xz, yz)
        LAMMPS tilt factors in Å; any non-zero makes a triclinic box.
    length : float
        Box edge lengths lx = ly = lz in Å.

    Returns
    -------
    ChainSystem
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    xy, xz, yz = tilt
    box = np.array([[length, 0.0, 0.0], [xy, length, 0.0], [xz, yz, length]])
    sites = _snake(n_side)
    assert n_chains * chain_gap <= len(sites) and chain_length <= chain_gap
    chain_sites = [sites[c * chain_gap + i] for c in range(n_chains)
                   for i in range(chain_length)]
    taken = set(chain_sites)
    solvent_sites = [s for s in sites if s not in taken]
    frac = (np.array(chain_sites + solvent_sites, dtype=float) + 0.5) / n_side
    rng = np.random.default_rng(seed)
    whole = frac @ box + rng.uniform(-0.15, 0.15, size=(len(frac), 3))
    whole += np.asarray(first_bead) - whole[0]
    n_chain_atoms = n_chains * chain_length
    bonds = np.array([(c * chain_length + i, c * chain_length + i + 1)
                      for c in range(n_chains) for i in range(chain_length - 1)])
    positions, taken_off = wrap(whole, box)
    resids = [c + 1 for c in range(n_chains) for _ in range(chain_length)]
    resids += list(range(n_chains + 1, n_chains + 1 + len(solvent_sites)))
    types = [1] * n_chain_atoms + [2] * len(solvent_sites)
    bond_length = float(np.mean(np.linalg.norm(
        whole[bonds[:, 1]] - whole[bonds[:, 0]], axis=1)))

    lines = ["bead-spring chains in LJ solvent, split across the box (streamrun tests)",
             "", f"{len(positions)} atoms", "2 atom types", f"{len(bonds)} bonds",
             "1 bond types", "",
             f"0 {length:.10f} xlo xhi", f"0 {length:.10f} ylo yhi",
             f"0 {length:.10f} zlo zhi"]
    if any(tilt):
        lines.append(f"{xy:.10f} {xz:.10f} {yz:.10f} xy xz yz")
    lines += ["", "Masses", "", "1 14.027", "2 20.18", "", "Atoms # full", ""]
    for i, (r, t, p) in enumerate(zip(resids, types, positions), 1):
        lines.append(f"{i} {r} {t} 0.0 {p[0]:.10f} {p[1]:.10f} {p[2]:.10f} 0 0 0")
    lines += ["", "Bonds", ""]
    lines += [f"{n} 1 {a + 1} {b + 1}" for n, (a, b) in enumerate(bonds, 1)]
    data = folder / f"{name}.data"
    data.write_text("\n".join(lines) + "\n")

    # the reference structure: whole, and moved by a third of a lattice step
    reference = folder / f"{name}_whole.xyz"
    names = ["C" if t == 1 else "Ne" for t in types]
    moved = whole + 0.3 * length / n_side
    reference.write_text(f"{len(whole)}\nwhole chains\n" + "".join(
        f"{n} {p[0]:.8f} {p[1]:.8f} {p[2]:.8f}\n" for n, p in zip(names, moved)))
    perturbed = folder / f"{name}_perturbed.pdb"
    moved = whole + rng.normal(0.0, 0.25, size=whole.shape)
    lengths = np.linalg.norm(box, axis=1)
    angles = [np.degrees(np.arccos(box[i] @ box[j] / (lengths[i] * lengths[j])))
              for i, j in ((1, 2), (0, 2), (0, 1))]
    perturbed.write_text(
        "CRYST1{:9.3f}{:9.3f}{:9.3f}{:7.2f}{:7.2f}{:7.2f} P 1           1\n".format(
            *lengths, *angles)
        + "".join(f"ATOM  {i:5d} {n:<4s} {'CHN' if n == 'C' else 'SOL'} A{r % 10000:4d}"
                  f"    {p[0]:8.3f}{p[1]:8.3f}{p[2]:8.3f}  1.00  0.00          "
                  f"{n[:2]:>2s}\n"
                  for i, (n, r, p) in enumerate(zip(names, resids, moved), 1))
        + "END\n")
    return ChainSystem(data, reference, perturbed, box, positions, taken_off, bonds,
                       n_chains, chain_length, bond_length)


def write_chain_input(folder, system, *, unwrap, temperature=450.0, name="chains.in"):
    """Write the LAMMPS segment input; ``unwrap`` puts ``unwrap on`` in fix imd."""
    path = Path(folder) / name
    path.write_text(CHAIN_INPUT.format(bond=system.bond_length, temperature=temperature,
                                       thermo=1000,
                                       unwrap="unwrap on " if unwrap else ""))
    return path


def read_data_positions(path):
    """Atom positions (by id order) and box of a LAMMPS data file, as written,
    without MDAnalysis (the raw numbers the premise is about)."""
    text = Path(path).read_text().splitlines()
    atoms = text.index(next(line for line in text if line.startswith("Atoms")))
    rows = []
    for line in text[atoms + 2:]:
        if not line.strip():
            break
        rows.append([float(v) for v in line.split()[:7]])
    rows = np.array(sorted(rows))
    return rows[:, 4:7]


def split_bonds(positions, bonds, box):
    """Bonds whose raw (not minimum-image) vector has a fractional component of
    more than half a box: the molecule is split across the box there."""
    frac = (positions[bonds[:, 1]] - positions[bonds[:, 0]]) @ np.linalg.inv(box)
    return np.flatnonzero(np.abs(frac).max(axis=1) > 0.5)


@dataclass
class DumpFrame:
    step: int
    box_line: str
    columns: dict


def read_dump(path):
    """Frames of a LAMMPS custom dump: step, box header, and every column (sorted
    by id) as a numpy array keyed by its name."""
    lines = Path(path).read_text().splitlines()
    frames, i = [], 0
    while i < len(lines):
        assert lines[i] == "ITEM: TIMESTEP", lines[i]
        step = int(lines[i + 1])
        n = int(lines[i + 3])
        box_line = lines[i + 4]
        header = lines[i + 8].split()[2:]
        table = np.array([line.split() for line in lines[i + 9:i + 9 + n]], dtype=float)
        table = table[np.argsort(table[:, header.index("id")])]
        frames.append(DumpFrame(step, box_line, {h: table[:, k]
                                                 for k, h in enumerate(header)}))
        i += 9 + n
    return frames


# --- GROMACS: imdclient's protein in water, split across the box -----------------

def imdclient_gromacs_inputs():
    """(structure .gro, topology .top) of imdclient's GROMACS test system."""
    import imdclient.data

    folder = Path(os.path.dirname(imdclient.data.__file__)) / "gromacs" / "md"
    return folder / "gromacs_struct.gro", folder / "gromacs_v3.top"


GROMACS_MDP = """\
; One streamrun segment: ubiquitin in TIP3P (amber99sb-ildn), NVT, stochastic dynamics.
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
pbc             = xyz
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


@dataclass
class SplitProtein:
    """What :func:`write_split_protein` wrote.

    Attributes
    ----------
    start, whole, topology : Path
        ``start.gro`` (split), ``whole.gro`` (imdclient's structure, the protein
        whole) and ``topol.top``.
    perturbed : Path
        ``perturbed.gro``: ``whole.gro`` with every coordinate moved by a Gaussian
        of 0.25 Å (a reference whose contact distances differ from the start's).
    positions : numpy.ndarray
        The positions of ``start.gro`` (Å, as MDAnalysis reads them).
    images : numpy.ndarray of int, shape (n_atoms, 3)
        Lattice vectors that make every molecule of ``start.gro`` whole again:
        ``positions + images @ box`` is the whole structure, shifted.
    """

    start: Path
    whole: Path
    topology: Path
    perturbed: Path
    positions: np.ndarray
    images: np.ndarray


def write_split_protein(folder, corner_offset=(0.3, -0.2, 0.4), seed=7):
    """Write imdclient's ubiquitin in water with every atom shifted so that the
    protein's centre of geometry sits ``corner_offset`` Å from the box origin,
    then wrapped atom by atom (MDAnalysis ``wrap(compound='atoms')``): the
    protein is split across the box in x, y and z, as ``gmx trjconv -pbc atom``
    leaves a structure.

    Returns
    -------
    SplitProtein
    """
    import warnings

    import MDAnalysis as mda

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    gro, top = imdclient_gromacs_inputs()
    text = top.read_text()
    # imdclient's topology includes posre.itp under -DPOSRES; it is not shipped
    text = re.sub(r'#ifdef POSRES\n#include "posre.itp"\n#endif\n', "", text)
    (folder / "topol.top").write_text(text)
    (folder / "whole.gro").write_text(gro.read_text())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        u = mda.Universe(str(gro))
        whole = u.atoms.positions.copy()
        u.atoms.positions = whole + np.random.default_rng(seed).normal(
            0.0, 0.25, size=whole.shape)
        u.atoms.write(str(folder / "perturbed.gro"))
        u.atoms.positions = whole
        protein = u.select_atoms("protein")
        shift = -protein.center_of_geometry() + np.asarray(corner_offset)
        u.atoms.translate(shift)
        shifted = u.atoms.positions.copy()
        u.atoms.wrap(compound="atoms")
        u.atoms.write(str(folder / "start.gro"))
        start = mda.Universe(str(folder / "start.gro"))
        box = start.trajectory.ts.triclinic_dimensions.astype(np.float64)
    images = np.rint((shifted - start.atoms.positions) @ np.linalg.inv(box)).astype(int)
    return SplitProtein(folder / "start.gro", folder / "whole.gro",
                        folder / "topol.top", folder / "perturbed.gro",
                        start.atoms.positions.astype(np.float64), images)


def write_gromacs_mdp(folder, *, nsteps, every, dt=0.002, name="md.mdp"):
    path = Path(folder) / name
    path.write_text(GROMACS_MDP.format(nsteps=nsteps, every=every, dt=dt))
    return path


# --- references: MDAnalysis' own analysis code, one function per coordinate ------
#
# Every function takes the engine's own trajectory as a Universe whose molecules are
# whole (see whole_universe) and returns one value per frame, computed with
# MDAnalysis' analysis code. None of them shares code with streamrun.

#: how close a streamed value must be to its reference (Å, degrees, counts, Q)
TOLERANCE = {"distance": 1e-3, "min_distance": 1e-3, "position": 1e-3, "rmsd": 1e-3,
             "rg": 1e-3, "angle": 1e-2, "dihedral": 1e-2, "count": 0.0,
             "contacts": 1e-3}


class AddImages:
    """MDAnalysis transformation: add fixed lattice vectors to every atom
    (``images @`` the frame's box vectors)."""

    def __init__(self, images):
        self.images = np.asarray(images, dtype=np.float64)

    def __call__(self, ts):
        ts.positions = ts.positions + self.images @ ts.triclinic_dimensions
        return ts


def whole_universe(topology, coordinates=None, images=None, start=None, nojump=False,
                   **kwargs):
    """A Universe whose molecules are whole on every frame, made so without any
    make-whole heuristic.

    The first frame is made whole by the lattice shifts ``images`` that the
    builder knows for the ``start`` positions (:func:`write_chain_system`,
    :func:`write_split_protein`); if the first frame differs from ``start`` by
    lattice vectors (an engine puts atoms in the box at step 0), those are
    taken into account. Later frames follow by continuity: the engine's own
    unwrapped coordinates, or MDAnalysis' ``NoJump`` transformation with
    ``nojump=True``. (MDAnalysis' ``transformations.unwrap`` is not used: for a
    molecule longer than half an orthorhombic box its ``make_whole`` can take a
    split molecule for whole and leave it so.)
    """
    import warnings

    import MDAnalysis as mda
    from MDAnalysis import transformations

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        args = [str(topology)] + ([str(coordinates)] if coordinates else [])
        u = mda.Universe(*args, **kwargs)
    steps = []
    if images is not None:
        images = np.asarray(images)
        if start is not None:
            box = u.trajectory.ts.triclinic_dimensions.astype(np.float64)
            images = images + np.rint((np.asarray(start, dtype=np.float64)
                                       - u.atoms.positions) @ np.linalg.inv(box)
                                      ).astype(int)
        steps.append(AddImages(images))
    if nojump:
        steps.append(transformations.NoJump())
    if steps:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            u.trajectory.add_transformations(*steps)
    return u


def longest_bond(u, select="all"):
    """Longest raw (not minimum-image) bond of ``select`` in any frame, Å: a check
    that the reference's molecules really are whole."""
    bonds = u.select_atoms(select).bonds
    return max(float(np.linalg.norm(bonds.atom1.positions - bonds.atom2.positions,
                                    axis=1).max()) for _ in u.trajectory)


def _centre(group, center="mass"):
    return group.center_of_mass() if center == "mass" else group.center_of_geometry()


def _per_frame(u, f):
    return np.array([f(ts) for ts in u.trajectory], dtype=np.float64)


def ref_distance(u, c):
    from MDAnalysis.lib.distances import calc_bonds

    a, b = u.select_atoms(c["a"]), u.select_atoms(c["b"])
    center = c.get("center", "mass")
    return _per_frame(u, lambda ts: calc_bonds(_centre(a, center), _centre(b, center),
                                               box=ts.dimensions))


def ref_min_distance(u, c):
    from MDAnalysis.lib.distances import distance_array

    a, b = u.select_atoms(c["a"]), u.select_atoms(c["b"])
    return _per_frame(u, lambda ts: distance_array(a.positions, b.positions,
                                                   box=ts.dimensions).min())


def ref_position(u, c):
    from MDAnalysis.lib.distances import apply_PBC, minimize_vectors

    g = u.select_atoms(c["select"])
    axis = "xyz".index(c["axis"])
    center = c.get("center", "mass")
    if c.get("relative_to"):
        r = u.select_atoms(c["relative_to"])
        return _per_frame(u, lambda ts: minimize_vectors(
            (_centre(g, center) - _centre(r, center))[None], ts.dimensions)[0][axis])
    return _per_frame(u, lambda ts: apply_PBC(_centre(g, center)[None],
                                              ts.dimensions)[0][axis])


def ref_count(u, c):
    sel = f"({c['b']}) and around {c['cutoff']} ({c['a']})"
    return _per_frame(u, lambda ts: len(u.select_atoms(sel)))


def ref_rmsd(u, c, ref):
    """``ref``: the reference Universe (whole). rms.RMSD with the fit group as
    ``select`` and the measured group in ``groupselections``; with ``fit: none``,
    rms.rmsd without superposition after moving the group by the lattice vector
    that puts its centre nearest the reference group's centre."""
    from MDAnalysis.analysis import rms
    from MDAnalysis.lib.distances import minimize_vectors

    select, fit = c["select"], c.get("fit", c["select"])
    weights = "mass" if c.get("weights", "none") == "mass" else None
    if fit == "none":
        g, r = u.select_atoms(select), ref.select_atoms(select)
        w = g.masses if weights else None
        refpos = r.positions.astype(np.float64)
        rc = refpos.mean(axis=0)

        def one(ts):
            pos = g.positions.astype(np.float64)
            d = pos.mean(axis=0) - rc
            pos += minimize_vectors(d[None], ts.dimensions)[0] - d
            return rms.rmsd(pos, refpos, weights=w, center=False, superposition=False)
        return _per_frame(u, one)
    if fit == select:
        run = rms.RMSD(u, ref, select=select, weights=weights).run()
        return run.results.rmsd[:, 2]
    run = rms.RMSD(u, ref, select=fit, groupselections=[select], weights=weights,
                   weights_groupselections=[weights]).run()
    return run.results.rmsd[:, 3]


def ref_rg(u, c):
    g = u.select_atoms(c["select"])
    if c.get("weights", "mass") == "mass":
        return _per_frame(u, lambda ts: g.radius_of_gyration())

    def unweighted(ts):
        x = g.positions.astype(np.float64)
        return np.sqrt(np.mean(np.sum((x - x.mean(axis=0)) ** 2, axis=1)))
    return _per_frame(u, unweighted)


def ref_angle(u, c):
    from MDAnalysis.lib.distances import calc_angles

    groups = [u.select_atoms(c[k]) for k in "abc"]
    center = c.get("center", "mass")
    return _per_frame(u, lambda ts: np.degrees(calc_angles(
        *(_centre(g, center) for g in groups), box=ts.dimensions)))


def ref_dihedral(u, c):
    from MDAnalysis.lib.distances import calc_dihedrals

    groups = [u.select_atoms(c[k]) for k in "abcd"]
    center = c.get("center", "mass")
    values = _per_frame(u, lambda ts: np.degrees(calc_dihedrals(
        *(_centre(g, center) for g in groups), box=ts.dimensions)))
    return np.where(values <= -180.0, values + 360.0, values)  # (-180, 180]


def ref_contacts(u, c, ref):
    from MDAnalysis.analysis import contacts

    method = c.get("method", "hard_cut")
    kwargs = {}
    if method == "soft_cut":
        kwargs = {"beta": c.get("beta", 5.0),
                  "lambda_constant": c.get("lambda_constant", 1.8)}
    run = contacts.Contacts(u, select=(c["a"], c["b"]),
                            refgroup=(ref.select_atoms(c["a"]),
                                      ref.select_atoms(c["b"])),
                            radius=c.get("radius", 4.5), method=method,
                            pbc=c.get("pbc", True), kwargs=kwargs).run()
    return run.results.timeseries[:, 1]


def cutoff_margin(u, c, ref=None):
    """Smallest |distance - cutoff| over every frame and pair that a ``count`` or a
    ``hard_cut``/``radius_cut`` ``contacts`` coordinate compares with a cutoff, Å.
    Well above the streamed positions' rounding (1e-5 Å), a count or Q is the same
    whichever side computes it."""
    from MDAnalysis.lib.distances import capped_distance, distance_array

    a, b = u.select_atoms(c["a"]), u.select_atoms(c["b"])
    if c["type"] == "count":
        margin, cutoff = 0.01, c["cutoff"]
        for ts in u.trajectory:
            _, d = capped_distance(a.positions, b.positions, cutoff + 0.01,
                                   box=ts.dimensions)
            if d.size:
                margin = min(margin, np.abs(d - cutoff).min())
        return margin
    radius = c.get("radius", 4.5)
    r0 = distance_array(ref.select_atoms(c["a"]).positions,
                        ref.select_atoms(c["b"]).positions, box=ref.dimensions)
    native = r0 <= radius  # MDAnalysis' contact_matrix
    cutoff = r0[native] if c.get("method", "hard_cut") == "hard_cut" else radius
    margin = np.abs(r0 - radius).min()
    for ts in u.trajectory:
        r = distance_array(a.positions, b.positions, box=ts.dimensions)[native]
        margin = min(margin, np.abs(r - cutoff).min())
    return margin


def wrap_margin(u, c):
    """Smallest distance (Å, along a box vector) of a ``position`` coordinate's
    centre from a face of the primary cell over every frame: well above the
    positions' rounding, both sides wrap the centre into the same cell."""
    g = u.select_atoms(c["select"])
    margin = np.inf
    for ts in u.trajectory:
        box = ts.triclinic_dimensions.astype(np.float64)
        frac = _centre(g, c.get("center", "mass")) @ np.linalg.inv(box)
        margin = min(margin, float((np.abs(frac - np.rint(frac))
                                    * np.linalg.norm(box, axis=1)).min()))
    return margin


def assert_well_posed(u, coordinates, references):
    """No count or hard/radius cut-off distance sits on its cutoff, and no wrapped
    ``position`` centre on a cell face, in any frame: the comparison cannot then
    turn on the last bit of a float."""
    for c in coordinates:
        if c["type"] == "count" or c.get("method", "hard_cut") != "soft_cut" and \
                c["type"] == "contacts":
            ref = references(c.get("reference"), c.get("reference_format"))
            assert cutoff_margin(u, c, ref) > 2e-5, c["name"]
        if c["type"] == "position" and not c.get("relative_to"):
            assert wrap_margin(u, c) > 1e-4, c["name"]  # nowhere near a cell face


def reference_columns(u, coordinates, reference_universe):
    """One column per built-in coordinate (config dicts, as in the YAML), from the
    engine's own trajectory ``u``.

    ``reference_universe(path_or_None, format_or_None)`` returns the whole
    reference structure for ``rmsd``/``contacts`` (None: the topology's own
    coordinates).
    """
    columns = []
    for c in coordinates:
        kind = c["type"]
        if kind in ("rmsd", "contacts"):
            ref = reference_universe(c.get("reference"), c.get("reference_format"))
            columns.append(globals()[f"ref_{kind}"](u, c, ref))
        else:
            columns.append(globals()[f"ref_{kind}"](u, c))
    return np.column_stack(columns)


def mismatches(written, expected, coordinates):
    """Cells out of tolerance, as readable lines: which coordinate, which row,
    expected vs got (empty when all agree)."""
    out = []
    for j, c in enumerate(coordinates):
        tol = TOLERANCE[c["type"]]
        got, want = written[:, j], expected[:, j]
        diff = np.abs(got - want)
        if c["type"] == "dihedral":
            diff = np.abs((got - want + 180.0) % 360.0 - 180.0)
        bad = np.flatnonzero(~(diff <= tol))
        if bad.size:
            rows = ", ".join(f"row {i}: expected {want[i]:.6f} got {got[i]:.6f}"
                             for i in bad[:3])
            out.append(f"column {j} {c.get('name', c['type'])} ({c['type']}): "
                       f"{bad.size}/{len(got)} rows off by up to {diff[bad].max():.3g} "
                       f"(tolerance {tol:g}); {rows}")
    return out
