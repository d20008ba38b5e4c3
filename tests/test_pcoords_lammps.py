"""Every built-in progress coordinate, streamed from a real LAMMPS run of bead-spring
chains under periodic boundaries, equals MDAnalysis' own analysis code on the dump
the same run wrote at the streamed steps (issue 9, item 5 (a) and (c)).

The start structure has chains split across the box (wrapped coordinates, zero
image flags), one of them longer than half the box; atoms cross the box edges
during the segment. The same coordinates are streamed with ``fix imd ... unwrap
on``, without it (atoms re-wrapped), and in a triclinic box. The reference's
molecules are whole by construction: LAMMPS' own unwrapped coordinates (image
flags) plus the lattice shifts that make the start structure whole, known from
the builder; the test checks that every bond of the reference is short.
"""

import subprocess
import sys

import numpy as np
import pytest
import yaml

from pbc_systems import (ATOM_STYLE, assert_well_posed, longest_bond, mismatches,
                         read_data_positions, read_dump, reference_columns,
                         split_bonds, stream_segment, whole_universe,
                         write_chain_input, write_chain_system)

pytestmark = pytest.mark.engine("lammps")

STREAMRUN = [sys.executable, "-m", "streamrun"]
NSTEPS, EVERY = 2000, 20  # 2 fs steps: 4 ps, a frame every 40 fs
ROWS = NSTEPS // EVERY + 1
TILTS = {"orthorhombic": (0.0, 0.0, 0.0), "triclinic": (4.0, 2.0, 3.0)}

# chain i is resid i+1 (10 beads: index 10*i .. 10*i+9); the solvent is type 2.
# Every chain starts split across the box; resid 1 in the way MDAnalysis'
# make_whole shortcut misses (orthorhombic box), resid 2 the plain way.
COORDINATES = [
    {"type": "distance", "name": "d12", "a": "resid 1", "b": "resid 2"},
    {"type": "distance", "name": "d13_geometry", "a": "resid 1 and index 0:4",
     "b": "resid 3", "center": "geometry"},
    {"type": "min_distance", "name": "min12", "a": "resid 1", "b": "resid 2"},
    {"type": "position", "name": "x1", "select": "resid 1", "axis": "x"},
    {"type": "position", "name": "y1", "select": "resid 1", "axis": "y"},
    {"type": "position", "name": "z1_from_2", "select": "resid 1", "axis": "z",
     "relative_to": "resid 2"},
    {"type": "count", "name": "solvent_near_1", "a": "resid 1", "b": "type 2",
     "cutoff": 5.0},
    {"type": "rmsd", "name": "rmsd1", "select": "resid 1"},
    {"type": "rmsd", "name": "rmsd1_nofit", "select": "resid 1", "fit": "none"},
    {"type": "rmsd", "name": "rmsd1_head_fit1", "select": "resid 1 and index 0:4",
     "fit": "resid 1"},
    {"type": "rmsd", "name": "rmsd2_xyz_mass", "select": "resid 2",
     "reference": "start_whole.xyz", "reference_format": "XYZ", "weights": "mass"},
    {"type": "rmsd", "name": "rmsd3_pdb", "select": "resid 3",
     "reference": "start_perturbed.pdb"},
    {"type": "rg", "name": "rg1", "select": "resid 1"},
    {"type": "rg", "name": "rg2_unweighted", "select": "resid 2", "weights": "none"},
    {"type": "angle", "name": "angle123", "a": "resid 1", "b": "resid 2",
     "c": "resid 3"},
    {"type": "dihedral", "name": "dihedral1234", "a": "resid 1", "b": "resid 2",
     "c": "resid 3", "d": "resid 4"},
    # hard_cut counts r <= r0: against the start itself, every contact is a tie
    {"type": "contacts", "name": "q1_hard", "a": "resid 1 and index 0:4",
     "b": "resid 1 and index 5:9", "reference": "start_perturbed.pdb",
     "reference_format": "PDB"},
    {"type": "contacts", "name": "q1_soft", "a": "resid 1 and index 0:4",
     "b": "resid 1 and index 5:9", "method": "soft_cut"},
    {"type": "contacts", "name": "q1_radius", "a": "resid 1 and index 0:4",
     "b": "resid 1 and index 5:9", "method": "radius_cut", "radius": 5.0},
    {"type": "contacts", "name": "q2_soft_xyz", "a": "resid 2 and index 10:14",
     "b": "resid 2 and index 15:19", "method": "soft_cut", "beta": 4.0,
     "lambda_constant": 1.5, "reference": "start_whole.xyz",
     "reference_format": "XYZ"},
    # chains 1 and 2 touch only through the box edge; radius selects the native
    # contacts, hard_cut then counts r <= r0 (MDAnalysis' definition)
    {"type": "contacts", "name": "q12_hard", "a": "resid 1", "b": "resid 2",
     "radius": 6.0, "reference": "start_perturbed.pdb"},
    {"type": "contacts", "name": "q12_radius", "a": "resid 1", "b": "resid 2",
     "method": "radius_cut", "radius": 6.0},
]

def run_chain_segment(folder, *, tilt, unwrap, coordinates=COORDINATES):
    """Write the chain system and its config in ``folder``, stream one segment
    in-process; returns (system, config, result)."""
    system = write_chain_system(folder, tilt=tilt)
    write_chain_input(folder, system, unwrap=unwrap)
    setup = {"engine": {"input": "chains.in", "nsteps": NSTEPS, "frame_interval": EVERY,
                        "variables": {"start": "{config_dir}/start.data"}},
             "topology": "start.data", "topology_options": {"atom_style": ATOM_STYLE}}
    return (system, *stream_segment(folder, setup, coordinates, "resid 1"))


def engine_universe(folder, system):
    """The run's own dump: LAMMPS' unwrapped xu yu zu (continuous in time) plus the
    lattice shifts that make the start structure's molecules whole."""
    return whole_universe(system.data, folder / "check.lammpstrj",
                          images=system.images, start=system.positions,
                          topology_format="DATA", format="LAMMPSDUMP",
                          atom_style=ATOM_STYLE, dt=0.002,  # ps per step
                          lammps_coordinate_convention="unwrapped")


def reference_structures(folder, system):
    def universe(path, fmt):
        if path is None:  # the topology's own (split) coordinates, made whole
            return whole_universe(system.data, images=system.images,
                                  start=system.positions, atom_style=ATOM_STYLE)
        return whole_universe(system.data, folder / path, topology_format="DATA",
                              format=fmt, atom_style=ATOM_STYLE)
    return universe


@pytest.mark.parametrize("box, unwrap", [("orthorhombic", True),
                                         ("orthorhombic", False),
                                         ("triclinic", False)],
                         ids=["unwrap-on", "unwrap-off", "triclinic-unwrap-off"])
def test_every_builtin_coordinate_equals_mdanalysis_on_the_engines_dump(
        lmp, tmp_path, no_engine_left, box, unwrap):
    system, config, result = run_chain_segment(tmp_path, tilt=TILTS[box],
                                               unwrap=unwrap)

    # premise 1: chains 1 and 2 are split across the box in the start structure;
    # in the orthorhombic box every bead of chain 1 is within half a box of its
    # first bead (MDAnalysis' make_whole shortcut takes it for whole), not so
    # chain 2's
    start = read_data_positions(system.data)
    split = split_bonds(start, system.bonds, system.box)
    assert any(b < 9 for b in split) and any(9 <= b < 18 for b in split), split
    if box == "orthorhombic":
        assert np.all(np.abs(start[:10] - start[0]) < 9.0)
        assert np.any(np.abs(start[10:20] - start[10]) >= 9.0)
    # premise 2: the dump is at the streamed steps, and atoms of chain 1 cross box
    # edges during the run (their image flags change)
    frames = read_dump(tmp_path / "check.lammpstrj")
    assert [f.step for f in frames] == list(range(0, NSTEPS + 1, EVERY))
    images = np.array([np.column_stack([f.columns[k] for k in ("ix", "iy", "iz")])
                       for f in frames])
    assert np.count_nonzero(np.diff(images[:, :10], axis=0)) >= 3
    assert np.count_nonzero(np.diff(images, axis=0)) >= 50
    if box == "triclinic":
        assert "xy xz yz" in frames[0].box_line

    written = np.loadtxt(config.output, ndmin=2)
    u = engine_universe(tmp_path, system)
    assert u.trajectory.n_frames == ROWS
    assert longest_bond(u, "type 1") < 6.0  # the reference's chains are whole
    assert written.shape == (ROWS, len(COORDINATES))
    assert result.frames == ROWS - 1
    references = reference_structures(tmp_path, system)
    assert_well_posed(u, COORDINATES, references)
    # the plugin sees the row's frame, step, time (ps) and the box
    info = np.loadtxt(tmp_path / "aux_info.dat", ndmin=2)
    rows = np.arange(ROWS)
    assert info.shape == (ROWS, 10)
    assert np.array_equal(info[:, 0], rows)
    assert np.array_equal(info[:, 1], rows * EVERY)
    assert np.abs(info[:, 2] - rows * EVERY * 0.002).max() <= 1e-9  # 2 fs steps
    boxes = np.array([ts.dimensions for ts in u.trajectory])
    assert np.abs(info[:, 4:7] - boxes[:, :3]).max() <= 1e-3
    assert np.abs(info[:, 7:] - boxes[:, 3:]).max() <= 1e-2

    expected = reference_columns(u, COORDINATES, references)
    bad = mismatches(written, expected, COORDINATES)
    assert not bad, "\n".join(bad)
    # ... and its group is whole (radius of gyration of the group it was given)
    chain = u.select_atoms("resid 1")
    rg = np.array([chain.radius_of_gyration() for _ in u.trajectory])
    assert np.abs(info[:, 3] - rg).max() <= 1e-3
    assert np.ptp(written[:, 0]) > 0.5  # the chains move: different frames


def test_a_split_group_without_bonds_wider_than_half_the_box_is_refused_before_md(
        lmp, tmp_path, no_engine_left):
    """Without bonds, a group is joined compactly by minimum image; chain 1 (14 Å
    long, split across an 18 Å box) cannot be: the command exits 2 naming the key
    before the engine runs an MD step, no pcoord file is written."""
    system = write_chain_system(tmp_path)
    write_chain_input(tmp_path, system, unwrap=True)
    text = system.data.read_text()
    bondless = text[:text.index("\nBonds")].replace(f"{len(system.bonds)} bonds\n"
                                                    "1 bond types\n", "")
    (tmp_path / "nobonds.data").write_text(bondless + "\n")
    start = read_data_positions(tmp_path / "nobonds.data")
    assert any(b < 9 for b in split_bonds(start, system.bonds, system.box))  # premise
    cfg = {"engine": {"input": "chains.in", "nsteps": 100, "frame_interval": 10,
                      "variables": {"start": "{config_dir}/start.data"}},
           "topology": "nobonds.data", "topology_options": {"atom_style": ATOM_STYLE},
           "pcoord": [{"type": "distance", "name": "d12", "a": "resid 1",
                       "b": "resid 2"}]}
    (tmp_path / "streamrun.yaml").write_text(yaml.safe_dump(cfg))
    workdir = tmp_path / "seg"
    proc = subprocess.run([*STREAMRUN, "run", "-c", str(tmp_path / "streamrun.yaml"),
                           "-w", str(workdir)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "pcoord[0]" in lines[0] and "streamrun.yaml" in lines[0], lines[0]
    assert "box" in lines[0], lines[0]  # says why
    assert not (workdir / "pcoord.dat").exists()
    # the engine started first (row 0 is made while it starts) but ran no MD step:
    # its own dump, written from step 0 on, holds no frame
    dump = workdir / "check.lammpstrj"
    assert not dump.exists() or "ITEM: TIMESTEP" not in dump.read_text()
