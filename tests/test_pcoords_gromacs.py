"""Every built-in progress coordinate, streamed from a real GROMACS run (upstream
mdrun, IMD v2) whose start structure has the protein split across the box, equals
MDAnalysis' own analysis code on the .trr the same run wrote at the streamed steps
(issue 9, item 5 (b)).

The system is imdclient's ubiquitin in TIP3P water (amber99sb-ildn, 21148 atoms),
every atom shifted so that the protein sits on a box corner and wrapped atom by
atom, as ``gmx trjconv -pbc atom`` leaves a structure. mdrun streams (and writes)
the protein split for the whole segment. The reference's molecules are whole by
construction: the .trr made continuous in time by MDAnalysis' ``NoJump``
transformation, plus the lattice shifts that make the start structure whole (known
from the builder); the test checks that every protein bond of the reference is
short.
"""

import subprocess
import warnings

import MDAnalysis as mda
import numpy as np
import pytest

from pbc_systems import (assert_well_posed, longest_bond, mismatches,
                         reference_columns, stream_segment, whole_universe,
                         write_gromacs_mdp, write_split_protein)

pytestmark = pytest.mark.engine("gromacs")

NSTEPS, EVERY, DT = 200, 10, 0.002  # 0.4 ps, a frame every 20 fs
ROWS = NSTEPS // EVERY + 1
HEAVY = "not name H*"

COORDINATES = [
    # the case: centres of mass of the first and last residue
    {"type": "distance", "name": "d_res1_res76", "a": "resid 1", "b": "resid 76"},
    {"type": "distance", "name": "d_protein_res40_geometry", "a": "protein",
     "b": "resid 40", "center": "geometry"},
    {"type": "min_distance", "name": "min_res1_res76", "a": "resid 1", "b": "resid 76"},
    {"type": "position", "name": "protein_z", "select": "protein", "axis": "z"},
    {"type": "position", "name": "protein_x", "select": "protein", "axis": "x"},
    {"type": "position", "name": "res76_y_from_res1", "select": "resid 76",
     "axis": "y", "relative_to": "resid 1"},
    {"type": "count", "name": "waters_near_carbonyl_o", "a": "protein and name O",
     "b": "name OW", "cutoff": 3.2},
    {"type": "count", "name": "waters_near_res76", "a": "resid 76", "b": "name OW",
     "cutoff": 3.5},
    {"type": "rmsd", "name": "rmsd_backbone", "select": "backbone"},
    {"type": "rmsd", "name": "rmsd_ca1_20_fit_backbone",
     "select": "name CA and resid 1-20", "fit": "backbone"},
    {"type": "rmsd", "name": "rmsd_ca_nofit", "select": "name CA", "fit": "none"},
    {"type": "rmsd", "name": "rmsd_heavy_mass_perturbed",
     "select": f"protein and {HEAVY}", "weights": "mass", "reference": "perturbed.gro"},
    {"type": "rg", "name": "rg_protein", "select": "protein"},
    {"type": "rg", "name": "rg_backbone_unweighted", "select": "backbone",
     "weights": "none"},
    {"type": "angle", "name": "angle_1_38_76", "a": "resid 1", "b": "resid 38",
     "c": "resid 76"},
    {"type": "dihedral", "name": "dihedral_1_20_50_76", "a": "resid 1",
     "b": "resid 20", "c": "resid 50", "d": "resid 76"},
    # beta strand 1 against strands 2 and 5
    {"type": "contacts", "name": "q_b1_b2_soft", "a": f"resid 1-7 and {HEAVY}",
     "b": f"resid 10-17 and {HEAVY}", "method": "soft_cut", "beta": 3.0,
     "lambda_constant": 1.0},
    {"type": "contacts", "name": "q_b1_b2_radius", "a": f"resid 1-7 and {HEAVY}",
     "b": f"resid 10-17 and {HEAVY}", "method": "radius_cut"},
    # hard_cut counts r <= r0: against the start itself, every contact is a tie
    {"type": "contacts", "name": "q_b1_b5_hard_perturbed",
     "a": f"resid 1-7 and {HEAVY}", "b": f"resid 64-72 and {HEAVY}",
     "reference": "perturbed.gro"},
]

def run_split_protein_segment(folder, gmx, coordinates=COORDINATES,
                              topology="seg.tpr"):
    """Build the split start, grompp it, stream one segment in-process;
    returns (system, config, result)."""
    system = write_split_protein(folder)
    write_gromacs_mdp(folder, nsteps=NSTEPS, every=EVERY, dt=DT)
    subprocess.run([gmx, "-quiet", "grompp", "-f", "md.mdp", "-c", "start.gro",
                    "-p", "topol.top", "-o", "seg.tpr", "-po", "seg-out.mdp"],
                   cwd=folder, check=True, capture_output=True, timeout=120)
    setup = {"engine": {"name": "gromacs", "input": "md.mdp", "nsteps": NSTEPS,
                        "frame_interval": EVERY, "args": ["-nt", "1"]},
             "topology": topology,  # seg.tpr: bonds, masses; coordinates start.gro's
             "start": "start.gro"}
    return (system, *stream_segment(folder, setup, coordinates, "protein"))


def engine_universe(folder, system):
    """The run's own .trr, continuous in time (NoJump) from the start structure
    made whole (the builder's lattice shifts)."""
    return whole_universe(folder / "seg.tpr", folder / "seg.trr", images=system.images,
                          start=system.positions, nojump=True)


def reference_structures(folder, system):
    def universe(path, fmt):
        if path is None:  # the topology's own (split) coordinates, made whole
            return whole_universe(folder / "seg.tpr", images=system.images,
                                  start=system.positions)
        return whole_universe(folder / "seg.tpr", folder / path,
                              **({"format": fmt} if fmt else {}))
    return universe


def raw_longest_protein_bond(universe):
    bonds = universe.select_atoms("protein").bonds
    return float(np.linalg.norm(bonds.atom1.positions - bonds.atom2.positions,
                                axis=1).max())


def test_every_builtin_coordinate_equals_mdanalysis_on_the_same_mdruns_trr(
        gmx, tmp_path, no_engine_left):
    system, config, result = run_split_protein_segment(tmp_path, gmx)

    # premise: the protein is split across the box at row 0 and stays split in
    # what mdrun writes (and streams); the .trr is at the streamed steps
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        raw = mda.Universe(str(tmp_path / "seg.tpr"), str(tmp_path / "seg.trr"))
    half_box = raw.dimensions[:3].min() / 2
    assert raw_longest_protein_bond(raw) > half_box  # frame 0 = start.gro
    raw.trajectory[-1]
    assert raw_longest_protein_bond(raw) > half_box
    assert raw.trajectory.n_frames == ROWS
    steps = [round(ts.time / DT) for ts in raw.trajectory]
    assert steps == list(range(0, NSTEPS + 1, EVERY))

    written = np.loadtxt(config.output, ndmin=2)
    u = engine_universe(tmp_path, system)
    assert longest_bond(u, "protein") < 2.5  # the reference's protein is whole
    assert written.shape == (ROWS, len(COORDINATES))
    assert result.frames == ROWS  # step 0 is streamed too (and makes no row)
    references = reference_structures(tmp_path, system)
    assert_well_posed(u, COORDINATES, references)
    # the plugin sees the row's frame, step, time (ps) and the box
    info = np.loadtxt(tmp_path / "aux_info.dat", ndmin=2)
    rows = np.arange(ROWS)
    assert info.shape == (ROWS, 10)
    assert np.array_equal(info[:, 0], rows)
    assert np.array_equal(info[:, 1], rows * EVERY)  # IMD v2: frame x interval
    assert np.abs(info[:, 2] - rows * EVERY * DT).max() <= 1e-6
    assert np.abs(info[:, 4:] - raw.dimensions).max() <= 1e-3

    expected = reference_columns(u, COORDINATES, references)
    bad = mismatches(written, expected, COORDINATES)
    assert not bad, "\n".join(bad)
    # ... and its group is whole (radius of gyration of the group it was given)
    protein = u.select_atoms("protein")
    rg = np.array([protein.radius_of_gyration() for _ in u.trajectory])
    assert np.abs(info[:, 3] - rg).max() <= 1e-3
    assert np.ptp(written[:, 8]) > 0.05  # the backbone moves: different frames


#: With a .gro topology (no bonds), masses are guessed from names: compare centres
#: of geometry and unweighted radii, which do not depend on them.
GRO_COORDINATES = [
    {"type": "distance", "name": "ends", "a": "resid 1", "b": "resid 76",
     "center": "geometry"},
    {"type": "rg", "name": "rg_protein", "select": "protein", "weights": "none"},
    {"type": "position", "name": "protein_z", "select": "protein", "axis": "z",
     "center": "geometry"},
    {"type": "angle", "name": "angle_1_38_76", "a": "resid 1", "b": "resid 38",
     "c": "resid 76", "center": "geometry"},
    {"type": "dihedral", "name": "dihedral_1_20_50_76", "a": "resid 1",
     "b": "resid 20", "c": "resid 50", "d": "resid 76", "center": "geometry"},
]


def test_a_gro_topology_without_bonds_gets_its_protein_bonds_guessed(
        gmx, tmp_path, no_engine_left):
    """The issue 20 case: ubiquitin in water with the .gro as topology. Its protein
    spans more than half the box, and the .gro has no bonds: streamrun guesses the
    protein's bonds (not the water's) from the start structure, so the split
    protein is made whole and every value equals MDAnalysis on the .trr with the
    .tpr's bonds; check says the bonds were guessed."""
    import subprocess as sp
    import sys

    system, config, result = run_split_protein_segment(
        tmp_path, gmx, GRO_COORDINATES, topology="start.gro")
    written = np.loadtxt(config.output, ndmin=2)
    u = engine_universe(tmp_path, system)
    assert longest_bond(u, "protein") < 2.5
    assert np.ptp(u.select_atoms("protein").positions, axis=0).max() > \
        u.dimensions[:3].min() / 2  # premise: the whole protein spans half the box
    expected = reference_columns(u, GRO_COORDINATES, reference_structures(tmp_path,
                                                                          system))
    bad = mismatches(written, expected, GRO_COORDINATES)
    assert not bad, "\n".join(bad)
    out = sp.run([sys.executable, "-m", "streamrun", "check", str(config.source)],
                 capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert "bonds:" in out.stdout and "guessed for" in out.stdout, out.stdout
    assert "1231 atoms of 76 residues" in out.stdout  # the protein, not the water
