"""Choosing an IMD port on this node that no other streamrun will use.

Engines such as LAMMPS refuse port 0 and abort when a client connects without the
IMD handshake, so streamrun cannot let the OS pick for the engine and cannot probe an
engine's port. Instead it asks the OS for a free port, takes an exclusive lock on a
per-port lock file (so concurrent streamruns on the node never pick the same one; the
kernel drops the lock if the process dies), and keeps the lock until the segment ends.
A process outside streamrun may still take the port before the engine binds it: the
engine then fails to bind and streamrun relaunches it on another port. Before
connecting, :func:`listener_in_tree` confirms the listener is the engine we started.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import tempfile
from pathlib import Path

import psutil

from .errors import PortError


def lock_dir() -> Path:
    """Folder of the per-port lock files (``$STREAMRUN_LOCK_DIR`` or the temp dir)."""
    path = Path(os.environ.get("STREAMRUN_LOCK_DIR")
                or Path(tempfile.gettempdir()) / f"streamrun-ports-{os.getuid()}")
    path.mkdir(parents=True, exist_ok=True)
    return path


class PortReservation:
    """A port held for this process until :meth:`release` (or process exit).

    Attributes
    ----------
    port : int
    """

    def __init__(self, port: int, fd: int, path: Path):
        self.port, self._fd, self._path = port, fd, path

    def release(self) -> None:
        if self._fd is not None:
            if self._path is not None:  # remove it while still holding the lock
                try:
                    os.unlink(self._path)
                except OSError:
                    pass
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()
        return False

    def __repr__(self):
        return f"PortReservation(port={self.port})"


def _free_port() -> int:
    # Engines bind all interfaces, so the port must be free on all of them.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("", port))
        except OSError:
            return False
    return True


def reserve_port(attempts: int = 100, avoid=()) -> PortReservation:
    """Reserve a free TCP port (>= 1024) for an engine's IMD listener.

    Parameters
    ----------
    attempts : int
        How many candidate ports to try.
    avoid : iterable of int
        Ports not to return (e.g. one an engine just failed to bind).

    Raises
    ------
    PortError
        If no port could be reserved.
    """
    directory = lock_dir()
    avoid = set(avoid)
    for _ in range(attempts):
        port = _free_port()
        if port < 1024 or port in avoid:
            continue
        path = directory / f"{port}.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EACCES):
                continue  # another streamrun on this node holds it
            raise
        # The file may have been removed (released) between open and flock: then
        # the lock is on a dead inode, and another streamrun may hold a new file.
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        # Re-check under the lock: the port may have been taken in between.
        if same and _bindable(port):
            return PortReservation(port, fd, path)
        os.close(fd)
    raise PortError(f"could not reserve a free TCP port after {attempts} tries "
                    f"(lock files in {directory})")


def engine_tree(pid: int) -> list[psutil.Process]:
    """The process with ``pid`` and all its descendants (those still alive)."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def listener_in_tree(pid: int, port: int) -> int | None:
    """PID of the process in ``pid``'s tree listening on TCP ``port``, or None.

    Only the engine's own processes are inspected, which works without root.
    """
    for proc in engine_tree(pid):
        try:
            conns = proc.net_connections(kind="tcp")
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        for conn in conns:
            if conn.status == psutil.CONN_LISTEN and conn.laddr and \
                    conn.laddr.port == port:
                return proc.pid
    return None
