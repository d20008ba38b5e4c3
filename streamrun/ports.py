"""Choosing an IMD port on this node that no other streamrun will use.

Engines such as LAMMPS refuse port 0 and abort when a client connects without the
IMD handshake, so streamrun cannot let the OS pick for the engine and cannot probe an
engine's port. Instead it asks the OS for a free port, takes an exclusive lock on a
per-port lock file (so concurrent streamruns on the node never pick the same one; the
kernel drops the lock if the process dies), and keeps the lock until the segment ends.
A process outside streamrun may still take the port before the engine binds it: the
engine then fails to bind and streamrun relaunches it on another port. Before
connecting, :func:`listener_in_tree` confirms the listener is the engine we started,
and :func:`engine_peers` tells who the engine accepted as its IMD client.

The lock folder is usually in a /tmp shared by every user of the node, so it must be
ours alone: a folder another user created (or made writable to others) would let
that user plant symbolic links where streamrun creates lock files, or hold locks on
every port. Such a folder is refused, never repaired, and lock files are opened
without following symbolic links.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import stat
import tempfile
from pathlib import Path

import psutil

from .errors import PortError


#: What to tell a user whose lock folder is refused.
LOCK_DIR_HINT = ("set STREAMRUN_LOCK_DIR to a folder only you can write, e.g. "
                 "$HOME/.streamrun-ports (the same for every streamrun on this node)")


def lock_dir() -> Path:
    """Folder of the per-port lock files, created 0700 if missing.

    ``$STREAMRUN_LOCK_DIR``, else ``streamrun-ports-<uid>`` in the temp folder.

    Raises
    ------
    PortError
        If the folder cannot be created, is not a real folder (a symbolic link
        or a file in its place), belongs to another user, or is writable by the
        group or others.
    """
    path = Path(os.environ.get("STREAMRUN_LOCK_DIR")
                or Path(tempfile.gettempdir()) / f"streamrun-ports-{os.getuid()}")
    try:
        if path.parent != path and not path.parent.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
        os.mkdir(path, 0o700)  # the umask can only remove bits from 0700
    except FileExistsError:
        pass
    except OSError as e:
        raise PortError(f"cannot create the port lock folder {path} "
                        f"({e.strerror or e}); {LOCK_DIR_HINT}") from None
    try:
        info = os.lstat(path)
    except OSError as e:
        raise PortError(f"cannot use the port lock folder {path} "
                        f"({e.strerror or e}); {LOCK_DIR_HINT}") from None
    problem = None
    if stat.S_ISLNK(info.st_mode):
        problem = "is a symbolic link, not a folder"
    elif not stat.S_ISDIR(info.st_mode):
        problem = "is not a folder"
    elif info.st_uid != os.getuid():
        problem = f"belongs to another user (uid {info.st_uid}, you are {os.getuid()})"
    elif info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        problem = (f"is writable by other users (mode {stat.S_IMODE(info.st_mode):o}"
                   f"; it must be 700)")
    if problem:
        raise PortError(f"refusing the port lock folder {path}: it {problem}, so "
                        f"another user could interfere with streamrun's ports "
                        f"through it; {LOCK_DIR_HINT}")
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
        fd = _open_lock_file(path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EACCES):
                continue  # another streamrun on this node holds it
            raise PortError(f"cannot lock {path} ({e.strerror or e}); "
                            f"{LOCK_DIR_HINT}") from None
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


def _open_lock_file(path: Path) -> int:
    """Open (or create) a lock file, refusing anything but our own regular file.

    ``O_NOFOLLOW``: a symbolic link planted in the folder is refused, not
    followed (following it would create or lock a file of the planter's
    choosing). ``O_NONBLOCK``: a FIFO in its place cannot hang the open.
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK
                     | os.O_CLOEXEC, 0o600)
    except OSError as e:
        what = ("is a symbolic link" if e.errno == errno.ELOOP
                else f"cannot be opened ({e.strerror or e})")
        raise PortError(f"refusing the port lock file {path}: it {what}; "
                        f"{LOCK_DIR_HINT}") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid():
        os.close(fd)
        raise PortError(f"refusing the port lock file {path}: it is not a regular "
                        f"file of yours; {LOCK_DIR_HINT}")
    return fd


def engine_tree(pid: int) -> list[psutil.Process]:
    """The process with ``pid`` and all its descendants (those still alive)."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _tree_connections(pid: int, port: int, kind: str = "tcp"):
    """(process, connection) for every TCP connection on local ``port`` held by a
    process of ``pid``'s tree; only the engine's own processes are inspected, which
    works without root. ``kind``: ``tcp``, or ``tcp4``/``tcp6`` alone (each is a
    read of the node's whole /proc/net table, milliseconds on a busy node)."""
    for proc in engine_tree(pid):
        try:
            conns = proc.net_connections(kind=kind)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        for conn in conns:
            if conn.laddr and conn.laddr.port == port:
                yield proc, conn


def listener_in_tree(pid: int, port: int) -> tuple[int, str] | None:
    """(PID, ``tcp4`` or ``tcp6``) of the process in ``pid``'s tree listening on TCP
    ``port``, or None. The second is where the connections it accepts are listed
    (an IPv6 listener's IPv4 clients appear as IPv4-mapped IPv6 addresses)."""
    for kind in ("tcp4", "tcp6"):  # engines listen on IPv4: one table read
        for proc, conn in _tree_connections(pid, port, kind):
            if conn.status == psutil.CONN_LISTEN:
                return proc.pid, kind
    return None


def engine_peers(pid: int, port: int, kind: str = "tcp") -> list[tuple[str, int]]:
    """Remote addresses of the IMD clients ``pid``'s tree has accepted on ``port``
    (``kind``: as :func:`listener_in_tree` tells, else both families).

    Every connection the engine holds on ``port`` counts, also one the client
    has already closed (``CLOSE_WAIT``); a connection still waiting in the listen
    backlog is not the engine's yet and is not seen.
    """
    return [(conn.raddr.ip, conn.raddr.port)
            for _, conn in _tree_connections(pid, port, kind)
            if conn.status != psutil.CONN_LISTEN and conn.raddr]


def listener_with_env(port: int, name: str, value: str) -> int | None:
    """PID of the process listening on TCP ``port`` if its environment has
    ``name=value``, else None (no listener, or one whose environment we may not
    read: another user's)."""
    try:
        conns = psutil.net_connections(kind="tcp")
    except psutil.AccessDenied:
        return None
    for conn in conns:
        if conn.status != psutil.CONN_LISTEN or not conn.laddr or \
                conn.laddr.port != port or conn.pid is None:
            continue
        try:
            if psutil.Process(conn.pid).environ().get(name) == value:
                return conn.pid
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            pass
    return None
