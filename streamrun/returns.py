"""Writing the files WESTPA reads back: complete, or not at all."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import warnings
from pathlib import Path

from .errors import StreamrunError
from .lazy import numpy as np


def write_pcoord(path: Path, rows: np.ndarray, column_labels=(),
                 dataset: str = "pcoord") -> None:
    """Write pcoord rows as text that ``numpy.loadtxt`` reads, atomically.

    The rows go to a temporary file in the same folder, are flushed to disk, and
    the file is renamed over ``path``: a reader never sees a partial file.

    Parameters
    ----------
    path : Path
    rows : numpy.ndarray, shape (n_rows, n_columns)
    column_labels : sequence of str
        Column names with units (``na_cl [Å]``), written in a ``#`` header line
        (``loadtxt`` skips it).
    dataset : str
        ``pcoord``, or the aux dataset's name (in the header).
    """
    path = Path(path)
    rows = np.atleast_2d(np.asarray(rows, dtype=np.float64))
    header = "streamrun pcoord" if dataset == "pcoord" else f"streamrun aux {dataset}"
    if column_labels:
        header += ": " + ", ".join(column_labels)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp",
                                   dir=path.parent)
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp's 0600 is for secrets
        with os.fdopen(fd, "w") as f:
            np.savetxt(f, rows, fmt="%.10g", header=header)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise StreamrunError(f"could not write the pcoord file '{path}': "
                             f"{e.strerror or e}; check the folder is writable and "
                             f"has space") from None


def _umask() -> int:
    """The process umask, read without changing it where Linux tells it
    (``/proc/self/status``, Linux >= 4.7); else set and restored at once."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def discard_stale(path: Path) -> None:
    """Remove a result left by an earlier run in the same folder, before this run
    starts: if this run fails, no earlier pcoord may be taken for its result.

    An empty file is kept: that is what WESTPA creates for ``WEST_PCOORD_RETURN``
    before it starts the propagator, and what it reads as a failed segment.

    Raises
    ------
    StreamrunError
        If the stale file cannot be removed.
    """
    path = Path(path)
    try:
        if path.is_file() and path.stat().st_size > 0:
            path.unlink()
    except OSError as e:
        raise StreamrunError(f"could not remove the previous run's '{path}' "
                             f"({e.strerror or e}); remove it, or check the folder "
                             f"is writable") from None


def copy_restart(workdir: Path, names, target: Path | None) -> None:
    """Copy the segment's restart files into WESTPA's ``WEST_RESTART_RETURN`` folder.

    Raises
    ------
    StreamrunError
        If a restart file is missing: the child segment would not be able to start.
    """
    if target is None or not names:
        return
    target = Path(target)
    for name in names:
        source = Path(workdir) / name
        if not source.is_file():
            raise StreamrunError(f"restart file '{source}' (config key 'restart') was "
                                 f"not written by the engine; the next segment needs it")
        try:
            target.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / source.name)
        except OSError as e:
            raise StreamrunError(f"could not copy the restart file '{source}' to "
                                 f"WEST_RESTART_RETURN '{target}': {e.strerror or e}; "
                                 f"check the folder exists and has space") from None


def copy_log(log: Path, target: Path | None) -> None:
    """Copy the engine log to ``WEST_LOG_RETURN`` (best effort: never fails a run)."""
    if target is None or not Path(log).exists():
        return
    try:
        shutil.copyfile(log, target)
    except OSError:
        pass


class TrajectorySink:
    """Writes the start frame, then every ``every``-th streamed frame, with an
    MDAnalysis Writer.

    Only used when the config asks for a trajectory: streamrun writes nothing else
    to disk by default. The file is written under a temporary name and renamed
    when complete.

    Frame 0 is the start structure (pcoord row 0), so a segment's file holds its
    whole time span: WESTPA's HDF5 framework takes a segment's duration as last
    minus first frame time and lines iterations up with it, and the first frame
    of a segment is its parent's last one (up to periodic images; drop it when
    joining segments). Times are in ps from the segment's start: row ``k`` is at
    ``k * frame_ps``; without ``frame_ps`` (the engine's time step is not known),
    the time the calculator gave the frame. Only positions and box are written:
    a start structure's velocities would otherwise be repeated in every frame.

    Parameters
    ----------
    spec : streamrun.config.TrajectorySpec
    universe : MDAnalysis.Universe
        Holds the start structure now, each streamed frame later.
    frame_ps : float, optional
        Time between streamed frames, ps.
    """

    def __init__(self, spec, universe, frame_ps=None):
        import MDAnalysis as mda

        self.spec, self.universe, self.frame_ps = spec, universe, frame_ps
        Path(spec.path).parent.mkdir(parents=True, exist_ok=True)
        # WESTPA's trajectory loader pairs a topology with the trajectory file in
        # WEST_TRAJECTORY_RETURN; the start structure as PDB serves (written now,
        # before streamed frames overwrite the Universe's positions).
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PDB writer fills missing attributes
            universe.atoms.write(str(Path(spec.path).with_suffix(".pdb")))
        self._tmp = Path(spec.path).with_name(f".{Path(spec.path).name}.part")
        fmt = Path(spec.path).suffix.lstrip(".").upper()
        self._writer = mda.Writer(str(self._tmp), n_atoms=len(universe.atoms),
                                  format=fmt)
        self._write(0, 0.0)

    def frame(self, index: int) -> None:
        """Called after frame ``index`` (1-based) was loaded into the Universe."""
        if index % self.spec.every == 0:
            self._write(index, None if self.frame_ps is None
                        else index * self.frame_ps)

    def _write(self, index, time):
        ts = self.universe.trajectory.ts
        saved = (ts.has_velocities, ts.has_forces, ts.time if "time" in ts.data
                 else None, ts.frame)
        ts.has_velocities = ts.has_forces = False
        if time is not None:
            ts.time = time
        ts.frame = index
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # e.g. no box in a start structure
                self._writer.write(self.universe.atoms)
        finally:
            ts.has_velocities, ts.has_forces = saved[:2]
            ts.frame = saved[3]
            if saved[2] is not None:
                ts.time = saved[2]

    def close(self, keep: bool) -> None:
        self._writer.close()
        if keep:
            os.replace(self._tmp, self.spec.path)
        else:
            with contextlib.suppress(OSError):
                os.unlink(self._tmp)
