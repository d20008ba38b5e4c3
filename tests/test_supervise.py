"""The engine's whole process tree is stopped, and the orphan check really sees orphans."""

import re
import subprocess
import sys
import time

import psutil

from streamrun.engines import EngineAdapter
from streamrun.ports import listener_in_tree, reserve_port
from streamrun.supervise import EngineProcess

from conftest import processes_with_token

# A launcher whose child does the work, as PyPI's lmp does: killing only the
# launcher would leave the child running.
LAUNCHER = [sys.executable, "-c",
            "import subprocess, sys; subprocess.call([sys.executable, '-c', "
            "'import socket, sys, time; s = socket.socket(); "
            "s.bind((\"\", int(sys.argv[1]))); s.listen(); "
            "print(\"listening on\", sys.argv[1], flush=True); time.sleep(300)', "
            "sys.argv[1]])"]


class LauncherLines(EngineAdapter):
    ready_line = re.compile(r"listening on (?P<port>\d+)")


def test_stop_kills_the_launcher_and_the_engine_it_started(tmp_path, no_engine_left):
    with reserve_port() as reservation:
        engine = EngineProcess([*LAUNCHER, str(reservation.port)], tmp_path,
                               tmp_path / "engine.log", LauncherLines())
        state = engine.wait_ready(30)
        assert state.ready and state.port == reservation.port
        listener = listener_in_tree(engine.pid, reservation.port)
        assert listener is not None and listener[0] != engine.pid  # the child listens
        # the launcher, the engine behind it, and streamrun's watchdog
        assert len(processes_with_token(no_engine_left)) == 3
        engine.stop(grace=2)
        assert processes_with_token(no_engine_left) == []
        assert "listening on" in (tmp_path / "engine.log").read_text()


def test_a_listener_outside_the_engine_tree_is_not_taken_for_the_engine(tmp_path):
    with reserve_port() as reservation:
        other = subprocess.Popen([*LAUNCHER, str(reservation.port)],
                                 stdout=subprocess.PIPE, text=True)
        try:
            assert "listening" in other.stdout.readline()
            mine = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
            try:
                assert listener_in_tree(mine.pid, reservation.port) is None
                assert listener_in_tree(other.pid, reservation.port) is not None
            finally:
                mine.kill()
                mine.wait()
        finally:
            for p in psutil.Process(other.pid).children(recursive=True):
                p.kill()
            other.kill()
            other.wait()


def test_the_orphan_check_sees_a_process_left_running(no_engine_left):
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    time.sleep(0.2)
    assert [p.pid for p in processes_with_token(no_engine_left)] == [proc.pid]
    proc.kill()
    proc.wait()


def test_reserved_ports_are_distinct_and_locked_against_other_streamruns(tmp_path,
                                                                      monkeypatch):
    monkeypatch.setenv("STREAMRUN_LOCK_DIR", str(tmp_path))
    held = [reserve_port() for _ in range(20)]
    try:
        ports = {r.port for r in held}
        assert len(ports) == 20 and min(ports) >= 1024
        # another process on the node cannot lock a port we hold
        code = ("import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR)\n"
                "try:\n fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB); print('got')\n"
                "except OSError: print('busy')")
        out = subprocess.run([sys.executable, "-c", code,
                              str(tmp_path / f"{held[0].port}.lock")],
                             capture_output=True, text=True).stdout
        assert out.strip() == "busy"
    finally:
        for r in held:
            r.release()
