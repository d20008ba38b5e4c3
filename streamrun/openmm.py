"""Stream an OpenMM simulation over IMD v3, for streamrun (``engine.name: openmm``).

OpenMM has no IMD server in any release. :class:`IMDReporter` is one: an OpenMM
reporter (``describeNextReport`` / ``report``) that serves one IMD v3 client. An
OpenMM script that streamrun runs adds it in one line and steps as many steps as
streamrun asks::

    import streamrun.openmm

    simulation.reporters.append(streamrun.openmm.reporter())
    simulation.step(streamrun.openmm.nsteps())

A script that sets up once and then serves segments in a loop can stay resident
in a WESTPA worker (the warm path keeps it between segments; see
:func:`segments`)::

    simulation.reporters.append(streamrun.openmm.reporter())
    for segment in streamrun.openmm.segments():
        streamrun.openmm.load_start(simulation, segment.variable("start"))
        simulation.step(segment.nsteps)
        simulation.saveState("seg.xml")

Run one-shot (``streamrun run``, the executable path), the loop runs once.

What the reporter does, in order:

- Before the first step it listens on the loopback interface only (127.0.0.1,
  never another interface), on a port the operating system picks, and prints one
  line with that port (:data:`READY_LINE`); then it waits for one client, sends
  the IMD v3 handshake and session info, and waits for the client's ``IMD_GO``.
  The listening socket is closed once a client said go: nobody else can connect.
- The readiness line says whether the System has periodic boundaries
  (``System.usesPeriodicBoundaryConditions()``); without them no box is announced
  in the session info and none is sent (OpenMM's default 2 nm box of such a
  System is no period), so streamrun computes plain Cartesian values.
- Every ``frame_interval`` steps after the first (the start point is not sent) it
  sends the time (ps), the box vectors (Å, periodic Systems only) and the positions
  (Å) of every atom, as OpenMM gives them with ``enforcePeriodicBox=False``:
  molecules stay whole and atoms are never re-wrapped. Nothing else is announced or sent (no energies,
  velocities or forces).
- ``IMD_PAUSE`` from the client blocks :meth:`IMDReporter.report` (so the
  simulation) until ``IMD_RESUME``: a client whose buffer is full loses no frame.
- Forces from the client (``IMD_MDCOMM``) are read and ignored, as are rate
  changes (``IMD_TRATE``): nothing the client sends changes the simulation.
- After ``nsteps`` steps (the last frame), or when the client disconnects, the
  reporter stops streaming and closes the connection; the simulation goes on to
  the end of the script (which saves its state).

The wire format is imdclient's (:mod:`imdclient.IMDProtocol`, whose header types
and helpers are used here); all numbers in this machine's byte order, which the
client learns from the handshake.

:func:`load_start` starts the simulation from whichever file WESTPA links: an
OpenMM state XML (a parent's ``seg.xml``) or an Amber restart (a basis state).

This module must stay light: it runs inside the user's OpenMM script, so it
imports neither MDAnalysis nor the rest of streamrun (only the standard library,
numpy, imdclient's protocol module and, in :func:`load_start`,
:mod:`streamrun.amber`, which is as light).
"""

from __future__ import annotations

import json
import os
import select
import socket
import struct
import sys
import threading
from dataclasses import dataclass

#: Environment variables streamrun sets for the script (see :func:`reporter`).
PORT_VAR = "STREAMRUN_OPENMM_PORT"
INTERVAL_VAR = "STREAMRUN_FRAME_INTERVAL"
NSTEPS_VAR = "STREAMRUN_NSTEPS"
VARIABLES_VAR = "STREAMRUN_VARIABLES"

#: The loopback address: the only one the reporter listens on.
HOST = "127.0.0.1"
#: Printed (and flushed) once the reporter accepts its client; streamrun waits for it.
READY_LINE = ("streamrun.openmm: IMD v3 listening on {host} port {port} "
              "(periodic box: {periodic})")
#: Lines the reporter prints for streamrun's log (and its checks).
PREFIX = "streamrun.openmm:"
#: Environment variable of a resident engine (set by streamrun's warm path only):
#: the file descriptor of its control socket, on which segments arrive.
RESIDENT_VAR = "STREAMRUN_OPENMM_RESIDENT"
#: Printed once the body of the loop over :func:`segments` returned for a segment.
DONE_LINE = "streamrun.openmm: segment {number} done"
#: Seconds the reporter waits for the client's IMD_GO after its handshake.
GO_TIMEOUT = 60.0

_ENDIAN = "<" if sys.byteorder == "little" else ">"


def _protocol():
    from imdclient.IMDProtocol import IMDHeaderType, create_header_bytes

    return IMDHeaderType, create_header_bytes


class ClientGone(Exception):
    """The IMD client disconnected (or its connection broke)."""


class IMDReporter:
    """An OpenMM reporter that streams frames to one IMD v3 client.

    Parameters
    ----------
    frame_interval : int
        MD steps between frames; the first frame is ``frame_interval`` steps after
        the step at which the reporter is first asked (the start point is not sent).
    nsteps : int, optional
        Steps of the segment: after the frame at ``nsteps`` the connection is
        closed and nothing more is sent. None streams until the script ends.
    port : int
        Port on 127.0.0.1; 0 (the default) lets the operating system pick a free
        one, which is printed in the readiness line.
    accept_timeout : float, optional
        Seconds to wait for a client before the first step; None waits for ever
        (streamrun connects within milliseconds and stops the script if it fails).
    out : file-like, optional
        Where the reporter's lines go (default ``sys.stdout``, flushed per line).

    Notes
    -----
    Only :meth:`describeNextReport`, :meth:`report` and :meth:`close` are meant to
    be called; OpenMM calls the first two. One reporter serves one client once per
    segment (:meth:`renew`).
    """

    def __init__(self, frame_interval: int, nsteps: int | None = None, port: int = 0,
                 accept_timeout: float | None = None, out=None):
        if int(frame_interval) < 1:
            raise ValueError(f"frame_interval must be >= 1, got {frame_interval}")
        if nsteps is not None and int(nsteps) % int(frame_interval):
            raise ValueError(f"nsteps ({nsteps}) must be a multiple of frame_interval "
                             f"({frame_interval}) so that the last step is streamed")
        self.accept_timeout = accept_timeout
        self._out = out
        self._conn: socket.socket | None = None
        self.renew(frame_interval, nsteps, port)

    def renew(self, frame_interval: int, nsteps: int | None = None, port: int = 0):
        """Serve a new client for a new segment (:func:`segments` calls it): from
        the next step on, as a new reporter would."""
        self.close()
        self.frame_interval = int(frame_interval)
        self.nsteps = None if nsteps is None else int(nsteps)
        self.port = int(port)
        self._first_step: int | None = None
        self._done = False
        self._paused = False
        self._warned: set[str] = set()
        self._periodic = True
        #: Frames sent so far.
        self.frames = 0

    # -- OpenMM's reporter interface ------------------------------------------
    def describeNextReport(self, simulation):
        """Steps to the next frame (OpenMM's 6-tuple: positions, not wrapped).

        The first call listens, prints the readiness line and waits for the
        client, before the simulation takes its first step.
        """
        if self._first_step is None:
            self._first_step = simulation.currentStep
            self._periodic = bool(simulation.system.usesPeriodicBoundaryConditions())
            self._serve()
        if self._done:
            return (0, False, False, False, False, False)
        done = simulation.currentStep - self._first_step
        if self.nsteps is not None and done >= self.nsteps:
            return (0, False, False, False, False, False)
        return (self.frame_interval - done % self.frame_interval,
                True, False, False, False, False)

    def report(self, simulation, state):
        """Send one frame (time, box, positions); blocks while the client paused."""
        if self._done or self._conn is None:
            return
        import numpy as np

        step = simulation.currentStep
        try:
            self._handle_messages(block=False, step=step)
            while self._paused:
                self._handle_messages(block=True, step=step)
            positions = state.getPositions(asNumpy=True)
            box = None
            if self._periodic:
                box = np.asarray(_value(state.getPeriodicBoxVectors(asNumpy=True)),
                                 dtype=np.float64) * 10.0
            dt = simulation.integrator.getStepSize()
            self._conn.sendall(self._frame(
                _value(dt), _value(state.getTime()), step, box,
                np.asarray(_value(positions), dtype=np.float64) * 10.0))
            self.frames += 1
        except ClientGone as e:
            self._say(f"IMD client left at step {step} after {self.frames} frames "
                      f"({e}); streaming stopped")
            self._finish(drain=False)
            return
        except OSError as e:
            self._say(f"IMD client left at step {step} after {self.frames} frames "
                      f"({e.strerror or e}); streaming stopped")
            self._finish(drain=False)
            return
        if self.nsteps is not None and step - self._first_step >= self.nsteps:
            self._say(f"sent {self.frames} frames (last at step {step}); "
                      f"IMD stream closed")
            self._finish(drain=True)

    def close(self):
        """Close the connection (no more frames). Safe to call more than once."""
        self._finish(drain=False)

    # -- connection -------------------------------------------------------------
    def _say(self, text):
        out = self._out or sys.stdout
        print(f"{PREFIX} {text}", file=out, flush=True)

    def _serve(self):
        """Listen on loopback, print the readiness line, handshake with one client."""
        IMDHeaderType, header = _protocol()
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            listener.bind((HOST, self.port))
            listener.listen(1)
            listener.settimeout(self.accept_timeout)
            port = listener.getsockname()[1]
            self._say(READY_LINE.format(host=HOST, port=port, periodic="yes" if
                                        self._periodic else "no")[len(PREFIX) + 1:])
            while True:
                try:
                    conn, peer = listener.accept()
                except socket.timeout:
                    raise TimeoutError(
                        f"no IMD client connected to {HOST}:{port} within "
                        f"{self.accept_timeout:g} s") from None
                self._say(f"IMD client connected from {peer[0]}:{peer[1]}")
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                conn.sendall(struct.pack("!i", IMDHeaderType.IMD_HANDSHAKE.value)
                             + struct.pack(f"{_ENDIAN}i", 3))
                # what imdclient 0.2.4 reads: time, energies, box, positions,
                # wrapped positions, velocities, forces (one byte each)
                conn.sendall(header(IMDHeaderType.IMD_SESSIONINFO, 7)
                             + struct.pack(f"{_ENDIAN}7B", 1, 0, int(self._periodic),
                                           1, 0, 0, 0))
                if self._await_go(conn):
                    self._conn = conn
                    return
                self._say(f"no IMD_GO from the client within {GO_TIMEOUT:g} s; "
                          f"dropped it, waiting for another")
                conn.close()
        finally:
            listener.close()  # one client: nobody else can connect

    def _await_go(self, conn) -> bool:
        IMDHeaderType, _ = _protocol()
        conn.settimeout(GO_TIMEOUT)
        try:
            kind, _ = _read_header(conn)
        except (OSError, ClientGone, ValueError):
            return False
        finally:
            conn.settimeout(None)
        return kind == IMDHeaderType.IMD_GO.value

    def _handle_messages(self, block, step):
        """Read what the client sent: pause/resume, disconnect; ignore the rest."""
        IMDHeaderType, _ = _protocol()
        T = IMDHeaderType
        while True:
            ready, _, _ = select.select([self._conn], [], [], None if block else 0)
            if not ready:
                return
            kind, length = _read_header(self._conn)
            if kind == T.IMD_PAUSE.value:
                if not self._paused:
                    self._say(f"paused by the IMD client at step {step}")
                self._paused = True
            elif kind == T.IMD_RESUME.value:
                if self._paused:
                    self._say(f"resumed by the IMD client at step {step}")
                self._paused = False
            elif kind == T.IMD_DISCONNECT.value:
                raise ClientGone("it sent IMD_DISCONNECT")
            elif kind == T.IMD_KILL.value:
                raise ClientGone("it sent IMD_KILL; the simulation goes on")
            elif kind == T.IMD_MDCOMM.value:
                # n atom indices (int32) then n forces (3 float32 each)
                _read_exact(self._conn, 16 * max(length, 0))
                self._warn_once("forces", "ignored forces sent by the IMD client "
                                "(this reporter never applies forces)")
            elif kind in (T.IMD_TRATE.value, T.IMD_WAIT.value, T.IMD_GO.value):
                self._warn_once(str(kind), f"ignored IMD message type {kind} from "
                                f"the client (the frame interval is fixed)")
            else:
                raise ClientGone(f"it sent an unexpected IMD message type {kind}")
            if block:
                return

    def _warn_once(self, key, text):
        if key not in self._warned:
            self._warned.add(key)
            self._say(text)

    def _frame(self, dt, time, step, box, positions) -> bytes:
        import numpy as np

        IMDHeaderType, header = _protocol()
        f32 = np.dtype(f"{_ENDIAN}f4")
        boxed = () if box is None else (
            header(IMDHeaderType.IMD_BOX, 1),
            np.ascontiguousarray(box, dtype=f32).tobytes())
        return b"".join((
            header(IMDHeaderType.IMD_TIME, 1),
            struct.pack(f"{_ENDIAN}ddq", dt, time, step),
            *boxed,
            header(IMDHeaderType.IMD_FCOORDS, len(positions)),
            np.ascontiguousarray(positions, dtype=f32).tobytes()))

    def _finish(self, drain):
        """Stop streaming. ``drain``: end the stream with a FIN and keep reading
        what the client still sends until it closes, so that a late IMD_PAUSE is
        never answered with a reset that would discard frames it has not read."""
        self._done = True
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if not drain:
            conn.close()
            return
        try:
            conn.shutdown(socket.SHUT_WR)
        except OSError:
            conn.close()
            return
        threading.Thread(target=_drain, args=(conn,), daemon=True,
                         name="streamrun-imd-drain").start()


def _drain(conn):
    try:
        while conn.recv(4096):
            pass
    except OSError:
        pass
    finally:
        conn.close()


def _value(quantity):
    """A number (or array) of an OpenMM Quantity in OpenMM's units (nm, ps)."""
    return getattr(quantity, "_value", quantity)


def _read_exact(conn, n) -> bytes:
    data = bytearray()
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise ClientGone("its connection closed")
        data += chunk
    return bytes(data)


def _read_header(conn) -> tuple[int, int]:
    kind, length = struct.unpack("!ii", _read_exact(conn, 8))
    return kind, length


# -- for the user's script ------------------------------------------------------
def _env_int(name, value, what):
    if value is not None:
        return int(value)
    raw = os.environ.get(name)
    if raw is None:
        raise RuntimeError(
            f"{name} is not set: this script is not run by streamrun. Run it with "
            f"'streamrun run' (engine.name: openmm), or give {what}=... here")
    try:
        return int(raw)
    except ValueError:
        raise RuntimeError(f"{name} is {raw!r}, not an integer") from None


def reporter(frame_interval: int | None = None, nsteps: int | None = None,
             port: int | None = None, **kwargs) -> IMDReporter:
    """The IMD reporter streamrun asked for, from the environment it set.

    Parameters
    ----------
    frame_interval, nsteps, port : int, optional
        Override ``STREAMRUN_FRAME_INTERVAL``, ``STREAMRUN_NSTEPS`` and
        ``STREAMRUN_OPENMM_PORT`` (to run the script without streamrun, e.g.
        against imdclient). Without streamrun and without ``nsteps``, frames
        stream until the script ends.
    **kwargs
        Passed to :class:`IMDReporter` (``accept_timeout``, ``out``).

    Returns
    -------
    IMDReporter
        Add it with ``simulation.reporters.append(...)``.
    """
    interval = _env_int(INTERVAL_VAR, frame_interval, "frame_interval")
    if nsteps is None and os.environ.get(NSTEPS_VAR) is not None:
        nsteps = _env_int(NSTEPS_VAR, None, "nsteps")
    if port is None:
        port = int(os.environ.get(PORT_VAR, "0"))
    made = IMDReporter(interval, nsteps=nsteps, port=port, **kwargs)
    _REPORTERS.append(made)
    return made


#: The reporters :func:`reporter` made: each segment of :func:`segments` renews them.
_REPORTERS: list[IMDReporter] = []


@dataclass(frozen=True)
class Segment:
    """One segment that streamrun asks the script to run (see :func:`segments`).

    Attributes
    ----------
    number : int
        1 for the first segment this process runs, 2 for the next, ...
    folder : str
        The segment's folder: the current directory while the segment runs.
    nsteps, frame_interval : int
        ``engine.nsteps`` and ``engine.frame_interval`` of this segment.
    resident : bool
        True when this process serves several segments (streamrun's warm path).
    """

    number: int
    folder: str
    nsteps: int
    frame_interval: int
    resident: bool

    def variable(self, name: str, default: str | None = None) -> str:
        """``engine.variables.<name>`` of this segment (:func:`variable`)."""
        return variable(name, default)


def segments():
    """The segments streamrun asks this script to run, one at a time.

    Run by ``streamrun run`` or WESTPA's executable path, it yields one segment.
    On the warm path (``streamrun.propagator.StreamrunPropagator``) streamrun keeps
    the script running in the WESTPA worker, and it yields each segment the worker
    runs, until the worker ends; the set-up before the loop (imports, System,
    Context) is paid once per worker.

    While a segment runs, everything of a one-shot run holds: the current directory
    is the segment's folder, :func:`nsteps`, :func:`frame_interval` and
    :func:`variable` give its values (``os.environ`` is the segment's), the script's
    output goes to the segment's log, and each reporter made by :func:`reporter`
    serves the segment's client from its next step on.

    Yields
    ------
    Segment

    Notes
    -----
    The state left by one segment is the Context's: load each segment's start
    (:func:`load_start` or ``simulation.loadState``), which sets positions,
    velocities, box and time. The integrator's random numbers continue from one
    segment to the next (OpenMM reads an integrator's seed when the Context is
    made), so sibling segments differ, but a segment is not reproduced from its
    seed alone. An exception in the loop's body ends the script: streamrun fails
    that segment and starts the script again for the next one.
    """
    fd = os.environ.get(RESIDENT_VAR)
    if not fd:
        yield _segment(1, resident=False)
        return
    yield from _serve(int(fd))


def _segment(number, resident) -> Segment:
    return Segment(number, os.getcwd(), _env_int(NSTEPS_VAR, None, "nsteps"),
                   _env_int(INTERVAL_VAR, None, "frame_interval"), resident)


def _serve(fd):
    """Serve the segments that arrive on the control socket ``fd``: each message is
    the segment's environment and folder (JSON) with the write end of a pipe, which
    becomes this process's stdout and stderr for the segment (streamrun reads it as
    a one-shot engine's output; its end of file ends the segment)."""
    control = socket.socket(fileno=fd)
    os.environ.pop(RESIDENT_VAR, None)
    _die_with_parent()
    launch_out = os.dup(1), os.dup(2)
    number = 0
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(control, 1 << 22, 1)
        except OSError:
            message, fds = b"", []
        if not message:  # the worker is gone: no more segments
            for extra in fds:
                os.close(extra)
            return
        number += 1
        request = json.loads(message)
        sys.stdout.flush()
        sys.stderr.flush()
        for target in (1, 2):
            os.dup2(fds[0], target)
        os.close(fds[0])
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
        current = _segment(number, resident=True)
        port = int(os.environ.get(PORT_VAR, "0"))
        for made in _REPORTERS:
            made.renew(current.frame_interval, current.nsteps, port)
        print(f"{PREFIX} resident engine (pid {os.getpid()}) runs its segment "
              f"{number} in {current.folder}", flush=True)
        yield current
        sys.stdout.flush()
        sys.stderr.flush()
        print(DONE_LINE.format(number=number), flush=True)
        for target, saved in zip((1, 2), launch_out):
            os.dup2(saved, target)  # the segment's pipe closes: its end of file


def _die_with_parent():
    """SIGTERM to this process when the WESTPA worker that started it dies (Linux
    ``PR_SET_PDEATHSIG``; streamrun's watchdog does it elsewhere)."""
    try:
        import ctypes
        import signal

        ctypes.CDLL(None).prctl(1, int(signal.SIGTERM), 0, 0, 0)
    except (OSError, AttributeError):
        pass


def nsteps(default: int | None = None) -> int:
    """MD steps streamrun asks for (``engine.nsteps``): ``simulation.step(nsteps())``.

    ``default`` is used when the script is run without streamrun.
    """
    if os.environ.get(NSTEPS_VAR) is None and default is not None:
        return int(default)
    return _env_int(NSTEPS_VAR, None, "default")


def frame_interval(default: int | None = None) -> int:
    """MD steps between streamed frames (``engine.frame_interval``), e.g. for a
    DCDReporter that writes the streamed frames too."""
    if os.environ.get(INTERVAL_VAR) is None and default is not None:
        return int(default)
    return _env_int(INTERVAL_VAR, None, "default")


def variable(name: str, default: str | None = None) -> str:
    """The value of ``engine.variables.<name>`` (e.g. ``seed``, ``start``), as text.

    Raises
    ------
    KeyError
        If streamrun did not set it and no ``default`` is given.
    """
    values = json.loads(os.environ.get(VARIABLES_VAR) or "{}")
    if name in values:
        return values[name]
    if default is not None:
        return default
    raise KeyError(f"engine.variables.{name} is not set in streamrun's config "
                   f"(known: {', '.join(values) or 'none'}); add it, or give a "
                   f"default here")


@dataclass(frozen=True)
class StartFile:
    """What :func:`load_start` loaded (``print`` it for the log).

    Attributes
    ----------
    path : str
    kind : str
        ``"OpenMM state"``, ``"Amber restart (ASCII)"`` or ``"Amber NetCDF"``.
    velocities, box, time : bool
        Whether the file gave velocities, box vectors and a time (an OpenMM state
        gives all three).
    """

    path: str
    kind: str
    velocities: bool
    box: bool
    time: bool

    def __str__(self):
        had = [name for name in ("velocities", "box", "time") if getattr(self, name)]
        return (f"{self.kind} {self.path}: positions"
                + "".join(f", {name}" for name in had))


def _is_state_xml(path) -> bool:
    with open(path, "rb") as f:
        return b"<State" in f.read(512)


def load_start(simulation, path=None) -> StartFile:
    """Start ``simulation`` from an OpenMM state XML or an Amber restart.

    One call for both ways a WESTPA segment starts: a new trajectory from a basis
    state that Amber tools wrote (``bstates/x.rst7``, ``x.rst``, ``x.ncrst``), a
    continuing one from the ``seg.xml`` its parent saved (``simulation.saveState``).
    The file's content tells which, not its name, so one link name (``parent.rst``)
    serves both:

    - an OpenMM state XML: ``simulation.loadState(path)`` (positions, velocities,
      box, time, step, parameters);
    - an ASCII Amber restart: ``openmm.app.AmberInpcrdFile``: positions, and the
      velocities, box and time the file has;
    - an Amber NetCDF file (NetCDF 3, or NetCDF 4 with h5py), as streamrun reads it
      (:func:`streamrun.amber.read_netcdf`): the same, of its last frame.

    A file without velocities leaves the Context's (zero after ``Simulation()``):
    draw them with ``simulation.context.setVelocitiesToTemperature(T, seed)`` when
    ``not start.velocities``. Amber and OpenMM positions are both in the prmtop's
    atom order.

    Parameters
    ----------
    simulation : openmm.app.Simulation
    path : str or path-like, optional
        Default: ``engine.variables.start`` (:func:`variable`).

    Returns
    -------
    StartFile
    """
    import numpy as np
    from openmm import unit

    path = str(variable("start") if path is None else path)
    if _is_state_xml(path):
        simulation.loadState(path)
        return StartFile(path, "OpenMM state", True, True, True)
    from . import amber  # light: standard library and numpy

    context = simulation.context
    nm = unit.nanometer
    if amber.content(path) in ("netcdf", "hdf5"):
        try:
            frame = amber.read_netcdf(path)
        except ValueError as e:
            raise ValueError(f"{path}: cannot read it as an Amber NetCDF file: "
                             f"{e}") from None
        if frame.box is not None:
            from openmm.app.internal.unitcell import computePeriodicBoxVectors

            a, b, c = frame.box[:3] / 10.0
            context.setPeriodicBoxVectors(*computePeriodicBoxVectors(
                a, b, c, *np.radians(frame.box[3:])))
        context.setPositions(unit.Quantity(frame.positions / 10.0, nm))
        if frame.velocities is not None:
            context.setVelocities(unit.Quantity(frame.velocities / 10.0,
                                                nm / unit.picosecond))
        if frame.time is not None:
            context.setTime(frame.time)
        return StartFile(path, "Amber NetCDF", frame.velocities is not None,
                         frame.box is not None, frame.time is not None)
    from openmm.app import AmberInpcrdFile

    try:
        crd = AmberInpcrdFile(path)
    except (TypeError, ValueError, IndexError) as e:
        raise ValueError(f"{path} is neither an OpenMM state XML nor an Amber "
                         f"restart ({e})") from None
    if crd.boxVectors is not None:
        context.setPeriodicBoxVectors(*crd.boxVectors)
    context.setPositions(crd.positions)
    if crd.velocities is not None:
        context.setVelocities(crd.velocities)
    time = amber.ascii_time(path)
    if time is not None:
        context.setTime(time)
    return StartFile(path, "Amber restart (ASCII)", crd.velocities is not None,
                     crd.boxVectors is not None, time is not None)
