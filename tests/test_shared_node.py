"""On a shared node: nobody else can be the engine's IMD client, a shared /tmp cannot
be turned against streamrun, and every fault ends in bounded time with one line.

The foreign IMD client here is a real one, written with imdclient's protocol helpers,
that connects to 127.0.0.1 only, the way another user's process on the node could.
"""

import errno
import os
import re
import shutil
import socket
import stat
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from imdclient.IMDProtocol import IMDHeaderType, create_header_bytes

from streamrun import ports, segment, supervise
from streamrun.config import load
from streamrun.errors import (ConfigError, FolderError, ForeignClientError, LogError,
                              PcoordError, PortError)
from streamrun.segment import run_segment

from streaming import STREAMRUN
from tiny_lj import make_tiny_sim

READY = re.compile(rb"Waiting for IMD connection on port (\d+)")


def _recv_exactly(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError("the engine closed the connection")
        data += chunk
    return data


class ForeignClient(threading.Thread):
    """Another process on the node that reads the IMD port from the segment's engine
    log, connects first, and then behaves as ``behaviour`` says:

    - ``silent``: sends nothing (reads the engine's handshake, never answers GO);
    - ``handshake``: completes the handshake and reads the frames;
    - ``forces``: completes the handshake, pushes IMD_MDCOMM forces on atom 0 for
      20 ms, sends IMD_DISCONNECT and leaves (the engine then accepts streamrun).

    ``ready`` is set once it has done so; ``address`` is its socket's address.
    """

    def __init__(self, log: Path, behaviour: str):
        super().__init__(daemon=True, name=f"foreign-{behaviour}")
        self.log, self.behaviour = log, behaviour
        self.ready = threading.Event()
        self.address = None
        self.error = None

    def _port(self):
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.log.exists():
                m = READY.search(self.log.read_bytes())
                if m:
                    return int(m.group(1))
            time.sleep(0.005)
        raise TimeoutError("the engine never listened")

    def run(self):
        try:
            with socket.create_connection(("127.0.0.1", self._port()), timeout=30) as s:
                self.address = s.getsockname()[:2]
                _recv_exactly(s, 8)  # IMD_HANDSHAKE: the engine accepted us
                kind, length = struct.unpack("!ii", _recv_exactly(s, 8))
                if kind == IMDHeaderType.IMD_SESSIONINFO.value:  # IMD v3
                    _recv_exactly(s, length)
                if self.behaviour == "silent":
                    self.ready.set()
                    s.recv(1)  # until the engine gives up on us
                    return
                s.sendall(create_header_bytes(IMDHeaderType.IMD_GO, 0))
                if self.behaviour == "forces":
                    push = (create_header_bytes(IMDHeaderType.IMD_MDCOMM, 1)
                            + struct.pack("<i", 0) + struct.pack("<fff", 50.0, 0, 0))
                    end = time.monotonic() + 0.02
                    while time.monotonic() < end:
                        s.sendall(push)
                        time.sleep(0.002)
                    s.sendall(create_header_bytes(IMDHeaderType.IMD_DISCONNECT, 0))
                    self.ready.set()
                    return
                self.ready.set()
                while s.recv(65536):  # read every frame meant for streamrun
                    pass
        except Exception as e:  # reported by the test
            self.error = e
            self.ready.set()


def _streamrun_connects_after(foreign, monkeypatch):
    """Make the race deterministic: streamrun checks its listener, then waits until
    the foreign client has done its part before it looks at the engine's clients."""
    confirm = segment._confirm_listener

    def slow_confirm(engine, port, *args):
        confirm(engine, port, *args)
        assert foreign.ready.wait(30), "the foreign client never got going"

    monkeypatch.setattr(segment, "_confirm_listener", slow_confirm)


@pytest.mark.parametrize("behaviour", ["silent", "handshake", "forces"])
def test_a_foreign_imd_client_fails_the_segment_naming_it(lmp, tmp_path, monkeypatch,
                                                           behaviour, no_engine_left,
                                                           capsys):
    workdir = tmp_path / "seg"
    workdir.mkdir()
    config = load(make_tiny_sim(tmp_path / "sim", lmp, nsteps=200, every=10),
                  [f"engine.workdir={workdir}"], environ={})
    foreign = ForeignClient(config.log, behaviour)
    _streamrun_connects_after(foreign, monkeypatch)
    foreign.start()
    t0 = time.monotonic()
    with pytest.raises(ForeignClientError) as info:
        run_segment(config)
    elapsed = time.monotonic() - t0
    foreign.join(30)
    assert foreign.error is None, foreign.error
    message = str(info.value)
    assert message.startswith("another process")
    host, port = foreign.address
    # named by its address when it was still connected; by the engine's own line
    # when it had already left
    assert f"(from {host}:{port})" in message or "IMD client detached" in message
    assert not (workdir / "pcoord.dat").exists()
    with capsys.disabled():
        print(f"\n  foreign client ({behaviour}): failed in {elapsed:.2f} s: {message}")


#: streamrun's command line, with its connection held back until a file appears:
#: the foreign client's head start, made certain.
HELD_BACK = """
import sys, time
from pathlib import Path
from streamrun import segment
flag = Path(sys.argv.pop(1))
confirm = segment._confirm_listener
def held_back(engine, port, *args):
    confirm(engine, port, *args)
    while not flag.exists():
        time.sleep(0.01)
segment._confirm_listener = held_back
from streamrun.cli import main
main()
"""


def test_forces_pushed_by_a_client_that_left_fail_the_command_with_one_line(
        lmp, tmp_path, no_engine_left):
    """The case that used to succeed: a client pushes forces into the run and leaves
    before streamrun connects; the engine then accepts streamrun as if nothing
    happened. The engine's "client detached" line gives it away."""
    workdir = tmp_path / "seg"
    workdir.mkdir()
    config = make_tiny_sim(tmp_path / "sim", lmp, nsteps=200, every=10)
    flag = tmp_path / "foreign-done"
    foreign = ForeignClient(workdir / "streamrun-engine.log", "forces")
    foreign.start()
    proc = subprocess.Popen([sys.executable, "-c", HELD_BACK, str(flag), "run", "-c",
                             str(config), "-w", str(workdir)],
                            stderr=subprocess.PIPE, text=True)
    try:
        assert foreign.ready.wait(60) and foreign.error is None, foreign.error
    finally:
        flag.touch()
    _, err = proc.communicate(timeout=60)
    lines = err.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1, err
    assert lines[0].startswith("streamrun: error: another process")
    assert not (workdir / "pcoord.dat").exists()
