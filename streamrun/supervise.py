"""Starting, watching and stopping the engine's whole process tree.

The engine's stdout and stderr go through one pipe that a thread drains into the log
file line by line (a pipe nobody reads stalls the engine), watching for the
adapter's readiness, bind-failure and IMD-client lines. The drain never stops
reading while the engine runs: if the log cannot be written (disk full, quota),
it keeps emptying the pipe and records the error for the segment to report.
Stopping walks the tree with psutil: PyPI's ``lmp`` is a Python launcher whose child
is the real engine, so killing only the process we started would leave the engine
running. Under an MPI launcher (``engine.launcher``) the tree is the launcher, its
proxies and every local rank, each rank in a session of its own (hydra's
``hydra_pmi_proxy`` calls ``setsid``), so the process group alone does not reach
them. Every launch therefore carries a secret token in its environment
(:data:`TOKEN_VAR`), which the launcher hands to each rank: stopping, and the
watchdog after a SIGKILL of streamrun, also reach the processes on this node that
carry it, descendants or not (srun's ranks are children of slurmstepd).
"""

from __future__ import annotations

import collections
import errno
import os
import re
import secrets
import shlex
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from .errors import EngineError, LogError


@dataclass
class Readiness:
    """Outcome of waiting for the engine to accept IMD."""

    ready: bool = False
    port: int | None = None
    bind_failed: bool = False
    exited: bool = False
    timed_out: bool = False


class EngineProcess:
    """A running engine whose output is drained into ``log_path``.

    Parameters
    ----------
    command : list of str
    cwd : Path
    log_path : Path
        Engine output is appended here (never truncated, so relaunches keep the
        earlier attempts' output).
    lines : streamrun.engines.EngineAdapter
        What the engine's output lines mean: ``ready_line``, ``port_line``,
        ``bind_failed_line``, ``handshake_dropped_line``, ``pause_line``,
        ``resume_line``, ``client_connected_line``, ``client_detached_line`` and
        ``error_summary``.
    env : dict, optional

    Raises
    ------
    LogError
        If the log cannot be written at all (checked before the engine starts).
    EngineError
        If the engine program cannot be started.
    """

    def __init__(self, command, cwd, log_path, lines, env=None, program=None,
                 token=None):
        self.command = list(command)
        #: The engine program: behind a launcher, each process running it is a
        #: rank (PyPI's lmp is a Python script: its path is the 2nd word).
        self.program = program
        self._ranks: dict[int, psutil.Process] = {}
        self._rank_lost_at: float | None = None
        self.lost_rank: str | None = None
        #: Secret of this launch, in the engine's environment only (never on a
        #: command line, which every user of the node can read).
        self.token = token or secrets.token_hex(16)
        env = dict(os.environ if env is None else env)
        env[TOKEN_VAR] = self.token
        #: Root of the processes whose connections are the engine's IMD clients
        #: (set once its listener is confirmed; see segment._confirm_listener).
        self.listener_root: int | None = None
        #: Where its accepted connections are listed: ``tcp4``, ``tcp6``, or
        #: ``tcp`` (both) until the listener is known.
        self.listener_kind = "tcp"
        self.lines = lines
        self.handshake_dropped = False
        #: Named groups of the readiness line (port, what the engine announces).
        self.ready_details: dict = {}
        self.pauses = 0
        self._paused_total = 0.0
        self._paused_since = None
        self.log_path = Path(log_path)
        self._ready = threading.Event()
        self._bind_failed = threading.Event()
        self._port = None
        self.tail = collections.deque(maxlen=15)
        #: Client lines seen (see the adapter's ``client_*_line``): the first
        #: such line that shows another client than streamrun, else None.
        self.clients_connected = 0
        self.foreign_client_line: str | None = None
        #: The first error writing the log (the drain goes on reading the pipe).
        self.log_error: OSError | None = None
        try:
            self._log = open(self.log_path, "ab", buffering=0)
            self._log.write(self._header(cwd).encode())
        except OSError as e:
            if getattr(self, "_log", None) is not None:
                self._log.close()
            raise LogError(self._log_message(e)) from None
        try:
            self.proc = self._start(cwd, env)
        except BaseException:
            self._log.close()
            raise
        self.started = time.monotonic()
        self._watchdog = self._start_watchdog()
        # Remember every process of the tree we ever saw, to stop them even if a
        # parent exits first and its children are re-parented.
        self._seen: dict[int, psutil.Process] = {}
        self._tree_lock = threading.Lock()
        self._tree_seen_at = time.monotonic()
        self._remember_tree()
        self._drain = threading.Thread(target=self._drain_output, daemon=True,
                                       name="streamrun-engine-log")
        self._drain.start()

    def _header(self, cwd) -> str:
        """The log's first line for this launch: the command and where it runs."""
        return (f"$ (cd {shlex.quote(str(cwd))} && {shlex.join(self.command)})  "
                f"# streamrun {running_where()}\n")

    def _start(self, cwd, env):
        """Start the engine; its stdout and stderr in one pipe (``proc.stdout``)."""
        try:
            return subprocess.Popen(
                self.command, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                # Own session: a Ctrl-C in the terminal reaches streamrun only, which
                # then stops the engine tree itself, in order.
                start_new_session=True)
        except OSError as e:
            raise EngineError(f"could not start the engine '{self.command[0]}': "
                              f"{e.strerror}") from None

    def _start_watchdog(self):
        """The watchdog that stops the engine if streamrun dies (see WATCHDOG)."""
        return _start_watchdog(self.proc.pid, self.token)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _remember_tree(self):
        with self._tree_lock:  # the main thread and the log drain (start-up) both look
            try:
                root = psutil.Process(self.proc.pid)
                for p in (root, *root.children(recursive=True)):
                    self._seen.setdefault(p.pid, p)
                    if p.pid not in self._ranks:  # again: it may not have exec'd yet
                        self._note_rank(p)
            except psutil.NoSuchProcess:
                pass
            self._check_ranks()

    def _note_rank(self, p):
        if self.program is None or p.pid == self.proc.pid:
            return
        try:
            if self.program in p.cmdline()[:2]:
                self._ranks[p.pid] = p
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            pass

    def _check_ranks(self):
        """A rank gone while the launcher runs on: give the launcher
        :data:`RANK_GRACE` s to end the job itself (mpiexec does at once), then
        report it (a rank that died in MPI_Init can leave the others waiting)."""
        if self.lost_rank is not None or self.proc.poll() is not None:
            return
        gone = [pid for pid, p in self._ranks.items()
                if not _running(p)]
        if not gone:
            return
        now = time.monotonic()
        if self._rank_lost_at is None:
            self._rank_lost_at = now
        elif now - self._rank_lost_at >= RANK_GRACE:
            self.lost_rank = (f"engine process {gone[0]} ({self.program}) exited "
                              f"{now - self._rank_lost_at:.0f} s ago but the launcher "
                              f"'{self.command[0]}' still runs")

    def _log_message(self, error: OSError) -> str:
        return (f"cannot write the engine log {self.log_path} "
                f"({error.strerror or error}); " + _LOG_ADVICE.get(
                    error.errno, "set 'log' to another path"))

    def check_log(self) -> None:
        """Raise :class:`LogError` if writing the engine log has failed."""
        if self.log_error is not None:
            raise LogError(self._log_message(self.log_error))

    def _drain_output(self):
        seen_at = 0.0
        for raw in iter(self.proc.stdout.readline, b""):
            if not self._ready.is_set() and time.monotonic() - seen_at > 0.2:
                # before the engine listens, streamrun's main thread may be busy
                # building the pcoord: a rank that starts and dies meanwhile must
                # still be known, or its loss would never be noticed
                seen_at = time.monotonic()
                self._remember_tree()
            if self.log_error is None:
                try:
                    self._log.write(raw)
                except OSError as e:  # keep reading: a full pipe would stall the engine
                    self.log_error = e
            line = raw.decode(errors="replace").rstrip()
            self.tail.append(line)
            self._watch_clients(line)
            if not self._ready.is_set():
                if self.lines.port_line is not None:
                    m = self.lines.port_line.search(line)
                    if m:
                        self._port = int(m.group("port"))
                m = self.lines.ready_line.search(line)
                if m:
                    self.ready_details = {k: v for k, v in m.groupdict().items()
                                          if v is not None}
                    if m.groupdict().get("port"):
                        self._port = int(m.group("port"))
                    self._ready.set()
            if self.lines.bind_failed_line is not None and \
                    self.lines.bind_failed_line.search(line):
                self._bind_failed.set()
            if self.lines.handshake_dropped_line is not None and \
                    self.lines.handshake_dropped_line.search(line):
                self.handshake_dropped = True
            if self.lines.pause_line is not None and self._paused_since is None and \
                    self.lines.pause_line.search(line):
                self.pauses += 1
                self._paused_since = time.monotonic()
            elif self.lines.resume_line is not None and self._paused_since is not None and \
                    self.lines.resume_line.search(line):
                self._paused_total += time.monotonic() - self._paused_since
                self._paused_since = None
        self.proc.stdout.close()

    def _watch_clients(self, line):
        connected, detached = (self.lines.client_connected_line,
                               self.lines.client_detached_line)
        if connected is not None and connected.search(line):
            self.clients_connected += 1
            if self.clients_connected > 1 and self.foreign_client_line is None:
                self.foreign_client_line = line.strip()
        if detached is not None and detached.search(line) and \
                self.foreign_client_line is None:
            self.foreign_client_line = line.strip()

    @property
    def paused_seconds(self) -> float | None:
        """Time the engine spent paused by IMD back-pressure, as seen in its output
        (None if the adapter cannot tell)."""
        if self.lines.pause_line is None:
            return None
        extra = time.monotonic() - self._paused_since if self._paused_since else 0.0
        return self._paused_total + extra

    def wait_ready(self, timeout: float, check=None) -> Readiness:
        """Wait for the readiness line, a bind failure, engine exit or ``timeout``.

        ``check()``, if given, is called while waiting and may raise to abort.
        """
        deadline = time.monotonic() + timeout
        while True:
            if check is not None:
                check()
            self.check_log()
            self._remember_tree()
            if self._ready.is_set():
                return Readiness(ready=True, port=self._port)
            if self._bind_failed.is_set():
                return Readiness(bind_failed=True)
            if self.lost_rank is not None:
                return Readiness(exited=True)
            if self.proc.poll() is not None:
                self._drain.join(2.0)  # the last lines may name the cause
                return Readiness(exited=True, bind_failed=self._bind_failed.is_set(),
                                 ready=self._ready.is_set(), port=self._port)
            if time.monotonic() >= deadline:
                return Readiness(timed_out=True)
            self._ready.wait(0.05)

    def poll(self):
        """Exit code of the process we started, or None while it runs."""
        # Walking /proc for the tree costs CPU the pcoord could use: once a second
        # is enough to know every process to stop.
        now = time.monotonic()
        if now - self._tree_seen_at >= 1.0:
            self._tree_seen_at = now
            self._remember_tree()
        return self.proc.poll()

    def wait(self, timeout: float):
        """Wait up to ``timeout`` s for the engine to exit; return its code or None."""
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        self._drain.join(5.0)
        return rc

    def alive_processes(self) -> list[psutil.Process]:
        """Processes of the engine tree, and others of this node that carry the
        launch's token (ranks a launcher started outside its tree), that still run."""
        self._remember_tree()
        for p in processes_with_token(self.token):
            self._seen.setdefault(p.pid, p)
        alive = []
        for p in self._seen.values():
            try:
                if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                    alive.append(p)
            except psutil.NoSuchProcess:
                pass
        return alive

    def stop(self, grace: float = 5.0, if_slow=None) -> None:
        """Stop the whole engine tree: SIGTERM, then SIGKILL after ``grace`` s.

        ``if_slow()``, if given, is called when the tree still runs
        :data:`SLOW_STOP` s after the SIGTERM (e.g. to close the IMD connection
        of an engine that waits on it before it acts on the signal).
        """
        stop_processes(self.alive_processes(), grace, if_slow)
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            pass
        stop_watchdog(self._watchdog)
        self.close()


    def close(self) -> None:
        self._drain.join(2.0)
        if not self._log.closed:
            self._log.close()

    def suspended(self) -> list[int]:
        """Processes of the engine tree that are stopped (SIGSTOP, SIGTSTP)."""
        stopped = []
        with self._tree_lock:
            procs = list(self._seen.values())
        for p in procs:
            try:
                if p.status() == psutil.STATUS_STOPPED:
                    stopped.append(p.pid)
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                pass
        return stopped

    def describe_exit(self) -> str:
        """A short cause for the user: exit code and the engine's last error line."""
        rc = self.proc.poll()
        if rc is None and self.lost_rank is not None:
            what = f"lost a rank: {self.lost_rank}"
        elif rc is None and self.suspended():
            what = (f"is suspended (process {self.suspended()[0]} stopped by SIGSTOP, "
                    f"Ctrl-Z or a batch system's suspend)")
        elif rc is None:
            what = "is still running"
        elif rc < 0:
            what = f"was killed by signal {-rc}"
        else:
            what = f"exited with code {rc}"
        errors = [l for l in self.tail if re.search(r"ERROR|Error|error", l)]
        last = errors[-1] if errors else (self.tail[-1] if self.tail else "")
        last = self.lines.error_summary(list(self.tail)) or last
        detail = f" (last engine line: {last.strip()!r})" if last else ""
        return f"the engine {what}{detail}; its output is in {self.log_path}"


#: What to do when the engine log cannot be written, by errno.
_LOG_ADVICE = {
    errno.ENOSPC: "free space on that disk or set 'log' to a path on another one",
    errno.EDQUOT: "free space within your quota or set 'log' to a path on another "
                  "disk",
    errno.EACCES: "make that folder writable or set 'log' to a path you can write",
    errno.EPERM: "make that folder writable or set 'log' to a path you can write",
    errno.EROFS: "set 'log' to a path on another file system",
}

#: Seconds a launcher may run on after one of its engine ranks exited.
RANK_GRACE = 10.0
#: Seconds after its SIGTERM that an engine counts as slow to stop (see stop()).
SLOW_STOP = 1.0


def running_where(environ=None) -> str:
    """Which node and process runs this segment, for the summary and the engine
    log: ``on host NAME, pid N`` (the WESTPA worker's pid on the warm path), with
    the worker's ``WM_PROCESS_INDEX`` when WESTPA sets it."""
    environ = os.environ if environ is None else environ
    where = f"on host {socket.gethostname()}, pid {os.getpid()}"
    if environ.get("WM_PROCESS_INDEX"):
        where += f" (WM_PROCESS_INDEX {environ['WM_PROCESS_INDEX']})"
    return where


def _running(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def stop_processes(procs, grace: float = 5.0, if_slow=None) -> None:
    """SIGTERM ``procs`` (continuing stopped ones), SIGKILL those still running
    after ``grace`` s, and wait up to ``grace`` s for them; ``if_slow()`` is called
    if some still run :data:`SLOW_STOP` s after the SIGTERM."""
    for p in procs:
        try:
            p.terminate()
            p.resume()  # a stopped process acts on SIGTERM only once continued
        except psutil.NoSuchProcess:
            pass
    alive = procs
    if if_slow is not None:
        alive = _wait_gone(alive, min(SLOW_STOP, grace))
        if alive:
            if_slow()
    alive = _wait_gone(alive, grace)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    _wait_gone(alive, grace)


def stop_watchdog(watchdog) -> None:
    """End a watchdog (:func:`_start_watchdog`) whose engine streamrun has stopped
    itself."""
    if watchdog is not None and watchdog.poll() is None:
        watchdog.kill()
        watchdog.wait()


def pid_running(pid: int) -> bool:
    """True while process ``pid`` runs (a zombie has ended)."""
    try:
        return _running(psutil.Process(pid))
    except psutil.NoSuchProcess:
        return False


def _wait_gone(procs, timeout: float) -> list:
    """Wait up to ``timeout`` s for ``procs`` to end; return those still running.

    A process that ended counts as gone while it is a zombie: the engine's own
    processes are not our children (PyPI's lmp runs the real engine as its child),
    so once their parent died only the node's init reaps them, which in some
    containers takes a second or more (psutil.wait_procs waits for that).
    """
    deadline = time.monotonic() + timeout
    alive = [p for p in procs if _running(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.01)
        alive = [p for p in alive if _running(p)]
    return alive


#: Environment variable holding a launch's token (see the module docstring).
TOKEN_VAR = "STREAMRUN_ENGINE_TOKEN"

#: Kills the engine's process group, and every process of this node whose
#: environment carries the launch's token (each MPI rank), once its stdin (a pipe
#: from streamrun) closes, i.e. when streamrun dies without stopping the engine
#: (SIGKILL, OOM killer). An engine blocked waiting for its IMD client writes
#: nothing, so it would not die of SIGPIPE, and PR_SET_PDEATHSIG cannot reach the
#: real engine behind a launcher such as PyPI's lmp or mpiexec. The token comes in
#: the watchdog's environment, not its command line (readable by every user).
#: SIGTERM first; SIGKILL to what is left after 3 s; it ends as soon as nothing is.
WATCHDOG = ('read _; '
            'ours() { grep -alzxF -e "' + TOKEN_VAR + '=$STREAMRUN_WATCHDOG_TOKEN" '
            '/proc/[0-9]*/environ 2>/dev/null | sed "s,^/proc/,,; s,/environ$,,"; }; '
            'p=$(ours); kill -TERM "-$1" $p 2>/dev/null; '
            'for _ in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 '
            '25 26 27 28 29 30; do '
            'kill -0 "-$1" 2>/dev/null || [ -n "$(ours)" ] || exit 0; sleep 0.1; done; '
            'kill -KILL "-$1" $(ours) 2>/dev/null; exit 0')


def _start_watchdog(pgid: int, token: str):
    try:
        return subprocess.Popen(
            ["sh", "-c", WATCHDOG, "streamrun-watchdog", str(pgid)],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={**os.environ, "STREAMRUN_WATCHDOG_TOKEN": token},
            # its own session: a signal to streamrun's process group spares it
            start_new_session=True)
    except OSError:
        return None


def processes_with_token(token: str) -> list[psutil.Process]:
    """Live processes of this node (of our user: others' environments cannot be
    read) whose environment carries the launch token ``token``."""
    found = []
    for p in psutil.process_iter():
        try:
            if p.pid != os.getpid() and p.environ().get(TOKEN_VAR) == token:
                found.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            pass
    return found


def env_for_engine(engine=None, adapter=None) -> dict:
    """Environment for the engine: ours, with OpenMP threads set to 1 if unset, so
    that an MPI/OpenMP build does not oversubscribe a node that runs many segments;
    then what the adapter sets for its engine (GROMACS: ``OMP_NUM_THREADS`` from
    ``-ntomp``, ``GMX_MAXBACKUP=-1``), then ``engine.env``.

    Parameters
    ----------
    engine : streamrun.config.EngineConfig, optional
    adapter : streamrun.engines.EngineAdapter, optional
    """
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    if engine is not None:
        if adapter is not None:
            env.update(adapter.engine_env(engine))
        env.update(engine.env)
    return env
