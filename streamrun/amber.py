"""Amber coordinate files (restarts, NetCDF trajectories) as structures.

WESTPA's Amber set-ups keep each basis state and each segment's end as an Amber
restart: ASCII (``.rst7``, ``.rst``, ``.inpcrd``, ``.restrt``) or NetCDF
(``.ncrst``; pmemd writes a NetCDF restart under whatever name it is given, ``.rst``
included). What MDAnalysis 2.11 does with them:

- ASCII restarts: read by its ``INPCRD``/``RESTRT`` reader (positions and time; the
  box line is skipped), but only under the suffixes ``.inpcrd`` and ``.restrt``;
- NetCDF trajectories (``Conventions = AMBER``, NetCDF 3 with 64-bit offsets): its
  ``NCDF`` reader, under ``.nc`` and ``.ncdf``;
- NetCDF restarts (``Conventions = AMBERRESTART``: no frame dimension) and NetCDF 4
  (HDF5) files: no reader.

This module tells what an Amber file is from its first bytes (NetCDF 3 starts with
``CDF``, NetCDF 4 with the HDF5 signature) rather than from its name, reads what
MDAnalysis does not (the box line of an ASCII restart, NetCDF restarts, NetCDF 4),
and :func:`register` adds an MDAnalysis reader for the latter (format
:data:`FORMAT`). :func:`mdanalysis_format` is the mapping streamrun applies where it
reads a structure.

A structure is one frame: of a trajectory, the last (where it ended, which is where a
segment continuing it starts). A restart has one.

This module stays light (``streamrun.openmm`` uses it inside the user's script): the
standard library and numpy; scipy (NetCDF 3) or h5py (NetCDF 4) when such a file is
read; MDAnalysis only in :func:`register`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

#: Suffixes of ASCII Amber restarts (MDAnalysis ``INPCRD``).
ASCII_SUFFIXES = (".rst7", ".rst", ".inpcrd", ".restrt")
#: Suffixes of Amber NetCDF files (restarts and trajectories).
NETCDF_SUFFIXES = (".ncrst", ".nc", ".ncdf")
#: Every suffix read as an Amber coordinate file.
SUFFIXES = ASCII_SUFFIXES + NETCDF_SUFFIXES
#: MDAnalysis format name of the reader :func:`register` adds (NetCDF restarts, and
#: any NetCDF 4 / HDF5 Amber file).
FORMAT = "NCRST"
#: Å/ps per Amber velocity unit (ASCII restarts store velocities in Å/(1/20.455 ps)).
VELOCITY_SCALE = 20.455

_NETCDF3 = b"CDF"
_HDF5 = b"\x89HDF\r\n\x1a\n"


def content(path) -> str | None:
    """What ``path`` holds, from its first bytes: ``"netcdf"`` (NetCDF 3),
    ``"hdf5"`` (NetCDF 4), ``"text"``, or None if it cannot be read."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError:
        return None
    if head.startswith(_NETCDF3):
        return "netcdf"
    if head.startswith(_HDF5):
        return "hdf5"
    return "text"


def mdanalysis_format(path) -> str | None:
    """The MDAnalysis format to read ``path`` with, when it is an Amber coordinate
    file (by suffix, or a NetCDF file under any name); None otherwise.

    ``INPCRD`` for an ASCII restart; ``NCDF`` for a NetCDF 3 trajectory; otherwise
    for NetCDF (a restart, or NetCDF 4) :data:`FORMAT`, registered on the way.
    """
    path = Path(path)
    kind = content(path)
    if kind in ("netcdf", "hdf5"):
        if kind == "netcdf" and _netcdf3_is_trajectory(path):
            return "NCDF"
        return register()
    if path.suffix.lower() in ASCII_SUFFIXES:
        return "INPCRD"
    return None


@dataclass
class AmberFrame:
    """One frame of an Amber file (Å, Å/ps, degrees, ps)."""

    positions: "np.ndarray"
    velocities: "np.ndarray | None"
    #: a, b, c, alpha, beta, gamma (MDAnalysis' ``dimensions``), or None
    box: "np.ndarray | None"
    time: float | None
    #: frames in the file (1 for a restart); the frame held is the last
    n_frames: int = 1


def read_netcdf(path) -> AmberFrame:
    """The last frame of an Amber NetCDF file: a restart (one frame) or a
    trajectory, NetCDF 3 (scipy) or NetCDF 4 (h5py).

    Raises
    ------
    ValueError
        If it is not an Amber NetCDF file with coordinates, or is NetCDF 4 and h5py
        is missing.
    """
    kind = content(path)
    if kind == "netcdf":
        return _read_netcdf3(path)
    if kind == "hdf5":
        return _read_hdf5(path)
    raise ValueError("it is not a NetCDF file (no 'CDF' or HDF5 signature)")


def _text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _is_trajectory_convention(conventions) -> bool:
    return "AMBER" in _text(conventions).replace(",", " ").split()


def _netcdf3_is_trajectory(path) -> bool:
    """True for an Amber NetCDF 3 trajectory (``Conventions`` names AMBER, not
    AMBERRESTART), which MDAnalysis' NCDF reader reads."""
    from scipy.io import netcdf_file

    try:
        with netcdf_file(str(path), "r", mmap=False) as f:
            return _is_trajectory_convention(getattr(f, "Conventions", b""))
    except Exception:  # not readable as NetCDF 3: let the reader say why
        return False


def _frame(get, has, scale, conventions) -> AmberFrame:
    """An AmberFrame from variable accessors (shared by NetCDF 3 and 4)."""
    import numpy as np

    if not has("coordinates"):
        raise ValueError(f"it has no 'coordinates' variable (Conventions "
                         f"{_text(conventions) or 'missing'}); is it an Amber file?")
    coords = np.asarray(get("coordinates"), dtype=np.float64)
    n_frames = 1
    if coords.ndim == 3:  # a trajectory: frame, atom, spatial
        n_frames = coords.shape[0]
        if n_frames == 0:
            raise ValueError("it holds no frame")
    pick = (lambda a: a[-1]) if coords.ndim == 3 else (lambda a: a)
    positions = pick(coords) * scale("coordinates")
    velocities = None
    if has("velocities"):
        velocities = np.asarray(pick(np.asarray(get("velocities"))),
                                dtype=np.float64) * scale("velocities")
    box = None
    if has("cell_lengths") and has("cell_angles"):
        lengths = np.asarray(get("cell_lengths"), dtype=np.float64)
        angles = np.asarray(get("cell_angles"), dtype=np.float64)
        if lengths.ndim == 2:
            lengths, angles = lengths[-1], angles[-1]
        box = np.concatenate([lengths * scale("cell_lengths"),
                              angles * scale("cell_angles")])
    time = None
    if has("time"):
        t = np.asarray(get("time"), dtype=np.float64).ravel()
        if t.size:
            time = float(t[-1] * scale("time"))
    return AmberFrame(positions=positions, velocities=velocities, box=box, time=time,
                      n_frames=n_frames)


def _read_netcdf3(path) -> AmberFrame:
    from scipy.io import netcdf_file

    with netcdf_file(str(path), "r", mmap=False, maskandscale=False) as f:
        variables = f.variables

        def scale(name):
            return float(getattr(variables[name], "scale_factor", 1.0))

        return _frame(lambda name: variables[name][...], variables.__contains__,
                      scale, getattr(f, "Conventions", b""))


def _read_hdf5(path) -> AmberFrame:
    try:
        import h5py
    except ImportError:
        raise ValueError("it is NetCDF 4 (HDF5), which needs h5py: pip install "
                         "h5py, or write it as NetCDF 3 (cpptraj: trajout with "
                         "ncrestart or netcdf)") from None
    with h5py.File(str(path), "r") as f:
        def scale(name):
            return float(f[name].attrs.get("scale_factor", 1.0))

        def has(name):
            return name in f and isinstance(f[name], h5py.Dataset)

        return _frame(lambda name: f[name][()], has, scale,
                      f.attrs.get("Conventions", b""))


def ascii_box(path) -> "np.ndarray | None":
    """The box of an ASCII Amber restart (a, b, c, alpha, beta, gamma), or None
    when it has no box line.

    The layout tells: a title, the atom count (and time), ceil(n/2) lines of
    positions, optionally as many of velocities, optionally one box line.
    """
    import numpy as np

    with open(path) as f:
        f.readline()
        try:
            n = int(f.readline().split()[0])
        except (IndexError, ValueError):
            return None
        rest = [line for line in f if line.strip()]
    per_block = math.ceil(n / 2)
    extra = len(rest) - per_block
    if extra not in (1, per_block + 1):
        return None
    line = rest[-1].rstrip("\n")
    try:
        values = [float(line[i:i + 12]) for i in range(0, 72, 12)]
    except ValueError:
        return None
    if n <= 2 and extra == 1 and not all(v >= 60.0 for v in values[3:]):
        return None  # one or two atoms: velocities (a box line ends in angles)
    return np.array(values, dtype=np.float64)


def ascii_time(path) -> float | None:
    """The time (ps) on the atom-count line of an ASCII Amber restart, if any."""
    with open(path) as f:
        f.readline()
        words = f.readline().split()
    try:
        return float(words[1]) if len(words) > 1 else None
    except ValueError:
        return None


_registered = False


def register() -> str:
    """Make MDAnalysis read Amber NetCDF restarts and NetCDF 4 files (format
    :data:`FORMAT`, the last frame); returns the format name. Imports MDAnalysis."""
    global _registered
    if _registered:
        return FORMAT
    from MDAnalysis.coordinates import base

    class AmberNetCDFRestartReader(base.SingleFrameReaderBase):
        """One frame of an Amber NetCDF file: a restart, or the last frame of a
        NetCDF 4 trajectory (positions, box, time)."""

        format = FORMAT
        units = {"time": "ps", "length": "Angstrom"}

        def _read_first_frame(self):
            try:
                frame = read_netcdf(self.filename)
            except (OSError, KeyError, TypeError, ValueError) as e:
                raise ValueError(f"not an Amber NetCDF restart ({e})") from None
            self.n_atoms = len(frame.positions)
            self.ts = self._Timestep.from_coordinates(frame.positions,
                                                      **self._ts_kwargs)
            if frame.box is not None:
                self.ts.dimensions = frame.box
            self.ts.frame = 0
            if frame.time is not None:
                self.ts.time = frame.time

    _registered = True
    return FORMAT
