"""A simulation reads its topology once.

The first segment parses the topology with MDAnalysis and leaves the result in the
topology cache (streamrun.topocache); every later segment, a new process each,
takes it from there and computes the same rows, which are MDAnalysis' own on the
engine's trajectory. A changed file, a damaged or foreign cache entry and a cache
folder that cannot be written never give a wrong topology or a failed segment, and
``streamrun check`` says what the cache did. LAMMPS data files read as start
structures (streamrun.lammpsdata) give MDAnalysis' positions and box, bit for bit.
"""

import gzip
import os
import subprocess
import sys
import zlib
from pathlib import Path

import MDAnalysis as mda
import numpy as np
import pytest
from MDAnalysis.lib.distances import calc_bonds

from conftest import EXAMPLES, ROOT
from streamrun import lammpsdata, topocache
from streamrun.pcoords import calculator
from tiny_lj import make_tiny_sim

ATOMIC = {"atom_style": "id type x y z"}


def tiny_simulation(folder, lmp):
    """The 256-atom argon box (tests/tiny_lj.py) as a simulation: each segment
    starts from the data file ``engine.variables.start`` (also pcoord row 0) and
    writes ``end.data`` for the next one."""
    config = make_tiny_sim(folder, lmp, nsteps=100, every=10,
                           after_run="write_data end.data nocoeff")
    segment_input = folder / "lj.in"
    segment_input.write_text(segment_input.read_text().replace(
        f"read_data {folder / 'lj.data'}", "read_data ${start}"))
    return config


def streamrun(*args, cache, cwd=None):
    """``python -m streamrun ARGS`` with the topology cache in ``cache``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEST_")}
    env.update(PYTHONPATH=str(ROOT), STREAMRUN_CACHE_DIR=str(cache))
    return subprocess.run([sys.executable, "-m", "streamrun", *map(str, args)],
                          env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=180)


def segment(config, workdir, start, cache):
    """One segment from the structure ``start``, with the engine's own dump of the
    streamed steps (check.lammpstrj); returns its pcoord rows."""
    proc = streamrun("run", "-c", config, "-w", workdir, "--set", f"start={start}",
                     "--set", f"engine.variables.start={start}", "--set",
                     "engine.variables.dumpfile=check.lammpstrj", cache=cache)
    assert proc.returncode == 0, proc.stderr
    return np.loadtxt(workdir / "pcoord.dat")


def entries(cache):
    return sorted((Path(cache) / "topologies").glob("*.pickle"))


def test_the_second_segment_takes_the_topology_from_the_cache_and_computes_the_same_rows(
        lmp, tmp_path, no_engine_left):
    config = tiny_simulation(tmp_path / "sim", lmp)
    cache = tmp_path / "cache"
    segment(config, tmp_path / "seg1", tmp_path / "sim" / "lj.data", cache)
    [entry] = entries(cache)  # the first segment parsed the topology and kept it
    os.utime(entry, (1e9, 1e9))
    written = entry.stat().st_ino

    parent = tmp_path / "seg1" / "end.data"
    rows = segment(config, tmp_path / "seg2", parent, cache)
    # read (its use time renewed), not parsed and written again
    assert entry.stat().st_ino == written and entry.stat().st_mtime > 1e9 + 1
    assert entries(cache) == [entry]
    assert np.array_equal(rows, segment(config, tmp_path / "uncached", parent, "off"))

    # the pcoord is MDAnalysis' distance on the engine's own dump of the same steps
    u = mda.Universe(str(parent), str(tmp_path / "seg2" / "check.lammpstrj"),
                     topology_format="DATA", format="LAMMPSDUMP", **ATOMIC)
    expected = [calc_bonds(u.atoms[0].position, u.atoms[1].position, box=u.dimensions)
                for _ in u.trajectory]
    assert rows.shape == (11,) and u.trajectory.n_frames == 11
    assert np.abs(rows - expected).max() <= 1e-3
    assert np.ptp(rows) > 0.01  # the frames are different steps


def test_a_cache_folder_that_cannot_be_written_leaves_the_cache_off_and_the_segment_runs(
        lmp, tmp_path, no_engine_left):
    config = tiny_simulation(tmp_path / "sim", lmp)
    (tmp_path / "a-file").write_text("not a folder")
    cache = tmp_path / "a-file" / "cache"
    rows = segment(config, tmp_path / "seg", tmp_path / "sim" / "lj.data", cache)
    assert rows.shape == (11,)
    assert np.array_equal(rows, segment(config, tmp_path / "uncached",
                                        tmp_path / "sim" / "lj.data", "off"))


def test_check_says_whether_the_topology_cache_was_used(tmp_path):
    config = EXAMPLES / "nacl_lammps" / "streamrun.yaml"
    (tmp_path / "a-file").write_text("not a folder")

    def line(cache):
        proc = streamrun("check", config, cache=cache, cwd=tmp_path)
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stdout
        [said] = [s for s in proc.stdout.splitlines() if "topology cache:" in s]
        return said.strip()

    cache = tmp_path / "cache"
    entry = cache / "topologies"
    assert line(cache).startswith(f"topology cache: written ({entry}/")
    assert line(cache).startswith(f"topology cache: used ({entry}/")
    assert line("off") == "topology cache: off: STREAMRUN_CACHE_DIR=off"
    assert line(tmp_path / "a-file" / "cache").startswith(
        f"topology cache: off: cannot write in {tmp_path / 'a-file' / 'cache'} "
        f"(Not a directory); set STREAMRUN_CACHE_DIR to a writable folder")


# -- the cache itself, in one process (each load as a new segment's) ------------

PDB = """\
ATOM      1  NA  NA  A   1       1.000   2.000   3.000  1.00  0.00          NA
ATOM      2  CL  CL  A   2       4.000   5.000   6.000  1.00  0.00          CL
ATOM      3  OW  SOL A   3       7.000   8.000   9.000  1.00  0.00           O
END
"""


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A cache folder of its own; each load is a new process's (nothing held)."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("STREAMRUN_CACHE_DIR", str(folder))
    monkeypatch.setattr(calculator, "_TOPOLOGIES", {})
    return folder


def load(path):
    """Load as a new segment would: nothing held in this process."""
    calculator._TOPOLOGIES.clear()
    return calculator.load_topology(Path(path))


def test_an_unchanged_file_is_not_hashed_again_and_a_changed_one_is_parsed_again(
        cache, tmp_path, monkeypatch):
    """Even when an edit keeps the file's size and mtime (``cp -p``, ``touch -r``):
    its ctime changed."""
    monkeypatch.setattr(topocache, "SETTLE_SECONDS", -60.0)  # index it at once
    hashed = []
    digest = topocache._file_sha256
    monkeypatch.setattr(topocache, "_file_sha256",
                        lambda path: hashed.append(path) or digest(path))
    path = tmp_path / "top.pdb"
    path.write_text(PDB)

    topology, outcome = load(path)
    assert outcome.state == "written" and len(hashed) == 1
    topology, outcome = load(path)
    assert outcome.state == "used" and len(hashed) == 1  # the index knew it
    assert list(topology.names.values) == ["NA", "CL", "OW"]

    before = path.stat()
    with open(path, "r+b") as f:  # same inode, same size
        f.write(PDB.replace(" CL  CL ", " CX  CL ").encode())
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_mtime_ns == before.st_mtime_ns
    topology, outcome = load(path)
    assert outcome.state == "written" and len(hashed) == 2
    assert list(topology.names.values) == ["NA", "CX", "OW"]
    assert len(entries(cache)) == 2


def damage(entry, how):
    data = entry.read_bytes()
    if how == "truncated":
        entry.write_bytes(data[:len(data) // 2])
    elif how == "payload changed":
        entry.write_bytes(data[:-10] + b"0123456789")
    elif how == "not a pickle":
        # a header that checks out, over bytes that do not unpickle
        head, _, payload = data[len(topocache.MAGIC):].partition(b"\n")
        junk = b"\x80\x05junk" * (len(payload) // 7)
        head = head.replace(str(len(payload)).encode(), str(len(junk)).encode())
        head = head.replace(str(zlib.crc32(payload)).encode(),
                            str(zlib.crc32(junk)).encode())
        entry.write_bytes(topocache.MAGIC + head + b"\n" + junk)
    elif how == "writable by others":
        entry.chmod(0o666)
    else:
        entry.write_bytes(b"anything")


@pytest.mark.parametrize("how", ["truncated", "payload changed", "not a pickle",
                                 "writable by others", "not an entry"])
def test_a_damaged_or_foreign_cache_entry_is_parsed_again_and_replaced(
        cache, tmp_path, how):
    path = tmp_path / "top.pdb"
    path.write_text(PDB)
    load(path)
    [entry] = entries(cache)
    damage(entry, how)

    topology, outcome = load(path)
    assert outcome.state == "written" and "replaced" in outcome.reason, outcome
    assert list(topology.names.values) == ["NA", "CL", "OW"]
    assert entries(cache) == [entry] and entry.stat().st_mode & 0o077 == 0
    assert load(path)[1].state == "used"


def test_the_cache_keeps_the_most_recently_used_entries_within_its_bound(
        cache, tmp_path, monkeypatch):
    paths = []
    for name in "abc":
        paths.append(tmp_path / f"{name}.pdb")
        paths[-1].write_text(PDB.replace("SOL", name.upper() * 3))
    load(paths[0])
    [a] = entries(cache)
    monkeypatch.setenv(topocache.MAX_VAR, str(2.5 * a.stat().st_size / 2**20))
    os.utime(a, (1e9, 1e9))
    load(paths[1])
    assert len(entries(cache)) == 2
    [b] = [e for e in entries(cache) if e != a]
    os.utime(b, (1e9 + 10, 1e9 + 10))
    assert load(paths[0])[1].state == "used"  # a is now the more recent
    load(paths[2])
    assert a in entries(cache) and b not in entries(cache)
    assert len(entries(cache)) == 2


def test_cache_off_or_in_an_unwritable_folder_still_gives_the_topology(
        tmp_path, monkeypatch):
    path = tmp_path / "top.pdb"
    path.write_text(PDB)
    monkeypatch.setattr(calculator, "_TOPOLOGIES", {})
    (tmp_path / "a-file").write_text("")
    for folder, said in [("off", "off: STREAMRUN_CACHE_DIR=off"),
                         (tmp_path / "a-file" / "c", "off: cannot write in")]:
        monkeypatch.setenv("STREAMRUN_CACHE_DIR", str(folder))
        topology, outcome = load(path)
        assert str(outcome).startswith(said)
        assert list(topology.names.values) == ["NA", "CL", "OW"]


# -- LAMMPS data files as structures -----------------------------------------------

TRICLINIC = """\
LAMMPS data file # hand-written: comments, blank lines, rows out of order

5 atoms
2 atom types
2 bonds
1 bond types

0.0 10.0 xlo xhi
-1.0 9.5 ylo yhi
0.5 12.25 zlo zhi
1.5 -0.5 0.25 xy xz yz

Masses

1 12.011 # C
2 1.008

Bonds

1 1 1 2
2 1 1 3

Atoms # full
# a comment line

3 1 2 0.4 1.2345678901234567 2.5 3.75 0 0 1
1 1 1 -0.8 0.1 0.2 0.3 # no image flags on this row
2 1 2 0.4 -0.000012345 9.87654321e-3 5.5 -1 0 0

5 2 1 0.0 7.000000000000001 8.1 9.2 0 0 0
4 2 2 0.0 6.5 6.6 6.7 0 1 0

Velocities

1 0.1 0.2 0.3
2 0.1 0.2 0.3
3 0.1 0.2 0.3
4 0.1 0.2 0.3
5 0.1 0.2 0.3
"""


def data_files(tmp_path):
    """(path, topology options) of LAMMPS data files of several layouts."""
    crlf = tmp_path / "crlf.data"
    crlf.write_bytes(TRICLINIC.replace("\n", "\r\n").encode())
    triclinic = tmp_path / "triclinic.data"
    triclinic.write_text(TRICLINIC)
    atomic = tmp_path / "atomic.data"
    atomic.write_text("argon\n\n3 atoms\n1 atom types\n\n0 5 xlo xhi\n0 5 ylo yhi\n"
                      "0 5 zlo zhi\n\nMasses\n\n1 39.948\n\nAtoms # atomic\n\n"
                      "2 1 1.5 2.5 3.5\n1 1 0.5 0.25 0.125\n3 1 4.75 4.5 0.0\n")
    packed = tmp_path / "packed.data.gz"
    with gzip.open(packed, "wt") as f:
        f.write(TRICLINIC)
    return [(EXAMPLES / "nacl_lammps" / "start.data", {}), (triclinic, {}),
            (crlf, {}), (atomic, ATOMIC), (packed, {})]


def test_lammps_data_structures_give_mdanalysis_positions_and_box_bit_for_bit(tmp_path):
    fast = lammpsdata.register()
    for path, options in data_files(tmp_path):
        if path.suffix != ".gz":  # compressed: MDAnalysis' own reader reads it
            n = len(mda.Universe(str(path), topology_format="DATA", **options).atoms)
            lammpsdata.read_positions(path, n, options.get("atom_style"))
        theirs = mda.Universe(str(path), format="DATA", topology_format="DATA",
                              **options)
        ours = mda.Universe(str(path), format=fast, topology_format="DATA", **options)
        assert ours.atoms.positions.dtype == np.float32, path
        assert np.array_equal(ours.atoms.positions, theirs.atoms.positions), path
        assert np.array_equal(ours.dimensions, theirs.dimensions), path


def test_a_data_file_this_reader_does_not_expect_is_mdanalysis_to_read(tmp_path):
    """Its positions come from MDAnalysis' reader, which also words what is wrong."""
    short = tmp_path / "short.data"
    short.write_text(TRICLINIC.replace("4 2 2 0.0 6.5 6.6 6.7 0 1 0\n", ""))
    with pytest.raises(lammpsdata.Unusual):
        lammpsdata.read_positions(short, 5)
    words = tmp_path / "words.data"
    words.write_text(TRICLINIC.replace("6.5 6.6", "six 6.6"))
    (tmp_path / "triclinic.data").write_text(TRICLINIC)
    for path in (short, words):
        seen = [_read(tmp_path / "triclinic.data", path, fmt)
                for fmt in ("DATA", lammpsdata.register())]
        assert seen[0] == seen[1], path


def _read(topology, structure, fmt):
    """What MDAnalysis gives for ``structure`` read in ``fmt``: its positions, or
    the error it raises."""
    try:
        u = mda.Universe(str(topology), str(structure), topology_format="DATA",
                         format=fmt)
        return u.trajectory.ts.positions.tolist()
    except Exception as e:  # noqa: BLE001 - the error is what is compared
        return type(e), str(e)
