"""End to end on the real LAMMPS: the pcoords streamrun computes from the IMD stream
are the ones MDAnalysis computes from a trajectory the same engine run dumped at the
same steps, and no engine process outlives streamrun."""

import os
import socket
import subprocess
import sys
import time

import MDAnalysis as mda
import numpy as np
import psutil
import pytest
from MDAnalysis.lib.distances import calc_bonds, distance_array

from streamrun import ports, segment
from streamrun.config import load
from streamrun.errors import StreamrunError

from streaming import start_streaming

ATOM_STYLE = {"atom_style": "id resid type charge x y z"}
STREAMRUN = [sys.executable, "-m", "streamrun"]

pytestmark = pytest.mark.engine("lammps")


def reference_universe(sim, dump):
    """The engine's own dump (unwrapped xu yu zu at every streamed step, and step 0)."""
    return mda.Universe(str(sim / "start.data"), str(dump), topology_format="DATA",
                        format="LAMMPSDUMP", **ATOM_STYLE)


def run_example(sim, *overrides, check_dump=True):
    """Run the example segment in-process; returns (result, config)."""
    sets = [f"engine.workdir={sim}"]
    if check_dump:
        sets.append("engine.variables.dumpfile=check.lammpstrj")
    config = load(sim / "streamrun.yaml", [*sets, *overrides], environ={})
    return segment.run_segment(config), config


def test_streamed_na_cl_distance_equals_mdanalysis_on_the_engines_dump(
        lmp, nacl_lammps, no_engine_left):
    result, config = run_example(nacl_lammps)

    written = np.loadtxt(config.output, ndmin=2)
    u = reference_universe(nacl_lammps, nacl_lammps / "check.lammpstrj")
    na, cl = u.select_atoms("type 3"), u.select_atoms("type 4")
    expected = np.array([calc_bonds(na.positions[0], cl.positions[0], box=u.dimensions)
                         for _ in u.trajectory])[:, None]
    assert u.trajectory.n_frames == config.rows == 51
    assert written.shape == (51, 1)
    assert np.abs(written - expected).max() <= 1e-3
    assert result.frames == 50 and result.launches == 1
    # the distance moves: the frames are really different steps, not one repeated
    assert np.ptp(written) > 0.01


def test_a_plugin_pcoord_with_several_columns_equals_mdanalysis_post_hoc(
        lmp, nacl_lammps, no_engine_left):
    (nacl_lammps / "hydration.py").write_text(
        "import numpy as np\n"
        "from MDAnalysis.lib.distances import distance_array\n"
        "def na_hydration(u, na, ow):\n"
        "    d = distance_array(na.positions, ow.positions, box=u.dimensions)[0]\n"
        "    return [d.min(), np.count_nonzero(d < 3.2)]\n")
    (nacl_lammps / "streamrun.yaml").write_text(
        (nacl_lammps / "streamrun.yaml").read_text()
        + "  - type: plugin\n"
          "    function: hydration.py:na_hydration\n"
          "    selections: ['type 3', 'type 1']\n"
          "    whole: false\n")  # minimum-image pairs of all waters: no whole group
    result, config = run_example(nacl_lammps)

    written = np.loadtxt(config.output, ndmin=2)
    u = reference_universe(nacl_lammps, nacl_lammps / "check.lammpstrj")
    na, ow = u.select_atoms("type 3"), u.select_atoms("type 1")
    expected = []
    for _ in u.trajectory:
        d = distance_array(na.positions, ow.positions, box=u.dimensions)[0]
        expected.append([d.min(), np.count_nonzero(d < 3.2)])
    assert written.shape == (51, 3)
    assert np.abs(written[:, 1:] - np.array(expected)).max() <= 1e-3
    assert result.column_names == ["na_cl", "na_hydration[0]", "na_hydration[1]"]


def test_the_command_line_run_prints_a_summary_and_leaves_no_engine(
        lmp, nacl_lammps, tmp_path, no_engine_left):
    workdir = tmp_path / "seg"
    proc = subprocess.run([*STREAMRUN, "run", "-c", str(nacl_lammps / "streamrun.yaml"),
                           "-w", str(workdir), "--set", "engine.nsteps=200"],
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert "20 frames streamed -> 21 rows x 1 (na_cl [Å])" in proc.stderr
    assert np.loadtxt(workdir / "pcoord.dat").shape == (21,)
    assert (workdir / "end.data").exists()  # the engine's restart for the next segment
    assert "Waiting for IMD connection" in (workdir / "streamrun-engine.log").read_text()


def test_westpa_style_start_with_no_arguments_writes_west_pcoord_return(
        lmp, nacl_lammps, tmp_path, no_engine_left):
    seg = tmp_path / "traj_segs" / "000001" / "000000"
    seg.mkdir(parents=True)
    env = dict(os.environ, WEST_CURRENT_SEG_ID="0", WEST_CURRENT_ITER="1",
               STREAMRUN_CONFIG=str(nacl_lammps / "streamrun.yaml"),
               WEST_PCOORD_RETURN=str(tmp_path / "pcoord_return.txt"))
    proc = subprocess.run(STREAMRUN, cwd=seg, env=env, capture_output=True, text=True,
                          timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert np.loadtxt(tmp_path / "pcoord_return.txt").shape == (51,)


def test_an_engine_that_fails_at_start_fails_the_segment_and_keeps_its_log(
        lmp, nacl_lammps, tmp_path, no_engine_left):
    workdir = tmp_path / "seg"
    proc = subprocess.run([*STREAMRUN, "run", "-c", str(nacl_lammps / "streamrun.yaml"),
                           "-w", str(workdir), "--set", "engine.variables.start=nope.data"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "nope.data" in lines[0] and "exited with code 1" in lines[0]
    assert not (workdir / "pcoord.dat").exists()
    assert "nope.data" in (workdir / "streamrun-engine.log").read_text()


def test_an_engine_killed_mid_segment_fails_fast_with_no_pcoord_file(
        lmp, nacl_lammps, tmp_path, no_engine_left):
    workdir = tmp_path / "seg"
    proc = start_streaming(nacl_lammps / "streamrun.yaml", workdir,
                           "--set", "engine.nsteps=20000", settle=1.0)
    engines = [p for p in psutil.Process(proc.pid).children(recursive=True)
               if p.name() == "lmp"]
    assert engines, "no lmp process found under streamrun"
    engines[-1].kill()  # the real engine, the launcher's child
    t0 = time.monotonic()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert time.monotonic() - t0 < 20
    assert "stream ended after" in err and "of 2000 frames" in err
    assert not (workdir / "pcoord.dat").exists()


def test_a_port_taken_before_the_engine_binds_it_is_replaced(
        lmp, nacl_lammps, monkeypatch, no_engine_left):
    squatter = socket.socket()
    squatter.bind(("", 0))
    squatter.listen()
    taken = squatter.getsockname()[1]
    real_reserve = ports.reserve_port
    calls = []

    def reserve(avoid=()):
        calls.append(avoid)
        if len(calls) == 1:  # hand out the squatted port, as if taken after the check
            return ports.PortReservation(taken, os.open(os.devnull, os.O_RDONLY), None)
        return real_reserve(avoid=avoid)

    monkeypatch.setattr(segment, "reserve_port", reserve)
    try:
        result, config = run_example(nacl_lammps, "engine.nsteps=100", check_dump=False)
    finally:
        squatter.close()
    assert result.launches == 2 and result.port != taken
    assert calls[1] == [taken]
    assert np.loadtxt(config.output).shape == (11,)


def test_concurrent_segments_get_distinct_ports_and_their_own_pcoords(
        lmp, nacl_lammps, tmp_path, no_engine_left):
    procs = []
    for i in range(4):
        workdir = tmp_path / f"seg{i}"
        procs.append((workdir, subprocess.Popen(
            [*STREAMRUN, "run", "-q", "-c", str(nacl_lammps / "streamrun.yaml"),
             "-w", str(workdir), "--set", "engine.nsteps=200",
             "--set", f"engine.variables.seed={1000 + i}",
             "--set", "engine.variables.dumpfile=check.lammpstrj"],
            stderr=subprocess.PIPE, text=True)))
    seen_ports, finals = set(), set()
    for workdir, proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        log = (workdir / "streamrun-engine.log").read_text()
        seen_ports.add(log.split("Waiting for IMD connection on port ")[1].split(".")[0])
        written = np.loadtxt(workdir / "pcoord.dat")
        u = reference_universe(nacl_lammps, workdir / "check.lammpstrj")
        na, cl = u.select_atoms("type 3"), u.select_atoms("type 4")
        ref = [calc_bonds(na.positions[0], cl.positions[0], box=u.dimensions)
               for _ in u.trajectory]
        assert np.abs(written - ref).max() <= 1e-3
        finals.add(round(float(written[-1]), 4))
    assert len(seen_ports) == 4
    assert len(finals) == 4  # different seeds, different trajectories


def test_a_pcoord_that_raises_on_a_frame_fails_the_segment_and_stops_the_engine(
        lmp, nacl_lammps, no_engine_left):
    (nacl_lammps / "bad.py").write_text(
        "calls = 0\n"
        "def f(u):\n"
        "    global calls\n"
        "    calls += 1\n"
        "    if calls == 5:\n"
        "        raise ValueError('bad frame')\n"
        "    return 1.0\n")
    with pytest.raises(StreamrunError, match=r"pcoord\[0\] \(f\) failed on frame 4 "
                                            r"\(step 40\): ValueError: bad frame"):
        run_example(nacl_lammps, "pcoord=[{type: plugin, function: 'bad.py:f'}]",
                    check_dump=False)
    assert not (nacl_lammps / "pcoord.dat").exists()


def test_a_topology_with_other_atoms_than_the_stream_is_a_clear_error(
        lmp, nacl_lammps, no_engine_left):
    (nacl_lammps / "two.pdb").write_text(
        "ATOM      1 NA   NA      1       1.000   1.000   1.000  1.00  0.00          NA\n"
        "ATOM      2 CL   CL      2       4.000   1.000   1.000  1.00  0.00          CL\n"
        "END\n")
    with pytest.raises(StreamrunError, match="the engine streams 917 atoms but the "
                                             "topology has 2"):
        run_example(nacl_lammps, "topology=two.pdb", "topology_options={}",
                    "pcoord=[{type: distance, a: name NA, b: name CL}]",
                    check_dump=False)
    assert not (nacl_lammps / "pcoord.dat").exists()
