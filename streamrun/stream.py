"""Reading the engine's IMD stream with imdclient, in a thread of its own.

imdclient's producer thread reads the socket into a bounded frame buffer and pauses
the engine when the buffer fills (it never drops frames). :class:`FrameReader`
consumes that buffer in another thread and turns each frame into a pcoord row, so
the main thread stays free to watch the engine, signals and time-outs.
"""

from __future__ import annotations

import logging
import re
import signal
import sys
import threading
import time

from . import guard
from .errors import StreamError
from .lazy import numpy as np

logger = logging.getLogger(__name__)

#: imdclient's producer error for a stream whose atom count differs from ours.
ATOM_COUNT = re.compile(r"Expected n_atoms value (?P<want>\d+), got (?P<got>\d+)")


def connect(port: int, n_atoms: int, buffer_bytes: int, timeout: float,
            host: str = "127.0.0.1", rate: int | None = None):
    """Open an IMD session with the engine listening on ``host:port``.

    Must run in the main thread: imdclient installs SIGINT/SIGTERM handlers when
    constructed. Ours are put back afterwards, so streamrun keeps control of
    shutdown (it stops the client itself).

    Returns
    -------
    imdclient.IMDClient.IMDClient
    """
    from imdclient.IMDClient import IMDClient

    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

    class Client(IMDClient):
        # imdclient installs this as the SIGINT/SIGTERM handler while it connects;
        # its own version only stops the client, which would swallow WESTPA's
        # SIGTERM. Hand the signal to the handler streamrun had instead.
        def signal_handler(self, signum=None, frame=None, *args, **kwargs):
            handler = saved.get(signum)
            if callable(handler):
                handler(signum, frame)
            else:
                self.stop()

    # imdclient imports IPython on every connection only to detect Jupyter (0.04 to
    # 0.1 s, after the engine was told to go); streamrun is never a Jupyter kernel.
    hide_ipython = "IPython" not in sys.modules
    if hide_ipython:
        sys.modules["IPython"] = None  # "import IPython" fails at once
    try:
        client = Client(host, port, n_atoms, buffer_size=buffer_bytes, timeout=timeout)
        if rate:
            # imdclient has no call for IMD_TRATE; its socket is _conn
            from imdclient.IMDProtocol import IMDHeaderType, create_header_bytes

            client._conn.sendall(create_header_bytes(IMDHeaderType.IMD_TRATE, rate))
        return client
    except (ConnectionError, OSError, ValueError) as e:
        raise StreamError(f"IMD connection to {host}:{port} failed: {e}") from None
    finally:
        if hide_ipython and sys.modules.get("IPython", 0) is None:
            del sys.modules["IPython"]
        for s, handler in saved.items():
            signal.signal(s, handler)


class FrameReader(threading.Thread):
    """Consume IMD frames and compute one pcoord row each.

    Parameters
    ----------
    client : IMDClient
    calculator : streamrun.pcoords.PcoordCalculator
    expected : int
        Frames the engine should send. One more is an error.
    interval : int, optional
        MD steps between frames; checked against the steps an IMD v3 stream carries.
    skip : int
        Leading frames that make no row (an engine that streams step 0).
    on_frame : callable, optional
        Called with the 1-based row number (after row 0) once computed, while
        the Universe holds that frame (e.g. to write a trajectory).

    Attributes
    ----------
    rows : list of numpy.ndarray
    error : Exception or None
        Set when the stream broke, sent too many frames, or a pcoord failed.
    ended : str or None
        imdclient's end-of-stream reason.
    last_frame_time : float
        ``time.monotonic()`` of the latest frame or finished row (or of the
        start): waiting for the stream is measured from here.
    computing : tuple of (float, str) or None
        While a row is computed: when it started and which frame it is, so the
        main thread can bound its time (config ``pcoord_timeout``).
    steps : list of int
        Engine step of each frame when the stream carries time (IMD v3).
    """

    def __init__(self, client, calculator, expected: int, interval: int | None = None,
                 on_frame=None, skip: int = 0):
        super().__init__(daemon=True, name="streamrun-reader")
        self.client, self.calculator, self.expected = client, calculator, expected
        self.interval, self.on_frame, self.skip = interval, on_frame, skip
        self.rows: list[np.ndarray] = []
        self.steps: list[int] = []
        self.error: Exception | None = None
        self.ended: str | None = None
        self.last_frame_time = time.monotonic()
        self.compute_seconds = 0.0
        self.received = 0
        self.computing: tuple[float, str] | None = None
        #: Set by the main thread when it gave up on a row that never finished.
        self.abandoned = False
        self._halt = threading.Event()

    @property
    def count(self) -> int:
        """Frames received so far (including any skipped leading frames)."""
        return self.received

    def run(self):
        try:
            while not self._halt.is_set():
                try:
                    frame = self.client.get_imdframe()
                except EOFError as e:
                    self.ended = str(e) or "stream closed"
                    mismatch = ATOM_COUNT.search(self.ended)
                    if mismatch:
                        raise StreamError(
                            f"the engine streams {mismatch['got']} atoms but the "
                            f"topology has {mismatch['want']}; use a topology with "
                            f"exactly the atoms of the engine's IMD group") from None
                    return
                self.last_frame_time = time.monotonic()
                if self._halt.is_set():
                    return
                n = self.received + 1
                if n > self.expected:
                    raise StreamError(
                        f"the engine sent more frames than the {self.expected} "
                        f"expected; check engine.nsteps and engine.frame_interval "
                        f"against the engine input")
                self.received = n
                step = getattr(frame, "step", None)
                if step is not None:
                    self._check_step(int(step))
                if n <= self.skip:
                    continue  # e.g. GROMACS' step 0: row 0 is the start structure
                label = f"frame {n}" + (f" (step {int(step)})" if step is not None
                                         else "")
                t0 = time.perf_counter()
                self.computing = (time.monotonic(), label)
                time_ps = getattr(frame, "time", None)
                try:
                    row = self.calculator.frame_row(
                        frame.positions, frame.box, label, index=n - self.skip,
                        step=None if step is None else int(step),
                        time=None if time_ps is None else float(time_ps))
                except SystemExit as e:
                    # a plugin's sys.exit(): its fault, not the stream's (left
                    # alone, it would end this thread without a word)
                    raise guard.exit_error(e, label) from None
                finally:
                    self.computing = None
                self.compute_seconds += time.perf_counter() - t0
                self.last_frame_time = time.monotonic()
                self.rows.append(row)
                if self.on_frame is not None:
                    self.on_frame(n - self.skip)
        except Exception as e:  # handed to the main thread, which reports it
            self.error = e

    def _check_step(self, step):
        if self.steps and self.interval and step - self.steps[-1] != self.interval:
            raise StreamError(
                f"frame {len(self.steps) + 1} is step {step}, {step - self.steps[-1]} "
                f"steps after the previous frame, but engine.frame_interval is "
                f"{self.interval}; make the engine input stream every "
                f"engine.frame_interval steps")
        self.steps.append(step)

    def stop(self):
        """Ask the reader to stop and unblock it by stopping the client."""
        self._halt.set()
        try:
            self.client.stop()
        except Exception as e:  # the socket may already be gone
            logger.debug("imdclient stop: %s", e)
