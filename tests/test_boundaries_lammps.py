"""Periodicity per dimension, from the engine (LAMMPS ``boundary``), on real LAMMPS
runs: every pcoord row equals the same quantity computed from the dump LAMMPS
itself wrote at the streamed steps (step 0 included), with minimum images and
wrapping only along the periodic dimensions.

- ``boundary f f f`` (and ``f s m``): atoms 89 Å apart in a 100 Å box are 89 Å
  apart, not 11; ``position`` is measured from the data file's origin (-50);
  no half-box rule and no jump check along a non-periodic dimension.
- A slab (``p p f``): minimum image along x and y only.
- ``position`` in a periodic box whose origin is LAMMPS' examples/peptide's.
- Groups of one bonded molecule longer than half the box are measured along the
  molecule; groups of different molecules by minimum image.
- What streamrun cannot know before the run (``boundary ${b}``, ``read_restart``
  without a boundary command, ``change_box ... boundary``) is refused naming
  ``engine.periodic``, which then makes it run; ``pbc: true`` with no periodic
  dimension is refused naming the coordinate's ``pbc``; a boundary in an
  ``include``d file is honoured; ``check`` and ``--dry-run`` say where the
  periodicity came from.

References: tests/boundary_lammps.py (the dump's raw numbers, MDAnalysis'
``lib.distances``, minimum images per dimension with numpy).
"""

import os
import re
import subprocess
import sys

import numpy as np
import pytest
import yaml

from boundary_lammps import (ATOM_STYLE, PEPTIDE_EDGE, PEPTIDE_LO, Reference, data_box,
                             differs, dump_positions, mismatches, read_dump_boxes,
                             stream_segment, walls, write_fast_atom, write_fixed_box,
                             write_input, write_long_chain, write_offset_box,
                             write_slab)
from pbc_systems import read_dump

pytestmark = pytest.mark.engine("lammps")

STREAMRUN = [sys.executable, "-m", "streamrun"]
NSTEPS, EVERY = 1000, 50  # 2 fs steps: 2 ps, a frame every 100 fs
ROWS = NSTEPS // EVERY + 1


# --- running a segment -----------------------------------------------------------

def setup_of(nsteps, every, engine=None, variables=None):
    """Config keys of a segment of a builder's system (run.in, start.data)."""
    return {"engine": {"input": "run.in", "nsteps": nsteps, "frame_interval": every,
                       "variables": {"start": "{config_dir}/start.data",
                                     **(variables or {})},
                       **(engine or {})},
            "topology": "start.data", "topology_options": {"atom_style": ATOM_STYLE}}


def stream(system, coordinates, *, nsteps=NSTEPS, every=EVERY, engine=None,
           variables=None):
    """Stream one segment in-process in the system's folder; returns (written rows,
    dump frames, dump boxes) after checking the row count and the dump's steps."""
    config, result = stream_segment(system.folder,
                                     setup_of(nsteps, every, engine, variables),
                                     coordinates)
    rows = nsteps // every + 1
    written = np.loadtxt(config.output, ndmin=2)
    frames = read_dump(system.folder / "check.lammpstrj")
    assert [f.step for f in frames] == list(range(0, nsteps + 1, every))
    assert written.shape == (rows, len(coordinates))
    assert result.frames == rows - 1
    info = np.loadtxt(system.folder / "aux_info.dat", ndmin=2)
    assert np.array_equal(info[:, 0], np.arange(rows))  # row i is frame i ...
    assert np.array_equal(info[:, 1], np.arange(rows) * every)  # ... at step i*N
    return written, frames, read_dump_boxes(system.folder / "check.lammpstrj")


def reference(system, frames, boxes, periodic, columns=("x", "y", "z"), images=None):
    """Reference on the dump's raw positions, the dump's box lengths and the data
    file's origin; with the builder's ``images`` (on LAMMPS' unwrapped columns)
    the molecules are whole as they are, and groups are not joined again."""
    positions = dump_positions(frames, columns)
    if images is not None:
        positions = positions + images * system.lengths
    return Reference(system.data, positions, np.array([b.lengths for b in boxes]),
                     periodic, system.lo, join=images is None)


def assert_equal_to(written, expected, coordinates):
    bad = mismatches(written, expected, coordinates)
    assert not bad, "\n".join(bad)


def assert_premise_differs(expected, other, coordinates, names, by=1.0, every=True):
    """The columns ``names`` of ``expected`` differ from ``other`` (the same
    quantity with another periodicity) by more than ``by`` (Å or degrees) in every
    frame (``every``) or at least one: the test tells the two apart."""
    for j, c in enumerate(coordinates):
        if c["name"] in names:
            d = differs(expected[:, j], other[:, j], c["type"])
            ok = (d > by).all() if every else (d > by).any()
            assert ok, f"premise: {c['name']} does not depend on the periodicity: {d}"


def wrap_margin(values, length):
    """Smallest distance of wrapped positions from the cell faces 0 and L."""
    v = np.asarray(values)
    return float(np.minimum(np.abs(v), np.abs(length - v)).min())


def streamrun_cli(*args, timeout=120):
    """``python -m streamrun ARGS`` outside WESTPA (no WEST_* variables)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("WEST_") and k != "STREAMRUN_CONFIG"}
    return subprocess.run([*STREAMRUN, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env)


def write_config(system, coordinates, *, nsteps=100, every=10, engine=None,
                 variables=None):
    path = system.folder / "streamrun.yaml"
    cfg = {**setup_of(nsteps, every, engine, variables), "pcoord": coordinates}
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def assert_refused_before_md(proc, workdir, key):
    """Exit 2, one line naming the config file and ``key``, no pcoord file, and no
    MD step: the dump (written from step 0 on, if the engine ran) holds no frame."""
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert key in lines[0] and "streamrun.yaml" in lines[0], lines[0]
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not (workdir / "pcoord.dat").exists()
    dump = workdir / "check.lammpstrj"
    assert not dump.exists() or "ITEM: TIMESTEP" not in dump.read_text()


def periodic_line(output):
    """The one line of ``check`` / ``--dry-run`` output that starts with
    ``periodic:`` (indented or not)."""
    lines = [line.strip() for line in output.splitlines()
             if line.strip().startswith("periodic:")]
    assert len(lines) == 1, output
    return lines[0]


# --- 1. no periodic dimension -------------------------------------------------------

FIXED_COORDINATES = [
    # index 0 A (x = -45), 1 E (A's neighbour), 2 B (x = +44), 3 C (y = +41), 4 D
    {"type": "distance", "name": "ab", "a": "index 0", "b": "index 2"},
    {"type": "distance", "name": "ab_pbc_false", "a": "index 0", "b": "index 2",
     "pbc": False},
    # a group of two unbonded atoms 89 Å apart: no half-box rule without periodicity
    {"type": "distance", "name": "pair_ab_to_c", "a": "index 0 or index 2",
     "b": "index 3", "center": "geometry"},
    {"type": "min_distance", "name": "min_ae_bd", "a": "index 0 1", "b": "index 2 4"},
    {"type": "position", "name": "x_a", "select": "index 0", "axis": "x"},
    {"type": "position", "name": "y_c", "select": "index 3", "axis": "y"},
    {"type": "position", "name": "z_d", "select": "index 4", "axis": "z"},
    {"type": "position", "name": "x_b_from_a", "select": "index 2", "axis": "x",
     "relative_to": "index 0"},
    {"type": "angle", "name": "angle_bac", "a": "index 2", "b": "index 0",
     "c": "index 3"},
    {"type": "dihedral", "name": "dihedral_bacd", "a": "index 2", "b": "index 0",
     "c": "index 3", "d": "index 4"},
]
#: the columns whose value a minimum image in the streamed box would change (the
#: premise of pair_ab_to_c is its group's 81-89 Å span: the half-box rule)
MINIMUM_IMAGE_SENSITIVE = ["ab", "ab_pbc_false", "min_ae_bd", "x_b_from_a",
                           "angle_bac", "dihedral_bacd"]


@pytest.mark.parametrize("boundary", ["f f f", "f s m"], ids=["fff", "fsm"])
def test_without_periodic_dimensions_every_coordinate_is_plain_cartesian(
        lmp, tmp_path, no_engine_left, boundary):
    """``boundary f f f`` (and f, s, m: the three non-periodic kinds): atoms 89 Å
    apart in a 100 Å box are 89 Å apart (minimum image would say 11); angles and
    dihedrals take no minimum image; ``position`` is the centre minus the data
    file's origin (-50), never wrapped; a group of unbonded atoms wider than half
    the box is accepted."""
    system = write_fixed_box(tmp_path, boundary)
    written, frames, boxes = stream(system, FIXED_COORDINATES)

    # premise: LAMMPS itself says no dimension is periodic, keeps the x box at
    # -50..50 (f), and holds A and B 81-89 Å apart along x in every frame
    flags = {"f f f": ["ff", "ff", "ff"], "f s m": ["ff", "ss", "mm"]}[boundary]
    assert all(b.flags == flags for b in boxes)
    assert all(np.array_equal(b.bounds[0], [-50.0, 50.0]) for b in boxes)
    raw = dump_positions(frames)
    ab = raw[:, 2, 0] - raw[:, 0, 0]
    assert (ab > 80.0).all() and (ab < 90.0).all(), ab
    assert np.array_equal(data_box(system.data)[0], [-50.0, -50.0, -50.0])
    if boundary == "f s m":
        # shrink-wrapped y: the box follows the atoms (44 Å at step 0, not 100),
        # and C leaves the start box (y > 50: position y > 100, not wrapped)
        assert boxes[0].lengths[1] < 50.0
        assert raw[-1, 3, 1] > 50.0

    ref = reference(system, frames, boxes, (False, False, False))
    expected = ref.columns(FIXED_COORDINATES)
    assert_equal_to(written, expected, FIXED_COORDINATES)

    # premise: the minimum image in the streamed box, or a position measured
    # from 0 instead of the origin, would give other values in every frame
    periodic = reference(system, frames, boxes, (True, True, True))
    assert_premise_differs(expected, periodic.columns(FIXED_COORDINATES),
                           FIXED_COORDINATES, MINIMUM_IMAGE_SENSITIVE)
    from MDAnalysis.lib.distances import apply_PBC
    x_from_zero = np.array([apply_PBC(raw[f, 0][None], np.r_[boxes[f].lengths, 90, 90,
                                                             90])[0][0]
                            for f in range(ROWS)])
    assert (np.abs(written[:, 4] - x_from_zero) > 40.0).all()
    if boundary == "f s m":
        assert written[-1, 5] > 100.0  # beyond the start box's y edge, unwrapped
    # the atoms move: the rows are different frames
    assert (np.ptp(written, axis=0) > 0.05).all(), np.ptp(written, axis=0)


def test_an_atom_crossing_a_third_of_a_fixed_box_per_frame_is_followed(
        lmp, tmp_path, no_engine_left):
    """No jump check and no half-box rule along a non-periodic dimension: atom 0
    moves 30 Å (30 % of the 100 Å box) between frames, in a group with atom 1 that
    it leaves 73 Å behind."""
    system = write_fast_atom(tmp_path)
    coordinates = [
        {"type": "distance", "name": "pair_to_2", "a": "index 0 1", "b": "index 2"},
        {"type": "position", "name": "x_pair", "select": "index 0 1", "axis": "x"},
        {"type": "min_distance", "name": "min_0_to_12", "a": "index 0",
         "b": "index 1 2"},
        {"type": "angle", "name": "angle_102", "a": "index 1", "b": "index 0",
         "c": "index 2"},
    ]
    written, frames, boxes = stream(system, coordinates, nsteps=150, every=50)

    raw = dump_positions(frames)
    jumps = np.abs(np.diff(raw[:, 0, 0]))
    assert (jumps > 25.0).all(), jumps  # premise: more than a quarter box a frame
    assert np.abs(raw[:, 0, 0] - raw[:, 1, 0]).max() > 50.0  # and a group > half
    assert all(b.flags == ["ff", "ff", "ff"] for b in boxes)
    ref = reference(system, frames, boxes, (False, False, False))
    assert_equal_to(written, ref.columns(coordinates), coordinates)


# --- 2. a slab: p p f ------------------------------------------------------------------

SLAB_COORDINATES = [
    # resid 1 A (z -5, x -8.5), resid 2 B (z 40, x 8), resid 3 C (crosses xhi)
    {"type": "distance", "name": "ab", "a": "resid 1", "b": "resid 2"},
    {"type": "min_distance", "name": "min_ab", "a": "resid 1", "b": "resid 2"},
    {"type": "distance", "name": "ac", "a": "resid 1", "b": "resid 3"},
    {"type": "position", "name": "z_a", "select": "resid 1", "axis": "z"},
    {"type": "position", "name": "z_b", "select": "resid 2", "axis": "z"},
    {"type": "position", "name": "x_c", "select": "resid 3", "axis": "x"},
    {"type": "position", "name": "y_c", "select": "resid 3", "axis": "y"},
    {"type": "position", "name": "z_b_from_a", "select": "resid 2", "axis": "z",
     "relative_to": "resid 1"},
    {"type": "position", "name": "x_b_from_a", "select": "resid 2", "axis": "x",
     "relative_to": "resid 1"},
    {"type": "angle", "name": "angle_acb", "a": "resid 1", "b": "resid 3",
     "c": "resid 2"},
    {"type": "dihedral", "name": "dihedral_acb0", "a": "resid 1", "b": "resid 3",
     "c": "resid 2", "d": "index 0"},
]


def slab_premises(system, frames, boxes):
    """LAMMPS says x, y periodic and z not; A and B are more than half the z extent
    apart and more than half the x edge apart in every frame; C crosses the xhi
    face (its image flag changes) and is split across it in some frame."""
    assert all(b.flags == ["pp", "pp", "ff"] for b in boxes)
    raw = dump_positions(frames)
    a, b = raw[:, 0:3].mean(axis=1), raw[:, 3:6].mean(axis=1)
    assert (np.abs(b[:, 2] - a[:, 2]) > 30.0).all()   # half of the 60 Å z extent
    assert (np.abs(b[:, 0] - a[:, 0]) > 12.0).all()   # half of the 24 Å x edge
    ix = np.array([f.columns["ix"] for f in frames])
    assert np.ptp(ix[:, 6]) >= 1
    assert (np.abs(raw[:, 6, 0] - raw[:, 7, 0]) > 12.0).any()


def test_a_slab_takes_minimum_images_along_x_and_y_only(lmp, tmp_path,
                                                           no_engine_left):
    """``boundary p p f``: two clusters 45 Å apart along z in a 60 Å z extent are
    45 Å apart along z (minimum image would say 15), and 16.5 Å apart along x in a
    24 Å edge are 7.5 Å apart along x (minimum image); a cluster crossing the x
    face is whole and its position wrapped into [0, 24); z positions are measured
    from zlo (-10) and not wrapped."""
    system = write_slab(tmp_path)
    written, frames, boxes = stream(system, SLAB_COORDINATES)
    slab_premises(system, frames, boxes)

    ref = reference(system, frames, boxes, (True, True, False))
    expected = ref.columns(SLAB_COORDINATES)
    assert_equal_to(written, expected, SLAB_COORDINATES)
    # premise: minimum image along z too, or along no dimension, gives other values
    every = reference(system, frames, boxes, (True, True, True))
    assert_premise_differs(expected, every.columns(SLAB_COORDINATES), SLAB_COORDINATES,
                           ["ab", "min_ab", "z_b_from_a"])
    none = reference(system, frames, boxes, (False, False, False))
    # (ab: 45 Å along z dominate; 16.5 vs 7.5 Å along x still change it by 0.8 Å)
    assert_premise_differs(expected, none.columns(SLAB_COORDINATES), SLAB_COORDINATES,
                           ["ab", "x_b_from_a"], by=0.5)
    assert_premise_differs(expected, none.columns(SLAB_COORDINATES), SLAB_COORDINATES,
                           ["x_c", "ac"], every=False)
    assert wrap_margin(expected[:, 5], 24.0) > 1e-3  # no centre on the x face
    assert (np.ptp(written, axis=0) > 0.05).all(), np.ptp(written, axis=0)


# --- 3. position in a periodic box whose origin is not 0 ----------------------------

def test_position_is_measured_from_the_box_origin_and_wrapped_into_the_box(
        lmp, tmp_path, no_engine_left):
    """``boundary p p p`` with examples/peptide's box (origin 36.84 41.01 29.77,
    edges 27.37 Å): ``position`` = (centre - origin) wrapped into [0, L), for
    groups that cross the x, y and z faces during the run."""
    system = write_offset_box(tmp_path)
    coordinates = [
        {"type": "position", "name": f"{axis}_{name}", "select": sel, "axis": axis,
         **({"center": "geometry"} if name == "p_geometry" else {})}
        for name, sel in (("p", "resid 1"), ("q", "resid 2"), ("r", "resid 3"),
                          ("p_geometry", "resid 1"))
        for axis in "xyz"]
    written, frames, boxes = stream(system, coordinates)

    # premise: the data file and LAMMPS' dump put the origin at examples/peptide's,
    # P starts split across the xhi face, and P, Q, R cross faces during the run
    lo, hi = data_box(system.data)
    assert np.allclose(lo, PEPTIDE_LO, atol=1e-9)
    assert np.allclose(hi - lo, PEPTIDE_EDGE, atol=1e-9)
    assert all(np.allclose(b.lo, PEPTIDE_LO, atol=1e-6) for b in boxes)
    assert all(b.flags == ["pp", "pp", "pp"] for b in boxes)
    raw = dump_positions(frames)
    assert abs(raw[0, 0, 0] - raw[0, 1, 0]) > PEPTIDE_EDGE / 2
    images = np.array([np.column_stack([f.columns[k] for k in ("ix", "iy", "iz")])
                       for f in frames])
    assert np.ptp(images[:, 0, 0]) >= 1 and np.ptp(images[:, 2, 1]) >= 1 \
        and np.ptp(images[:, 3, 2]) >= 1

    ref = reference(system, frames, boxes, (True, True, True))
    expected = ref.columns(coordinates)
    assert_equal_to(written, expected, coordinates)
    assert ((expected >= 0.0) & (expected < PEPTIDE_EDGE)).all()
    assert wrap_margin(expected, PEPTIDE_EDGE) > 1e-3  # no centre on a face
    # premise: measured from 0 (MDAnalysis' apply_PBC of the centre itself) the
    # values differ: the origin is not a multiple of the edge
    from_zero = Reference(system.data, raw, PEPTIDE_EDGE,
                          (True,) * 3, np.zeros(3))
    assert_premise_differs(expected, from_zero.columns(coordinates), coordinates,
                           [c["name"] for c in coordinates])


# --- 4. groups of one molecule longer than half the box ----------------------------

CHAIN_COORDINATES = [
    # resid 1: a 12-bead chain (index 0-11), 28.6 Å end to end in a 40 Å box
    {"type": "distance", "name": "head_tail", "a": "index 0 1", "b": "index 10 11"},
    {"type": "min_distance", "name": "min_head_tail", "a": "index 0 1",
     "b": "index 10 11"},
    {"type": "angle", "name": "angle_mid_head_tail", "a": "index 5 6",
     "b": "index 0 1", "c": "index 10 11"},
    {"type": "dihedral", "name": "dihedral_0_1_10_11", "a": "index 0", "b": "index 1",
     "c": "index 10", "d": "index 11"},
    {"type": "position", "name": "x_tail_from_head", "select": "index 11",
     "relative_to": "index 0", "axis": "x"},
    # resid 2: another molecule (one atom); between molecules: minimum image
    {"type": "distance", "name": "head_other", "a": "index 0 1", "b": "resid 2"},
    {"type": "distance", "name": "chain_other", "a": "resid 1", "b": "resid 2"},
    {"type": "min_distance", "name": "min_chain_other", "a": "resid 1",
     "b": "resid 2"},
]
ALONG_CHAIN = CHAIN_COORDINATES[:5]
BETWEEN_MOLECULES = CHAIN_COORDINATES[5:]


def test_groups_of_one_molecule_are_measured_along_it(lmp, tmp_path, no_engine_left):
    """Distance, min_distance, angle, dihedral and position relative_to between
    parts of one bonded chain longer than half the box are measured along the
    chain (whole, no minimum image) -- not between the nearest images -- while
    groups of different molecules take the minimum image. The chain starts split
    across the box in the data file; ``fix imd`` streams wrapped coordinates."""
    system = write_long_chain(tmp_path)
    written, frames, boxes = stream(system, CHAIN_COORDINATES)

    # premise: the data file holds the chain split; LAMMPS' unwrapped coordinates
    # plus the builder's images make it whole (every bond short) in every frame;
    # its end-to-end vector spans more than half the box along x in every frame
    n = system.notes["n_beads"]
    assert np.abs(np.diff(system.positions[:n, 0])).max() > 20.0
    ref_along = reference(system, frames, boxes, (False, False, False),
                          columns=("xu", "yu", "zu"), images=system.images)
    whole = ref_along.positions
    bonds = np.linalg.norm(whole[:, 1:n] - whole[:, :n - 1], axis=2)
    assert bonds.max() < 3.5, bonds.max()
    assert (np.abs(whole[:, n - 1, 0] - whole[:, 0, 0]) > 20.0).all()
    raw = dump_positions(frames)  # what fix imd streams (no unwrap on): split
    assert np.abs(np.diff(raw[0, :n, 0])).max() > 20.0

    ref_between = reference(system, frames, boxes, (True, True, True),
                            columns=("xu", "yu", "zu"), images=system.images)
    expected = np.column_stack([ref_along.columns(ALONG_CHAIN),
                                ref_between.columns(BETWEEN_MOLECULES)])
    assert_equal_to(written, expected, CHAIN_COORDINATES)

    # premise: between the nearest images (what pbc does between molecules) the
    # parts of the chain are other distances and angles in every frame; between
    # molecules, no minimum image would be another distance (the chain made whole
    # lies more than half a box from the other atom)
    assert_premise_differs(expected[:, :5], ref_between.columns(ALONG_CHAIN),
                           ALONG_CHAIN, [c["name"] for c in ALONG_CHAIN])
    assert_premise_differs(expected[:, 5:6], ref_along.columns(BETWEEN_MOLECULES[:1]),
                           BETWEEN_MOLECULES[:1], ["head_other"])
    assert (np.ptp(written, axis=0) > 0.05).all(), np.ptp(written, axis=0)


# --- 5. what streamrun cannot know, and where periodicity comes from ---------------

def test_pbc_true_without_a_periodic_dimension_is_refused_before_md(
        lmp, tmp_path, no_engine_left):
    """``pbc: true`` asks for a minimum image that ``boundary f f f`` does not have:
    exit 2, one line naming ``pcoord[0].pbc``, before the engine runs an MD step."""
    system = write_fixed_box(tmp_path, "f f f")
    cfg = write_config(system, [{"type": "distance", "name": "ab", "a": "index 0",
                                 "b": "index 2", "pbc": True}])
    workdir = tmp_path / "seg"
    proc = streamrun_cli("run", "-c", cfg, "-w", workdir)
    assert_refused_before_md(proc, workdir, "pcoord[0].pbc")


def restart_system(folder, lmp):
    """The fixed-box system (``boundary f f f``) written to a LAMMPS restart file by
    LAMMPS itself, and a segment input that reads it with no boundary command."""
    system = write_fixed_box(folder, "f f f")
    (folder / "make_restart.in").write_text(
        "units real\natom_style full\nboundary f f f\nread_data start.data\n"
        "pair_style lj/cut 8.5\npair_coeff * * 0.2381 3.405\n"
        "write_restart start.restart\n")
    made = subprocess.run([lmp, "-in", "make_restart.in", "-log", "none", "-nocite"],
                          cwd=folder, capture_output=True, text=True, timeout=60)
    assert made.returncode == 0 and (folder / "start.restart").exists(), made.stdout
    write_input(folder, boundary="", read="read_restart    ${restart}",
                variables="variable        restart index start.restart",
                title="the fixed box, from a restart file (no boundary command)",
                integrate="fix             move all nve\n" + walls("f f f"))
    return system


#: inputs whose periodicity streamrun cannot know before the run: the builder, the
#: engine variables, the engine.periodic that makes them run, and what LAMMPS then
#: has (its dump's flags)
UNKNOWABLE = {
    "variable-in-input": (
        lambda folder, lmp: write_slab(folder, boundary="boundary        ${b}",
                                       variables='variable        b index "p p f"'),
        {}, "xy", ["pp", "pp", "ff"]),
    "variable-from-config": (
        lambda folder, lmp: write_slab(folder, boundary="boundary        ${b}"),
        {"b": "p p p"}, "xyz", ["pp", "pp", "pp"]),
    "read_restart": (
        restart_system,
        {"restart": "{config_dir}/start.restart"}, "none", ["ff", "ff", "ff"]),
    "change_box": (
        lambda folder, lmp: write_slab(
            folder, boundary="boundary        p p p",
            after_read="change_box      all boundary p p f"),
        {}, "xy", ["pp", "pp", "ff"]),
}
#: coordinates that depend on the periodicity in both systems (slab, fixed box)
UNKNOWABLE_COORDINATES = {
    "slab": [c for c in SLAB_COORDINATES
             if c["name"] in ("ab", "min_ab", "z_b", "x_c", "z_b_from_a")],
    "fixed": [c for c in FIXED_COORDINATES
              if c["name"] in ("ab", "min_ae_bd", "x_a", "angle_bac")],
}


@pytest.mark.parametrize("case", list(UNKNOWABLE))
def test_a_boundary_unknown_before_the_run_is_refused_naming_engine_periodic(
        lmp, tmp_path, no_engine_left, case):
    """``boundary ${b}`` (the variable set in the input or by engine.variables),
    ``read_restart`` without a boundary command, ``change_box all boundary``:
    exit 2, one line naming ``engine.periodic``, no MD step."""
    build, variables, _, _ = UNKNOWABLE[case]
    system = build(tmp_path, lmp)
    kind = "fixed" if case == "read_restart" else "slab"
    cfg = write_config(system, UNKNOWABLE_COORDINATES[kind], variables=variables)
    workdir = tmp_path / "seg"
    proc = streamrun_cli("run", "-c", cfg, "-w", workdir)
    assert_refused_before_md(proc, workdir, "engine.periodic")


@pytest.mark.parametrize("case", list(UNKNOWABLE))
def test_engine_periodic_makes_an_unknown_boundary_run(lmp, tmp_path, no_engine_left,
                                                       case):
    """The same inputs with ``engine.periodic`` set (xy, xyz, none, xy) run, and
    every row equals the reference with that periodicity (which is what LAMMPS
    had: its dump says so)."""
    build, variables, periodic, flags = UNKNOWABLE[case]
    system = build(tmp_path, lmp)
    kind = "fixed" if case == "read_restart" else "slab"
    coordinates = UNKNOWABLE_COORDINATES[kind]
    written, frames, boxes = stream(system, coordinates, nsteps=400,
                                    engine={"periodic": periodic}, variables=variables)
    assert all(b.flags == flags for b in boxes)  # premise: LAMMPS' own boundary
    mask = tuple(d in periodic for d in "xyz")
    ref = reference(system, frames, boxes, mask)
    assert_equal_to(written, ref.columns(coordinates), coordinates)


def test_a_boundary_in_an_included_file_is_honoured(lmp, tmp_path, no_engine_left):
    """``include slab_boundary.in`` whose line 3 is ``boundary p p f``: ``streamrun
    check`` says so on its ``periodic:`` line (the file and line), and the segment
    gives the slab's values (minimum image along x and y only)."""
    system = write_slab(tmp_path, boundary="include         slab_boundary.in",
                        boundary_file="slab_boundary.in")
    coordinates = UNKNOWABLE_COORDINATES["slab"]
    cfg = write_config(system, coordinates)
    proc = streamrun_cli("check", cfg, "--set", f"engine.workdir={tmp_path}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    line = periodic_line(proc.stdout)
    assert re.search(r"slab_boundary\.in\W+(line\s+)?3\b", line), line
    assert re.search(r"\bz\b", line), line

    written, frames, boxes = stream(system, coordinates)
    slab_premises(system, frames, boxes)
    ref = reference(system, frames, boxes, (True, True, False))
    assert_equal_to(written, ref.columns(coordinates), coordinates)


def boundary_line_number(path):
    return next(n for n, line in enumerate(path.read_text().splitlines(), 1)
                if line.startswith("boundary"))


@pytest.mark.parametrize("source", ["default", "boundary-command", "engine.periodic"])
def test_the_dry_run_says_what_is_periodic_and_where_it_came_from(
        lmp, tmp_path, no_engine_left, source):
    """``run --dry-run`` prints one ``periodic:`` line: LAMMPS' default ``p p p``
    for an input without a boundary command, the input file and line of the
    boundary command, or the config key ``engine.periodic``. No engine runs."""
    engine = {}
    if source == "default":
        system = write_offset_box(tmp_path)
        write_input(tmp_path, boundary="", title="no boundary command")
    elif source == "boundary-command":
        system = write_fixed_box(tmp_path, "f f f")
    else:
        system = write_slab(tmp_path, boundary="boundary        ${b}",
                            variables='variable        b index "p p f"')
        engine = {"periodic": "xy"}
    cfg = write_config(system, [{"type": "distance", "a": "index 0", "b": "index 2"}],
                       engine=engine)
    workdir = tmp_path / "seg"
    proc = streamrun_cli("run", "-c", cfg, "-w", workdir, "--dry-run")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    line = periodic_line(proc.stdout + proc.stderr)
    if source == "default":
        assert re.search(r"default|no boundary", line, re.I), line
    elif source == "boundary-command":
        number = boundary_line_number(tmp_path / "run.in")
        assert re.search(rf"run\.in\W+(line\s+)?{number}\b", line), line
    else:
        assert "engine.periodic" in line, line
    assert not (workdir / "check.lammpstrj").exists()
