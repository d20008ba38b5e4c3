"""Terminating signals: each one ends the segment in order, with one line saying so.

A segment is stopped by a signal more often than by anything else: SIGTERM (the batch
system, WESTPA, ``kill``), SIGINT (Ctrl-C), SIGHUP (the terminal or the ssh connection
closed), SIGQUIT (Ctrl-\\), SIGUSR1/SIGUSR2 (what some batch systems send before they
kill a job) and SIGXCPU (a CPU-time limit). Left to Python, each would end streamrun
at once: no line saying why, the engine log cut short, the engine left to the
watchdog. A :class:`SignalGuard` turns each into
:class:`~streamrun.errors.Interrupted` (exit code 128 + the signal's number).

Raised anywhere, that exception could land between starting the engine and
remembering it, or in the middle of stopping it. So a guard raises it at once only
inside :meth:`SignalGuard.interruptible` blocks (waiting for the engine, for frames,
building the pcoord: nothing half-done there); elsewhere the signal is kept and
raised at the next :meth:`~SignalGuard.check` or interruptible block. Further
signals while streamrun stops the engine change nothing.

A signal that streamrun's parent chose to ignore stays ignored (``nohup`` ignores
SIGHUP), except SIGINT and SIGTERM: streamrun always stops the engine for those
(WESTPA's zmq executor ignores them, and its segments must still stop on ``kill``).
"""

from __future__ import annotations

import contextlib
import signal
import threading

from .errors import Interrupted

#: The signals that end a segment.
TERMINATING = tuple(getattr(signal, name) for name in (
    "SIGHUP", "SIGINT", "SIGQUIT", "SIGTERM", "SIGUSR1", "SIGUSR2", "SIGXCPU")
    if hasattr(signal, name))
#: Taken over even when the parent process ignores them.
ALWAYS = (signal.SIGINT, signal.SIGTERM)

MEANING = {
    "SIGHUP": "hangup: the terminal or the ssh connection closed",
    "SIGINT": "interrupt, e.g. Ctrl-C",
    "SIGQUIT": "quit, e.g. Ctrl-\\",
    "SIGTERM": "a request to stop, e.g. from the batch system, WESTPA or kill",
    "SIGUSR1": "a batch system's notice before it stops the job, on some clusters",
    "SIGUSR2": "a batch system's notice before it stops the job, on some clusters",
    "SIGXCPU": "the CPU-time limit was reached",
}


def describe(signum: int) -> str:
    """``SIGHUP (hangup: the terminal or the ssh connection closed)``."""
    name = signal.Signals(signum).name
    return f"{name} ({MEANING[name]})" if name in MEANING else name


class SignalGuard:
    """Receives the terminating signals while installed (:func:`guarded`).

    Attributes
    ----------
    received : int or None
        The first signal received.
    raised : bool
        True once :class:`Interrupted` has been raised for it (it is raised once).
    """

    def __init__(self):
        self.received: int | None = None
        self.raised = False
        self._interruptible = 0
        self._saved: dict = {}

    def install(self) -> None:
        """Take over the terminating signals (in the main thread only: Python
        delivers signals there; elsewhere this does nothing)."""
        if threading.current_thread() is not threading.main_thread():
            return
        for s in TERMINATING:
            previous = signal.getsignal(s)
            if previous == signal.SIG_IGN and s not in ALWAYS:
                continue
            self._saved[s] = previous
            signal.signal(s, self._handle)

    def uninstall(self) -> None:
        """Put back the handlers found by :meth:`install`."""
        for s, previous in self._saved.items():
            signal.signal(s, previous if previous is not None else signal.SIG_DFL)
        self._saved.clear()

    def _handle(self, signum, _frame):
        if self.received is None:
            self.received = signum
        if self._interruptible and not self.raised:
            self.raised = True
            raise self.error()

    def error(self) -> Interrupted:
        return Interrupted(f"received {describe(self.received)}",
                           signum=self.received)

    def check(self) -> None:
        """Raise :class:`Interrupted` for a signal received and not yet raised."""
        if self.received is not None and not self.raised:
            self.raised = True
            raise self.error()

    @contextlib.contextmanager
    def interruptible(self):
        """A block where a signal raises at once (one already received raises on
        entry)."""
        self.check()
        self._interruptible += 1
        try:
            yield
        finally:
            self._interruptible -= 1

    @contextlib.contextmanager
    def deferred(self):
        """A block where signals are only recorded, even inside an interruptible
        one (starting and stopping the engine)."""
        depth, self._interruptible = self._interruptible, 0
        try:
            yield
        finally:
            self._interruptible = depth

    def redeliver(self) -> None:
        """Send the signal received again, to the handlers :meth:`install` found
        (after :meth:`uninstall`): a WESTPA worker that ran the segment in its own
        process (the warm path) then does what it would have done without
        streamrun, only after the engine was stopped."""
        if self.received is not None and not self._saved:
            signal.raise_signal(self.received)


@contextlib.contextmanager
def guarded(guard: SignalGuard | None = None, interruptible: bool = False):
    """Install a new :class:`SignalGuard` for the block and yield it; with
    ``guard``, use that one (already installed by the caller) instead.

    ``interruptible``: the whole block is an interruptible one.
    """
    own = guard is None
    if own:
        guard = SignalGuard()
        guard.install()
    try:
        if interruptible:
            with guard.interruptible():
                yield guard
        else:
            yield guard
    finally:
        if own:
            guard.uninstall()
