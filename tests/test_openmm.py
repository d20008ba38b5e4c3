"""OpenMM segments, streamed by streamrun's own IMD v3 reporter (streamrun.openmm),
against the real openmm package and the example example_sims/nacl_openmm.

The user's story: an OpenMM script (the tutorial's kind: PME, HBonds, a Monte Carlo
barostat, Langevin) adds one reporter line and steps ``nsteps()``; streamrun runs it,
and its pcoords are what MDAnalysis computes on a DCD that the same run writes at
the streamed steps. A failing script, a signal or a SIGKILL of streamrun leave no
Python engine behind. The reporter itself is checked against imdclient alone
(back-pressure, a client that leaves early) and against a raw client that pushes
forces (ignored: the trajectory is the one without them).
"""

import os
import re
import signal
import socket
import struct
import subprocess
import sys
import time

import numpy as np
import psutil
import pytest

from conftest import absent, processes_with_token
from streaming import STREAMRUN

pytestmark = pytest.mark.engine("openmm")

N_ATOMS = 566  # example_sims/nacl_openmm/topology.pdb


def run_cli(config, workdir, *sets, timeout=120):
    args = [a for s in sets for a in ("--set", s)]
    return subprocess.run([*STREAMRUN, "run", "-c", str(config), "-w", str(workdir),
                           *args], capture_output=True, text=True, timeout=timeout)


def one_error_line(proc):
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("streamrun: error: ")
    return lines[0]


def na_cl_on_dcd(example, dcd):
    """Na-Cl minimum-image distances (Å) MDAnalysis computes on a DCD."""
    import MDAnalysis as mda
    from MDAnalysis.lib.distances import calc_bonds

    u = mda.Universe(str(example / "topology.pdb"), str(dcd))
    na, cl = u.select_atoms("name NA"), u.select_atoms("name CL")
    return np.array([calc_bonds(na.positions[0], cl.positions[0], box=ts.dimensions)
                     for ts in u.trajectory])


# ------------------------------------------------------------- segments, streamed

def test_chained_segments_stream_exactly_what_openmm_writes_to_its_dcd(
        openmm, nacl_openmm, tmp_path, no_engine_left):
    config = nacl_openmm / "streamrun.yaml"
    first, second = tmp_path / "seg1", tmp_path / "seg2"
    proc = run_cli(config, first, "engine.nsteps=200", "engine.variables.dcd=seg.dcd")
    assert proc.returncode == 0, proc.stderr
    # the next segment starts from the state the first one saved
    proc2 = run_cli(config, second, "engine.nsteps=200", "engine.variables.dcd=seg.dcd",
                    "engine.variables.seed=77", f"engine.variables.start={first}/seg.xml",
                    f"start={first}/seg.xml")
    assert proc2.returncode == 0, proc2.stderr
    rows1, rows2 = (np.loadtxt(d / "pcoord.dat") for d in (first, second))
    assert rows1.shape == rows2.shape == (21,)  # start + 200 / 10 frames
    for seg, rows in ((first, rows1), (second, rows2)):
        np.testing.assert_allclose(rows[1:], na_cl_on_dcd(nacl_openmm, seg / "seg.dcd"),
                                   atol=1e-3, rtol=0)
    assert abs(rows2[0] - rows1[-1]) < 1e-3  # row 0 == the parent's last row
    log = (first / "streamrun-engine.log").read_text()
    assert "listening on 127.0.0.1 port" in log and "sent 20 frames" in log


def test_a_script_without_the_reporter_is_refused_before_anything_runs(
        openmm, nacl_openmm, tmp_path):
    script = nacl_openmm / "nacl_prod.py"
    script.write_text(script.read_text().replace(
        "simulation.reporters.append(streamrun.openmm.reporter())", "pass"))
    proc = run_cli(nacl_openmm / "streamrun.yaml", tmp_path / "seg")
    line = one_error_line(proc)
    assert proc.returncode == 2 and "engine.input" in line
    assert "streamrun.openmm.reporter()" in proc.stderr
    assert not (tmp_path / "seg" / "streamrun-engine.log").exists()


# ------------------------------------------------------------------ fault matrix

def test_a_script_that_fails_before_streaming_fails_the_segment_with_its_error(
        openmm, nacl_openmm, tmp_path, no_engine_left):
    start = time.monotonic()
    proc = run_cli(nacl_openmm / "streamrun.yaml", tmp_path / "seg",
                   "engine.variables.start=missing.xml")
    line = one_error_line(proc)
    assert proc.returncode == 1 and time.monotonic() - start < 60
    assert "stopped before accepting the IMD connection" in line
    assert "FileNotFoundError" in line or "No such file" in line
    assert not (tmp_path / "seg" / "pcoord.dat").exists()


def test_a_script_that_fails_mid_run_fails_the_segment_with_its_error(
        openmm, nacl_openmm, tmp_path, no_engine_left):
    script = nacl_openmm / "nacl_prod.py"
    text = script.read_text()
    assert "    simulation.step(segment.nsteps)\n" in text
    script.write_text(text.replace(
        "    simulation.step(segment.nsteps)\n",
        "    simulation.step(50)\n    raise RuntimeError('the integrator blew up')\n"))
    proc = run_cli(nacl_openmm / "streamrun.yaml", tmp_path / "seg")
    line = one_error_line(proc)
    assert proc.returncode == 1
    assert "stream ended after 5 of 50 frames" in line
    assert "RuntimeError: the integrator blew up" in line
    assert not (tmp_path / "seg" / "pcoord.dat").exists()


def start_streaming(config, workdir, *sets):
    """Start ``streamrun run`` and return once the reporter has its client."""
    args = [a for s in sets for a in ("--set", s)]
    proc = subprocess.Popen([*STREAMRUN, "run", "-c", str(config), "-w", str(workdir),
                             *args], stderr=subprocess.PIPE, text=True)
    log = workdir / "streamrun-engine.log"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None and not (
            log.exists() and "IMD client connected" in log.read_text()):
        time.sleep(0.05)
    time.sleep(0.3)
    return proc


def test_sigterm_to_streamrun_stops_the_openmm_script(openmm, nacl_openmm, tmp_path,
                                                     no_engine_left):
    proc = start_streaming(nacl_openmm / "streamrun.yaml", tmp_path / "seg",
                           "engine.nsteps=1000000")
    assert proc.poll() is None, proc.stderr.read()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "received SIGTERM" in err
    assert not (tmp_path / "seg" / "pcoord.dat").exists()


def test_streamrun_killed_outright_leaves_no_openmm_script(openmm, nacl_openmm,
                                                          tmp_path, no_engine_left):
    proc = start_streaming(nacl_openmm / "streamrun.yaml", tmp_path / "seg",
                           "engine.nsteps=1000000")
    tree = psutil.Process(proc.pid).children(recursive=True)
    assert any("nacl_prod.py" in " ".join(p.cmdline()) for p in tree)
    proc.kill()
    proc.wait()
    _, alive = psutil.wait_procs(tree, timeout=20)
    assert not alive, f"processes outlived streamrun: {alive}"


# ------------------------------------------------- the reporter and imdclient alone

def start_script(example, workdir, nsteps, interval, seed=5, **variables):
    """Run the example script as streamrun would, without streamrun; return the
    process and the port its readiness line gives."""
    workdir.mkdir(exist_ok=True)
    env = dict(os.environ, STREAMRUN_FRAME_INTERVAL=str(interval),
               STREAMRUN_NSTEPS=str(nsteps), PYTHONUNBUFFERED="1",
               STREAMRUN_VARIABLES=__import__("json").dumps(
                   {"seed": str(seed), **variables}))
    proc = subprocess.Popen([sys.executable, str(example / "nacl_prod.py")],
                            cwd=workdir, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:
        m = re.search(r"IMD v3 listening on 127\.0\.0\.1 port (\d+)", line)
        if m:
            return proc, int(m.group(1))
    pytest.fail(f"the script ended without listening (exit {proc.wait()})")


def imdclient(port, **kwargs):
    """An imdclient IMDClient, with the signal handlers it installs put back."""
    from imdclient.IMDClient import IMDClient

    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        return IMDClient("127.0.0.1", port, N_ATOMS, timeout=20, **kwargs)
    finally:
        for s, h in saved.items():
            signal.signal(s, h)


def test_a_client_that_cannot_keep_up_pauses_the_simulation_and_loses_no_frame(
        openmm, nacl_openmm, tmp_path, no_engine_left):
    proc, port = start_script(nacl_openmm, tmp_path, nsteps=100, interval=5)
    listening = [c for c in psutil.Process(proc.pid).net_connections("tcp")
                 if c.status == psutil.CONN_LISTEN]
    assert [c.laddr.ip for c in listening] == ["127.0.0.1"]  # loopback only
    frame = 12 * N_ATOMS + 300
    client = imdclient(port, buffer_size=4 * frame)
    info = client.get_imdsessioninfo()
    assert (info.version, info.time, info.box, info.positions) == (3, True, True, True)
    assert not (info.energies or info.velocities or info.forces or info.wrapped_coords)
    steps = []
    try:
        while True:
            steps.append(int(client.get_imdframe().step))
            time.sleep(0.08)  # a slow pcoord
    except EOFError:
        pass
    client.stop()
    out = proc.communicate(timeout=30)[0]
    assert proc.returncode == 0, out
    assert steps == list(range(5, 101, 5))
    assert "paused by the IMD client" in out and "resumed by the IMD client" in out
    assert "sent 20 frames" in out


def test_a_client_that_leaves_early_lets_the_script_finish(openmm, nacl_openmm,
                                                          tmp_path, no_engine_left):
    proc, port = start_script(nacl_openmm, tmp_path, nsteps=400, interval=10)
    client = imdclient(port)
    for _ in range(3):
        client.get_imdframe()
    client.stop()
    out = proc.communicate(timeout=60)[0]
    assert proc.returncode == 0, out
    assert "IMD client left" in out and (tmp_path / "seg.xml").exists()


def raw_session(port, n_frames, push_forces):
    """A bare IMD v3 client: handshake, go, optionally forces on the ions, then
    ``n_frames`` frames of positions (Å)."""
    def read(conn, n):
        data = b""
        while len(data) < n:
            chunk = conn.recv(n - len(data))
            assert chunk, "stream closed early"
            data += chunk
        return data

    conn = socket.create_connection(("127.0.0.1", port))
    kind, version = struct.unpack("!ii", read(conn, 8))
    assert kind == 4 and version in (3, 3 << 24)  # IMD_HANDSHAKE, v3 either order
    end = ">" if version == 3 else "<"
    assert struct.unpack("!ii", read(conn, 8)) == (10, 7)  # IMD_SESSIONINFO
    read(conn, 7)
    conn.sendall(struct.pack("!ii", 3, 0))  # IMD_GO
    if push_forces:  # IMD_MDCOMM: 2 atoms, 1000 kJ/mol/Å each
        conn.sendall(struct.pack("!ii", 6, 2) + struct.pack(f"{end}2i", 0, 1)
                     + struct.pack(f"{end}6f", 1e3, 0, 0, -1e3, 0, 0))
    frames = []
    for _ in range(n_frames):
        read(conn, 8 + 24 + 8 + 36)  # time, box
        kind, n = struct.unpack("!ii", read(conn, 8))
        assert (kind, n) == (2, N_ATOMS)  # IMD_FCOORDS
        frames.append(np.frombuffer(read(conn, 12 * n), dtype=f"{end}f4"))
    conn.close()
    return np.array(frames)


def test_forces_pushed_by_a_client_are_never_applied(openmm, nacl_openmm, tmp_path,
                                                    no_engine_left):
    runs = []
    for push in (False, True):
        proc, port = start_script(nacl_openmm, tmp_path / str(push), nsteps=100,
                                  interval=10, seed=11)
        runs.append(raw_session(port, 10, push))
        out = proc.communicate(timeout=30)[0]
        assert proc.returncode == 0, out
    assert "ignored forces sent by the IMD client" in out
    # the CPU platform is not bitwise reproducible (1e-5 Å after 100 steps here);
    # the pushed forces would have moved the ions by nanometres
    np.testing.assert_allclose(runs[0], runs[1], atol=1e-3, rtol=0)


# ------------------------------------------------------------------------ WESTPA

@pytest.fixture
def westpa_bin():
    """Folder of w_init/w_run/streamrun next to the running Python; skips (fails
    when STREAMRUN_REQUIRE_ENGINES names westpa) without WESTPA."""
    from pathlib import Path

    bindir = Path(sys.executable).parent
    missing = [t for t in ("w_init", "w_run", "streamrun") if not (bindir / t).exists()]
    try:
        import h5py  # noqa: F401
    except ImportError:
        missing.append("h5py")
    if missing:
        absent("westpa", f"WESTPA not installed next to {sys.executable}: {missing} "
                         f"missing")
    return bindir


def test_the_westpa_example_runs_openmm_segments_with_streamrun_as_propagator(
        openmm, westpa_bin, nacl_openmm, no_engine_left):
    import h5py

    sim = nacl_openmm / "westpa"
    cfg = sim / "west.cfg"
    cfg.write_text(cfg.read_text().replace("max_total_iterations: 3",
                                           "max_total_iterations: 2"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEST_")}
    env.update(PATH=f"{westpa_bin}{os.pathsep}{env.get('PATH', '')}",
               WEST_SIM_ROOT=str(sim))
    for script in ("./init.sh", "./run.sh"):
        proc = subprocess.run([script], cwd=sim, env=env, capture_output=True,
                              text=True, timeout=240)
        assert proc.returncode == 0 and "ERROR" not in proc.stdout + proc.stderr, \
            proc.stdout + proc.stderr
    with h5py.File(sim / "west.h5", "r") as f:
        bstate = f["ibstates/0/bstate_pcoord"][0]
        it1, it2 = (f[f"iterations/iter_{n:08d}"] for n in (1, 2))
        pc1, pc2 = it1["pcoord"][:], it2["pcoord"][:]
        parents = it2["seg_index"]["parent_id"]
    assert pc1.shape[1:] == pc2.shape[1:] == (11, 1)
    assert np.all(np.isfinite(pc1)) and np.all(np.isfinite(pc2))
    np.testing.assert_allclose(pc1[:, 0, 0], bstate[0], atol=1e-3)
    np.testing.assert_allclose(pc2[:, 0, 0], pc1[parents, -1, 0], atol=1e-3)
    # the workers' resident engines end with them (no_engine_left checks)
    deadline = time.monotonic() + 15
    while processes_with_token(no_engine_left) and time.monotonic() < deadline:
        time.sleep(0.2)


def test_a_state_xml_reads_as_openmm_reads_it_also_when_another_tool_rewrote_it(
        openmm, nacl_openmm, tmp_path):
    """Row 0 of an OpenMM segment comes from its state XML: OpenMM's own file is
    read by the fast path, a file whose attributes another tool reordered by the XML
    parser; both give what OpenMM's XmlSerializer gives (Å), box, time and step."""
    import xml.etree.ElementTree as ET

    from openmm import XmlSerializer

    from streamrun.engines.openmm_state import _read_serialized, read_state

    source = nacl_openmm / "start.xml"
    state = XmlSerializer.deserialize(source.read_text())
    expected = np.asarray(state.getPositions(asNumpy=True)._value) * 10.0
    box = np.asarray(state.getPeriodicBoxVectors(asNumpy=True)._value) * 10.0
    tree = ET.parse(source)
    for p in tree.getroot().iter("Position"):
        p.attrib = dict(reversed(list(p.attrib.items())))  # z, y, x
    rewritten = tmp_path / "rewritten.xml"
    tree.write(rewritten)
    assert _read_serialized(source.read_bytes()) is not None
    assert _read_serialized(rewritten.read_bytes()) is None
    for path in (source, rewritten):
        got = read_state(path)
        np.testing.assert_array_equal(got.positions, expected)
        np.testing.assert_array_equal(got.box, box)
        assert got.time == state.getTime()._value and got.step == state.getStepCount()
