"""Parsed topologies on disk: the topology read once per simulation.

MDAnalysis parses a topology in Python, which takes seconds for a million atoms
(a 1M-atom LAMMPS data file with bonds: 5.0 s here; 2.0 s without bonds). Every
segment of the executable path is a new process and used to pay that before its
engine could take its first step. This module keeps what the parser returns,
MDAnalysis' ``Topology``, pickled in a cache folder, so that a simulation parses
its topology once and every later segment (on any node that shares the folder)
loads it instead (0.34 s and 0.06 s for those two files; benchmarks/bench_large.py).

Where: ``$STREAMRUN_CACHE_DIR``, else ``$XDG_CACHE_HOME/streamrun``, else
``~/.cache/streamrun``; ``STREAMRUN_CACHE_DIR=off`` turns the cache off. Entries
are ``topologies/<key>.pickle``, where the key is the SHA-256 of the file's bytes
with the parser, its options, the MDAnalysis, numpy and Python versions and
:data:`FORMAT_VERSION`: a changed file, another parser or another MDAnalysis is
another entry. ``topologies/index/`` maps a file (real path, size, inode, mtime and
ctime) to its content hash, so an unchanged file is not read to hash it again.

Bounded: after an entry is written, the least recently used ones are removed
beyond ``STREAMRUN_CACHE_MAX_MB`` (default :data:`DEFAULT_MAX_MB`).

Safe to share between WESTPA workers and nodes: an entry is written to a
temporary file and renamed into place (readers see a whole entry or none); one
that is damaged, truncated, of another version, or not owned by this user (a
pickle can run code when loaded) is not used: the topology is parsed again and
the entry replaced. A folder that cannot be written leaves the cache off for
that segment, never fails it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
import sys
import tempfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

#: Environment variable naming the cache folder (``off``: no cache).
DIR_VAR = "STREAMRUN_CACHE_DIR"
#: Environment variable bounding the cache's size, in MiB.
MAX_VAR = "STREAMRUN_CACHE_MAX_MB"
#: Default bound of the cache, MiB (a 1M-atom topology with bonds takes 65).
DEFAULT_MAX_MB = 2048
#: Bumped whenever what an entry holds changes: older entries are then not read.
FORMAT_VERSION = 1
#: First bytes of an entry.
MAGIC = b"streamrun topology cache\n"
#: A file changed less than this many seconds ago is hashed at every use (its
#: mtime could still change within the file system's time resolution).
SETTLE_SECONDS = 2.0
#: Temporary files older than this (a writer that died) are removed.
STALE_SECONDS = 3600.0
#: Index records kept (one per topology file path).
MAX_INDEX = 1000
#: Entries are pickled with this protocol (5: numpy arrays without extra copies).
PROTOCOL = 5


@dataclass(frozen=True)
class Outcome:
    """What the cache did for one topology.

    Attributes
    ----------
    state : str
        ``used`` (read from the cache), ``written`` (parsed and stored) or
        ``off`` (parsed, not stored: :attr:`reason` says why).
    entry : pathlib.Path or None
    reason : str
    """

    state: str
    entry: Path | None = None
    reason: str = ""

    def __str__(self) -> str:
        if self.state == "off":
            return f"off: {self.reason}"
        note = f"; {self.reason}" if self.reason else ""
        return f"{self.state} ({self.entry}{note})"


def cache_dir(environ=None) -> tuple[Path | None, str]:
    """The cache folder, or None and why there is none."""
    env = os.environ if environ is None else environ
    named = (env.get(DIR_VAR) or "").strip()
    if named.lower() == "off":
        return None, f"{DIR_VAR}=off"
    if named:
        return Path(named).expanduser(), ""
    xdg = (env.get("XDG_CACHE_HOME") or "").strip()
    if xdg:
        return Path(xdg) / "streamrun", ""
    home = env.get("HOME") or os.path.expanduser("~")
    if not home or home == "~":
        return None, f"no home folder to keep it in; set {DIR_VAR}"
    return Path(home) / ".cache" / "streamrun", ""


def max_bytes(environ=None) -> int:
    """The cache's bound in bytes (``STREAMRUN_CACHE_MAX_MB``; a bad value: the
    default)."""
    env = os.environ if environ is None else environ
    try:
        value = float(env.get(MAX_VAR) or DEFAULT_MAX_MB)
    except ValueError:
        value = DEFAULT_MAX_MB
    return int(max(value, 0.0) * 2**20)


def fetch(path, parser, options, parse, environ=None):
    """The topology of ``path``: from the cache when it holds it, else ``parse()``d
    and stored.

    Parameters
    ----------
    path : pathlib.Path
    parser : str
        What parses it (the parser class's name): part of the key.
    options : dict
        The parser's keyword arguments: part of the key.
    parse : callable
        Returns the MDAnalysis ``Topology`` of ``path``; its exceptions are not
        caught.
    environ : mapping, optional
        Where :data:`DIR_VAR` and :data:`MAX_VAR` are read (default
        ``os.environ``).

    Returns
    -------
    topology : MDAnalysis.core.topology.Topology
        The caller's own.
    blob : bytes or None
        ``topology`` pickled (None if it cannot be): unpickle it for another copy.
    outcome : Outcome
    """
    folder, why = cache_dir(environ)
    if folder is None:
        return _parsed(parse, Outcome("off", reason=why))
    try:
        before = os.stat(path)
        key = _key(_content_hash(path, before, folder), parser, options)
    except OSError as e:  # the file itself: parsing reports it
        return _parsed(parse, Outcome("off", reason=f"cannot read '{path}': "
                                                  f"{e.strerror}"))
    entry = folder / "topologies" / f"{key}.pickle"
    blob, problem = _read_entry(entry, key)
    if blob is not None:
        try:
            topology = pickle.loads(blob)
        except Exception as e:  # noqa: BLE001 - any damage means: parse again
            problem = f"the entry there could not be loaded ({type(e).__name__})"
        else:
            with contextlib.suppress(OSError):
                os.utime(entry)  # recently used: kept when the cache is trimmed
            return topology, blob, Outcome("used", entry)
    topology, blob, outcome = _parsed(parse, None)
    if outcome is not None:
        return topology, blob, outcome
    after = os.stat(path)
    if _identity(after) != _identity(before):
        return topology, blob, Outcome("off", reason=f"'{path}' changed while it was "
                                                     f"read; not stored")
    limit = max_bytes(environ)
    if len(blob) > limit:
        return topology, blob, Outcome(
            "off", reason=f"the parsed topology ({len(blob) / 2**20:.0f} MiB) is "
                          f"larger than {MAX_VAR}={limit / 2**20:.0f}")
    try:
        _write_entry(entry, key, blob, path, getattr(topology, "n_atoms", None))
    except OSError as e:
        return topology, blob, Outcome(
            "off", reason=f"cannot write in {folder} ({e.strerror}); set {DIR_VAR} "
                          f"to a writable folder")
    _trim(entry.parent, limit, keep=entry)
    note = f"replaced: {problem}" if problem else ""
    return topology, blob, Outcome("written", entry, note)


def _parsed(parse, outcome):
    """``parse()`` and its pickle; the outcome says when it cannot be pickled."""
    topology = parse()
    try:
        blob = pickle.dumps(topology, protocol=PROTOCOL)
    except Exception as e:  # noqa: BLE001 - a parser's attribute pickle refuses
        return topology, None, Outcome(
            "off", reason=f"MDAnalysis' topology cannot be pickled "
                          f"({type(e).__name__}: {e})")
    return topology, blob, outcome


def _identity(st) -> tuple:
    return st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def _key(digest, parser, options) -> str:
    """The entry's name: everything that decides what the parser returns."""
    import MDAnalysis
    import numpy

    parts = [f"format {FORMAT_VERSION}", digest, parser,
             repr(sorted((str(k), repr(v)) for k, v in options.items())),
             f"MDAnalysis {MDAnalysis.__version__}", f"numpy {numpy.__version__}",
             f"Python {sys.version_info[0]}.{sys.version_info[1]}",
             f"pickle {PROTOCOL}"]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:40]


def _content_hash(path, st, folder) -> str:
    """SHA-256 of the file's bytes; taken from the index when the file is the one
    recorded there (same real path, inode, size, mtime and ctime)."""
    real = os.path.realpath(path)
    record = folder / "topologies" / "index" / (
        hashlib.sha256(real.encode(errors="surrogateescape")).hexdigest()[:40]
        + ".json")
    identity = [real, *_identity(st)]
    known = _read_owned(record, limit=4096)
    if known is not None:
        with contextlib.suppress(ValueError, TypeError, KeyError):
            data = json.loads(known)
            if data["file"] == identity:
                return data["sha256"]
    digest = _file_sha256(path)
    settled = time.time() - SETTLE_SECONDS
    if max(st.st_mtime, st.st_ctime) < settled:
        with contextlib.suppress(OSError):
            _atomic_write(record, json.dumps({"file": identity,
                                              "sha256": digest}).encode())
    return digest


def _file_sha256(path) -> str:
    """SHA-256 of a file's bytes (0.07 s for a 57 MB data file here)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(2**20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _read_owned(path, limit=None) -> bytes | None:
    """The bytes of ``path`` if it exists, is this user's and is writable by no one
    else; else None."""
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            if not _trusted(st):
                return None
            return f.read() if limit is None else f.read(limit)
    except OSError:
        return None


def _trusted(st) -> bool:
    uid = getattr(os, "getuid", lambda: None)()
    return (uid is None or st.st_uid == uid) and not st.st_mode & 0o022


def _read_entry(entry, key) -> tuple[bytes | None, str]:
    """The pickle an entry holds, or None and what was wrong with it ("" when
    there is none)."""
    try:
        with open(entry, "rb") as f:
            st = os.fstat(f.fileno())
            if not _trusted(st):
                return None, ("the entry there belongs to another user or is "
                              "writable by others")
            data = f.read()
    except FileNotFoundError:
        return None, ""
    except OSError as e:
        return None, f"the entry there could not be read ({e.strerror})"
    if not data.startswith(MAGIC):
        return None, "the entry there is not a streamrun topology"
    end = data.find(b"\n", len(MAGIC))
    try:
        head = json.loads(data[len(MAGIC):end])
        payload = memoryview(data)[end + 1:]
        if head["version"] != FORMAT_VERSION or head["key"] != key:
            return None, "the entry there is of another version"
        if head["bytes"] != len(payload) or head["crc32"] != zlib.crc32(payload):
            return None, "the entry there is damaged (truncated or changed)"
    except (ValueError, TypeError, KeyError):
        return None, "the entry there is damaged (its header)"
    return payload, ""


def _write_entry(entry, key, blob, source, n_atoms):
    head = {"version": FORMAT_VERSION, "key": key, "bytes": len(blob),
            "crc32": zlib.crc32(blob), "source": os.path.realpath(source),
            "atoms": n_atoms}
    _atomic_write(entry, [MAGIC, json.dumps(head).encode(), b"\n", blob])


def _atomic_write(path, chunks):
    """Write ``chunks`` (bytes, or a list of them) to ``path`` through a temporary
    file in its folder and a rename: readers see the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in [chunks] if isinstance(chunks, bytes) else chunks:
                f.write(chunk)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _trim(folder, limit, keep):
    """Remove the least recently used entries beyond ``limit`` bytes (never
    ``keep``), temporary files of writers that died, and the oldest index
    records beyond :data:`MAX_INDEX`."""
    now = time.time()
    entries = []
    with contextlib.suppress(OSError):
        for item in os.scandir(folder):
            with contextlib.suppress(OSError):
                st = item.stat(follow_symlinks=False)
                if item.name.startswith(".tmp-"):
                    if now - st.st_mtime > STALE_SECONDS:
                        os.unlink(item.path)
                elif item.name.endswith(".pickle"):
                    entries.append((st.st_mtime, st.st_size, item.path))
    total = 0
    for _, size, name in sorted(entries, reverse=True):  # most recent first
        total += size
        if total > limit and name != str(keep):
            with contextlib.suppress(OSError):
                os.unlink(name)
    records = []
    with contextlib.suppress(OSError):
        for item in os.scandir(folder / "index"):
            with contextlib.suppress(OSError):
                records.append((item.stat(follow_symlinks=False).st_mtime, item.path))
    for _, name in sorted(records, reverse=True)[MAX_INDEX:]:
        with contextlib.suppress(OSError):
            os.unlink(name)
