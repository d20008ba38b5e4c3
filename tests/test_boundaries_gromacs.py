"""Periodicity per dimension as GROMACS has it (mdp ``pbc``), on the real engine.

The system (tests/boundary_gromacs.py) is a water slab between two walls, periodic
in x and y only (``pbc = xy``, ``nwall = 2``, PME with ``ewald-geometry = 3dc``:
what GROMACS 2022 needs for it). Along z there is no period: no minimum image, no
wrapping, no half-box rule. Every streamed coordinate must equal the same
quantity computed with numpy from the .trr the same mdrun wrote at the streamed
steps, with the minimum image applied in x and y only. The groups are chosen so
that a minimum image along z would give other numbers (asserted as a premise).

``streamrun check`` and ``run --dry-run`` say what is periodic and where that came
from (the mdp line), and a coordinate that asks for minimum images (``pbc: true``)
in a system without periodic dimensions (``pbc = no``) is a config error naming
``pcoord[0].pbc``. (GROMACS 2022 itself refuses ``pbc = no`` in grompp: "With
Verlet lists only full pbc or pbc=xy with walls is supported"; the mdp is still
what streamrun reads before anything runs.)
"""

import re
import subprocess
import sys
import warnings

import MDAnalysis as mda
import numpy as np
import pytest
import yaml

from boundary_gromacs import grompp, write_mdp, write_slab
from pbc_systems import longest_bond, whole_universe

pytestmark = pytest.mark.engine("gromacs")

NSTEPS, EVERY, DT = 200, 10, 0.002  # 0.4 ps, a frame every 20 fs
ROWS = NSTEPS // EVERY + 1
STREAMRUN = [sys.executable, "-m", "streamrun"]
TOLERANCE = 1e-3  # Å


# --- helpers ------------------------------------------------------------------

def xy_image(d, box):
    """Minimum image of displacement vectors in x and y only (orthorhombic box
    edges ``box`` in Å); z is left as it is."""
    d = np.array(d, dtype=np.float64)
    d[..., :2] -= box[:2] * np.rint(d[..., :2] / box[:2])
    return d


def xyz_image(d, box):
    """Minimum image in x, y and z: what a fully periodic box would give."""
    d = np.array(d, dtype=np.float64)
    return d - box[:3] * np.rint(d / box[:3])


def stream_slab(folder, gmx, coordinates):
    """Build the slab in ``folder`` (grompp included), stream one segment of it
    in-process with ``coordinates`` (a function of the slab) as the pcoord;
    returns (slab, config, result, coordinates)."""
    from streamrun import segment
    from streamrun.config import load

    slab = write_slab(folder, nsteps=NSTEPS, every=EVERY, dt=DT)
    made = grompp(gmx, folder)
    assert made.returncode == 0, made.stdout + made.stderr
    coordinates = coordinates(slab)
    setup = {"engine": {"name": "gromacs", "input": "md.mdp", "nsteps": NSTEPS,
                        "frame_interval": EVERY, "args": ["-nt", "1"]},
             "topology": "seg.tpr",  # masses and bonds
             "start": "start.gro",   # the positions grompp put in seg.tpr
             "pcoord": coordinates}
    (folder / "streamrun.yaml").write_text(yaml.safe_dump(setup, sort_keys=False))
    config = load(folder / "streamrun.yaml", [f"engine.workdir={folder}"], environ={})
    return slab, config, segment.run_segment(config), coordinates


def engine_frames(folder, slab):
    """The run's own .trr as (raw Universe, Universe with every molecule whole).

    mdrun puts atoms into the box along x and y at neighbour-search steps (step 0
    included), splitting the waters that stick out of it; the whole one starts
    from the builder's whole start structure and follows every atom in time
    (MDAnalysis' NoJump), no make-whole heuristic."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        raw = mda.Universe(str(folder / "seg.tpr"), str(folder / "seg.trr"))
    whole = whole_universe(folder / "seg.tpr", folder / "seg.trr",
                           images=np.zeros((len(slab.positions), 3), dtype=int),
                           start=slab.positions, nojump=True)
    return raw, whole


def assert_engine_premises(raw, slab):
    """What the comparison relies on, from GROMACS' own trajectory."""
    assert raw.trajectory.n_frames == ROWS
    steps = [round(ts.time / DT) for ts in raw.trajectory]
    assert steps == list(range(0, NSTEPS + 1, EVERY))  # the streamed steps
    assert np.allclose(raw.dimensions, [*slab.box, 90, 90, 90])
    raw.trajectory[0]
    # step 0 is the start structure, put into the box along x and y only
    moved = raw.atoms.positions - slab.positions
    assert np.abs(moved[:, 2]).max() < 1e-4
    assert np.abs(moved[:, :2]).max() > slab.box[0] / 2
    assert np.abs(xy_image(moved, slab.box)).max() < 1e-4


def mismatches(written, expected, names):
    out = []
    for j, name in enumerate(names):
        diff = np.abs(written[:, j] - expected[:, j])
        bad = np.flatnonzero(~(diff <= TOLERANCE))
        if bad.size:
            rows = ", ".join(f"row {i}: expected {expected[i, j]:.5f} got "
                             f"{written[i, j]:.5f}" for i in bad[:3])
            out.append(f"{name}: {bad.size}/{len(diff)} rows off by up to "
                       f"{diff[bad].max():.4g} Å; {rows}")
    return out


# --- a pbc = xy segment ---------------------------------------------------------

def slab_coordinates(slab):
    low, high, cross = (f"resid {r}" for r in (slab.low, slab.high, slab.crosser))
    return [
        {"type": "distance", "name": "d_low_high", "a": low, "b": high},
        {"type": "min_distance", "name": "min_low_high", "a": low, "b": high},
        {"type": "position", "name": "high_z", "select": high, "axis": "z"},
        {"type": "position", "name": "high_z_from_low", "select": high, "axis": "z",
         "relative_to": low},
        {"type": "position", "name": "crosser_x", "select": cross, "axis": "x"},
    ]


def test_a_pbc_xy_segment_applies_minimum_images_in_x_and_y_only(
        gmx, tmp_path, no_engine_left):
    slab, config, result, coordinates = stream_slab(tmp_path, gmx, slab_coordinates)

    raw, u = engine_frames(tmp_path, slab)
    assert_engine_premises(raw, slab)
    assert longest_bond(u, "resname SOL") < 1.1  # the reference's waters are whole
    box = slab.box
    low, high, cross = (u.select_atoms(f"resid {r}")
                        for r in (slab.low, slab.high, slab.crosser))
    rows = []
    for ts in u.trajectory:
        d = high.center_of_mass() - low.center_of_mass()
        pairs = high.positions[None, :, :] - low.positions[:, None, :]
        rows.append([np.linalg.norm(xy_image(d, box)),
                     np.linalg.norm(xy_image(pairs, box), axis=-1).min(),
                     high.center_of_mass()[2],
                     xy_image(d, box)[2],
                     cross.center_of_mass()[0] % box[0],
                     # premises: what a minimum image along z would give
                     np.linalg.norm(xyz_image(d, box)),
                     np.linalg.norm(xyz_image(pairs, box), axis=-1).min(),
                     xyz_image(d, box)[2],
                     cross.center_of_mass()[0],
                     pairs[..., 2].min()])
    rows = np.array(rows)
    expected = rows[:, :5]

    # premises: the two waters are apart along z by more than half the box z edge
    # in every frame (their atoms too), so a minimum image along z would change
    # the distance, the closest pair and the relative z; the crossing water's
    # centre crosses the x edge (and never sits on a face)
    half_z = box[2] / 2
    assert rows[:, 9].min() > half_z
    assert np.abs(rows[:, 5] - expected[:, 0]).min() > 1.0
    assert np.abs(rows[:, 6] - expected[:, 1]).min() > 1.0
    assert np.abs(rows[:, 7] - expected[:, 3]).min() > 1.0
    unwrapped_x = rows[:, 8]
    assert unwrapped_x[0] < box[0] and unwrapped_x.max() > box[0] + 1.0
    assert expected[0, 4] > box[0] - 1.0 and expected[:, 4].min() < 3.0
    faces = np.minimum(expected[:, 4], box[0] - expected[:, 4])
    assert faces.min() > 0.01

    written = np.loadtxt(config.output, ndmin=2)
    assert result.frames == ROWS  # step 0 streamed too (and makes no row)
    assert written.shape == (ROWS, len(coordinates))
    names = [c["name"] for c in coordinates]
    bad = mismatches(written, expected, names)
    assert not bad, "\n".join(bad)


# --- a group longer than half the box along its non-periodic z -----------------

def spanning_coordinates(slab):
    both = f"resid {slab.low} or resid {slab.high}"
    return [
        {"type": "position", "name": "both_z", "select": both, "axis": "z"},
        {"type": "position", "name": "both_y", "select": both, "axis": "y"},
        {"type": "rg", "name": "rg_both", "select": both},
        {"type": "distance", "name": "d_both_crosser", "a": both,
         "b": f"resid {slab.crosser}"},
    ]


def test_a_group_spanning_more_than_half_the_non_periodic_z_edge_is_measured_as_is(
        gmx, tmp_path, no_engine_left):
    """Two waters near opposite walls as one group: no half-box rule along z (no
    image along z exists), so its centre is the plain centre of mass along z and
    its radius of gyration the plain one; along x and y the group is made whole as
    usual."""
    slab, config, result, coordinates = stream_slab(tmp_path, gmx,
                                                    spanning_coordinates)

    raw, u = engine_frames(tmp_path, slab)
    assert_engine_premises(raw, slab)
    box = slab.box
    both = u.select_atoms(f"resid {slab.low} or resid {slab.high}")
    cross = u.select_atoms(f"resid {slab.crosser}")
    expected, spans = [], []
    for ts in u.trajectory:
        x = both.positions.astype(np.float64)
        # whole along x and y: the second water at the image nearest the first
        x[3:] = x[:3].mean(axis=0) + xy_image(x[3:] - x[:3].mean(axis=0), box)
        m = both.masses
        com = (x * m[:, None]).sum(axis=0) / m.sum()
        rg = np.sqrt((m * ((x - com) ** 2).sum(axis=1)).sum() / m.sum())
        expected.append([com[2], com[1] % box[1], rg,
                         np.linalg.norm(xy_image(cross.center_of_mass() - com, box))])
        spans.append(np.ptp(x[:, 2]))
    expected = np.array(expected)
    assert min(spans) > box[2] / 2  # premise: the group spans more than half of z

    written = np.loadtxt(config.output, ndmin=2)
    assert result.frames == ROWS
    assert written.shape == (ROWS, len(coordinates))
    bad = mismatches(written, expected, [c["name"] for c in coordinates])
    assert not bad, "\n".join(bad)


# --- before anything runs: check and --dry-run (no mdrun, no gmx) -------------

def write_config(folder, coordinates, **engine):
    """A streamrun config for the slab that needs no GROMACS: the engine program
    is Python (never started), the topology the start structure itself."""
    cfg = {"engine": {"name": "gromacs", "input": "md.mdp", "nsteps": NSTEPS,
                      "frame_interval": EVERY, "executable": sys.executable,
                      "args": ["-nt", "1"], **engine},
           "topology": "start.gro",
           "pcoord": coordinates}
    path = folder / "streamrun.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def low_high(slab, **options):
    return [{"type": "distance", "name": "d_low_high", "a": f"resid {slab.low}",
             "b": f"resid {slab.high}", "center": "geometry", **options}]


def streamrun(*args, cwd):
    return subprocess.run([*STREAMRUN, *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def start_centres(slab):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        u = mda.Universe(str(slab.start))
    return (u.select_atoms(f"resid {slab.low}").center_of_geometry(),
            u.select_atoms(f"resid {slab.high}").center_of_geometry())


def periodic_line(output):
    lines = [line for line in output.splitlines()
             if line.strip().startswith("periodic:")]
    assert len(lines) == 1, output
    return lines[0]


@pytest.mark.parametrize("command", [["check", "streamrun.yaml"],
                                     ["run", "-c", "streamrun.yaml", "--dry-run"]])
def test_check_and_dry_run_say_x_and_y_are_periodic_from_the_mdp_line(
        tmp_path, command):
    slab = write_slab(tmp_path, nsteps=NSTEPS, every=EVERY, dt=DT)
    write_config(tmp_path, low_high(slab))

    done = streamrun(*command, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    line = periodic_line(done.stdout)
    assert f"md.mdp line {slab.pbc_line}: pbc = xy" in line, line
    # what is periodic: the words before the source (a path, the mdp's name)
    what = re.split(r"/|md\.mdp", line.split("periodic:", 1)[1])[0]
    assert re.search(r"\bx\b", what) and re.search(r"\by\b", what), line
    assert re.search(r"\b(not|no|non-periodic)\b[^xy]*\bz\b|\bz\b[^xy]*\b(not|no)\b",
                     what), line
    if command[0] == "check":
        # row 0 (the start structure): the minimum image in x and y only
        a, b = start_centres(slab)
        shown = re.search(r"row 0:\s+(\S+)", done.stdout)
        assert shown, done.stdout
        assert abs(float(shown[1]) - np.linalg.norm(xy_image(b - a, slab.box))) \
            < 1e-3 * float(shown[1])
        assert abs(float(shown[1]) - np.linalg.norm(xyz_image(b - a, slab.box))) > 1


def test_pbc_true_in_a_system_without_periodic_dimensions_is_a_config_error(
        tmp_path):
    slab = write_slab(tmp_path, nsteps=NSTEPS, every=EVERY, dt=DT)
    _, mdp_line = write_mdp(tmp_path, nsteps=NSTEPS, every=EVERY, dt=DT,
                            pbc="pbc             = no")
    write_config(tmp_path, low_high(slab, pbc=True))

    done = streamrun("check", "streamrun.yaml", cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    problems = [p for p in done.stdout.splitlines() if p.startswith("  - ")]
    named = [p for p in problems if "key 'pcoord[0].pbc'" in p]
    assert len(named) == 1, done.stdout
    assert "pbc = no" in named[0], named[0]  # says why: the mdp's pbc

    done = streamrun("run", "-c", "streamrun.yaml", "--dry-run", cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("streamrun: error: config error in ")
    assert "key 'pcoord[0].pbc'" in lines[0] and "pbc = no" in lines[0]

    # without pbc: true the same coordinate is a plain Cartesian distance
    write_config(tmp_path, low_high(slab))
    done = streamrun("check", "streamrun.yaml", cwd=tmp_path)
    problems = [p for p in done.stdout.splitlines() if p.startswith("  - ")]
    assert not [p for p in problems if "pcoord[0]" in p], done.stdout
    assert "Traceback" not in done.stdout + done.stderr
    line = periodic_line(done.stdout)
    assert f"md.mdp line {mdp_line}: pbc = no" in line, line
    what = re.split(r"/|md\.mdp", line.split("periodic:", 1)[1])[0]
    assert re.search(r"\bnone\b|\bno\b", what), line
    a, b = start_centres(slab)
    shown = re.search(r"row 0:\s+(\S+)", done.stdout)
    assert shown, done.stdout
    assert abs(float(shown[1]) - np.linalg.norm(b - a)) < 1e-3 * float(shown[1])
