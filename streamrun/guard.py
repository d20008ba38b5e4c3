"""Pcoord code that never returns or exits the process is reported as its own fault.

A plugin is user code run inside streamrun: it may call ``sys.exit()`` (which would
end streamrun with that code and no message, or silently end the reader thread) or
never return (which would hang a WESTPA run, since WESTPA has no per-segment
timeout). The helpers here turn both into a :class:`~streamrun.errors.PcoordError`
that names the coordinate, without knowing how coordinates are computed: the
coordinate is found on the stack of the code that misbehaved, as the ``self`` of the
outermost ``compute`` method with a config ``key``.
"""

from __future__ import annotations

import sys
import threading

from .errors import PcoordError


def _coordinate_in(frames) -> str | None:
    """``"pcoord[0] (name)"`` for the outermost coordinate's ``compute`` among
    ``frames`` (ordered outermost first), or None."""
    for frame in frames:
        if frame.f_code.co_name != "compute":
            continue
        owner = frame.f_locals.get("self")
        key = getattr(owner, "key", None)
        if isinstance(key, str):
            name = getattr(owner, "name", None)
            return f"{key} ({name})" if name else key
    return None


def _thread_frames(thread: threading.Thread) -> list:
    frame = sys._current_frames().get(thread.ident)
    frames = []
    while frame is not None:
        frames.append(frame)
        frame = frame.f_back
    return frames[::-1]


def _traceback_frames(error: BaseException) -> list:
    frames, tb = [], error.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    return frames


def running_coordinate(thread: threading.Thread) -> str:
    """The coordinate ``thread`` is computing now, for an error message."""
    return _coordinate_in(_thread_frames(thread)) or "a pcoord coordinate"


def exit_error(error: SystemExit, label: str) -> PcoordError:
    """The error for a coordinate that called ``sys.exit()`` on ``label``."""
    who = _coordinate_in(_traceback_frames(error)) or "a pcoord coordinate"
    return PcoordError(f"{who} called sys.exit({error.code!r}) on {label}; a pcoord "
                       f"function must return its value, not exit. Fix the plugin")


def timeout_error(who: str, timeout: float, label: str) -> PcoordError:
    """The error for a coordinate still computing ``label`` after ``timeout`` s."""
    return PcoordError(f"{who} did not return within {timeout:g} s (pcoord_timeout) "
                       f"on {label}; fix the plugin, or raise pcoord_timeout if it is "
                       f"just slow")


def call(func, timeout: float, label: str):
    """Run ``func()`` in a thread of its own and return its value, in ``timeout`` s.

    Parameters
    ----------
    func : callable
        Computes pcoord values (e.g. the start structure's row).
    timeout : float
        Seconds ``func`` may take (config ``pcoord_timeout``).
    label : str
        What is being computed, for messages ("the start structure").

    Raises
    ------
    PcoordError
        If ``func`` calls ``sys.exit()`` or does not return in time. The thread
        of a function that never returns is abandoned (Python cannot stop it);
        it is a daemon, so it does not keep streamrun alive.
    Exception
        Whatever ``func`` raises otherwise.
    """
    outcome = {}

    def target():
        try:
            outcome["value"] = func()
        except BaseException as e:  # SystemExit too: handed to the caller
            outcome["error"] = e

    worker = threading.Thread(target=target, daemon=True, name="streamrun-pcoord")
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise timeout_error(running_coordinate(worker), timeout, label)
    error = outcome.get("error")
    if isinstance(error, SystemExit):
        raise exit_error(error, label) from None
    if error is not None:
        raise error
    return outcome["value"]
