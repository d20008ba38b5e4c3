"""Every fault ends in a failed segment with one line naming the cause, the engine
log kept, no pcoord file (or a complete one), and no engine process left."""

import errno
import os
import re
import signal
import socket
import subprocess
import time

import numpy as np
import psutil
import pytest

from streamrun import returns
from streamrun.config import load
from streamrun.errors import StreamrunError
from streamrun.segment import run_segment

from streaming import STREAMRUN, start_streaming
from tiny_lj import make_tiny_sim



def run_cli(config, workdir, *args, timeout=120):
    start = time.monotonic()
    proc = subprocess.run([*STREAMRUN, "run", "-c", str(config), "-w", str(workdir),
                           *args], capture_output=True, text=True, timeout=timeout)
    return proc, time.monotonic() - start


def one_error_line(proc):
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("streamrun: error: ")
    return lines[0]


def test_an_input_that_errors_after_some_steps_fails_with_the_engines_error(
        lmp, tmp_path, no_engine_left):
    config = make_tiny_sim(tmp_path / "sim", lmp, nsteps=200, every=10, before_imd=(
        "variable s equal step\nfix halt all halt 10 v_s > 55 error hard"))
    proc, elapsed = run_cli(config, tmp_path / "seg")
    line = one_error_line(proc)
    assert proc.returncode == 1 and elapsed < 60
    assert "stream ended after" in line and "of 20 frames" in line
    assert "exited with code 1" in line and "halt" in line.lower()
    assert not (tmp_path / "seg" / "pcoord.dat").exists()
    assert "ERROR" in (tmp_path / "seg" / "streamrun-engine.log").read_text()


def test_an_engine_that_never_listens_fails_after_ready_timeout(lmp, tmp_path,
                                                               no_engine_left):
    config = make_tiny_sim(tmp_path / "sim", lmp, before_imd="shell sleep 60")
    proc, elapsed = run_cli(config, tmp_path / "seg", "--set", "engine.ready_timeout=3")
    line = one_error_line(proc)
    assert proc.returncode == 1 and elapsed < 30
    assert "within 3 s (engine.ready_timeout)" in line
    assert not (tmp_path / "seg" / "pcoord.dat").exists()


def test_a_missing_engine_program_is_a_config_error_before_anything_runs(lmp,
                                                                        tmp_path):
    config = make_tiny_sim(tmp_path / "sim", lmp)
    proc, _ = run_cli(config, tmp_path / "seg", "--set", "engine.executable=lmp_nope")
    line = one_error_line(proc)
    assert proc.returncode == 2
    assert "engine.executable" in line and "'lmp_nope' not found" in line
    assert not (tmp_path / "seg" / "streamrun-engine.log").exists()


def test_an_engine_that_sends_more_frames_than_asked_fails(lmp, tmp_path,
                                                          no_engine_left):
    config = make_tiny_sim(tmp_path / "sim", lmp, after_run="run 50")
    proc, _ = run_cli(config, tmp_path / "seg")
    line = one_error_line(proc)
    assert proc.returncode == 1 and "more frames than the 10 expected" in line
    assert not (tmp_path / "seg" / "pcoord.dat").exists()


def test_a_stream_with_another_frame_interval_than_configured_fails(lmp, tmp_path,
                                                                   no_engine_left):
    config = make_tiny_sim(tmp_path / "sim", lmp)
    text = (tmp_path / "sim" / "lj.in").read_text()
    (tmp_path / "sim" / "lj.in").write_text(
        text.replace("run ${streamrun_nsteps}",
                     "run ${streamrun_nsteps}\nunfix stream\nfix s2 all imd "
                     "${streamrun_port} version 3 trate 5\nrun 50"))
    # two fix imd lines are refused before the engine starts
    proc, _ = run_cli(config, tmp_path / "seg")
    assert proc.returncode == 2 and "2 'fix imd' commands" in one_error_line(proc)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_the_engine_tree_with_128_plus_signal(lmp, tmp_path, sig,
                                                            no_engine_left):
    config = make_tiny_sim(tmp_path / "sim", lmp, nsteps=200000, every=10)
    workdir = tmp_path / "seg"
    proc = start_streaming(config, workdir)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 128 + sig, err
    assert f"received {sig.name}" in err
    assert not (workdir / "pcoord.dat").exists()


def test_streamrun_killed_outright_leaves_no_engine(lmp, tmp_path, no_engine_left):
    """SIGKILL gives streamrun no chance to clean up. The engine still goes: its IMD
    client is gone and its output pipe has no reader, so LAMMPS dies of SIGPIPE."""
    config = make_tiny_sim(tmp_path / "sim", lmp, nsteps=200000, every=10)
    proc = start_streaming(config, tmp_path / "seg", stderr=subprocess.DEVNULL)
    tree = psutil.Process(proc.pid).children(recursive=True)
    assert tree
    proc.kill()
    proc.wait()
    gone, alive = psutil.wait_procs(tree, timeout=20)
    assert not alive, f"engine processes outlived streamrun: {alive}"


def test_an_unwritable_pcoord_path_fails_before_the_engine_starts(lmp, tmp_path,
                                                                 no_engine_left):
    config = make_tiny_sim(tmp_path / "sim", lmp)
    proc, _ = run_cli(config, tmp_path / "seg", "-o", "/proc/streamrun-pcoord.dat")
    line = one_error_line(proc)
    assert proc.returncode == 2 and "/proc" in line and "output" in line
    assert not (tmp_path / "seg" / "streamrun-engine.log").exists()


def test_a_bad_selection_stops_the_started_engine_before_its_first_md_step(
        lmp, tmp_path, no_engine_left):
    """The engine starts first and the pcoord set-up runs while it waits for its IMD
    client, so a selection that selects nothing is found with the engine already
    launched: exit 2, one line naming the key, the engine stopped before any MD
    step (its own dump holds no frame), its port free again, its log kept."""
    config = make_tiny_sim(
        tmp_path / "sim", lmp,
        engine={"input": "lj.in", "nsteps": 100, "frame_interval": 10,
                "variables": {"dumpfile": "dump.lammpstrj"}},
        pcoord=[{"type": "distance", "a": "index 9999", "b": "index 1"}])
    proc, _ = run_cli(config, tmp_path / "seg")
    line = one_error_line(proc)
    assert proc.returncode == 2 and "pcoord[0].a" in line and "selects no atoms" in line
    seg = tmp_path / "seg"
    assert not (seg / "pcoord.dat").exists()
    log = (seg / "streamrun-engine.log").read_text()
    port = int(re.search(r"Waiting for IMD connection on port (\d+)", log)[1])
    assert "ITEM: TIMESTEP" not in (seg / "dump.lammpstrj").read_text()
    with socket.socket() as s:  # released: another program can bind it now
        s.bind(("", port))

def test_a_full_disk_while_writing_leaves_no_partial_pcoord_file(lmp, tmp_path,
                                                                monkeypatch,
                                                                no_engine_left):
    config = load(make_tiny_sim(tmp_path / "sim", lmp), [f"engine.workdir={tmp_path}"],
                  environ={})

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(returns.np, "savetxt", full)
    with pytest.raises(StreamrunError, match="No space left on device"):
        run_segment(config)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sim", "streamrun-engine.log"]


def test_back_pressure_from_a_slow_pcoord_loses_no_frame(lmp, tmp_path,
                                                        no_engine_left):
    """A pcoord slower than the engine fills imdclient's small buffer; the engine is
    paused, not outrun: every frame arrives, in order, and matches the dump."""
    sim = tmp_path / "sim"
    (sim).mkdir()
    (sim / "slow.py").write_text(
        "import time\n"
        "from MDAnalysis.lib.distances import calc_bonds\n"
        "def d(u, a, b):\n"
        "    time.sleep(0.01)\n"
        "    return calc_bonds(a.positions[0], b.positions[0], box=u.dimensions)\n")
    config = make_tiny_sim(sim, lmp, nsteps=3000, every=2,
                           pcoord=[{"type": "plugin", "function": "slow.py:d",
                                    "selections": ["index 0", "index 1"]}],
                           stream={"buffer_mb": 0.05})  # ~16 frames of 256 atoms
    proc, _ = run_cli(config, tmp_path / "seg", "--set",
                      "engine.variables.dumpfile=check.lammpstrj", timeout=300)
    assert proc.returncode == 0, proc.stderr
    written = np.loadtxt(tmp_path / "seg" / "pcoord.dat")
    import MDAnalysis as mda
    from MDAnalysis.lib.distances import calc_bonds
    u = mda.Universe(str(sim / "lj.data"), str(tmp_path / "seg" / "check.lammpstrj"),
                     topology_format="DATA", format="LAMMPSDUMP",
                     atom_style="id type x y z")
    ref = [calc_bonds(u.atoms[0].position, u.atoms[1].position, box=u.dimensions)
           for _ in u.trajectory]
    assert written.shape == (1501,) and len(ref) == 1501
    assert np.abs(written - ref).max() <= 1e-3
    # the engine really was paused, and the summary says for how long
    assert "Pausing run on IMD client request" in (
        tmp_path / "seg" / "streamrun-engine.log").read_text()
    assert "engine paused by back-pressure" in proc.stderr


def _peak_rss_mb(config, workdir, *args):
    """Run streamrun and poll its resident memory; return (peak MiB, process)."""
    proc = subprocess.Popen([*STREAMRUN, "run", "-q", "-c", str(config), "-w",
                             str(workdir), *args], stderr=subprocess.PIPE, text=True)
    me, peak = psutil.Process(proc.pid), 0
    while proc.poll() is None:
        try:
            peak = max(peak, me.memory_info().rss)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.05)
    proc.communicate(timeout=60)
    return peak / 2**20, proc


def test_memory_stays_bounded_on_long_segments(lmp, tmp_path, no_engine_left, capsys):
    """Frames live in imdclient's bounded buffer, not in streamrun: five times the
    frames costs no more than the rows themselves (8 bytes each)."""
    sim = tmp_path / "sim"
    sim.mkdir()
    (sim / "slowish.py").write_text(
        "import time\n"
        "def d(u, a):\n"
        "    time.sleep(0.002)\n"
        "    return a.positions[0, 0]\n")
    peaks = {}
    for nsteps in (600, 3000):
        config = make_tiny_sim(sim, lmp, nsteps=nsteps, every=1,
                               pcoord=[{"type": "plugin", "function": "slowish.py:d",
                                        "selections": ["index 0"]}])
        peaks[nsteps], proc = _peak_rss_mb(config, tmp_path / f"seg{nsteps}")
        assert proc.returncode == 0
        assert np.loadtxt(tmp_path / f"seg{nsteps}" / "pcoord.dat").shape == (nsteps + 1,)
    with capsys.disabled():
        print(f"\n  peak RSS of streamrun: {peaks[600]:.0f} MiB for 600 frames, "
              f"{peaks[3000]:.0f} MiB for 3000 frames")
    assert peaks[3000] - peaks[600] < 20


def test_streamrun_killed_while_its_engine_waits_silently_leaves_no_engine(
        lmp, tmp_path, no_engine_left):
    """An engine that prints nothing (here `-screen none`) and waits for its IMD
    client would never notice streamrun's death through its output pipe; the
    watchdog streamrun starts next to it stops it."""
    config = make_tiny_sim(tmp_path / "sim", lmp)
    proc = subprocess.Popen([*STREAMRUN, "run", "-c", str(config), "-w",
                             str(tmp_path / "seg"), "--set", "engine.args=[-screen, none]"],
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    engine = []
    while time.monotonic() < deadline and not engine:
        engine = [p for p in psutil.Process(proc.pid).children(recursive=True)
                  if p.name() == "lmp"]
        time.sleep(0.1)
    time.sleep(2.0)  # the engine is now blocked in accept(), silent
    tree = psutil.Process(proc.pid).children(recursive=True)
    proc.kill()
    proc.wait()
    _, alive = psutil.wait_procs(tree, timeout=20)
    assert not alive, f"engine processes outlived streamrun: {alive}"
