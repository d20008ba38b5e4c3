"""Error types. Each message says what failed, where, and what to do about it."""


class StreamrunError(Exception):
    """Base class of every error streamrun reports to the user.

    The CLI prints ``streamrun: <message>`` on one line and exits with
    :attr:`exit_code`; no traceback reaches the user.
    """

    exit_code = 1


class ConfigError(StreamrunError):
    """The configuration is invalid (found before the engine starts).

    Parameters
    ----------
    message : str
        What is wrong and what to do.
    source : str, optional
        The config file (or "command line") the value came from.
    key : str, optional
        Dotted key of the offending value, e.g. ``pcoord[0].a``.
    """

    exit_code = 2

    def __init__(self, message, source=None, key=None):
        self.source = source
        self.key = key
        where = []
        if source:
            where.append(str(source))
        if key:
            where.append(f"key '{key}'")
        prefix = f"config error in {', '.join(where)}: " if where else "config error: "
        super().__init__(prefix + message)


class EngineError(StreamrunError):
    """The MD engine failed to start, crashed, or exited with an error."""


class PortError(StreamrunError):
    """No IMD port could be reserved, or the listener is not our engine."""


class StreamError(StreamrunError):
    """The IMD stream broke, ended early, or sent more frames than asked."""


class ForeignClientError(StreamrunError):
    """Another process than streamrun was (or is) the engine's IMD client.

    Engines accept the first client on all interfaces without authentication; a
    foreign client may have read the frames or pushed forces into the run, so the
    segment cannot be trusted and fails.
    """


class LogError(StreamrunError):
    """The engine log cannot be written (disk full, quota, folder gone)."""


class FolderError(StreamrunError):
    """A folder the segment writes to was deleted or became read-only."""


class PcoordError(StreamrunError):
    """A progress-coordinate calculation failed on a frame."""


class Interrupted(StreamrunError):
    """streamrun was told to stop: a terminating signal (exit code 128 + its
    number, as a shell reports a process the signal ended), or its parent process
    exited (130).

    Parameters
    ----------
    message : str
    signum : int, optional
        The signal received.
    """

    exit_code = 130

    def __init__(self, message, signum=None):
        super().__init__(message)
        self.signum = signum
        if signum is not None:
            self.exit_code = 128 + signum

    def then(self, outcome: str) -> "Interrupted":
        """The same interruption, its message followed by what streamrun did."""
        return Interrupted(f"{self}; {outcome}", signum=self.signum)
