"""On a shared node: nobody else can be the engine's IMD client, a shared /tmp cannot
be turned against streamrun, and every fault ends in bounded time with one line.

The foreign IMD client here is a real one, written with imdclient's protocol helpers,
that connects to 127.0.0.1 only, the way another user's process on the node could.
"""

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

import pytest
from imdclient.IMDProtocol import IMDHeaderType, create_header_bytes

from streamrun import ports, segment
from streamrun.config import load
from streamrun.errors import ConfigError, ForeignClientError, PortError
from streamrun.segment import run_segment

from streaming import STREAMRUN, start_streaming
from tiny_lj import make_tiny_sim

#: The line each engine prints once it accepts IMD connections (group 1: port).
READY = {"lammps": re.compile(rb"Waiting for IMD connection on port (\d+)"),
         "gromacs": re.compile(rb"Listening for IMD connection on port (\d+)")}


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
      20 ms, sends IMD_DISCONNECT and leaves (the engine then accepts streamrun);
    - ``whole``: completes the handshake and reads every frame until the engine
      has finished the segment and closed the connection.

    ``ready`` is set once it has done so; ``address`` is its socket's address.
    """

    def __init__(self, log: Path, behaviour: str, engine: str = "lammps"):
        super().__init__(daemon=True, name=f"foreign-{behaviour}")
        self.log, self.behaviour, self.ready_line = log, behaviour, READY[engine]
        self.ready = threading.Event()
        self.address = None
        self.error = None

    def _port(self):
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.log.exists():
                m = self.ready_line.search(self.log.read_bytes())
                if m:
                    return int(m.group(1))
            time.sleep(0.005)
        raise TimeoutError("the engine never listened")

    def run(self):
        try:
            with socket.create_connection(("127.0.0.1", self._port()), timeout=30) as s:
                self.address = s.getsockname()[:2]
                # IMD_HANDSHAKE (the engine accepted us); its length field is the
                # protocol version in the engine's byte order
                version = _recv_exactly(s, 8)[4:]
                if 3 in (struct.unpack("<i", version)[0],
                         struct.unpack(">i", version)[0]):
                    _, length = struct.unpack("!ii", _recv_exactly(s, 8))
                    _recv_exactly(s, length)  # IMD v3 session info
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
                if self.behaviour == "handshake":
                    self.ready.set()
                while s.recv(65536):  # read every frame meant for streamrun
                    pass
                self.ready.set()
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
    # long enough that the engine still runs when streamrun looks (see the next
    # test for a foreign client that had the whole segment)
    config = load(make_tiny_sim(tmp_path / "sim", lmp, nsteps=20000, every=10),
                  [f"engine.workdir={workdir}"], environ={})
    foreign = ForeignClient(config.log, behaviour)
    _streamrun_connects_after(foreign, monkeypatch)
    foreign.start()
    t0 = time.monotonic()
    with pytest.raises(ForeignClientError) as info:
        run_segment(config)
    elapsed = time.monotonic() - t0
    foreign.join(30)
    # streamrun stopping the engine may reset the foreign client's connection
    assert foreign.error is None or isinstance(foreign.error, ConnectionResetError), \
        foreign.error
    message = str(info.value)
    assert message.startswith("another process")
    host, port = foreign.address
    # named by its address when it was still connected; by the engine's own line
    # when it had already left
    assert (f"(from {host}:{port})" in message or "IMD client detached" in message
            or "Unhandled incoming IMD message" in message)
    assert not (workdir / "pcoord.dat").exists()
    with capsys.disabled():
        print(f"\n  foreign client ({behaviour}): failed in {elapsed:.2f} s: {message}")


def test_a_foreign_client_that_had_the_whole_segment_fails_it(lmp, tmp_path,
                                                               monkeypatch,
                                                               no_engine_left):
    workdir = tmp_path / "seg"
    workdir.mkdir()
    config = load(make_tiny_sim(tmp_path / "sim", lmp, nsteps=100, every=10),
                  [f"engine.workdir={workdir}"], environ={})
    foreign = ForeignClient(config.log, "whole")
    _streamrun_connects_after(foreign, monkeypatch)
    foreign.start()
    with pytest.raises(ForeignClientError, match="the engine ran its whole segment "
                                                 "with another IMD client"):
        run_segment(config)
    assert foreign.error is None, foreign.error


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


# --- the port lock folder in a shared /tmp ---------------------------------------

OTHER_UID = 4242  # "another user" (the tests run as root, which may chown)


@pytest.fixture
def lock_dir(tmp_path, monkeypatch):
    """Where this test's port lock folder goes (through STREAMRUN_LOCK_DIR)."""
    path = tmp_path / "shared-tmp" / "streamrun-ports"
    monkeypatch.setenv("STREAMRUN_LOCK_DIR", str(path))
    return path


def refusal(lock_dir):
    with pytest.raises(PortError) as info:
        ports.reserve_port().release()
    message = str(info.value)
    assert "\n" not in message and "STREAMRUN_LOCK_DIR" in message
    return message


def test_the_lock_folder_is_created_private(lock_dir):
    reservation = ports.reserve_port()
    try:
        info = os.lstat(lock_dir)
        assert stat.S_IMODE(info.st_mode) == 0o700 and info.st_uid == os.getuid()
        assert (lock_dir / f"{reservation.port}.lock").exists()
    finally:
        reservation.release()


@pytest.mark.skipif(os.getuid() != 0, reason="giving a folder away needs root")
def test_a_lock_folder_another_user_created_is_refused(lock_dir):
    lock_dir.mkdir(parents=True, mode=0o700)
    os.chown(lock_dir, OTHER_UID, -1)
    message = refusal(lock_dir)
    assert str(lock_dir) in message and "another user (uid 4242" in message


def test_a_lock_folder_others_can_write_is_refused(lock_dir):
    lock_dir.mkdir(parents=True)
    os.chmod(lock_dir, 0o777)  # as another user would leave it for the victim
    message = refusal(lock_dir)
    assert str(lock_dir) in message and "writable by other users (mode 777" in message


def test_a_file_or_a_link_in_place_of_the_lock_folder_is_refused(lock_dir, tmp_path):
    lock_dir.parent.mkdir(parents=True)
    lock_dir.write_text("")
    assert "is not a folder" in refusal(lock_dir)
    lock_dir.unlink()
    (tmp_path / "elsewhere").mkdir(mode=0o700)
    lock_dir.symlink_to(tmp_path / "elsewhere")
    assert "is a symbolic link" in refusal(lock_dir)


def test_a_planted_lock_file_link_is_refused_not_followed(lock_dir, tmp_path,
                                                         monkeypatch):
    lock_dir.mkdir(parents=True, mode=0o700)
    victim = tmp_path / "victim-file"
    port = ports._free_port()
    (lock_dir / f"{port}.lock").symlink_to(victim)
    monkeypatch.setattr(ports, "_free_port", lambda: port)
    message = refusal(lock_dir)
    assert f"{port}.lock" in message and "is a symbolic link" in message
    assert not victim.exists()  # nothing was created where the link pointed


@pytest.mark.skipif(os.getuid() != 0, reason="giving a file away needs root")
def test_a_lock_file_of_another_user_is_refused(lock_dir, monkeypatch):
    lock_dir.mkdir(parents=True, mode=0o700)
    port = ports._free_port()
    planted = lock_dir / f"{port}.lock"
    planted.write_text("")
    os.chown(planted, OTHER_UID, -1)
    monkeypatch.setattr(ports, "_free_port", lambda: port)
    assert "not a regular file of yours" in refusal(lock_dir)


def test_a_refused_lock_folder_is_one_line_before_any_engine_starts(lmp, tmp_path,
                                                                   lock_dir,
                                                                   no_engine_left):
    lock_dir.mkdir(parents=True)
    os.chmod(lock_dir, 0o777)
    config = make_tiny_sim(tmp_path / "sim", lmp)
    proc = subprocess.run([*STREAMRUN, "run", "-c", str(config), "-w",
                           str(tmp_path / "seg")], capture_output=True, text=True,
                          timeout=60)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("streamrun: error: refusing the port lock folder")
    assert not (tmp_path / "seg" / "streamrun-engine.log").exists()


# --- the engine log's disk fills up -----------------------------------------------

@pytest.fixture
def small_disk(tmp_path):
    """A 64 KiB file system, nearly full (a real tmpfs; needs root)."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs",
                           str(mount)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.strip()}")
    try:
        (mount / "filler").write_bytes(b"x" * (56 * 1024))
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def run_cli(config, workdir, *args, timeout=120):
    start = time.monotonic()
    proc = subprocess.run([*STREAMRUN, "run", "-c", str(config), "-w", str(workdir),
                           *args], capture_output=True, text=True, timeout=timeout)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("streamrun: error: "), proc.stderr
    return proc, lines[0], time.monotonic() - start


def test_a_full_disk_under_the_engine_log_fails_the_segment_at_once(
        lmp, tmp_path, small_disk, no_engine_left, capsys):
    """The engine prints faster than the last few KiB of the disk last: the log
    cannot be written, the drain goes on emptying the pipe, and the segment fails
    at once instead of waiting stream.timeout for a stalled engine."""
    config = make_tiny_sim(tmp_path / "sim", lmp, nsteps=400000, every=10,
                           before_imd="thermo 1")
    log = small_disk / "engine.log"
    proc, line, elapsed = run_cli(config, tmp_path / "seg", "--set", f"log={log}")
    assert proc.returncode == 1
    assert f"cannot write the engine log {log} (No space left on device)" in line
    assert elapsed < 20
    assert not (tmp_path / "seg" / "pcoord.dat").exists()
    with capsys.disabled():
        print(f"\n  full disk under the log: failed in {elapsed:.2f} s")


def test_a_log_that_cannot_be_written_at_start_fails_before_the_engine_starts(
        lmp, tmp_path, no_engine_left):
    config = make_tiny_sim(tmp_path / "sim", lmp)
    proc, line, _ = run_cli(config, tmp_path / "seg", "--set", "log=/dev/full")
    assert proc.returncode == 1
    assert "cannot write the engine log /dev/full (No space left on device)" in line


# --- bounded time and memory before the engine starts ----------------------------

def test_a_fifo_or_a_device_given_as_input_is_refused_at_once(lmp, tmp_path):
    """A FIFO blocks whoever opens it, /dev/zero never ends: both are refused
    before anything reads them, with one line naming the key."""
    config = make_tiny_sim(tmp_path / "sim", lmp)
    fifo = tmp_path / "sim" / "pipe"
    os.mkfifo(fifo)
    cases = {"engine.input": f"engine.input={fifo}", "topology": f"topology={fifo}",
             "start": f"start={fifo}"}
    for key, override in cases.items():
        proc, line, elapsed = run_cli(config, tmp_path / "seg", "--set", override,
                                      timeout=30)
        assert proc.returncode == 2 and elapsed < 10
        assert f"key '{key}'" in line and "is a FIFO (named pipe)" in line, line
    proc, line, _ = run_cli(config, tmp_path / "seg", "--set", "topology=/dev/zero",
                            timeout=30)
    assert proc.returncode == 2 and "'/dev/zero' is a device" in line
    proc = subprocess.run([*STREAMRUN, "run", "-c", str(fifo)], capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 2 and "is a FIFO (named pipe)" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_an_absurdly_large_config_is_refused_without_reading_it(tmp_path):
    big = tmp_path / "big.yaml"
    with open(big, "wb") as f:
        f.truncate(2**40)  # a sparse terabyte
    with pytest.raises(ConfigError, match=r"the file is 1048576 MiB; streamrun reads "
                                          r"at most 16 MiB from it"):
        load(big, environ={})


BILLION_LAUGHS = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{n}: &{n} [{', '.join(['*' + p] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi"))


def test_a_yaml_alias_bomb_is_refused_fast_and_in_little_memory(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(BILLION_LAUGHS + "engine: *i\n")
    assert len(BILLION_LAUGHS) < 600
    t0 = time.process_time()
    with pytest.raises(ConfigError) as info:
        load(path, environ={})
    assert time.process_time() - t0 < 1.0
    assert "aliases (*name) expand to more than 100000 values" in str(info.value)
    assert len(str(info.value)) < 400


def test_a_config_value_that_is_huge_is_cut_short_in_the_message(tmp_path):
    path = tmp_path / "big-value.yaml"
    path.write_text("engine: [" + ", ".join(["x" * 50] * 20000) + "]\n")
    with pytest.raises(ConfigError) as info:
        load(path, environ={})
    assert "key 'engine': must be a mapping" in str(info.value)
    assert len(str(info.value)) < 500


def test_a_config_that_is_not_utf8_is_one_line(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("engine:\n  input: données.in\n".encode("latin-1"))
    proc = subprocess.run([*STREAMRUN, "run", "-c", str(path)], capture_output=True,
                          text=True, timeout=30)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert "is not UTF-8 text (byte 0xe9 on line 2)" in lines[0]


# --- plugins that exit or never return -------------------------------------------

PLUGIN = """\
import sys, time
calls = 0
def f(u, a):
    global calls
    calls += 1
    if calls == {on_call}:
        {action}
    return a.positions[0, 0]
"""


def plugin_sim(tmp_path, lmp, on_call, action, **config):
    """The tiny system with a plugin pcoord that misbehaves on its ``on_call``-th
    call (1: row 0, the start structure; 3: frame 2)."""
    sim = tmp_path / "sim"
    sim.mkdir(exist_ok=True)
    (sim / "bad.py").write_text(PLUGIN.format(on_call=on_call, action=action))
    return make_tiny_sim(sim, lmp, pcoord=[{"type": "plugin", "function": "bad.py:f",
                                            "name": "x0", "selections": ["index 0"]}],
                         **config)


@pytest.mark.parametrize("on_call, where", [(1, "the start structure"),
                                            (3, "frame 2 (step 20)")])
def test_a_plugin_that_calls_sys_exit_is_blamed_in_one_line(lmp, tmp_path, on_call,
                                                           where, no_engine_left):
    config = plugin_sim(tmp_path, lmp, on_call, "sys.exit(0)")
    proc, line, elapsed = run_cli(config, tmp_path / "seg")
    assert proc.returncode == 1 and elapsed < 30
    assert f"pcoord[0] (x0) called sys.exit(0) on {where}" in line, line
    assert not (tmp_path / "seg" / "pcoord.dat").exists()


@pytest.mark.parametrize("on_call, where", [(1, "the start structure"),
                                            (3, "frame 2 (step 20)")])
def test_a_plugin_that_never_returns_fails_after_pcoord_timeout(
        lmp, tmp_path, on_call, where, no_engine_left, capsys):
    config = plugin_sim(tmp_path, lmp, on_call, "time.sleep(3600)",
                        pcoord_timeout=1.5)
    proc, line, elapsed = run_cli(config, tmp_path / "seg")
    assert proc.returncode == 1
    assert (f"pcoord[0] (x0) did not return within 1.5 s (pcoord_timeout) on "
            f"{where}") in line, line
    assert elapsed < 15
    with capsys.disabled():
        print(f"\n  plugin hung on {where}: failed in {elapsed:.2f} s")


# --- the segment folder vanishes during the run ----------------------------------

def test_a_segment_folder_deleted_during_the_run_stops_it_at_once(lmp, tmp_path,
                                                                 no_engine_left,
                                                                 capsys):
    config = make_tiny_sim(tmp_path / "sim", lmp, nsteps=400000, every=10)
    workdir = tmp_path / "seg"
    proc = start_streaming(config, workdir)
    shutil.rmtree(workdir)
    t0 = time.monotonic()
    _, err = proc.communicate(timeout=60)
    elapsed = time.monotonic() - t0
    lines = err.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1, err
    assert f"the folder {workdir} ('engine.workdir') was deleted" in lines[0]
    assert elapsed < 10
    with capsys.disabled():
        print(f"\n  segment folder deleted: failed {elapsed:.2f} s after the deletion")


@pytest.mark.engine("gromacs")
@pytest.mark.parametrize("behaviour", ["handshake", "forces"])
def test_a_foreign_client_of_mdrun_fails_the_segment_naming_it(gmx, tmp_path,
                                                               monkeypatch, behaviour,
                                                               no_engine_left):
    sim = tmp_path / "nacl_gromacs"
    shutil.copytree(Path(__file__).resolve().parents[1] / "example_sims" /
                    "nacl_gromacs", sim)
    (sim / "seg").mkdir()
    config = load(sim / "streamrun.yaml", [f"engine.workdir={sim / 'seg'}",
                                           "engine.nsteps=100"], environ={})
    foreign = ForeignClient(config.log, behaviour, engine="gromacs")
    _streamrun_connects_after(foreign, monkeypatch)
    foreign.start()
    with pytest.raises(ForeignClientError) as info:
        run_segment(config)
    foreign.join(30)
    # streamrun stopping the engine may reset the foreign client's connection
    assert foreign.error is None or isinstance(foreign.error, ConnectionResetError), \
        foreign.error
    host, port = foreign.address
    assert f"(from {host}:{port})" in str(info.value) or \
        "Disconnecting client" in str(info.value)


def test_pcoord_timeout_must_be_a_positive_number(lmp, tmp_path):
    config = make_tiny_sim(tmp_path / "sim", lmp)
    for bad in ("0", "soon"):
        with pytest.raises(ConfigError, match="key 'pcoord_timeout'"):
            load(config, [f"pcoord_timeout={bad}"], environ={})
    assert load(config, environ={}).pcoord_timeout == 300.0
