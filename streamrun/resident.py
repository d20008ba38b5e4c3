"""A resident engine: one engine process per WESTPA worker, serving its segments.

An OpenMM script that loops over :func:`streamrun.openmm.segments` sets up once
(imports, System, Context) and then runs one segment per iteration. On the warm
path (:mod:`streamrun.propagator`) the WESTPA worker keeps such a script running
between segments:

1. A segment runs as usual (the script started for it, one-shot). Its forked
   process tells the worker what to keep resident (:func:`wanted`: the command and
   environment, when the adapter says the engine can serve segments in a loop).
2. The worker starts that command itself (:class:`ResidentEngine`), with one end of
   a Unix socket pair as its control socket; the script sets up while the worker
   waits for its next segment.
3. For each next segment, the worker hands the forked process the engine's control
   socket (:data:`HANDOFF_VAR`); the segment sends the engine its environment and
   folder with the write end of a fresh pipe (:class:`ResidentSegment`). The engine
   makes the pipe its stdout and stderr, runs the segment (listening for streamrun
   on a new loopback port, as one-shot), prints
   :data:`streamrun.openmm.DONE_LINE` and closes the pipe. To streamrun that is
   an engine that ran the segment and exited 0: everything else (the readiness
   line, the only-client checks, the stream, the pcoord, the files) is the
   one-shot code.

A segment that fails in any way (its engine crashed, a pcoord error, a signal,
its forked process killed) stops the resident engine: the worker starts a fresh
one for the next segment, so a failed segment fails alone. The engine dies with
the worker (its control socket closes, ``PR_SET_PDEATHSIG``, and the launch's
watchdog, :mod:`streamrun.supervise`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import EngineError
from .ports import engine_tree
from .supervise import (TOKEN_VAR, EngineProcess, _start_watchdog, pid_running,
                        processes_with_token, running_where, stop_processes,
                        stop_watchdog)

#: Environment variable the worker sets for a segment's forked process: the
#: resident engine it may use (JSON: control socket fd, pid, token, identity).
HANDOFF_VAR = "STREAMRUN_RESIDENT"
#: Environment variable marking every process of one segment forked by the warm
#: path (:mod:`streamrun.propagator`); only such segments use a resident engine.
WARM_VAR = "STREAMRUN_WARM_SEGMENT"
#: Times a resident engine may end before serving its first segment before the
#: worker stops starting it (its segments then start the script one-shot).
MAX_BAD_STARTS = 2


@dataclass(frozen=True)
class Launch:
    """What a worker keeps resident: the engine command, its environment and
    folder at launch, and where its output outside segments goes.

    Attributes
    ----------
    command : tuple of str
    env : dict
    cwd : str
    log : str
    control_var : str
        The environment variable that tells the engine its control socket's fd.
    identity : str
        Equal for launches that may serve each other's segments: the command
        and the script's size and modification time (an edited script starts a
        new engine).
    """

    command: tuple
    env: dict
    cwd: str
    log: str
    control_var: str
    identity: str

    def to_json(self) -> dict:
        return {"command": list(self.command), "env": self.env, "cwd": self.cwd,
                "log": self.log, "control_var": self.control_var,
                "identity": self.identity}

    @classmethod
    def from_json(cls, data) -> Launch:
        return cls(tuple(data["command"]), dict(data["env"]), data["cwd"],
                   data["log"], data["control_var"], data["identity"])


def identity(command, script) -> str:
    """See :attr:`Launch.identity`."""
    try:
        st = os.stat(script)
        stamp = [st.st_size, st.st_mtime_ns]
    except OSError:
        stamp = None
    return hashlib.sha256(json.dumps([list(command), str(script), stamp])
                          .encode()).hexdigest()[:16]


#: What this (forked) process's segment asked to keep resident, and whether it
#: handed its segment to a resident engine; reported to the worker by
#: :mod:`streamrun.propagator` after the segment (one segment per process).
_WANTED: list[Launch] = []
_USED: list[int] = []


def wanted(launch: Launch) -> None:
    """Record that this segment's engine may be kept resident by the worker."""
    _WANTED[:] = [launch]


def report() -> dict:
    """What the worker needs to know after this process's segment."""
    return {"resident": _WANTED[0].to_json() if _WANTED else None,
            "resident_used": bool(_USED)}


def for_segment(environ, launch: Launch, log) -> Handoff | None:
    """The worker's resident engine, if this segment may use it; records
    ``launch`` as what to keep resident after it.

    Parameters
    ----------
    environ : mapping
        This process's environment (the warm path's forked segment has
        :data:`WARM_VAR`, and :data:`HANDOFF_VAR` once the worker has an engine).
    launch : Launch
    log : callable
        Receives a line saying why the resident engine is not used.
    """
    if not environ.get(WARM_VAR):
        return None
    wanted(launch)
    handoff = Handoff.from_environ(environ)
    if handoff is None:
        return None
    why = handoff.usable(launch)
    if why is not None:
        log(f"note: {why}; this segment starts the engine itself")
        return None
    return handoff


def launch_env(env) -> dict:
    """``env`` without what belongs to one segment's process (the handoff and
    the warm path's segment marker)."""
    return {k: v for k, v in env.items() if k not in (HANDOFF_VAR, WARM_VAR)}


# -- the segment's side (the forked process) --------------------------------------
@dataclass(frozen=True)
class Handoff:
    """The worker's resident engine as a segment's forked process sees it."""

    fd: int
    pid: int
    token: str
    identity: str
    served: int

    @classmethod
    def from_environ(cls, environ) -> Handoff | None:
        raw = environ.get(HANDOFF_VAR)
        if not raw:
            return None
        try:
            data = json.loads(raw)
            return cls(int(data["fd"]), int(data["pid"]), str(data["token"]),
                       str(data["identity"]), int(data["served"]))
        except (ValueError, KeyError, TypeError):
            return None

    def usable(self, launch: Launch) -> str | None:
        """None if this engine can run ``launch``'s segment, else why not."""
        if launch.identity != self.identity:
            return "the worker's resident engine runs another command or script"
        if not pid_running(self.pid):
            return f"the resident engine (pid {self.pid}) has exited"
        try:
            os.fstat(self.fd)
        except OSError:
            return "the resident engine's control socket is closed"
        return None


class _Served:
    """What :class:`EngineProcess` knows as ``proc`` for a segment that a resident
    engine runs: the pipe of its output, and an exit code of 0 once it printed
    :data:`streamrun.openmm.DONE_LINE` and closed the pipe."""

    def __init__(self, pid, read_fd, done_line):
        self.pid = pid
        self._file = os.fdopen(read_fd, "rb")
        self._done_line = done_line
        self._eof = threading.Event()
        self.done = False
        self.stdout = self

    # the drain thread's view of stdout
    def readline(self):
        line = self._file.readline()
        if not line:
            self._eof.set()
        elif self._done_line.search(line.decode(errors="replace")):
            self.done = True
        return line

    def close(self):
        self._file.close()

    def poll(self):
        """0 once the segment is done, 1 if the engine ended without finishing it
        (its exit code belongs to the worker, its parent), else None."""
        if self._eof.is_set():
            return 0 if self.done else 1
        if not self.done and not pid_running(self.pid):
            self._eof.wait(2.0)  # its last lines
            return 0 if self.done else 1
        return None

    def wait(self, timeout=None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            rc = self.poll()
            if rc is not None:
                return rc
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired("resident engine", timeout)
            self._eof.wait(0.05)


class ResidentSegment(EngineProcess):
    """One segment run by the worker's resident engine, seen as an engine launch
    (:class:`~streamrun.supervise.EngineProcess`): its output is the segment's
    pipe, its exit the end of the segment. Stopping it before the segment is done
    stops the resident engine itself (the worker starts a new one).

    Parameters
    ----------
    handoff : Handoff
    cwd, log_path, lines, env
        As :class:`~streamrun.supervise.EngineProcess`.
    """

    def __init__(self, handoff: Handoff, cwd, log_path, lines, env):
        self.handoff = handoff
        self.command = [f"<resident engine pid {handoff.pid}>"]
        super().__init__(self.command, cwd, log_path, lines, env, token=handoff.token)

    def _header(self, cwd) -> str:
        return (f"$ (cd {cwd}) resident engine pid {self.handoff.pid} (started by "
                f"the WESTPA worker; segments it ran before: {self.handoff.served}) "
                f"# streamrun {running_where()}\n")

    def _start(self, cwd, env):
        read_fd, write_fd = os.pipe()
        _USED[:] = [self.handoff.pid]
        try:
            control = socket.socket(fileno=os.dup(self.handoff.fd))
            with control:
                request = json.dumps({"env": launch_env(env),
                                      "cwd": str(Path(cwd).resolve())})
                socket.send_fds(control, [request.encode()], [write_fd])
        except OSError as e:
            os.close(read_fd)
            raise EngineError(f"could not hand the segment to the resident engine "
                              f"(pid {self.handoff.pid}): {e.strerror or e}") from None
        finally:
            os.close(write_fd)
        return _Served(self.handoff.pid, read_fd, self.lines.segment_done_line)

    def _start_watchdog(self):
        return None  # the worker's watchdog of this engine

    def stop(self, grace: float = 5.0, if_slow=None) -> None:
        """Nothing to stop once the segment is done; before, stop the engine."""
        if self.proc.done and self.proc.poll() == 0:
            self.close()
            return
        super().stop(grace, if_slow)

    def describe_exit(self) -> str:
        text = super().describe_exit()
        if self.proc.poll() == 1:
            text = text.replace("exited with code 1", f"(resident, pid {self.pid}) "
                                "ended before its segment was done", 1)
        return text


# -- the worker's side --------------------------------------------------------------
class ResidentEngine:
    """The engine a WESTPA worker keeps running between segments.

    Parameters
    ----------
    launch : Launch
    """

    def __init__(self, launch: Launch):
        self.launch = launch
        self.served = 0
        self.token = os.urandom(16).hex()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        env = dict(launch.env)
        env[launch.control_var] = str(theirs.fileno())
        env[TOKEN_VAR] = self.token
        Path(launch.log).parent.mkdir(parents=True, exist_ok=True)
        try:
            with open(launch.log, "ab") as log:
                log.write(f"$ (cd {launch.cwd} && {' '.join(launch.command)})  # "
                          f"resident engine of streamrun {running_where()}\n".encode())
                self.proc = subprocess.Popen(
                    list(launch.command), cwd=launch.cwd, env=env,
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    pass_fds=(theirs.fileno(),), start_new_session=True)
        finally:
            theirs.close()
        self.control = ours
        self.control.set_inheritable(True)  # the segments' forked processes use it
        self._watchdog = _start_watchdog(self.proc.pid, self.token)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def handoff(self) -> str:
        """:data:`HANDOFF_VAR`'s value for the next segment."""
        return json.dumps({"fd": self.control.fileno(), "pid": self.proc.pid,
                           "token": self.token, "identity": self.launch.identity,
                           "served": self.served})

    def stop(self, grace: float = 5.0) -> None:
        """Close its control socket (a waiting script ends by itself) and stop its
        whole tree: SIGTERM, SIGKILL after ``grace`` s; reap it."""
        with contextlib.suppress(OSError):
            self.control.close()
        procs = engine_tree(self.proc.pid)
        procs += [p for p in processes_with_token(self.token)
                  if p.pid not in {q.pid for q in procs}]
        stop_processes(procs, grace)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(grace)
        stop_watchdog(self._watchdog)


class Keeper:
    """A worker's resident engine across its segments: started after a segment
    that asked for it, handed to the next, replaced after a failure."""

    def __init__(self):
        self.engine: ResidentEngine | None = None
        self._bad_starts: dict[str, int] = {}
        self._churn = 0

    def before_segment(self, environ, note) -> None:
        """Put the resident engine, if any, in the segment's environment (one that
        ended since the last segment is replaced first)."""
        engine = self.engine
        if engine is not None and not engine.alive():
            self._ended(engine)
            self._start(engine.launch, note, "in place of the one that ended "
                        f"(pid {engine.pid}, exit code {engine.proc.returncode})")
        if self.engine is not None:
            environ[HANDOFF_VAR] = self.engine.handoff()

    def after_segment(self, code, report, note) -> None:
        """Keep, replace or stop the resident engine after a segment.

        Parameters
        ----------
        code : int
            The segment's exit code (negative: killed by that signal).
        report : dict or None
            The forked process's report (None if it died).
        note : callable
            Writes one line to the segment's log.
        """
        engine = self.engine
        used = bool(report and report.get("resident_used"))
        if engine is not None:
            if code == 0 and used:
                engine.served += 1
            elif used or report is None:
                # it may be mid-segment, or it ended: a fresh one for the next
                self.engine = None
                engine.stop()
                self._start(engine.launch, note, "after the failed segment")
                return
        request = report.get("resident") if report else None
        if request is None:
            return
        launch = Launch.from_json(request)
        if self.engine is not None and self.engine.launch.identity == launch.identity:
            return
        if self.engine is not None:
            if self.engine.served == 0:
                # replaced before it served: the command changes from segment to
                # segment (engine.args with a placeholder such as {seed})
                self._churn += 1
            self.engine.stop()
            self.engine = None
        if self._churn >= MAX_BAD_STARTS:
            if self._churn == MAX_BAD_STARTS:
                self._churn += 1  # said once
                note("note: the engine command differs from segment to segment (a "
                     "placeholder in engine.args?), so no engine can serve the next "
                     "one; this worker's segments start the engine one-shot from now "
                     "on (put per-segment values in engine.variables)")
            return
        self._start(launch, note, "for the next segments")

    def _ended(self, engine):
        self.engine = None
        engine.stop()
        if engine.served == 0:
            key = engine.launch.identity
            self._bad_starts[key] = self._bad_starts.get(key, 0) + 1

    def _start(self, launch, note, why):
        bad = self._bad_starts.get(launch.identity, 0)
        if bad >= MAX_BAD_STARTS:
            if bad == MAX_BAD_STARTS:
                self._bad_starts[launch.identity] = bad + 1  # said once
                note(f"note: the resident engine ended {bad} times before serving a "
                     f"segment (its output is in {launch.log}); this worker's "
                     f"segments start the engine one-shot from now on")
            return
        try:
            self.engine = ResidentEngine(launch)
        except OSError as e:
            note(f"note: could not start the resident engine ({e.strerror or e}); "
                 f"segments start the engine one-shot")
            self._bad_starts[launch.identity] = MAX_BAD_STARTS
            return
        note(f"started the resident engine (pid {self.engine.pid}) {why}: "
             f"{' '.join(launch.command)}; its output outside segments is in "
             f"{launch.log}")

    def close(self) -> None:
        """Stop the resident engine (the worker ends)."""
        if self.engine is not None:
            engine, self.engine = self.engine, None
            engine.stop()

