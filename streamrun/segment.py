"""One segment, start to finish: config -> launch -> stream -> pcoords -> pcoord file.

The engine starts first: every engine waits for its IMD client before its first MD
step, so streamrun builds the pcoord calculator (MDAnalysis, the Universe, the
selections, row 0) while the engine starts up and waits. A bad selection or plugin
still fails before any MD step: the engine is stopped, its port released, nothing
written.

The main thread owns the engine and the signals; the reader thread owns the stream
and the pcoord calculation. Whatever happens, the engine's whole process tree is
stopped before :func:`run_segment` returns or raises, and the pcoord file is
written only when every row is there.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shlex
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from . import guard, resident
from .engines import ADAPTERS
from .engines.base import resolve_executable
from .folders import FolderWatch
from .inputs import MAX_STRUCTURE_BYTES, InputFileError, check_regular
from .lazy import numpy as np
from .errors import (ConfigError, EngineError, ForeignClientError, Interrupted,
                     PortError, StreamError, StreamrunError)
from .pcoords import PcoordCalculator
from .ports import engine_peers, listener_in_tree, listener_with_env, reserve_port
from .returns import (TrajectorySink, copy_log, copy_restart, discard_stale,
                      write_pcoord)
from .setup import set_up
from .signals import guarded
from .stream import FrameReader, connect
from .supervise import TOKEN_VAR, EngineProcess, env_for_engine, running_where

#: How many times the engine is started again when its port was taken.
MAX_LAUNCHES = 5
#: Seconds the stream may take to close after the engine process exited.
DRAIN_AFTER_EXIT = 15.0


@dataclass
class SegmentResult:
    """What a finished segment produced."""

    rows: np.ndarray
    output: Path
    frames: int
    wall_seconds: float
    stream_seconds: float
    compute_seconds: float
    port: int
    launches: int
    column_names: list = field(default_factory=list)
    column_labels: list = field(default_factory=list)
    paused_seconds: float | None = None
    pauses: int = 0
    launch_seconds: float | None = None
    #: streamed frames that make no row (GROMACS' step 0: the start point again)
    skipped: int = 0
    #: what the engine treats as periodic, and where that came from
    periodic: str = ""
    #: the node and process that ran the segment (:func:`running_where`)
    where: str = ""

    @property
    def alpha(self) -> float:
        """pcoord compute time / stream time: the share of the MD time the pcoord
        took (above 1, the pcoord is the slower side and paused the engine)."""
        return self.compute_seconds / self.stream_seconds if self.stream_seconds > 0 \
            else 0.0

    def summary(self) -> str:
        rate = self.frames / self.stream_seconds if self.stream_seconds > 0 else 0.0
        paused = ("" if self.paused_seconds is None else
                  f", engine paused by back-pressure {self.paused_seconds:.2f} s "
                  f"({self.pauses}x)")
        launched = ("" if self.launch_seconds is None else
                    f", engine launched {self.launch_seconds:.2f} s after start")
        # the same count for every engine: the frames that made rows; row 0 is
        # the start structure (GROMACS' streamed step 0 is that point again)
        skipped = (f" + {self.skipped} at step 0, the start point again"
                   if self.skipped else "")
        return (f"{self.frames - self.skipped} frames streamed -> "
                f"{self.rows.shape[0]} rows x {len(self.column_labels)} "
                f"({', '.join(self.column_labels)}) in {self.output}"
                + (f" + {self.rows.shape[1] - len(self.column_labels)} aux columns"
                   if self.rows.shape[1] > len(self.column_labels) else "")
                + f" (row 0: the "
                f"start structure{skipped}); wall {self.wall_seconds:.2f} s, stream "
                f"{self.stream_seconds:.2f} s ({significant(rate)} frames/s), pcoord "
                f"compute {self.compute_seconds:.2f} s{paused}; alpha {self.alpha:.2f} "
                f"(pcoord / stream){launched}"
                + (f"; periodic: {self.periodic}" if self.periodic else "")
                + (f"; ran {self.where}" if self.where else ""))


def significant(value: float, digits: int = 3) -> str:
    """``value`` with ``digits`` significant digits, never in exponent notation and
    never rounded away: 0.0472 -> '0.0472', 12.34 -> '12.3', 1234.5 -> '1234'."""
    if value == 0 or abs(value) >= 10 ** (digits - 1):
        return f"{value:.0f}"
    text = f"{value:#.{digits}g}"  # '#': keep trailing zeros ('1.50')
    return text.rstrip(".") if "e" not in text else f"{value:.{digits + 6}f}".rstrip("0")


def engine_command(config, adapter, executable, port) -> list[str]:
    """``engine.launcher`` (e.g. ``mpiexec -n 4``), then the adapter's command."""
    return [*config.engine.launcher, *adapter.command(config.engine, executable, port)]


@contextlib.contextmanager
def _one_blas_thread():
    """numpy's BLAS in one thread, whatever OMP_NUM_THREADS the engine is given (it
    is inherited by streamrun too): the engine owns the node's cores, and the
    reader computes one small row per frame. threadpoolctl comes with MDAnalysis."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - an MDAnalysis dependency
        yield
        return
    with threadpool_limits(limits=1):
        yield


def _launch(config, adapter, executable, log, check=None, meanwhile=None,
            started=None, handoff=None):
    """Start the engine until it listens on a port we reserved; return
    (engine, reservation, port, launches).

    ``check()`` is called while waiting and may raise to abort. ``meanwhile()``, if
    given, runs once, right after the first engine process started (while it
    starts up and waits for its client); if it raises, the engine is stopped and
    its port released. ``started(pid)`` is told each engine process started.
    ``handoff``: the worker's resident engine (:mod:`streamrun.resident`), which
    runs the first attempt; a relaunch starts the engine itself.
    """
    failed = []
    for attempt in range(1, MAX_LAUNCHES + 1):
        reservation = (_NoReservation() if adapter.engine_picks_port
                       else reserve_port(avoid=failed))
        engine = None
        try:
            env = env_for_engine(config.engine, adapter)
            if attempt == 1 and handoff is not None:
                engine = resident.ResidentSegment(handoff, config.engine.workdir,
                                                  config.log, adapter, env)
            else:
                engine = EngineProcess(engine_command(config, adapter, executable,
                                                      reservation.port),
                                       config.engine.workdir, config.log, adapter,
                                       env=env, program=executable
                                       if config.engine.launcher else None)
            if started is not None:
                started(engine.pid)
            if attempt == 1 and meanwhile is not None:
                meanwhile()
            state = engine.wait_ready(config.engine.ready_timeout, check=check)
            if state.bind_failed and not state.ready:
                log(f"port {reservation.port} was taken before the engine bound it; "
                    f"relaunching on another port ({attempt}/{MAX_LAUNCHES})")
                failed.append(reservation.port)
                engine.stop()
                reservation.release()
                continue
            if state.exited and not state.ready:
                raise EngineError("the engine stopped before accepting the IMD "
                                  "connection: " + engine.describe_exit())
            if state.timed_out:
                raise EngineError(
                    f"the engine did not accept the IMD connection within "
                    f"{config.engine.ready_timeout:g} s (engine.ready_timeout); "
                    + engine.describe_exit())
            port = state.port or reservation.port
            if not port:
                raise EngineError("the engine's readiness line did not give its IMD "
                                  "port; " + engine.describe_exit())
            _confirm_listener(engine, port, config.engine.listener)
            return engine, reservation, port, attempt
        except BaseException:
            if engine is not None:
                engine.stop()
            reservation.release()
            raise
    raise PortError(f"the engine could not bind an IMD port in {MAX_LAUNCHES} launches "
                    f"(tried {', '.join(map(str, failed))}); another program is taking "
                    f"ports on this node")


_FOREIGN_ADVICE = ("its frames may have been read or forces pushed into it, so the "
                   "segment is discarded; run it again, and see 'On a shared node' "
                   "in streamrun's README")


def _connect_only_client(engine, port, n_atoms, buffer_bytes, timeout, rate=None):
    """Connect to the engine and make sure streamrun is its only IMD client.

    Engines accept the first client on all interfaces, without authentication, and
    the port is visible to every user of the node before the engine listens. A
    client that got there first is refused before streamrun connects (psutil sees
    the engine's established connection); after connecting, the engine's only
    established peer must be streamrun's own socket.

    Returns
    -------
    (client, own, go) : (IMDClient, tuple of (str, int), float)
        The client, the local address of its socket, and the time (monotonic)
        the connection began: the engine makes no MD step before it (it waits for
        the client's IMD_GO), so the stream's time counts from there.

    Raises
    ------
    _HandshakeDropped
        The engine runs but did not complete the handshake in imdclient's 5 s
        (suspended, or starved of CPU on an overloaded node), and no other client
        holds it: no MD step was made, so it can be started again.
    """
    _refuse_foreign_client(engine, port)
    go = time.monotonic()
    try:
        client = connect(port, n_atoms, buffer_bytes, timeout, rate=rate)
    except StreamError as e:
        # our own socket of the failed attempt, still open here: the engine may
        # have accepted it since, and it is no other client
        mine = _own_connections(port)
        # e.g. no handshake: the engine may be serving a client that came first.
        # Give its output (a "client detached" line) a moment to reach the log.
        rc = engine.wait(2.0)
        _refuse_foreign_client(engine, port, mine)
        if rc == 0:
            # it waits for a client before its first step: one that was not us
            # had the whole segment
            raise ForeignClientError(
                f"the engine ran its whole segment with another IMD client and "
                f"exited before streamrun could connect to port {port}; "
                + _FOREIGN_ADVICE) from None
        if rc is None:
            raise _HandshakeDropped(f"the engine did not complete the IMD handshake "
                                    f"({e}); " + engine.describe_exit()) from None
        raise
    own = tuple(client._conn.getsockname()[:2])  # imdclient's socket is _conn
    try:
        _refuse_foreign_client(engine, port, {own})
    except ForeignClientError:
        with contextlib.suppress(Exception):
            client.stop()
        raise
    return client, own, go


def _own_connections(port) -> set:
    """Local addresses of this process's TCP connections to ``port``."""
    try:
        return {tuple(c.laddr[:2]) for c in psutil.Process().net_connections("tcp")
                if c.raddr and c.raddr.port == port}
    except psutil.Error:
        return set()


def _refuse_foreign_client(engine, port, own=frozenset()):
    """Raise :class:`ForeignClientError` if the engine has, or had, an IMD client
    other than ``own`` (streamrun's socket addresses; none before connecting)."""
    for peer in engine_peers(engine.listener_root or engine.pid, port,
                             engine.listener_kind):
        if peer not in own:
            when = "first" if not own else "besides streamrun"
            raise ForeignClientError(
                f"another process connected to the engine's IMD port {port} {when} "
                f"(from {peer[0]}:{peer[1]}); " + _FOREIGN_ADVICE)
    if engine.foreign_client_line is not None:
        raise ForeignClientError(
            f"another process was an IMD client of the engine (port {port}) besides "
            f"streamrun: the engine logged {engine.foreign_client_line!r}; "
            + _FOREIGN_ADVICE)


class _NoReservation:
    """For engines that choose their own port (port 0 on the command line)."""

    port = 0

    def release(self):
        pass


def _confirm_listener(engine, port, mode="tree", wait=5.0):
    """Never connect to an engine we did not start.

    ``tree``: the listener on ``port`` must be a process of our engine's tree (under
    ``mpiexec``, rank 0). ``environment`` (``engine.listener``, for launchers whose
    ranks are not their descendants, such as srun): it must be a process of this
    node whose environment holds this launch's secret token, which only processes
    that inherited it, or of our own user, can have; another user's listener (its
    owner unreadable) never qualifies. Sets ``engine.listener_root``: where the
    engine's IMD clients are looked for.
    """
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if mode == "environment":
            pid = listener_with_env(port, TOKEN_VAR, engine.token)
            if pid is not None:
                engine.listener_root = pid
                return
        elif (found := listener_in_tree(engine.pid, port)) is not None:
            engine.listener_root, engine.listener_kind = engine.pid, found[1]
            return
        if engine.poll() is not None:
            break
        time.sleep(0.05)
    if mode == "environment":
        raise PortError(
            f"no process on this node that carries this launch's token "
            f"({TOKEN_VAR}) listens on port {port}; refusing to connect to another "
            f"program's listener. The engine's IMD rank (rank 0) must run on this "
            f"node with the environment streamrun gave the launcher (e.g. srun "
            f"--nodes=1 --export=ALL). " + engine.describe_exit())
    raise PortError(f"no process of the engine we started (pid {engine.pid}) listens "
                    f"on port {port}; refusing to connect to another program's "
                    f"listener. If engine.launcher starts the engine outside its own "
                    f"process tree (srun), set engine.listener: environment. "
                    + engine.describe_exit())


def run_segment(config, log=lambda msg: None, progress=None,
                started: float | None = None, signals=None) -> SegmentResult:
    """Run one segment and write its pcoord file.

    Parameters
    ----------
    config : streamrun.config.Config
    log : callable
        Receives one-line status messages.
    progress : callable, optional
        Called as ``progress(frames_received, frames_expected)`` while streaming.
    started : float, optional
        Seconds already spent on this segment before the call (e.g. the process's
        start-up, :func:`process_age`); counted in the wall time and the launch time.
    signals : streamrun.signals.SignalGuard, optional
        The caller's guard of the terminating signals (the command line installs
        one for the whole command); by default one is installed for the call.

    Returns
    -------
    SegmentResult

    Raises
    ------
    streamrun.errors.StreamrunError
        On any failure; the engine tree is stopped and no pcoord file is written.
        A terminating signal (:mod:`streamrun.signals`) received before the pcoord
        file is written is :class:`~streamrun.errors.Interrupted`; the engine log
        then ends with the error, after the engine's own last line.
    """
    t_start = time.monotonic()
    startup = started or 0.0
    if config.trajectory is None and config.trajectory_return is not None:
        log(NO_TRAJECTORY_NOTE)
    adapter = ADAPTERS[config.engine.name]
    executable = resolve_executable(adapter, config.engine, config.source)
    parent_gone = _parent_watch()
    attempt = sink = failure = None
    done = False
    engines = []  # every engine process started (pids)
    with guarded(signals) as guard, guard.deferred(), \
            contextlib.ExitStack() as blas:

        def check():
            guard.check()
            parent_gone()

        try:
            with guard.interruptible():
                for path in (config.output, *(p for _, p in config.aux.values())):
                    discard_stale(path)
                set_up(config, config.log, env_for_engine(config.engine, adapter))
            # None: only the launched engine tells (an OpenMM System)
            known = adapter.boundaries(config)
            folders = FolderWatch({"engine.workdir": config.engine.workdir,
                                   "output": config.output.parent,
                                   "log": config.log.parent})
            expected = adapter.expected_frames(config.engine.nsteps,
                                               config.engine.frame_interval)
            built = {}
            launch_time = None

            def build(boundaries=known):
                # while the engine starts; bad selections/plugins fail here
                nonlocal launch_time
                if launch_time is None:
                    launch_time = startup + (time.monotonic() - t_start)
                with guard.interruptible():
                    if boundaries is None:  # the engine tells at launch: load meanwhile
                        _warm_up(config)
                        return
                    built["calculator"], built["row0"] = _calculator(config, boundaries)
                blas.enter_context(_one_blas_thread())  # numpy is loaded by now

            handoff = _resident(config, adapter, executable, log)
            launches = 0
            while True:
                attempt = _Attempt()
                engine, attempt.reservation, port, n = _launch(
                    config, adapter, executable, log, check,
                    meanwhile=None if built else build, started=engines.append,
                    handoff=None if launches else handoff)
                attempt.engine = engine
                launches += n
                # what the engine announced must agree with engine.periodic
                announced = adapter.check_launch_boundaries(config,
                                                            engine.ready_details)
                if not built:
                    if announced is None:
                        raise ConfigError(
                            "the engine did not say which dimensions are periodic; "
                            "set engine.periodic (xyz or none)", source=config.source,
                            key="engine.periodic")
                    build(announced)
                calculator, row0 = built["calculator"], built["row0"]
                if config.trajectory is not None and sink is None:
                    sink = TrajectorySink(config.trajectory, calculator.universe,
                                          _frame_ps(config, adapter))
                try:
                    with guard.interruptible():
                        client, own, t_stream = _connect_only_client(
                            engine, port, calculator.n_atoms,
                            _buffer_bytes(config, calculator.n_atoms, expected),
                            _imd_timeout(config), rate=config.engine.frame_interval
                            if adapter.client_sets_rate else None)
                    attempt.client = client
                    reader = attempt.reader = FrameReader(
                        client, calculator, expected, config.engine.frame_interval,
                        on_frame=sink.frame if sink else None,
                        skip=adapter.leading_frames)
                    reader.start()
                    with guard.interruptible():
                        _watch(config, engine, reader, expected, progress, check,
                               port, folders)
                    break
                except _HandshakeDropped as e:
                    if launches >= MAX_LAUNCHES:
                        raise StreamError(str(e)) from None
                    log(f"{e}; relaunching ({launches}/{MAX_LAUNCHES})")
                    attempt.release()
            stream_seconds = time.monotonic() - t_stream
            with guard.interruptible():
                rc = engine.wait(max(config.engine.ready_timeout, 30.0))
            if rc is None:
                raise EngineError(f"the engine still runs {config.engine.ready_timeout:g}"
                                  f" s after its last frame; stopped it. "
                                  + engine.describe_exit())
            # all of the engine's output has been read now: its last word on clients
            _refuse_foreign_client(engine, port, {own})
            engine.check_log()
            if rc != 0:
                raise EngineError("the engine failed after streaming all frames: "
                                  + engine.describe_exit())
            rows = np.vstack([row0, *reader.rows])
            if rows.shape[0] != config.rows:  # guarded by config; never trust it blindly
                raise StreamError(f"{rows.shape[0]} rows computed, {config.rows} asked")
            # the last moment a signal fails the segment: once the pcoord file is
            # written, the segment is complete (a signal then changes nothing)
            check()
            copy_restart(config.engine.workdir, config.restart, config.restart_return)
            _write_datasets(config, calculator, rows)
            done = True
            result = SegmentResult(
                rows=rows, output=config.output, frames=reader.count,
                wall_seconds=startup + time.monotonic() - t_start,
                stream_seconds=stream_seconds, compute_seconds=reader.compute_seconds,
                port=port, launches=launches, column_names=calculator.column_names(),
                column_labels=calculator.column_labels(),
                paused_seconds=engine.paused_seconds, pauses=engine.pauses,
                launch_seconds=launch_time, skipped=adapter.leading_frames,
                periodic=calculator.boundaries.describe(),
                where=running_where() + (
                    f"; resident engine pid {engine.pid}, its segment "
                    f"{engine.handoff.served + 1}"
                    if isinstance(engine, resident.ResidentSegment) else ""))
            # the engine log (and WESTPA's log return) ends with the telemetry too
            _append_to_log(config.log, result.summary())
            return result
        except Interrupted as e:
            failure = e.then(f"stopped the engine (pid {engines[-1]}); its output is "
                             f"in {config.log}") if engines else e
            if failure is e:
                raise
            raise failure from None
        except StreamrunError as e:
            failure = e
            raise
        finally:
            # signals are deferred here: stopping the engine is never cut short
            if sink is not None:
                sink.close(keep=done)
            if attempt is not None:
                attempt.release()
            if failure is not None and engines:
                # the engine's output is complete now: say why it ended there
                _append_to_log(config.log, f"error: {failure}")
            copy_log(config.log, config.log_return)


def _resident(config, adapter, executable, log):
    """The WESTPA worker's resident engine for this segment, if it may run it
    (:func:`streamrun.resident.for_segment`); records what the worker may keep
    resident after this segment (warm path, ``engine.resident``, an engine input
    that serves segments in a loop)."""
    if not (config.engine.resident and adapter.can_be_resident(config.engine)):
        return None
    command = engine_command(config, adapter, executable, 0)
    sim_root = os.environ.get("WEST_SIM_ROOT")
    folder = (Path(sim_root) / "seg_logs" if sim_root and Path(sim_root).is_dir()
              else config.log.parent)
    launch = resident.Launch(
        command=tuple(command),
        env=resident.launch_env(env_for_engine(config.engine, adapter)),
        cwd=str(config.base_dir),
        log=str(folder / f"streamrun-resident-{socket.gethostname()}-"
                         f"{os.getppid()}.log"),
        control_var=adapter.resident_control_var,
        identity=resident.identity(command, config.engine.input))
    return resident.for_segment(os.environ, launch, log)


def _append_to_log(path, message):
    """Append ``streamrun: message`` to the engine log, on a line of its own after
    a blank one (also after a last engine line that ended without a newline)."""
    with contextlib.suppress(OSError), open(path, "ab+") as f:
        f.seek(0, os.SEEK_END)
        if f.tell():
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                f.write(b"\n")
        f.write(f"\nstreamrun: {message}\n".encode())


def _imd_timeout(config) -> float:
    """imdclient's own socket timeout: later than any limit streamrun watches
    (stream.timeout, pcoord_timeout), so that streamrun, which can name the cause,
    always decides first. When imdclient times out by itself it ends the stream as
    if the engine had finished and tells the engine it leaves; the engine then logs
    a client that left, which would be taken for another client."""
    return config.stream_timeout + config.pcoord_timeout + 60.0


def process_age() -> float:
    """Seconds since this process started (interpreter start-up and imports
    included), 0.0 where the system does not tell.

    From ``/proc/self/stat`` (start time in clock ticks since boot) and the boot
    clock: psutil's ``create_time`` adds the boot time, which Linux gives in whole
    seconds, so it can be up to a second off.
    """
    try:
        with open("/proc/self/stat") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        return max(0.0, time.clock_gettime(time.CLOCK_BOOTTIME)
                   - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError, AttributeError):
        return 0.0


def _buffer_bytes(config, n_atoms, expected):
    """imdclient's buffer: stream.buffer_mb, but never more frames than the segment
    has (up to 512). imdclient allocates every frame before answering the engine's
    handshake, and the engine waits only about a second for that answer."""
    frame = 36 * n_atoms + 256  # positions, velocities and forces: the most sent
    capped = min(config.buffer_bytes, frame * min(expected + 1, 512))
    # at least 8 frames (if the segment has them): with 2, a large system whose
    # pcoord is the slower side is paused and resumed every other frame
    return max(frame, capped, frame * min(8, expected + 1))


def _parent_watch():
    """A check that raises :class:`Interrupted` once our parent process is gone.

    When a WESTPA worker dies without signalling its children (the w_run master
    was killed, not its process group), nothing else would stop the segment.
    """
    parent = os.getppid()

    def check():
        if parent != 1 and os.getppid() != parent:
            raise Interrupted(f"the parent process (pid {parent}, e.g. a WESTPA "
                              f"worker) exited")
    return check


class _HandshakeDropped(StreamError):
    """The IMD handshake failed before the engine's first MD step: the engine
    dropped the connection (a client slower than the engine's handshake deadline,
    e.g. on an overloaded node), or did not answer within imdclient's 5 s (an
    engine suspended or starved of CPU). Nothing was lost: the engine is started
    again."""


class _Attempt:
    """The resources of one engine launch, released together."""

    engine = reservation = client = reader = None

    def release(self):
        # The engine first, while streamrun is still its client: an engine whose
        # client leaves first runs on and waits for the next one (LAMMPS logs "IMD
        # client detached ... Waiting for IMD connection") until its SIGTERM comes.
        # Only an engine slow to act on SIGTERM (waiting on its IMD connection, as
        # one paused by back-pressure may) has the connection closed under it.
        if self.engine is not None:
            self.engine.stop(if_slow=self._close_stream)
        self._close_stream()
        if self.reservation is not None:
            self.reservation.release()
        self.engine = self.reservation = self.client = self.reader = None

    def _close_stream(self):
        if self.reader is not None and self.reader.is_alive():
            self.reader.stop()
            # a reader stuck in a pcoord that never returns will not stop
            self.reader.join(0.2 if self.reader.abandoned else 5.0)
        elif self.client is not None:
            with contextlib.suppress(Exception):
                self.client.stop()


def boundaries_before_launch(config):
    """The engine's periodic boundaries for a structure read without running the
    engine (get_pcoord, check, the dry run).

    Raises
    ------
    ConfigError
        The engine tells them only when it runs (an OpenMM System) and
        ``engine.periodic`` is not set.
    """
    adapter = ADAPTERS[config.engine.name]
    found = adapter.boundaries(config)
    if found is None:
        raise ConfigError(f"{adapter.name} tells whether the system is periodic only "
                          f"when the engine runs, and this reads a structure without "
                          f"running it; set engine.periodic (xyz for a periodic box, "
                          f"none for implicit solvent or vacuum)", source=config.source,
                          key="engine.periodic")
    return found


def calculator_for(config) -> PcoordCalculator:
    """A pcoord calculator for ``config`` under the engine's boundaries as its
    input tells them (:func:`boundaries_before_launch`)."""
    return PcoordCalculator(config, boundaries_before_launch(config))


def describe_boundaries(config) -> str:
    """The ``periodic:`` line of check and the dry run."""
    try:
        found = ADAPTERS[config.engine.name].boundaries(before_set_up(config))
    except ConfigError as e:
        return f"unknown: {e}"
    if found is None:
        return ("learned from the engine when it starts (the OpenMM System); "
                "engine.periodic: xyz or none states it beforehand")
    return found.describe()


def _warm_up(config):
    """Import MDAnalysis and parse the topology while the engine starts, when the
    calculator itself must wait for what the engine announces."""
    with contextlib.suppress(Exception):  # the real build reports every problem
        from .pcoords.calculator import parsed_topology

        parsed_topology(config.topology, config.topology_format,
                        config.topology_options)


def _calculator(config, boundaries=None):
    """Build the pcoord calculator and row 0 (within ``pcoord_timeout``); check the
    columns against west.cfg. ``boundaries``: the engine's, by default as
    :func:`boundaries_before_launch` finds them."""
    key = "get_pcoord.structure" if config.mode == "pcoord" else "start"
    if config.start is not None and config.start.exists():
        # a file the files: set-up just linked has not been checked by the config
        try:
            check_regular(config.start, MAX_STRUCTURE_BYTES)
        except InputFileError as e:
            raise ConfigError(f"'{config.start}' {e}; give a regular file",
                              source=config.source, key=key) from None
    adapter = ADAPTERS[config.engine.name]
    config = _engine_start_format(config, adapter)
    if boundaries is None:
        boundaries = boundaries_before_launch(config)
    calculator = PcoordCalculator(config, boundaries)
    calculator.set_time_units(adapter.timestep_ps(config.engine),
                              adapter.stream_time_to_ps(config.engine))
    row0 = guard.call(calculator.start_row, config.pcoord_timeout,
                      "the start structure")
    ndim = getattr(config.system, "pcoord_ndim", None)
    width = len(calculator.column_names("pcoord"))
    if ndim is not None and ndim != width:
        raise ConfigError(f"the coordinates give {width} pcoord column(s) "
                          f"({', '.join(calculator.column_names('pcoord'))}) but "
                          f"pcoord_ndim is {ndim} in {config.system.source}",
                          source=config.source, key="pcoord")
    return calculator, row0


#: Said when WESTPA's HDF5 framework asks for a trajectory that the config does not
#: write: WESTPA then logs a loader warning for every segment.
NO_TRAJECTORY_NOTE = (
    "note: WESTPA's HDF5 framework asks for a trajectory (WEST_TRAJECTORY_RETURN) but "
    "trajectory: is off, so WESTPA warns 'could not read any trajectory data' for "
    "each segment. Tell WESTPA there is none: add '{name: trajectory, enabled: false}' "
    "to west.executable.datasets (or west.data.datasets, whichever west.cfg uses), "
    "or set trajectory: {every: N}")


def _frame_ps(config, adapter):
    """ps between streamed frames, when the engine input tells the time step."""
    dt = adapter.timestep_ps(config.engine)
    return None if dt is None else dt * config.engine.frame_interval


def _engine_start_format(config, adapter):
    """``config`` with ``start_format`` set when the start structure is in the
    engine's own format, which MDAnalysis cannot guess (an OpenMM state XML)."""
    if config.start_format or config.start is None:
        return config
    fmt = adapter.structure_format(config.start)
    return dataclasses.replace(config, start_format=fmt) if fmt else config


def _write_datasets(config, calculator, rows):
    """Write the aux datasets, then the pcoord (last: its presence means success)."""
    parts = calculator.split(rows)
    for name, (_, path) in config.aux.items():
        write_pcoord(path, parts[name], calculator.column_labels(name), name)
    write_pcoord(config.output, parts["pcoord"], calculator.column_labels("pcoord"))


def compute_start_point(config):
    """WESTPA's get_pcoord job: the pcoord of one structure, written as one row.

    Uses the same calculator as the segments, so a basis state's pcoord equals row
    0 of the segments that start from it.
    """
    calculator, row0 = _calculator(config)
    if config.trajectory is not None and config.trajectory.to_westpa:
        # the HDF5 framework's iteration 0: the basis/initial state as one frame
        TrajectorySink(config.trajectory, calculator.universe).close(keep=True)
    write_pcoord(config.output, calculator.split(row0[None])["pcoord"],
                 calculator.column_labels("pcoord"))
    return row0


def before_set_up(config):
    """``config`` with its start structure where ``files:`` would link it from:
    for a run that sets nothing up (``--dry-run``, ``streamrun check``)."""
    start = config.start
    for f in config.files:
        if start is not None and start == config.engine.workdir / f.name:
            start = f.source
    return _engine_start_format(dataclasses.replace(config, start=start),
                                ADAPTERS[config.engine.name])


def made_by_prepare(config) -> bool:
    """True when the start structure is a file a prepare command makes (GROMACS'
    seg.tpr), which a run that sets nothing up cannot read."""
    start = before_set_up(config).start
    return bool(start is not None and not start.exists() and config.prepare)


def describe(config) -> str:
    """What a segment would do, without doing it (``--dry-run``). A start structure
    made by a prepare command is not read: the columns come from the topology's
    coordinates instead."""
    base = before_set_up(config)
    if made_by_prepare(config):
        base = dataclasses.replace(base, start=None)
    boundaries = ADAPTERS[config.engine.name].boundaries(base)
    if boundaries is None:  # only the running engine tells: columns need no box
        from .boundaries import stand_in

        boundaries = stand_in()
    calculator = PcoordCalculator(base, boundaries)
    lines = plan(config)
    guard.call(calculator.start_row, config.pcoord_timeout, "the start structure")
    lines.append(f"columns:     {', '.join(calculator.column_labels())}")
    if calculator.bonds_note():
        lines.append(f"bonds:       {calculator.bonds_note()}")
    lines.append(f"cache:       topology {calculator.topology_cache}")
    return "\n".join(lines + plan_outputs(config))


def plan(config, executable=None) -> list[str]:
    """The lines of :func:`describe` up to the coordinates: engine command,
    folder, environment, files, prepare commands, structures, rows."""
    adapter = ADAPTERS[config.engine.name]
    executable = executable or resolve_executable(adapter, config.engine,
                                                  config.source)
    lines = [f"config:      {config.source}",
             "engine:      " + shlex.join(engine_command(
                 config, adapter, executable,
                 0 if adapter.engine_picks_port else "<port>"))
             .replace("'<port>'", "<port>"),
             f"workdir:     {config.engine.workdir}"]
    if adapter.can_be_resident(config.engine):
        lines.append("resident:    " + (
            "yes on the warm path (the script loops over segments(): each WESTPA "
            "worker keeps it running between its segments)" if config.engine.resident
            else "no (engine.resident: false; the script starts for every segment)"))
    own = adapter.engine_env(config.engine)
    for name, value in env_for_engine(config.engine, adapter).items():
        if name in config.engine.env or name in own or name == "OMP_NUM_THREADS":
            lines.append(f"env:         {name}={value}")
    for f in config.files:
        lines.append(f"file:        {f.name} <- {f.source} ({f.mode})")
    for c in config.prepare:
        lines.append("prepare:     " + c.rstrip().replace("\n", "\n" + " " * 13))
    lines += [f"topology:    {config.topology}",
              f"start:       {config.start or config.topology} (row 0"
              + (", made by prepare)" if made_by_prepare(config) else ")"),
              f"periodic:    {describe_boundaries(config)}",
              f"rows:        {config.rows} (row 0 from the start structure + "
              f"{config.rows - 1} streamed frames, one every "
              f"{config.engine.frame_interval} steps)"]
    for spec in config.pcoords:
        lines.append(f"pcoord:      {spec.key}: {spec.type} {spec.options}")
    return lines


def plan_outputs(config) -> list[str]:
    """The lines of :func:`describe` after the coordinates: what is written."""
    lines = []
    for name, (specs, path) in config.aux.items():
        lines.append(f"aux:         {name} -> {path}")
    lines += [f"output:      {config.output}", f"log:         {config.log}"]
    if config.restart:
        lines.append(f"restart:     {', '.join(config.restart)} -> "
                     f"{config.restart_return or '(WEST_RESTART_RETURN not set)'}")
    if config.trajectory:
        lines.append(f"trajectory:  every {config.trajectory.every} frame(s) -> "
                     f"{config.trajectory.path}")
    return lines


def _watch(config, engine, reader, expected, progress, check=None, port=None,
           folders=None):
    """Wait for the reader to finish while watching the engine (its log, its IMD
    clients), the clock, the pcoord time limit, the output folders and our parent
    process."""
    exited_at = None
    while reader.is_alive():
        reader.join(0.1)
        if check is not None:
            check()
        engine.check_log()
        if folders is not None:
            folders.check()
        if engine.foreign_client_line is not None:
            # A "client detached" line is also what the engine logs when streamrun's
            # own socket closes, e.g. after imdclient refused the frame size: a
            # reader that failed explains the line, and its error is the one to tell.
            reader.join(1.0)
            # A reader that saw the stream end told the engine it leaves (imdclient
            # does on every end of stream): the line is then its own.
            if reader.error is None and reader.ended is None:
                _refuse_foreign_client(engine, port)
        computing = reader.computing
        if computing is not None and \
                time.monotonic() - computing[0] > config.pcoord_timeout:
            reader.abandoned = True
            raise guard.timeout_error(guard.running_coordinate(reader),
                                      config.pcoord_timeout, computing[1])
        if progress is not None:
            progress(reader.count, expected)
        if exited_at is None and engine.poll() is not None:
            exited_at = time.monotonic()
        if engine.lost_rank is not None:
            raise EngineError("the engine failed mid-segment, at frame "
                              f"{reader.count} of {expected}: " + engine.describe_exit())
        if exited_at is not None and time.monotonic() - exited_at > DRAIN_AFTER_EXIT:
            raise StreamError(f"the IMD stream stayed open {DRAIN_AFTER_EXIT:g} s after "
                              f"the engine exited, at frame {reader.count} of "
                              f"{expected}; " + engine.describe_exit())
        idle = time.monotonic() - reader.last_frame_time
        if computing is None and idle > config.stream_timeout:
            raise StreamError(f"no frame for {idle:.0f} s (stream.timeout "
                              f"{config.stream_timeout:g} s) after frame "
                              f"{reader.count} of {expected}; " + engine.describe_exit())
    if progress is not None:
        progress(reader.count, expected)
    if reader.error is not None:
        raise reader.error
    if reader.count < expected:
        engine.wait(5.0)  # let the exit code and last lines arrive for the message
        if reader.count == 0 and engine.handshake_dropped:
            raise _HandshakeDropped("the engine dropped the IMD connection during the "
                                    "handshake (node overloaded?)")
        raise StreamError(f"the IMD stream ended after {reader.count} of {expected} "
                          f"frames ({reader.ended}); " + engine.describe_exit())
