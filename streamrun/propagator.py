"""The warm path: WESTPA's executable propagator, with each streamrun job forked
from the worker instead of started as a new program.

In west.cfg::

    west:
      propagation:
        propagator: streamrun.propagator.StreamrunPropagator

and everything else as with ``executable: streamrun`` (the same ``executable:``
section and ``streamrun:`` section). WESTPA's own :class:`ExecutablePropagator` still
builds each segment's environment (``WEST_*``, the random numbers, data refs), sets up
the return files and reads them back into west.h5. Only the child is different: where
the configured executable is ``streamrun``, the job runs in a child process forked
from the worker (:func:`os.fork`), not in a new program. The worker imports Python,
MDAnalysis, scipy and imdclient once; every forked child starts with them imported,
so per segment only the fork and the engine start (the fork costs 35-45 ms more than
running the segment in the worker itself, measured). Any other executable
(a runseg.sh, gen_istate scripts) runs as a child process as usual.

Why a fork and not the worker itself: whatever happens to the segment happens to the
child only. A segment killed by the OOM killer or ``kill -9``, a plugin that leaks
memory, changes global state or crashes the interpreter ends that segment, which
WESTPA reports failed (``child process for segment N exited on signal 9 (SIGKILL)``)
while the worker goes on. Had the worker itself been killed, WESTPA's processes work
manager would wait for it forever.

The child sees what a ``streamrun`` process would: the segment's environment, its
folder, the seg log as stdout/stderr (file descriptors 1 and 2), none of the
worker's Python signal handlers, and SIGTERM when the worker dies
(``PR_SET_PDEATHSIG``, besides streamrun's own parent check). Its exit code or
signal goes back to WESTPA with its resource usage (its own and its engine's CPU).
The engine tree is stopped by the child, or, if the child dies, by the engine's
watchdog (:mod:`streamrun.supervise`) and by the worker, which stops every process
that carries the segment's marker (:data:`SEGMENT_VAR`, in the environment each
engine inherits). ``STREAMRUN_SEGMENT_MEMORY_MB`` caps the child's memory.

An engine that serves segments in a loop (an OpenMM script over
``streamrun.openmm.segments()``) is kept running by the worker between its
segments (:mod:`streamrun.resident`): after a segment that asked for it the worker
starts it, and hands it to each next forked segment, which then starts no engine.

The child never returns into WESTPA's code: it ends with :func:`os._exit` (no atexit
handlers, no finalizers of the worker's zmq sockets or queues), after sending the
worker the names of the modules it imported that the worker lacks and the
topologies it parsed; the worker imports and parses those (library modules only,
never a plugin file) so that the next child has them. The worker itself runs no
streamrun thread: forking it is safe whatever the segments did.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import importlib
import json
import math
import os
import secrets
import select
import signal
import sys
import sysconfig
import threading
import time
from pathlib import Path
from types import SimpleNamespace

from westpa.core.propagators.executable import ExecutablePropagator

from .resident import WARM_VAR

#: Environment variable marking every process of one forked segment (the child,
#: its engine and the engine's watchdog inherit it): the worker stops those that
#: are left when the child dies.
SEGMENT_VAR = WARM_VAR
#: Environment variable (west.cfg ``west.executable.environ``, or the worker's
#: environment): the most resident memory, in MiB, a segment's streamrun process may
#: use (plugins included, the engine not); above it the segment is killed and fails.
MEMORY_VAR = "STREAMRUN_SEGMENT_MEMORY_MB"
#: Seconds between two looks at the child's memory, when MEMORY_VAR is set.
MEMORY_POLL = 0.25
#: Exit code of a child whose streamrun job did not finish (an error in the fork
#: machinery itself, reported in the seg log).
CHILD_FAILED = 70

#: What every segment imports: imported by the worker before its first fork.
WARM_MODULES = ("streamrun.cli", "streamrun.segment", "streamrun.config",
                "MDAnalysis", "imdclient.IMDClient")


def is_streamrun(executable) -> bool:
    """True for the executable ``streamrun`` (a name or a path to it)."""
    return Path(str(executable)).name == "streamrun"


class StreamrunPropagator(ExecutablePropagator):
    """:class:`ExecutablePropagator` that forks ``executable: streamrun`` jobs from
    the worker process (see the module docstring)."""

    def exec_child(self, executable, environ=None, stdin=None, stdout=None,
                   stderr=None, cwd=None):
        if not is_streamrun(executable) or not _may_fork():
            return super().exec_child(executable, environ, stdin, stdout, stderr, cwd)
        # the environment a child would get (ExecutablePropagator.exec_child)
        child_environ = dict(os.environ)
        child_environ.update(self.addtl_child_environ)
        child_environ.update(self.random_val_env_vars())
        child_environ.update(environ or {})
        note = functools.partial(_note, stdout, stderr)
        keeper = self._resident_keeper()
        keeper.before_segment(child_environ, note)
        code, usage = run_in_worker(child_environ, cwd, stdout, stderr)
        keeper.after_segment(code, usage.report, note)
        return code, usage

    def _resident_keeper(self):
        """This worker's resident engine (:mod:`streamrun.resident`), stopped
        when the worker exits."""
        keeper = getattr(self, "_keeper", None)
        if keeper is None:
            import atexit
            from multiprocessing import util

            from .resident import Keeper

            keeper = self._keeper = Keeper()
            atexit.register(keeper.close)
            # a multiprocessing worker (the processes work manager) ends with
            # os._exit, after its finalizers but without atexit
            util.Finalize(keeper, keeper.close, exitpriority=10)
        return keeper


def _may_fork() -> bool:
    """True in the main thread. WESTPA's threads work manager runs tasks in other
    threads, several at once: a fork there copies whatever lock another task's
    thread holds at that moment (an import, a log write), and the child can wait on
    it forever (seen here: a segment hung). Those jobs run as ``streamrun`` programs
    instead, said once in WESTPA's log."""
    if threading.current_thread() is threading.main_thread():
        return True
    global _SAID_NO_FORK
    if not _SAID_NO_FORK:
        _SAID_NO_FORK = True
        import logging

        logging.getLogger(__name__).warning(
            "streamrun's warm path forks segments only from a worker's main thread; "
            "the threads work manager runs them in other threads, so each segment "
            "runs as a streamrun program (use the processes or zmq work manager)")
    return False


_SAID_NO_FORK = False


def run_in_worker(environ, cwd=None, stdout=None, stderr=None):
    """Run one WESTPA job of streamrun (a segment, or get_pcoord) in a child forked
    from this process, as ``streamrun`` (no arguments) would run it.

    Call it from the main thread of a process whose other threads, if any, hold
    no lock the job needs (WESTPA's processes and zmq workers; see
    :func:`_may_fork`).

    Parameters
    ----------
    environ : dict
        The job's whole environment.
    cwd : str, optional
        Folder to run in.
    stdout, stderr : str, optional
        Files the job's output is appended to; ``stderr="stdout"`` shares stdout's.

    Returns
    -------
    (int, types.SimpleNamespace)
        As ``ExecutablePropagator.exec_child``: the exit code (negative: the signal
        that killed the child) and the resource usage of the child and what it
        reaped (``ru_utime``, ``ru_stime`` in CPU seconds, ``ru_maxrss`` in KiB),
        plus ``streamrun_cpu``, the child's own CPU seconds (None if it died).
    """
    environ = dict(environ)
    try:
        limit = memory_limit(environ)
    except ValueError as e:
        _note(stdout, stderr, f"error: {e}")
        return 2, _usage(None)
    warm_up()
    marker = environ[SEGMENT_VAR] = secrets.token_hex(16)
    parent = os.getpid()
    read_end, write_end = os.pipe()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()  # or the child would write the worker's pending output too
    gc.freeze()  # the child never collects (and finalizes) the worker's objects
    try:
        pid = os.fork()
    except OSError as e:
        gc.unfreeze()
        os.close(read_end)
        os.close(write_end)
        _note(stdout, stderr, f"error: could not fork the segment's process from "
                              f"WESTPA worker pid {parent}: {e.strerror}")
        return 1, _usage(None)
    if pid == 0:
        os.close(read_end)
        _child(environ, cwd, stdout, stderr, write_end, parent)
    gc.unfreeze()
    os.close(write_end)
    try:
        data, over = _wait_for_report(pid, read_end, limit)
        _, status, rusage = os.wait4(pid, 0)
    except BaseException:
        _end_child(pid, marker)
        raise
    finally:
        os.close(read_end)
    report = _parse(data)
    code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    if report is None:
        left = stop_segment_processes(marker)
        engines = (f"; stopped what it left running: {', '.join(left)}" if left
                   else "; nothing it started is left running")
        if over is not None:
            why = (f"used {over[0]} MiB of memory (resident, {over[1]} MiB of it "
                   f"at most shared with the worker), more than {MEMORY_VAR}="
                   f"{limit:g}, and was killed")
        elif code < 0:
            why = f"was killed by {_signal_name(-code)} (signal {-code}" + (
                ": the kernel's OOM killer, or kill -9)" if -code == signal.SIGKILL
                else ")")
        else:
            why = f"exited with code {code} before streamrun finished"
            code = code or 1
        _note(stdout, stderr, f"error: the segment's process (pid {pid}, forked from "
                              f"WESTPA worker pid {parent}) {why}{engines}; the "
                              f"segment failed, the worker goes on")
    else:
        learn(report.get("modules", ()), report.get("topologies", ()))
    return code, _usage(rusage, report)


def _signal_name(number):
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def memory_limit(environ) -> float | None:
    """:data:`MEMORY_VAR` in MiB, None when unset or empty.

    Raises
    ------
    ValueError
        If it is set but not a positive number.
    """
    raw = str(environ.get(MEMORY_VAR) or "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise ValueError(f"{MEMORY_VAR}={raw!r} is not a positive number of MiB; "
                         f"set it in west.cfg's west.executable.environ, or unset it")
    return value


def warm_up() -> None:
    """Import what every segment needs, once per worker, before the first fork."""
    for name in WARM_MODULES:
        if name not in sys.modules:
            with contextlib.suppress(Exception):
                importlib.import_module(name)
    _library_roots()


def learn(modules, topologies=()) -> None:
    """Import in this process the library modules a child imported, and parse the
    topologies it parsed, so that the next child starts with them.

    Parameters
    ----------
    modules : iterable of str
        Module names (:func:`library_modules`); parents are imported first.
    topologies : iterable of (str, str or None, str)
        :func:`parsed_topologies` of the child, read again here
        (:func:`streamrun.pcoords.calculator.parsed_topology`): with the topology
        cache on (:mod:`streamrun.topocache`) this only makes sure it holds them,
        and each forked segment loads its own copy from it (0.06 s for a million
        atoms); with it off, the worker keeps a pickled copy for the next child.
    """
    for name in sorted(modules, key=lambda n: n.count(".")):
        if name not in sys.modules:
            with contextlib.suppress(Exception):
                importlib.import_module(name)
    for path, fmt, options in topologies:
        with contextlib.suppress(Exception):
            import ast

            from .pcoords.calculator import parsed_topology

            parsed_topology(Path(path), fmt, dict(ast.literal_eval(options)))


def parsed_topologies() -> list[tuple]:
    """(path, format, options as repr) of each topology this process parsed
    (:func:`streamrun.pcoords.calculator.parsed_topology`'s cache)."""
    calculator = sys.modules.get("streamrun.pcoords.calculator")
    with contextlib.suppress(Exception):
        return [(key[0], key[4], key[5]) for key in calculator._TOPOLOGIES]
    return []


@functools.lru_cache(maxsize=None)
def _library_roots() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    roots = {paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")
             if paths.get(k)}
    roots.add(str(Path(__file__).resolve().parent))  # streamrun, also when editable
    return tuple(os.path.join(os.path.realpath(r), "") for r in roots)


def library_modules(names) -> list[str]:
    """Those of ``names`` (keys of ``sys.modules``) that are Python's or installed
    libraries' (stdlib, site-packages, streamrun): never a plugin file
    (``streamrun_plugin_*``) or other user code."""
    roots = _library_roots()
    out = []
    for name in names:
        module = sys.modules.get(name)
        spec = getattr(module, "__spec__", None)
        if module is None or spec is None or name.startswith("streamrun_plugin_"):
            continue
        origin = spec.origin
        if origin in ("built-in", "frozen") or (
                origin and os.path.realpath(origin).startswith(roots)):
            out.append(name)
    return out


def _child(environ, cwd, stdout, stderr, write_end, parent):
    """The forked segment: run the job, report to the worker, and exit (never
    returns)."""
    code = CHILD_FAILED
    try:
        received = _take_signals()
        _die_with_parent(parent)
        os.environ.clear()
        os.environ.update(environ)
        if cwd:
            os.chdir(cwd)
        _redirect(stdout, stderr)
        before = set(sys.modules)
        from . import cli

        cli._say(f"running in WESTPA worker pid {parent} (warm path: "
                 f"streamrun.propagator.StreamrunPropagator; this job in its forked "
                 f"process pid {os.getpid()})")
        code = cli.westpa_job(warm=True)
        if code is None:
            cli._say("error: started by WESTPA without WEST_CURRENT_SEG_ID or "
                     "WEST_STRUCT_DATA_REF; nothing to do")
            code = 2
        if received and not code:  # a signal the job did not see: as if it had
            code = 128 + received[0]
        if os.getppid() != parent:
            cli._say(f"note: WESTPA worker pid {parent} exited during this job (its "
                     f"death sends this process SIGTERM); nobody reads the result")
            os._exit(code)
        import resource

        me = resource.getrusage(resource.RUSAGE_SELF)
        report = {"code": code, "cpu": me.ru_utime + me.ru_stime,
                  "modules": library_modules(set(sys.modules) - before),
                  "topologies": parsed_topologies()}
        with contextlib.suppress(Exception):
            report.update(sys.modules["streamrun.resident"].report())
        data = json.dumps(report).encode()
        with contextlib.suppress(BrokenPipeError):  # the worker died meanwhile
            while data:
                data = data[os.write(write_end, data):]
    except BaseException:
        with contextlib.suppress(BaseException):
            import traceback

            print("streamrun: internal error in the warm path's forked process "
                  "(please report it with the lines below):", file=sys.stderr)
            traceback.print_exc()
    finally:
        with contextlib.suppress(BaseException):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


#: Signals that end a process by default and that streamrun stops a segment for.
TERMINATING = tuple(getattr(signal, name) for name in (
    "SIGHUP", "SIGINT", "SIGQUIT", "SIGTERM", "SIGUSR1", "SIGUSR2", "SIGXCPU")
    if hasattr(signal, name))


def _take_signals() -> list[int]:
    """Replace the worker's Python signal handlers, which the fork copied (WESTPA's,
    meant for the worker), by one that records the signal; the job's own handlers
    take over while it runs, and a signal recorded outside them makes the child exit
    128 + its number. What the worker ignores stays ignored, as across an exec,
    except SIGINT and SIGTERM (streamrun always stops its engine for those). Returns
    the list the signals are recorded in."""
    received = []

    def record(signum, _frame):
        received.append(signum)

    for signum in TERMINATING:
        if signum in (signal.SIGINT, signal.SIGTERM) or \
                signal.getsignal(signum) is not signal.SIG_IGN:
            signal.signal(signum, record)
    return received


def _die_with_parent(parent):
    """SIGTERM to this process when the worker dies (Linux ``PR_SET_PDEATHSIG``;
    elsewhere streamrun's own parent check does it, a little later)."""
    with contextlib.suppress(Exception):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGTERM), 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
    if os.getppid() != parent:  # it died before prctl took effect
        os._exit(128 + signal.SIGTERM)


def _redirect(stdout, stderr):
    """stdin from /dev/null, stdout/stderr appended to the job's files, at the file
    descriptor level (what C code and the interpreter write goes there too)."""
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    for fd, path in ((1, stdout), (2, stdout if stderr == "stdout" else stderr)):
        if path:
            target = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
            os.dup2(target, fd)
            os.close(target)
    # fresh objects: the worker's may hold a lock some other thread had at fork
    sys.stdin = open(0, "r", closefd=False)
    sys.stdout = open(1, "w", buffering=1, closefd=False)
    sys.stderr = open(2, "w", buffering=1, closefd=False)


def _wait_for_report(pid, read_end, limit):
    """Read the child's report until it exits (end of the pipe). With a memory
    ``limit`` (MiB), kill it once its resident memory exceeds it. Returns (report
    bytes, None or, when killed for its memory, the MiB it used and the worker's
    own resident MiB)."""
    import psutil

    chunks, over = [], None
    timeout = MEMORY_POLL if limit is not None else None
    child = psutil.Process(pid) if limit is not None else None
    while True:
        ready, _, _ = select.select([read_end], [], [], timeout)
        if ready:
            chunk = os.read(read_end, 65536)
            if not chunk:
                return b"".join(chunks), over
            chunks.append(chunk)
        elif over is None:
            with contextlib.suppress(psutil.Error):
                used = child.memory_info().rss / 2**20
                if used > limit:
                    os.kill(pid, signal.SIGKILL)
                    # rounded up: 1200.3 MiB over a 1200 limit is not "used 1200"
                    over = (math.ceil(used), round(psutil.Process().memory_info().rss
                                                   / 2**20))


def _parse(data):
    try:
        report = json.loads(data)
    except ValueError:
        return None
    return report if isinstance(report, dict) else None


def _end_child(pid, marker, grace=10.0):
    """The worker is interrupted while its child runs: SIGTERM the child (it stops
    its engine), SIGKILL it after ``grace`` s, reap it, stop what is left."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(pid, os.WNOHANG)[0] == 0:
                time.sleep(0.05)
                continue
        break
    else:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
    stop_segment_processes(marker)


def stop_segment_processes(marker, grace=3.0) -> list[str]:
    """Stop every process of this node (of our user) whose environment carries
    ``marker`` as :data:`SEGMENT_VAR`: SIGTERM, then SIGKILL after ``grace`` s.
    Returns the descriptions (``pid name``) of those that are not the engine's
    watchdog (:mod:`streamrun.supervise`), which ends by itself once it has stopped
    the engine."""
    import psutil

    found, names = [], []
    for p in psutil.process_iter(["pid", "name"]):
        with contextlib.suppress(psutil.Error):
            if p.pid != os.getpid() and p.environ().get(SEGMENT_VAR) == marker:
                found.append(p)
                if not _watchdog(p):
                    names.append(f"{p.info['pid']} {p.info['name']}")
    for p in found:
        with contextlib.suppress(psutil.Error):
            p.terminate()
            p.resume()  # a stopped process acts on SIGTERM only once continued
    _, alive = psutil.wait_procs(found, timeout=grace)
    for p in alive:
        with contextlib.suppress(psutil.Error):
            p.kill()
    psutil.wait_procs(alive, timeout=grace)
    return names


def _watchdog(process) -> bool:
    """True for supervise's watchdog shell and the commands it runs."""
    for p in (process, process.parent()):
        with contextlib.suppress(Exception):
            if "streamrun-watchdog" in p.cmdline():
                return True
    return False


def _note(stdout, stderr, message):
    """One ``streamrun:`` line in the job's log (stderr's file, else stdout's, else
    this process's stderr)."""
    path = stdout if stderr in (None, "stdout") else stderr
    line = f"streamrun: {message}\n"
    try:
        if path:
            with open(path, "a") as f:
                f.write(line)
            return
    except OSError:
        pass
    sys.stderr.write(line)


def _usage(rusage, report=None):
    """What ``exec_child`` returns as resource usage (zeros without a child)."""
    return SimpleNamespace(
        ru_utime=rusage.ru_utime if rusage else 0.0,
        ru_stime=rusage.ru_stime if rusage else 0.0,
        ru_maxrss=rusage.ru_maxrss if rusage else 0,
        streamrun_cpu=(report or {}).get("cpu"), report=report)
