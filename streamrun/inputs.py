"""Reading the user's input files in bounded time and memory.

Everything streamrun reads before the engine starts (the config, the engine input,
the topology, the start structure) must be a regular file of a sane size: a FIFO
would block the open or the read forever, and a device such as ``/dev/zero`` never
ends. A WESTPA run has no per-segment timeout, so such a file would hang it.
"""

from __future__ import annotations

import os
import reprlib
import stat
from pathlib import Path

#: Largest config file (YAML or west.cfg) and engine input script, in bytes.
MAX_TEXT_BYTES = 16 * 2**20
#: Largest topology or structure file, in bytes (a 10-million-atom PDB is ~0.8 GB).
MAX_STRUCTURE_BYTES = 8 * 2**30


class InputFileError(ValueError):
    """A user file is not a regular file, is too large, or is not text.

    The message reads after the file's name: "is a FIFO, not a regular file".
    """


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISDIR(mode):
        return "a folder"
    return "not a regular file"


def check_regular(path: Path, limit: int) -> None:
    """Raise :class:`InputFileError` unless ``path`` is a regular file of at most
    ``limit`` bytes. Symbolic links are followed (WESTPA links istates)."""
    info = os.stat(path)  # never opens: a FIFO cannot block here
    if not stat.S_ISREG(info.st_mode):
        raise InputFileError(f"is {_kind(info.st_mode)}, not a regular file")
    if info.st_size > limit:
        raise InputFileError(f"is {info.st_size / 2**20:.0f} MiB; streamrun reads at "
                             f"most {limit / 2**20:.0f} MiB from it")


def read_text(path: Path, limit: int = MAX_TEXT_BYTES) -> str:
    """Read a regular UTF-8 text file of at most ``limit`` bytes.

    Raises
    ------
    OSError
        If the file cannot be read (missing, permissions).
    InputFileError
        If it is not a regular file, is larger than ``limit``, or is not UTF-8.
    """
    check_regular(path, limit)
    # O_NONBLOCK: had the file been swapped for a FIFO since the check, the open
    # returns at once instead of waiting for a writer
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise InputFileError("is not a regular file")
        data = f.read(limit + 1)
    if len(data) > limit:
        raise InputFileError(f"is larger than {limit / 2**20:.0f} MiB")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise InputFileError(f"is not UTF-8 text (byte 0x{data[e.start]:02x} on line "
                             f"{line}); save it as UTF-8") from None


_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = 60
_SHORT.maxlist = _SHORT.maxdict = _SHORT.maxtuple = _SHORT.maxset = 6
_SHORT.maxlevel = 3


def short(value) -> str:
    """``repr(value)`` cut to a few dozen characters, for error messages: a value
    from a config may be huge (YAML aliases nest lists without bound)."""
    return _SHORT.repr(value)


def short_path(path, limit: int = 100) -> str:
    """``path`` as shown in a message: whole when it is short, else its start and
    its end around an ellipsis, with its length (a 4 kB path would fill a
    terminal and hide what the message says)."""
    text = str(path)
    if len(text) <= limit:
        return text
    head, tail = text[:limit // 3], text[-(limit - limit // 3):]
    return f"{head}…{tail} ({len(text)} characters)"


def _limit(name: str, default: int) -> int:
    try:
        return os.pathconf("/", name)
    except (OSError, ValueError):
        return default


#: Bytes a file name may grow by when streamrun writes it atomically
#: (``.NAME.XXXXXXXX.tmp``, see :func:`streamrun.returns.write_pcoord`).
TEMPORARY_NAME_EXTRA = 16


def name_too_long(path, extra: int = 0) -> str | None:
    """Why the system would refuse ``path`` with ENAMETOOLONG, or None.

    Parameters
    ----------
    path : path-like
    extra : int
        Bytes the last name may grow by (a temporary name beside it).

    Returns
    -------
    str or None
        What is too long, e.g. "4100 bytes; the system allows at most 4095 per
        path (ENAMETOOLONG)", for "the path ... is too long: ...".
    """
    path_max, name_max = _limit("PC_PATH_MAX", 4096), _limit("PC_NAME_MAX", 255)
    size = len(os.fsencode(str(path)))
    if size + extra >= path_max:
        return (f"{size} bytes; the system allows at most {path_max - 1 - extra} "
                f"per path here (ENAMETOOLONG)")
    parts = Path(path).parts
    for i, part in enumerate(parts):
        grow = extra if i == len(parts) - 1 else 0
        if len(os.fsencode(part)) + grow > name_max:
            return (f"one of its names, '{short_path(part, 40)}', has "
                    f"{len(os.fsencode(part))} bytes; the system allows at most "
                    f"{name_max - grow} per name here (ENAMETOOLONG)")
    return None


def os_error_reason(error: OSError) -> str:
    """What an OSError on a path means for the user, without the path (which the
    message shows shortened): 'File name too long' is not a full disk."""
    import errno

    reasons = {
        errno.ENAMETOOLONG: "its name is too long for the system (ENAMETOOLONG); "
                            "use a shorter path",
        errno.ENOSPC: "no space left on that disk; free space or use another disk",
        errno.EDQUOT: "disk quota exceeded; free space or use another disk",
        errno.EACCES: "permission denied; choose a folder you can write to",
        errno.EROFS: "read-only file system; choose another folder",
        errno.ENOTDIR: "a part of the path is a file, not a folder",
    }
    return reasons.get(error.errno, error.strerror or str(error))
