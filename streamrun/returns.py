"""Writing the files WESTPA reads back: complete, or not at all."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from .errors import StreamrunError


def write_pcoord(path: Path, rows: np.ndarray, column_names=(), units="Å") -> None:
    """Write pcoord rows as text that ``numpy.loadtxt`` reads, atomically.

    The rows go to a temporary file in the same folder, are flushed to disk, and
    the file is renamed over ``path``: a reader never sees a partial file.

    Parameters
    ----------
    path : Path
    rows : numpy.ndarray, shape (n_rows, n_columns)
    column_names : sequence of str
        Written in a ``#`` header line (``loadtxt`` skips it).
    """
    path = Path(path)
    rows = np.atleast_2d(np.asarray(rows, dtype=np.float64))
    header = f"streamrun pcoord, lengths in {units}"
    if column_names:
        header += ": " + " ".join(column_names)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            np.savetxt(f, rows, fmt="%.10g", header=header)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise StreamrunError(f"could not write the pcoord file '{path}': "
                             f"{e.strerror or e}; check the folder is writable and "
                             f"has space") from None
