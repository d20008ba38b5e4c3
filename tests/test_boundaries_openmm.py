"""Periodic boundaries belong to the engine: an OpenMM System without them (implicit
solvent, no cut-off) gives plain Cartesian pcoords, a periodic one keeps its box.

OpenMM reports a default 2 nm box for a System that has no periodic boundaries
(``getPeriodicBoxVectors()``; its saved state XML carries that box too). Applying
minimum images with that box turns a 35 Å distance into about 7 Å. The reporter
announces no box when ``system.usesPeriodicBoundaryConditions()`` is False, and
streamrun then uses no minimum image, no wrapping and no whole-making for that
segment, row 0 (the state XML) included; ``engine.periodic`` (auto, xyz, none)
must agree with the System, and ``pbc: true`` on a coordinate of a non-periodic
system is an error.

The system (tests/boundary_openmm.py): ubiquitin residues 57-76 from imdclient's
test data, amber99sb-ildn + OBC GB, NoCutoff, built once per module. Every pcoord
row is compared with MDAnalysis on the DCD the user's script writes at the same
steps (start frame included).
"""

import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import yaml

from boundary_openmm import (DEFAULT_BOX, build, minimum_image, reference_rows,
                             write_config)
from conftest import absent

pytestmark = pytest.mark.engine("openmm")

STREAMRUN = [sys.executable, "-m", "streamrun"]
NSTEPS, EVERY = 200, 20  # 2 fs steps: 0.4 ps, a frame every 40 fs
ROWS = NSTEPS // EVERY + 1

# residue 63 sits on the last strand, 74 at the end of the extended tail (~35 Å)
COORDINATES = [
    {"type": "distance", "name": "d63_74", "a": "resid 63", "b": "resid 74"},
    {"type": "angle", "name": "angle57_63_74", "a": "resid 57", "b": "resid 63",
     "c": "resid 74"},
    {"type": "dihedral", "name": "dihedral57_63_70_74", "a": "resid 57",
     "b": "resid 63", "c": "resid 70", "d": "resid 74"},
    {"type": "min_distance", "name": "min63_74", "a": "resid 63", "b": "resid 74"},
    {"type": "position", "name": "x", "select": "protein", "axis": "x"},
    {"type": "rg", "name": "rg", "select": "protein"},
    {"type": "rmsd", "name": "rmsd", "select": "protein"},  # reference: added below
]
DEGREES = {"angle", "dihedral"}


@pytest.fixture(scope="module")
def peptide(tmp_path_factory):
    """The non-periodic peptide system, built once for the module."""
    try:
        import openmm  # noqa: F401
    except ImportError:
        absent("openmm", f"openmm not installed for {sys.executable}")
    start = time.monotonic()
    system = build(tmp_path_factory.mktemp("peptide"))
    system.timings["build"] = time.monotonic() - start
    return system


def coordinates(peptide):
    return [dict(c, reference=str(peptide.reference)) if c["type"] == "rmsd" else c
            for c in COORDINATES]


def run_cli(*args, timeout=120):
    return subprocess.run([*STREAMRUN, *map(str, args)], capture_output=True,
                          text=True, timeout=timeout)


def one_error_line(proc):
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("streamrun: error"), lines[0]
    assert "Traceback" not in proc.stderr + proc.stdout
    return lines[0]


def periodic_line(text):
    lines = [l.strip() for l in text.splitlines() if re.match(r"\s*periodic:", l)]
    assert len(lines) == 1, text
    return lines[0]


def state_xml(path):
    """(positions, box vectors) in Å of an OpenMM state XML, float64."""
    root = ET.parse(path).getroot()
    positions = np.array([[float(p.get(k)) for k in "xyz"]
                          for p in root.iter("Position")]) * 10.0
    box = np.array([[float(v.get(k)) for k in "xyz"]
                    for v in root.find("PeriodicBoxVectors")]) * 10.0
    return positions, box


def assert_rows_match(written, expected, coords):
    assert written.shape == expected.shape, (written.shape, expected.shape)
    bad = []
    for j, c in enumerate(coords):
        diff = written[:, j] - expected[:, j]
        if c["type"] in DEGREES:
            diff = (diff + 180.0) % 360.0 - 180.0
        tol = 1e-2 if c["type"] in DEGREES else 1e-3
        worst = int(np.argmax(np.abs(diff)))
        if abs(diff[worst]) > tol:
            bad.append(f"{c['name']}: row {worst}: streamrun {written[worst, j]:.6f}, "
                       f"MDAnalysis {expected[worst, j]:.6f} (tolerance {tol})")
    assert not bad, "\n".join(bad)


# ------------------------------------------------- 1. plain Cartesian pcoords

@pytest.mark.parametrize("periodic", [None, "none"], ids=["auto", "explicit-none"])
def test_pcoords_of_a_system_without_periodic_boundaries_are_plain_cartesian(
        peptide, tmp_path, no_engine_left, periodic):
    import MDAnalysis as mda
    from streamrun import segment
    from streamrun.config import load

    coords = coordinates(peptide)
    config_path = write_config(
        tmp_path / "streamrun.yaml", peptide, coords, nsteps=NSTEPS,
        frame_interval=EVERY, engine={"periodic": periodic} if periodic else None)
    workdir = tmp_path / "seg"
    workdir.mkdir()
    config = load(config_path, [f"engine.workdir={workdir}"], environ={})
    started = time.monotonic()
    result = segment.run_segment(config)
    seconds = time.monotonic() - started

    # premise 1: the System has no periodic boundaries, but OpenMM reports (and
    # its state XML carries) a 2 nm box
    log = (workdir / "streamrun-engine.log").read_text()
    assert "usesPeriodicBoundaryConditions=False box=[2.0, 2.0, 2.0] nm" in log, log
    _, box = state_xml(peptide.start)
    assert np.array_equal(box, np.diag([DEFAULT_BOX] * 3))
    assert f"sent {ROWS - 1} frames" in log

    u = mda.Universe(str(peptide.topology), str(workdir / "seg.dcd"))
    assert u.trajectory.n_frames == ROWS  # start frame + one per streamed step
    ref = mda.Universe(str(peptide.reference)).select_atoms("protein")
    expected = reference_rows(u, coords, {"rmsd": ref.positions.astype(np.float64)})

    # premise 2: in every frame, minimum images in OpenMM's default box would change
    # the distances, the wrapped position and the whole protein
    a, b = u.select_atoms("resid 63"), u.select_atoms("resid 74")
    protein = u.select_atoms("protein")
    for ts in u.trajectory:
        d = b.center_of_mass().astype(np.float64) - a.center_of_mass()
        assert np.linalg.norm(d) > 20.0
        assert np.linalg.norm(d) - np.linalg.norm(minimum_image(d)) > 5.0
        span = np.ptp(protein.positions, axis=0)
        assert np.all(span > DEFAULT_BOX / 2), span
    d_col, min_col, x_col = 0, 3, 4
    assert np.all(expected[:, min_col] > DEFAULT_BOX)
    assert np.all((expected[:, x_col] < 0) | (expected[:, x_col] >= DEFAULT_BOX))

    written = np.loadtxt(config.output, ndmin=2)
    assert written.shape == (ROWS, len(coords))
    assert result.frames == ROWS - 1
    assert_rows_match(written, expected, coords)
    assert np.all(written[:, d_col] > 20.0)  # not the 7 Å of the default box
    assert np.ptp(written[:, d_col]) > 1e-3  # the frames differ
    assert (workdir / "seg.xml").exists()
    print(f"segment {seconds:.1f} s; build {peptide.timings}")


# --------------------------------------- 2. check, dry run; pbc: true refused

def test_check_and_dry_run_do_not_claim_a_periodic_box_for_an_openmm_system(
        peptide, tmp_path, no_engine_left):
    coords = coordinates(peptide)
    config = write_config(tmp_path / "streamrun.yaml", peptide, coords,
                          nsteps=NSTEPS, frame_interval=EVERY)
    for proc in (run_cli("check", config),
                 run_cli("run", "-c", config, "-w", tmp_path / "dry", "--dry-run")):
        assert proc.returncode == 0, proc.stdout + proc.stderr
        line = periodic_line(proc.stdout)
        # auto for OpenMM: learned from the System when the script runs; no claim
        # of a periodic box (least of all OpenMM's default one). A hint on how to
        # state it beforehand may follow a ';'.
        claim = line.split(":", 1)[1].split(";")[0]
        assert re.search(r"system|script", claim, re.I), line
        assert not re.search(r"\bxyz\b|x,? y,? z|fully periodic", claim), line
        assert not re.search(r"\b20(\.0*)? ?Å|\b2(\.0*)? ?nm", line), line
    assert not (tmp_path / "dry" / "pcoord.dat").exists()


def test_pbc_true_on_a_system_without_periodic_boundaries_is_refused(
        peptide, tmp_path, no_engine_left):
    explicit = [dict(coordinates(peptide)[0], pbc=True)]
    config = write_config(tmp_path / "pbc.yaml", peptide, explicit, nsteps=NSTEPS,
                          frame_interval=EVERY)
    workdir = tmp_path / "seg"
    proc = run_cli("run", "-c", config, "-w", workdir)
    line = one_error_line(proc)
    # a config error (exit 2, as everywhere in streamrun), found once the script
    # told that its System is not periodic: the engine was started, then stopped
    assert proc.returncode == 2, proc.stderr
    assert "pcoord[0].pbc" in line, line
    assert not (workdir / "pcoord.dat").exists()


# ------------------------------------ 3. engine.periodic against the System

@pytest.mark.parametrize("system, periodic", [("peptide", "xyz"), ("nacl", "none")],
                         ids=["non-periodic-system-xyz", "periodic-system-none"])
def test_engine_periodic_that_disagrees_with_the_system_fails_the_segment(
        peptide, request, tmp_path, no_engine_left, system, periodic):
    if system == "peptide":
        config = write_config(tmp_path / "streamrun.yaml", peptide,
                              coordinates(peptide)[:1], nsteps=NSTEPS,
                              frame_interval=EVERY, engine={"periodic": periodic})
    else:
        request.getfixturevalue("openmm")
        config = request.getfixturevalue("nacl_openmm") / "streamrun.yaml"
    # the key exists: the config alone is fine (the System is known only when the
    # script runs)
    dry = run_cli("run", "-c", config, "-w", tmp_path / "dry", "--dry-run",
                  "--set", f"engine.periodic={periodic}")
    assert dry.returncode == 0, dry.stderr
    periodic_line(dry.stdout)

    workdir = tmp_path / "seg"
    proc = run_cli("run", "-c", config, "-w", workdir, "--set", "engine.nsteps=100",
                   "--set", f"engine.periodic={periodic}")
    line = one_error_line(proc)
    assert proc.returncode in (1, 2), proc.stderr
    assert "engine.periodic" in line and "unknown key" not in line, line
    assert not (workdir / "pcoord.dat").exists()


# ----------------------------------- 4. the periodic example keeps its box

@pytest.mark.parametrize("periodic", ["shipped", "auto"],
                         ids=["as-shipped", "auto-learned-from-the-system"])
def test_the_periodic_example_still_streams_and_uses_its_box(
        openmm, nacl_openmm, tmp_path, no_engine_left, periodic):
    """The example as shipped (``engine.periodic`` as its config states it) and with
    the key removed (auto: the System's PME box, learned when the script runs)."""
    import MDAnalysis as mda
    from MDAnalysis.lib.distances import calc_bonds

    # a water oxygen whose separation from Na is more than half the box along x
    # in the start state: only the minimum image is right for it
    positions, box = state_xml(nacl_openmm / "start.xml")
    edge = box[0, 0]
    dx = positions[2::3, 0] - positions[0, 0]
    far = 2 + 3 * int(np.argmax(np.abs(dx)))
    assert abs(positions[far, 0] - positions[0, 0]) > 0.6 * edge
    cfg = yaml.safe_load((nacl_openmm / "streamrun.yaml").read_text())
    if periodic == "auto":
        cfg["engine"].pop("periodic", None)
    cfg["pcoord"].append({"type": "distance", "name": "na_far", "a": "name NA",
                          "b": f"index {far}"})
    config = nacl_openmm / "far.yaml"
    config.write_text(yaml.safe_dump(cfg, sort_keys=False))

    workdir = tmp_path / "seg"
    proc = run_cli("run", "-c", config, "-w", workdir, "--set", "engine.nsteps=100",
                   "--set", "engine.variables.dcd=seg.dcd")
    assert proc.returncode == 0, proc.stderr
    rows = np.loadtxt(workdir / "pcoord.dat", ndmin=2)
    assert rows.shape == (11, 2)

    u = mda.Universe(str(nacl_openmm / "topology.pdb"), str(workdir / "seg.dcd"))
    na, cl, ow = (u.atoms[[i]] for i in (0, 1, far))
    expected, raw = [], []
    for ts in u.trajectory:  # the streamed steps (this DCD has no start frame)
        assert ts.dimensions is not None
        expected.append([calc_bonds(na.positions, x.positions, box=ts.dimensions)[0]
                         for x in (cl, ow)])
        raw.append(np.linalg.norm(ow.positions[0].astype(np.float64)
                                  - na.positions[0]))
    np.testing.assert_allclose(rows[1:], expected, atol=1e-3, rtol=0)
    assert np.all(np.array(raw) - rows[1:, 1] > 1.0)  # the box was used
    start = [np.linalg.norm(minimum_image(positions[i] - positions[0], edge))
             for i in (1, far)]
    np.testing.assert_allclose(rows[0], start, atol=1e-3, rtol=0)


# -------------------------- 5. the reporter itself: no box announced, none sent

def test_the_reporter_announces_and_sends_no_box_for_a_non_periodic_system(
        peptide, tmp_path, no_engine_left):
    """The script alone, served to imdclient: the session info has no box, no frame
    carries one, and the positions are the DCD's."""
    import json
    import os
    import signal

    import MDAnalysis as mda
    from imdclient.IMDClient import IMDClient

    env = dict(os.environ, STREAMRUN_FRAME_INTERVAL=str(EVERY),
               STREAMRUN_NSTEPS=str(NSTEPS), PYTHONUNBUFFERED="1",
               STREAMRUN_VARIABLES=json.dumps({"start": str(peptide.start),
                                               "dcd": "seg.dcd"}))
    proc = subprocess.Popen([sys.executable, str(peptide.script)], cwd=tmp_path,
                            env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        for line in proc.stdout:
            m = re.search(r"IMD v3 listening on 127\.0\.0\.1 port (\d+)", line)
            if m:
                break
        else:
            pytest.fail(f"the script ended without listening (exit {proc.wait()})")
        saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            client = IMDClient("127.0.0.1", int(m.group(1)), peptide.n_atoms,
                               timeout=20)
        finally:
            for s, h in saved.items():
                signal.signal(s, h)
        info = client.get_imdsessioninfo()
        assert (info.version, info.time, info.positions) == (3, True, True)
        assert not info.box, "a box announced for a System without periodic boundaries"
        frames = []
        try:
            while True:
                frame = client.get_imdframe()
                assert frame.box is None
                frames.append((int(frame.step), frame.positions.copy()))
        except EOFError:
            pass
        client.stop()
        out = proc.communicate(timeout=30)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out
    assert [step for step, _ in frames] == list(range(EVERY, NSTEPS + 1, EVERY))
    u = mda.Universe(str(peptide.topology), str(tmp_path / "seg.dcd"))
    dcd = np.array([ts.positions.copy() for ts in u.trajectory[1:]])
    np.testing.assert_allclose(np.array([x for _, x in frames]), dcd, atol=1e-4,
                               rtol=0)
