"""Small LAMMPS systems for the per-dimension periodicity tests
(tests/test_boundaries_lammps.py), and their references.

Plain Python and numpy (MDAnalysis only in :class:`Reference`); every builder writes
into a folder (a test's ``tmp_path``) and returns what the test needs to know.

- :func:`write_data` -- a LAMMPS data file (``atom_style full``, ``units real``)
  with any box origin, optional Velocities, Bonds and Angles sections.
- :func:`write_input` -- the segment input: the boundary line the test asks for
  (a ``boundary`` command, an ``include``, a variable, ``read_restart``,
  ``change_box``), ``fix wall/reflect`` on the fixed faces, ``fix imd`` version 3
  and a ``dump`` of the streamed steps (step 0 included, raw ``x y z``, image flags,
  ``xu yu zu``) for the reference.
- :func:`stream_segment` -- pbc_systems.stream_segment with an aux plugin that also
  works when streamrun gives plugins no box (no periodic dimension).
- Systems: :func:`write_fixed_box` (argon-like atoms far apart in a box with
  ``f``/``s``/``m`` boundaries, origin -50), :func:`write_fast_atom` (an atom moving
  30 % of the fixed box per frame), :func:`write_slab` (``p p f``: clusters more than
  half the z extent apart, one crossing the x edge), :func:`write_offset_box`
  (``p p p`` with LAMMPS' examples/peptide box origin), :func:`write_long_chain`
  (a helical bead chain longer than half the box, split across it in the data file,
  and a second molecule).
- :func:`read_dump_boxes` -- the box bounds and boundary flags LAMMPS wrote in its
  dump (``ITEM: BOX BOUNDS ff ss mm``: LAMMPS' own statement of periodicity).
- :class:`Reference` -- every built-in coordinate recomputed from the dump with
  periodic boundaries per dimension: minimum image and wrapping only along the
  dimensions the test says are periodic; MDAnalysis' ``calc_bonds``,
  ``calc_angles``, ``calc_dihedrals``, ``distance_array`` and ``apply_PBC`` (with
  the box when every dimension is periodic, with no box when none is).

MDAnalysis' LAMMPS dump reader subtracts the box origin (xlo ylo zlo) from every
coordinate while its DATA reader does not (and fix imd streams LAMMPS' absolute
coordinates): the references here take the dump's raw numbers
(:func:`pbc_systems.read_dump`) so that dump, data file and IMD stream share one
frame of reference.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

#: atom_style full as MDAnalysis reads it
ATOM_STYLE = "id resid type charge x y z"

#: argon-like LJ (units real): epsilon kcal/mol, sigma Å, mass g/mol
ARGON = (0.2381, 3.405, 39.948)

#: examples/peptide of LAMMPS: a box whose origin is far from 0
PEPTIDE_LO = (36.840194, 41.013691, 29.768095)
PEPTIDE_EDGE = 27.371366

INPUT = """\
# streamrun boundary tests: {title}
# streamrun passes streamrun_port, streamrun_every, streamrun_nsteps (-var).
variable        start index start.data
variable        dumpfile index check.lammpstrj
{variables}
units           real
atom_style      full
{boundary}
pair_style      lj/cut 8.5
{styles}
{read}
{after_read}
pair_coeff      * * {eps} {sigma}
{coeffs}
neighbor        2.0 bin
neigh_modify    every 1 delay 0 check yes

{integrate}
timestep        2.0
thermo          {thermo}

# the reference: the streamed steps, step 0 included; raw x y z as LAMMPS holds
# them, image flags, and unwrapped xu yu zu
dump            check all custom ${{streamrun_every}} ${{dumpfile}} id mol type &
                x y z ix iy iz xu yu zu
dump_modify     check sort id format float %20.15g

fix             stream all imd ${{streamrun_port}} version 3 trate ${{streamrun_every}} {unwrap}velocities off forces off nowait off
run             ${{streamrun_nsteps}}
"""


@dataclass
class System:
    """What a builder wrote.

    Attributes
    ----------
    folder : Path
    data : Path
        The LAMMPS data file (topology and start structure).
    lo, hi : numpy.ndarray, shape (3,)
        The data file's box bounds (xlo ylo zlo, xhi yhi zhi).
    positions : numpy.ndarray
        Positions written to the data file (by atom index).
    images : numpy.ndarray of int, shape (n_atoms, 3)
        Box vectors that make every molecule of the data file whole:
        ``positions + images * (hi - lo)``; zero unless the builder split one.
    bonds : numpy.ndarray, shape (n_bonds, 2)
        0-based atom indices.
    notes : dict
        Builder-specific facts (atom roles, selections).
    """

    folder: Path
    data: Path
    lo: np.ndarray
    hi: np.ndarray
    positions: np.ndarray
    images: np.ndarray
    bonds: np.ndarray = field(default_factory=lambda: np.empty((0, 2), dtype=int))
    notes: dict = field(default_factory=dict)

    @property
    def lengths(self):
        return self.hi - self.lo


def write_data(path, *, lo, hi, positions, types, masses, resids=None,
               velocities=None, bonds=(), angles=(), images=None,
               title="streamrun boundary test system"):
    """Write a LAMMPS data file (``atom_style full``, charges 0).

    ``masses``: one per atom type (type 1 first). ``bonds`` and ``angles``: 0-based
    atom index tuples, one bond/angle type. Returns ``path``.
    """
    path = Path(path)
    positions = np.asarray(positions, dtype=np.float64)
    n = len(positions)
    resids = list(range(1, n + 1)) if resids is None else list(resids)
    images = np.zeros((n, 3), dtype=int) if images is None else np.asarray(images)
    lines = [title, "", f"{n} atoms", f"{len(masses)} atom types"]
    if len(bonds):
        lines += [f"{len(bonds)} bonds", "1 bond types"]
    if len(angles):
        lines += [f"{len(angles)} angles", "1 angle types"]
    lines += ["", f"{lo[0]:.10f} {hi[0]:.10f} xlo xhi",
              f"{lo[1]:.10f} {hi[1]:.10f} ylo yhi",
              f"{lo[2]:.10f} {hi[2]:.10f} zlo zhi", "", "Masses", ""]
    lines += [f"{t} {m}" for t, m in enumerate(masses, 1)]
    lines += ["", "Atoms # full", ""]
    for i, (r, t, p, im) in enumerate(zip(resids, types, positions, images), 1):
        lines.append(f"{i} {r} {t} 0.0 {p[0]:.10f} {p[1]:.10f} {p[2]:.10f} "
                     f"{im[0]} {im[1]} {im[2]}")
    if velocities is not None:
        lines += ["", "Velocities", ""]
        lines += [f"{i} {v[0]:.10f} {v[1]:.10f} {v[2]:.10f}"
                  for i, v in enumerate(np.asarray(velocities, dtype=float), 1)]
    if len(bonds):
        lines += ["", "Bonds", ""]
        lines += [f"{k} 1 {a + 1} {b + 1}" for k, (a, b) in enumerate(bonds, 1)]
    if len(angles):
        lines += ["", "Angles", ""]
        lines += [f"{k} 1 {a + 1} {b + 1} {c + 1}"
                  for k, (a, b, c) in enumerate(angles, 1)]
    path.write_text("\n".join(lines) + "\n")
    return path


def walls(boundary):
    """``fix wall/reflect`` on every face of the ``f`` dimensions of a boundary
    string such as ``"f s m"`` (LAMMPS loses an atom that leaves an ``f`` box);
    empty when there is none."""
    faces = [f"{d}lo EDGE {d}hi EDGE" for d, b in zip("xyz", boundary.split())
             if b == "f"]
    return f"fix             walls all wall/reflect {' '.join(faces)}" if faces else ""


def write_input(folder, *, boundary="boundary p p p", title="", name="run.in",
                variables="", read="read_data       ${start}", after_read="",
                integrate="fix             move all nve", styles="", coeffs="",
                unwrap=False, thermo=1000, lj=ARGON):
    """Write the segment input; ``boundary`` is the line (or lines) put where the
    boundary command goes, before the box is defined: ``"boundary f f f"``,
    ``"include slab_boundary.in"``, ``"boundary ${b}"``, or ``""`` (none: LAMMPS'
    default ``p p p``, or whatever a restart file holds). Returns the path."""
    path = Path(folder) / name
    path.write_text(INPUT.format(
        title=title, variables=variables, boundary=boundary, styles=styles, read=read,
        after_read=after_read, eps=lj[0], sigma=lj[1], coeffs=coeffs,
        integrate=integrate, thermo=thermo, unwrap="unwrap on " if unwrap else ""))
    return path


# --- streaming a segment ----------------------------------------------------------

#: The aux plugin of these tests: row, step, time (ps) and the box a plugin sees
#: (zeros when streamrun gives none: pbc_systems.FRAME_INFO's ``*u.dimensions``
#: fails on a system without periodic dimensions, whose Universe has no box; an
#: aux value must be finite).
FRAME_INFO = """\
import numpy as np


def info(u, group):
    ts = u.trajectory.ts
    box = np.zeros(6) if u.dimensions is None else u.dimensions
    return [ts.frame, ts.data['step'], ts.time, *box]
"""


def stream_segment(folder, setup, coordinates):
    """Stream one segment in-process in ``folder`` (as pbc_systems.stream_segment,
    with :data:`FRAME_INFO` on atom index 0 as the aux dataset ``info``); returns
    (config, result)."""
    import yaml

    from streamrun import segment
    from streamrun.config import load

    (folder / "frameinfo.py").write_text(FRAME_INFO)
    cfg = {**setup, "pcoord": coordinates,
           "aux": {"info": [{"type": "plugin", "function": "frameinfo.py:info",
                             "selections": ["index 0"]}]}}
    (folder / "streamrun.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    config = load(folder / "streamrun.yaml", [f"engine.workdir={folder}"], environ={})
    return config, segment.run_segment(config)


# --- the systems -------------------------------------------------------------------

def write_fixed_box(folder, boundary="f f f"):
    """Argon-like atoms far apart in a 100 Å box from -50 to 50 (``boundary``: any
    of f, s, m per dimension), with velocities; walls on the ``f`` faces.

    Atoms (index: role): 0 A at x = -45 and 1 E, 3.9 Å from A (they interact);
    2 B at x = +44 (89 Å from A, 11 Å by minimum image); 3 C at y = +41 moving +y
    (past the start box's yhi = 50 when y is shrink-wrapped); 4 D at z = +43.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lo, hi = np.full(3, -50.0), np.full(3, 50.0)
    positions = np.array([[-45.0, 1.0, -2.0],    # A
                          [-41.2, 1.5, -2.3],    # E (LJ neighbour of A)
                          [44.0, 3.0, 2.0],      # B
                          [2.0, 41.0, -4.0],     # C
                          [-6.0, -3.0, 43.0]])   # D
    velocities = np.array([[0.004, 0.001, -0.0005],
                           [0.0, -0.0005, 0.0],
                           [-0.003, 0.0005, 0.001],
                           [0.001, 0.006, 0.0],
                           [0.0, 0.001, -0.003]])  # Å/fs
    data = write_data(folder / "start.data", lo=lo, hi=hi, positions=positions,
                      types=[1] * 5, masses=[ARGON[2]], velocities=velocities,
                      title=f"argon-like atoms far apart, boundary {boundary}")
    write_input(folder, boundary=f"boundary        {boundary}",
                title=f"atoms far apart in a box with boundary {boundary}",
                integrate="fix             move all nve\n" + walls(boundary))
    return System(folder, data, lo, hi, positions, np.zeros((5, 3), dtype=int),
                  notes={"A": 0, "E": 1, "B": 2, "C": 3, "D": 4})


def write_fast_atom(folder, speed=0.3):
    """``boundary f f f``, box -50..50: atom 0 moves ``speed`` Å/fs along +x from
    x = -47 (30 Å per 100 fs: more than a quarter of the box per frame at a frame
    every 50 steps of 2 fs); atom 1 sits still 17 Å from its start, atom 2 far
    away. The three never come within 5 Å of each other."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lo, hi = np.full(3, -50.0), np.full(3, 50.0)
    positions = np.array([[-47.0, 20.0, 20.0], [-30.0, 25.0, 20.0],
                          [10.0, -30.0, -30.0]])
    velocities = np.array([[speed, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.001, 0.0]])
    data = write_data(folder / "start.data", lo=lo, hi=hi, positions=positions,
                      types=[1] * 3, masses=[ARGON[2]], velocities=velocities,
                      title="a fast atom in a fixed box")
    write_input(folder, boundary="boundary        f f f",
                title="a fast atom in a fixed box",
                integrate="fix             move all nve\n" + walls("f f f"))
    return System(folder, data, lo, hi, positions, np.zeros((3, 3), dtype=int))


def _cluster(centre, n, spacing=3.9):
    """``n`` (1 to 3) positions around ``centre`` at LJ contact (a triangle)."""
    offsets = np.array([[0.0, 0.0, 0.0], [spacing, 0.0, 0.0],
                        [spacing / 2, spacing * np.sqrt(3) / 2, 0.0]])[:n]
    return np.asarray(centre) + offsets - offsets.mean(axis=0)


def write_slab(folder, boundary="boundary        p p f", boundary_file=None,
               variables="", read=None, after_read="", name="run.in"):
    """A slab: x and y periodic (box -12..12), z fixed (-10..50, a 60 Å extent).

    Three clusters of argon-like atoms (resid 1, 2, 3; atoms unbonded):
    A (index 0-2) near z = -5 and x = -8.5, B (index 3-5) near z = 40 and x = 8
    (A to B: 45 Å along z, more than half the z extent; 16.5 Å along x, more than
    half the x edge), C (index 6-7) at z = 20 straddling the xhi face (its second
    atom sits on it: LAMMPS wraps it at step 0) and moving +x at 0.004 Å/fs (its
    first atom crosses the face after about 1.3 ps). No walls: the same input runs
    under ``p p p`` (every cluster moves away from the z faces, and LAMMPS stops
    with "Lost atoms" if one left). ``boundary_file``: also write that file with
    the boundary command on its line 3, for ``include``.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lo, hi = np.array([-12.0, -12.0, -10.0]), np.array([12.0, 12.0, 50.0])
    a = _cluster([-8.5, -3.0, -5.0], 3)
    b = _cluster([8.0, 2.0, 40.0], 3)
    c = _cluster([10.05, 6.0, 20.0], 2)
    positions = np.vstack([a, b, c])
    velocities = np.vstack([np.tile([0.0005, 0.001, 0.0015], (3, 1)),
                            np.tile([-0.001, 0.0005, -0.001], (3, 1)),
                            np.tile([0.004, -0.0005, 0.0005], (2, 1))])
    data = write_data(folder / "start.data", lo=lo, hi=hi, positions=positions,
                      types=[1] * 8, masses=[ARGON[2]], velocities=velocities,
                      resids=[1, 1, 1, 2, 2, 2, 3, 3], title="argon clusters in a slab")
    if boundary_file is not None:
        (folder / boundary_file).write_text(
            "# the slab's boundary, pulled in with include\n"
            "# x and y periodic, z fixed\n"
            "boundary        p p f\n")
    write_input(folder, boundary=boundary, title="argon clusters in a slab",
                variables=variables,
                read="read_data       ${start}" if read is None else read,
                after_read=after_read, name=name,
                integrate="fix             move all nve")
    return System(folder, data, lo, hi, positions, np.zeros((8, 3), dtype=int))


def write_offset_box(folder):
    """``boundary p p p`` in LAMMPS' examples/peptide box (origin 36.84 41.01
    29.77, edges 27.37 Å). P (index 0-1, resid 1, unbonded) starts 1 Å inside the
    xhi face moving +x, so it is split across the face and crosses it; Q (index 2,
    resid 2) starts 2 Å above the ylo face moving -y; R (index 3, resid 3) sits
    inside and moves along z across the zhi face."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lo = np.array(PEPTIDE_LO)
    hi = lo + PEPTIDE_EDGE
    positions = np.vstack([_cluster([hi[0] - 1.0, lo[1] + 14.0, lo[2] + 9.0], 2),
                           [[lo[0] + 12.0, lo[1] + 2.13, lo[2] + 20.0]],
                           [[lo[0] + 4.0, lo[1] + 20.0, hi[2] - 3.0]]])
    # P's second atom is 0.95 Å past the xhi face: wrap it as LAMMPS would hold it
    over = positions[:, 0] >= hi[0]
    positions[over, 0] -= PEPTIDE_EDGE
    images = np.zeros((4, 3), dtype=int)
    images[over, 0] = 1  # P made whole: its second atom one box to +x
    velocities = np.array([[0.003, 0.0005, -0.0005], [0.003, 0.0005, -0.0005],
                           [0.0005, -0.004, 0.001], [-0.001, 0.0, 0.004]])
    data = write_data(folder / "start.data", lo=lo, hi=hi, positions=positions,
                      types=[1] * 4, masses=[ARGON[2]], velocities=velocities,
                      resids=[1, 1, 2, 3], title="argon atoms in examples/peptide's box")
    write_input(folder, boundary="boundary        p p p",
                title="atoms in a periodic box whose origin is not 0")
    return System(folder, data, lo, hi, positions, images)


def write_long_chain(folder, n_beads=12, edge=40.0, rise=2.6, radius=0.8,
                     turn=100.0, temperature=60.0, seed=4711):
    """A helical bead chain (resid 1, index 0 .. n_beads-1) along x, longer than
    half the box (end to end about (n_beads-1)*rise = 28.6 Å in a 40 Å box),
    stiff (harmonic bonds and angles at the helix's own values), written centred
    on the x = 0 face of the box so that the data file holds it split (wrapped
    positions, zero image flags); and a second molecule, a single atom (resid 2,
    index n_beads) placed so that its wrapped distance to the chain's first bead
    spans more than half the box along x. Langevin at ``temperature`` K.
    ``boundary p p p``; origin 0; ``fix imd`` without ``unwrap on``.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    i = np.arange(n_beads)
    phi = np.radians(turn) * i
    chain = np.column_stack([rise * i, radius * np.cos(phi), radius * np.sin(phi)])
    chain += np.array([0.0, edge / 2, edge / 2]) - [chain[:, 0].mean(), 0.0, 0.0]
    other = np.array([[chain[0, 0] + edge / 2 + 4.0, edge / 2 + 6.0, edge / 2 - 5.0]])
    whole = np.vstack([chain, other])
    images = np.floor(whole / edge).astype(int)
    positions = whole - images * edge
    bonds = np.array([(k, k + 1) for k in range(n_beads - 1)])
    angles = np.array([(k, k + 1, k + 2) for k in range(n_beads - 2)])
    bond_length = float(np.linalg.norm(chain[1] - chain[0]))
    u, v = chain[0] - chain[1], chain[2] - chain[1]
    theta = float(np.degrees(np.arccos(u @ v / np.linalg.norm(u) / np.linalg.norm(v))))
    lo, hi = np.zeros(3), np.full(3, edge)
    data = write_data(folder / "start.data", lo=lo, hi=hi, positions=positions,
                      types=[1] * n_beads + [2], masses=[14.027, ARGON[2]],
                      resids=[1] * n_beads + [2], bonds=bonds, angles=angles,
                      title="a helical chain longer than half the box, split")
    write_input(folder, boundary="boundary        p p p",
                title="a chain longer than half the box",
                styles="bond_style      harmonic\nangle_style     harmonic\n"
                       "special_bonds   lj 0.0 0.0 1.0",
                coeffs=f"bond_coeff      1 200.0 {bond_length:.6f}\n"
                       f"angle_coeff     1 60.0 {theta:.6f}",
                integrate=f"velocity        all create {temperature} {seed} "
                          f"dist gaussian mom yes\n"
                          f"fix             bath all langevin {temperature} "
                          f"{temperature} 200.0 {seed}\n"
                          f"fix             move all nve")
    return System(folder, data, lo, hi, positions, images, bonds,
                  notes={"n_beads": n_beads, "bond_length": bond_length,
                         "angle": theta})


# --- reading what LAMMPS wrote -----------------------------------------------------

@dataclass
class DumpBox:
    """One dump frame's box: bounds (3, 2) and the flags of ``ITEM: BOX BOUNDS``
    (``["ff", "ss", "mm"]``: LAMMPS' per-dimension boundary, lower and upper face)."""

    step: int
    bounds: np.ndarray
    flags: list

    @property
    def lo(self):
        return self.bounds[:, 0]

    @property
    def lengths(self):
        return self.bounds[:, 1] - self.bounds[:, 0]


def read_dump_boxes(path):
    """Box bounds and boundary flags of every frame of a LAMMPS dump
    (orthogonal boxes)."""
    lines = Path(path).read_text().splitlines()
    out, i = [], 0
    while i < len(lines):
        assert lines[i] == "ITEM: TIMESTEP", lines[i]
        step, n = int(lines[i + 1]), int(lines[i + 3])
        header = lines[i + 4].split()
        assert header[:3] == ["ITEM:", "BOX", "BOUNDS"] and len(header) == 6, header
        bounds = np.array([[float(v) for v in lines[i + 5 + k].split()[:2]]
                           for k in range(3)])
        out.append(DumpBox(step, bounds, header[3:]))
        i += 9 + n
    return out


def dump_positions(frames, columns=("x", "y", "z")):
    """(n_frames, n_atoms, 3) float64 positions from :func:`pbc_systems.read_dump`
    frames (sorted by id), from the raw columns named."""
    return np.array([np.column_stack([f.columns[c] for c in columns])
                     for f in frames], dtype=np.float64)


def data_box(path):
    """(lo, hi) of a LAMMPS data file's header, as written (no MDAnalysis)."""
    lo, hi = np.zeros(3), np.zeros(3)
    for line in Path(path).read_text().splitlines():
        words = line.split()
        for k, d in enumerate("xyz"):
            if words[2:4] == [f"{d}lo", f"{d}hi"]:
                lo[k], hi[k] = float(words[0]), float(words[1])
    return lo, hi


# --- references ------------------------------------------------------------------

#: tolerances of the comparison (Å, degrees)
TOLERANCE = {"distance": 1e-3, "min_distance": 1e-3, "position": 1e-3,
             "angle": 1e-2, "dihedral": 1e-2}


class Reference:
    """Every built-in geometric coordinate recomputed from positions LAMMPS wrote,
    with periodic boundaries per dimension.

    Parameters
    ----------
    data : path-like
        The LAMMPS data file (masses, resids) read by MDAnalysis.
    positions : numpy.ndarray, shape (n_frames, n_atoms, 3)
        Raw positions per frame (e.g. the dump's ``x y z``, or ``xu yu zu`` plus
        the builder's images: molecules whole).
    lengths : numpy.ndarray, shape (n_frames, 3) or (3,)
        The box edge lengths per frame (orthogonal boxes), for minimum images and
        wrapping along the periodic dimensions.
    periodic : sequence of 3 bool
        Which dimensions are periodic.
    origin : numpy.ndarray, shape (3,)
        The box origin that ``position`` is measured from (the start data file's
        xlo ylo zlo).
    join : bool
        Join each group compactly (every atom at the image nearest the group's
        first atom, along the periodic dimensions): right for groups of unbonded
        atoms smaller than half the box; wrong for a molecule longer than half the
        box, whose positions must then be given whole (``join=False``).
    """

    def __init__(self, data, positions, lengths, periodic, origin, join=True):
        import warnings

        import MDAnalysis as mda

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.u = mda.Universe(str(data), atom_style=ATOM_STYLE)
        self.positions = np.asarray(positions, dtype=np.float64)
        n_frames = len(self.positions)
        self.lengths = np.broadcast_to(np.asarray(lengths, dtype=np.float64),
                                       (n_frames, 3))
        self.periodic = np.asarray(periodic, dtype=bool)
        self.origin = np.asarray(origin, dtype=np.float64)
        self.join = join

    # helpers ---------------------------------------------------------------------
    def _dims(self, f):
        """MDAnalysis box of frame ``f`` when every dimension is periodic, else
        None (no box: no minimum image at all)."""
        return (np.concatenate([self.lengths[f], [90.0, 90.0, 90.0]])
                if self.periodic.all() else None)

    def minimum_image(self, vectors, f):
        """Vectors with the minimum image taken along the periodic dimensions
        only (orthogonal box of frame ``f``)."""
        v = np.array(vectors, dtype=np.float64)
        L = self.lengths[f]
        for d in np.flatnonzero(self.periodic):
            v[..., d] -= L[d] * np.round(v[..., d] / L[d])
        return v

    def group_positions(self, sel, f, compact=True):
        """Positions of a selection in frame ``f``; with ``compact`` (and ``join``),
        each atom moved to the image nearest the group's first atom along the
        periodic dimensions (a group of unbonded atoms joined)."""
        ix = self.u.select_atoms(sel).ix
        assert ix.size, sel
        p = self.positions[f, ix]
        if compact and self.join and self.periodic.any():
            p = p[0] + self.minimum_image(p - p[0], f)
        return p

    def centre(self, sel, f, center="mass", compact=True):
        p = self.group_positions(sel, f, compact)
        if center == "mass":
            w = self.u.select_atoms(sel).masses.astype(np.float64)
            return (p * w[:, None]).sum(axis=0) / w.sum()
        return p.mean(axis=0)

    def _chain(self, sels, f, center):
        """Centres of consecutive groups, each placed at the minimum image
        (periodic dimensions only) of the one before."""
        points = [self.centre(sels[0], f, center)]
        for s in sels[1:]:
            c = self.centre(s, f, center)
            points.append(points[-1] + self.minimum_image(c - points[-1], f))
        return [p[None] for p in points]

    @property
    def n_frames(self):
        return len(self.positions)

    # coordinates -------------------------------------------------------------------
    def distance(self, a, b, center="mass"):
        from MDAnalysis.lib.distances import calc_bonds

        out = []
        for f in range(self.n_frames):
            ca, cb = self.centre(a, f, center), self.centre(b, f, center)
            dims = self._dims(f)
            if dims is None:  # minimum image by hand along the periodic dims
                cb = ca + self.minimum_image(cb - ca, f)
            out.append(float(calc_bonds(ca[None], cb[None], box=dims)[0]))
        return np.array(out)

    def min_distance(self, a, b):
        from MDAnalysis.lib.distances import distance_array

        out = []
        for f in range(self.n_frames):
            pa = self.group_positions(a, f, compact=False)
            pb = self.group_positions(b, f, compact=False)
            dims = self._dims(f)
            if dims is None and self.periodic.any():
                d = self.minimum_image(pb[None, :, :] - pa[:, None, :], f)
                out.append(float(np.sqrt((d ** 2).sum(axis=-1)).min()))
            else:
                out.append(float(distance_array(pa, pb, box=dims).min()))
        return np.array(out)

    def position(self, select, axis, relative_to=None, center="mass"):
        from MDAnalysis.lib.distances import apply_PBC

        k = "xyz".index(axis)
        out = []
        for f in range(self.n_frames):
            c = self.centre(select, f, center)
            if relative_to is not None:
                v = self.minimum_image(c - self.centre(relative_to, f, center), f)
            else:
                v = c - self.origin
                dims = self._dims(f)
                if dims is not None:
                    v = apply_PBC(v[None], dims)[0]
                else:  # wrap into [0, L) along the periodic dims only
                    L = self.lengths[f]
                    for d in np.flatnonzero(self.periodic):
                        v[d] -= L[d] * np.floor(v[d] / L[d])
            out.append(float(v[k]))
        return np.array(out)

    def angle(self, a, b, c, center="mass"):
        from MDAnalysis.lib.distances import calc_angles

        out = []
        for f in range(self.n_frames):
            # minimum image of b->a and b->c, as calc_angles with a box does
            cb = self.centre(b, f, center)
            ca = cb + self.minimum_image(self.centre(a, f, center) - cb, f)
            cc = cb + self.minimum_image(self.centre(c, f, center) - cb, f)
            out.append(float(np.degrees(calc_angles(ca[None], cb[None], cc[None],
                                                    box=self._dims(f))[0])))
        return np.array(out)

    def dihedral(self, a, b, c, d, center="mass"):
        from MDAnalysis.lib.distances import calc_dihedrals

        out = []
        for f in range(self.n_frames):
            points = self._chain([a, b, c, d], f, center)
            out.append(float(np.degrees(calc_dihedrals(*points, box=self._dims(f))[0])))
        values = np.array(out)
        return np.where(values <= -180.0, values + 360.0, values)  # (-180, 180]

    def column(self, c):
        """The reference column of one coordinate given as its config dict."""
        kind, center = c["type"], c.get("center", "mass")
        if kind == "distance":
            return self.distance(c["a"], c["b"], center)
        if kind == "min_distance":
            return self.min_distance(c["a"], c["b"])
        if kind == "position":
            return self.position(c["select"], c.get("axis", "z"), c.get("relative_to"),
                                 center)
        if kind == "angle":
            return self.angle(c["a"], c["b"], c["c"], center)
        if kind == "dihedral":
            return self.dihedral(c["a"], c["b"], c["c"], c["d"], center)
        raise ValueError(kind)

    def columns(self, coordinates):
        return np.column_stack([self.column(c) for c in coordinates])


def angular_difference(a, b):
    """|a - b| in degrees, the shorter way round (for dihedrals near ±180)."""
    return np.abs((np.asarray(a) - np.asarray(b) + 180.0) % 360.0 - 180.0)


def mismatches(written, expected, coordinates):
    """Cells out of tolerance as readable lines (empty when all agree)."""
    out = []
    for j, c in enumerate(coordinates):
        tol = TOLERANCE[c["type"]]
        got, want = written[:, j], expected[:, j]
        diff = (angular_difference(got, want) if c["type"] == "dihedral"
                else np.abs(got - want))
        bad = np.flatnonzero(~(diff <= tol))
        if bad.size:
            rows = ", ".join(f"row {i}: expected {want[i]:.6f} got {got[i]:.6f}"
                             for i in bad[:3])
            out.append(f"column {j} {c.get('name', c['type'])} ({c['type']}): "
                       f"{bad.size}/{len(got)} rows off by up to {diff[bad].max():.3g} "
                       f"(tolerance {tol:g}); {rows}")
    return out


def differs(a, b, kind):
    """Per-frame |a - b| (angular for dihedrals)."""
    return angular_difference(a, b) if kind == "dihedral" else np.abs(a - b)
