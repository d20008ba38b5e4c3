"""Amber inputs, as a user converting WESTPA's p53 tutorial meets them (issue 20).

The tutorial keeps an Amber prmtop, a basis state as an Amber restart (``.rst``:
ASCII, or NetCDF as pmemd writes it by default) and an rmsd reference; its OpenMM
segments read them with ``AmberPrmtopFile``/``AmberInpcrdFile``. The user's story:

- a config names ``topology: x.prmtop``, ``start: x.rst7`` and references ``.rst`` /
  ``.ncrst`` and nothing else: no ``*_format`` key; every value equals MDAnalysis
  (or OpenMM, for the NetCDF restart MDAnalysis cannot read) reading the same file
  with the format named;
- a NetCDF trajectory given as a structure is its last frame; a periodic restart's
  box reaches row 0; a format key given still wins;
- a structure that cannot be read says which key fixes it;
- OpenMM segments run through streamrun as WESTPA runs them: the first from the
  ``.rst`` basis state, the next from the parent's ``seg.xml``, both through one
  ``streamrun.openmm.load_start`` call; every row is what MDAnalysis computes on the
  script's DCD, and a segment's row 0 is its parent's last row.

The system (tests/amber_system.py) is built from what the installed packages ship.
"""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import yaml

from amber_system import build, write_ascii_restart, write_netcdf_restart
from conftest import absent

pytestmark = pytest.mark.engine("openmm")
STREAMRUN = [sys.executable, "-m", "streamrun"]
#: the coordinates of the tests: backbone RMSD to each reference, end-to-end distance
ENDS = {"type": "distance", "name": "ends", "a": "resid 1 and name N",
        "b": "resid 4 and name C"}


@pytest.fixture(scope="module")
def peptide(tmp_path_factory):
    try:
        import openmm  # noqa: F401
    except ImportError:
        absent("openmm", f"openmm not installed for {sys.executable}")
    return build(tmp_path_factory.mktemp("amber") / "system")


def rmsd(name, reference, **extra):
    return {"type": "rmsd", "name": name, "select": "backbone",
            "reference": str(reference), **extra}


def write_config(path, peptide, pcoord, **top):
    cfg = {"engine": {"name": "openmm", "input": str(peptide.script), "nsteps": 100,
                      "frame_interval": 10, "periodic": "none"},
           "topology": str(peptide.prmtop), "start": str(peptide.bstate),
           "pcoord": pcoord, **top}
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def streamrun(*args, env=None, cwd=None):
    return subprocess.run([*STREAMRUN, *args], capture_output=True, text=True,
                          timeout=120, env=env, cwd=cwd)


def pcoord_of(config, structure, tmp_path, *sets):
    """``streamrun pcoord`` (w_init's get_pcoord) of one structure: its row."""
    out = tmp_path / "point.dat"
    args = [a for s in sets for a in ("--set", s)]
    proc = streamrun("pcoord", "-q", "-c", str(config), "-o", str(out),
                     "--set", f"get_pcoord.structure={structure}", *args)
    assert proc.returncode == 0, proc.stderr
    return np.atleast_1d(np.loadtxt(out))


def one_error_line(proc):
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    return lines[0]


# --- what the tests compare with: MDAnalysis and OpenMM reading the files named ------

def mda_positions(peptide, path, fmt):
    """Å, as MDAnalysis reads ``path`` with the topology and the format named."""
    import MDAnalysis as mda

    return mda.Universe(str(peptide.prmtop), str(path), format=fmt).atoms.positions


def openmm_positions(path):
    """Å, as OpenMM's AmberInpcrdFile reads an Amber restart (NetCDF ones too, which
    MDAnalysis 2.11 cannot read)."""
    from openmm import app

    return np.asarray(app.AmberInpcrdFile(str(path)).getPositions(
        asNumpy=True)._value) * 10.0


def expected_rows(peptide, trajectory, fmt, references):
    """Each frame of ``trajectory``: backbone RMSD (MDAnalysis, superposed) to each
    reference's positions, then the N-C end-to-end distance."""
    import MDAnalysis as mda
    from MDAnalysis.analysis import rms

    u = mda.Universe(str(peptide.prmtop), str(trajectory), format=fmt)
    bb = u.select_atoms("backbone")
    n, c = u.select_atoms(ENDS["a"]), u.select_atoms(ENDS["b"])
    rows = []
    for _ in u.trajectory:
        x = bb.positions.astype(np.float64)
        rows.append([rms.rmsd(x, ref[bb.ix].astype(np.float64), center=True,
                              superposition=True) for ref in references]
                    + [np.linalg.norm(c.positions[0].astype(np.float64)
                                      - n.positions[0])])
    return np.array(rows)


# --- a config that names Amber files and nothing else --------------------------------

def test_a_p53_style_config_reads_prmtop_rst7_rst_and_ncrst_without_a_format_key(
        peptide, tmp_path):
    # pmemd writes a NetCDF restart under whatever name it is given: the same
    # reference as NetCDF bytes under .rst is read by its content
    nc_rst = tmp_path / "reference_netcdf.rst"
    shutil.copy(peptide.reference_ncrst, nc_rst)
    config = write_config(tmp_path / "streamrun.yaml", peptide, [
        rmsd("rmsd_rst", peptide.reference_rst),
        rmsd("rmsd_ncrst", peptide.reference_ncrst),
        rmsd("rmsd_nc_as_rst", nc_rst), ENDS])
    dry = streamrun("run", "-c", str(config), "-w", str(tmp_path / "seg"), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    columns = "rmsd_rst [Å], rmsd_ncrst [Å], rmsd_nc_as_rst [Å], ends [Å]"
    assert f"columns:     {columns}" in dry.stdout
    row = pcoord_of(config, peptide.bstate, tmp_path)

    reference_rst = mda_positions(peptide, peptide.reference_rst, "INPCRD")
    reference_nc = openmm_positions(peptide.reference_ncrst)
    np.testing.assert_allclose(reference_rst, reference_nc, atol=1e-6)  # same file
    expected = expected_rows(peptide, peptide.bstate, "INPCRD",
                             [reference_rst, reference_nc, reference_nc])[0]
    np.testing.assert_allclose(row, expected, atol=1e-5, rtol=0)
    assert row[0] > 0.1  # the minimised basis state is not the reference
    # the basis state as a NetCDF restart (double precision) gives the same row
    np.testing.assert_allclose(pcoord_of(config, peptide.bstate_ncrst, tmp_path), row,
                               atol=1e-5, rtol=0)


def test_a_netcdf_trajectory_given_as_a_structure_is_its_last_frame(peptide, tmp_path):
    import MDAnalysis as mda

    u = mda.Universe(str(peptide.prmtop), str(peptide.bstate), format="INPCRD")
    frames = [peptide.reference, peptide.reference + 1.5, peptide.positions]
    with mda.Writer(str(tmp_path / "traj.nc"), n_atoms=len(u.atoms)) as w:
        for positions in frames:
            u.atoms.positions = positions
            w.write(u)
    config = write_config(tmp_path / "streamrun.yaml", peptide,
                          [rmsd("rmsd_nc", tmp_path / "traj.nc"), ENDS])
    row = pcoord_of(config, tmp_path / "traj.nc", tmp_path)
    # structure and reference both the last frame (the basis state): RMSD 0
    assert row[0] == pytest.approx(0.0, abs=1e-4)
    expected = expected_rows(peptide, peptide.bstate, "INPCRD", [peptide.positions])
    assert row[1] == pytest.approx(expected[0, 1], abs=1e-5)


def test_a_netcdf4_restart_is_read_with_h5py(peptide, tmp_path):
    """NetCDF 4 is HDF5 inside (cpptraj can write it); neither MDAnalysis nor
    OpenMM reads it, streamrun does when h5py is there."""
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "bstate.rst"
    with h5py.File(path, "w") as f:
        f.attrs["Conventions"] = "AMBERRESTART"
        f.attrs["ConventionVersion"] = "1.0"
        f["coordinates"] = peptide.positions
        f["coordinates"].attrs["units"] = "angstrom"
        f["time"] = 1.0
    config = write_config(tmp_path / "streamrun.yaml", peptide, [ENDS])
    row = pcoord_of(config, path, tmp_path)
    expected = expected_rows(peptide, peptide.bstate, "INPCRD", [])[0]
    assert row[0] == pytest.approx(expected[0], abs=1e-5)


@pytest.mark.parametrize("kind", ["ascii", "netcdf"])
def test_a_periodic_restart_gives_row_0_its_box(peptide, tmp_path, kind):
    """Atoms wrapped one by one into a 30 Å box split the peptide; the molecule is
    made whole in the restart's box (MDAnalysis' INPCRD reader skips the box line:
    streamrun reads it), so row 0 is the unwrapped structure's."""
    box = np.array([30.0, 30.0, 30.0, 90.0, 90.0, 90.0])
    centred = peptide.positions - peptide.positions.mean(axis=0)
    wrapped = centred % 30.0  # around the box's corner: split in every dimension
    path = tmp_path / ("wrapped.rst7" if kind == "ascii" else "wrapped.ncrst")
    if kind == "ascii":
        write_ascii_restart(path, wrapped, peptide.velocities, box=box, time=2.0)
    else:
        write_netcdf_restart(path, wrapped, peptide.velocities, box=box, time=2.0)
    config = write_config(tmp_path / "streamrun.yaml", peptide,
                          [rmsd("rmsd_rst", peptide.reference_rst), ENDS],
                          engine={"name": "openmm", "input": str(peptide.script),
                                  "nsteps": 100, "frame_interval": 10,
                                  "periodic": "xyz"})
    row = pcoord_of(config, path, tmp_path)
    reference_rst = mda_positions(peptide, peptide.reference_rst, "INPCRD")
    expected = expected_rows(peptide, peptide.bstate, "INPCRD", [reference_rst])[0]
    np.testing.assert_allclose(row, expected, atol=1e-4, rtol=0)


def test_format_keys_given_still_win(peptide, tmp_path):
    config = write_config(tmp_path / "streamrun.yaml", peptide,
                          [rmsd("rmsd_rst", peptide.reference_rst,
                                reference_format="INPCRD"), ENDS])
    row = pcoord_of(config, peptide.bstate, tmp_path)
    # a copy without a suffix (WESTPA's istates/<iter>/<id> when copied) needs the
    # format, and takes it
    bare = tmp_path / "bstate"
    shutil.copy(peptide.bstate, bare)
    np.testing.assert_allclose(pcoord_of(config, bare, tmp_path,
                                         "get_pcoord.format=INPCRD"), row, atol=1e-6)
    # a format given is used even where the file's content would tell another
    proc = streamrun("pcoord", "-q", "-c", str(config), "-o", str(tmp_path / "x.dat"),
                     "--set", f"get_pcoord.structure={peptide.bstate}",
                     "--set", "get_pcoord.format=PDB")
    line = one_error_line(proc)
    assert "as PDB" in line and "key 'get_pcoord.structure'" in line


# --- errors that name the key that fixes them ----------------------------------------

def test_a_structure_that_cannot_be_read_names_the_key_that_fixes_it(peptide,
                                                                      tmp_path):
    broken = tmp_path / "broken.rst7"
    broken.write_text("not a restart\n")
    config = write_config(tmp_path / "streamrun.yaml", peptide,
                          [rmsd("rmsd", broken), ENDS])
    suffixes = ".rst7, .rst, .inpcrd, .restrt"

    # the start structure (a segment's dry run reads it)
    proc = streamrun("run", "-c", str(config), "-w", str(tmp_path / "seg"),
                     "--dry-run", "--set", f"start={broken}")
    line = one_error_line(proc)
    assert "key 'start'" in line and "set start_format to its" in line
    assert "as INPCRD" in line and suffixes in line and ".ncrst" in line
    assert "topology_format" not in line  # not the key that fixes it

    # a reference
    proc = streamrun("run", "-c", str(config), "-w", str(tmp_path / "seg"),
                     "--dry-run")
    line = one_error_line(proc)
    assert "key 'pcoord[0].reference'" in line
    assert "set pcoord[0].reference_format to its" in line and suffixes in line

    # w_init's get_pcoord
    proc = streamrun("pcoord", "-c", str(config), "-o", str(tmp_path / "x.dat"),
                     "--set", f"get_pcoord.structure={broken}")
    line = one_error_line(proc)
    assert "key 'get_pcoord.structure'" in line and "set get_pcoord.format" in line

    # a prmtop holds no coordinates: start must name a structure
    proc = streamrun("run", "-c", str(config), "-w", str(tmp_path / "seg"),
                     "--dry-run", "--set", "start=null")
    line = one_error_line(proc)
    assert "key 'start'" in line and "holds no coordinates" in line


# --- OpenMM segments, as WESTPA runs them --------------------------------------------

def west_cfg(sim, n_columns=3):
    section = {
        "engine": {"name": "openmm", "input": "peptide_prod.py", "nsteps": 100,
                   "frame_interval": 10, "periodic": "none",
                   "variables": {"seed": "{seed}", "dcd": "seg.dcd"}},
        # the basis state (an Amber restart) or the parent's seg.xml, one name
        "files": {"parent.rst": {"continues": "{parent}/seg.xml",
                                 "newtraj": "{parent}"}},
        "topology": "peptide.prmtop",
        "start": "{workdir}/parent.rst",
        "restart": ["seg.xml"],
        "pcoord": [rmsd("rmsd_rst", "reference.rst"),
                   rmsd("rmsd_ncrst", "reference.ncrst"), ENDS],
    }
    cfg = {"west": {
        "system": {"system_options": {"pcoord_ndim": n_columns, "pcoord_len": 11,
                                      "pcoord_dtype": "float32"}},
        "propagation": {"propagator": "executable", "gen_istates": False},
        "data": {"data_refs": {
            "segment": "$WEST_SIM_ROOT/traj_segs/{segment.n_iter:06d}/"
                       "{segment.seg_id:06d}",
            "basis_state": "$WEST_SIM_ROOT/bstates/{basis_state.auxref}"}},
        "executable": {"environ": {}, "propagator": {"executable": "streamrun"},
                       "get_pcoord": {"executable": "streamrun"}}},
        "streamrun": section}
    (sim / "west.cfg").write_text(yaml.safe_dump(cfg, sort_keys=False))


def westpa_env(sim, seg, parent, point, seg_id):
    returns = seg / "returns"
    returns.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEST_")}
    return dict(env, WEST_SIM_ROOT=str(sim), WEST_CURRENT_ITER="1",
                WEST_CURRENT_SEG_ID=str(seg_id), WEST_CURRENT_SEG_DATA_REF=str(seg),
                WEST_CURRENT_SEG_INITPOINT_TYPE=point, WEST_PARENT_DATA_REF=str(parent),
                WEST_RAND16=str(1000 + seg_id),
                WEST_PCOORD_RETURN=str(returns / "pcoord"),
                WEST_RESTART_RETURN=str(returns / "restart"),
                WEST_LOG_RETURN=str(returns / "seglog"))


@pytest.mark.parametrize("bstate_kind", ["ascii", "netcdf"])
def test_openmm_segments_start_from_an_amber_basis_state_then_from_the_parents_xml(
        peptide, tmp_path, no_engine_left, bstate_kind):
    sim = tmp_path / "sim"
    shutil.copytree(peptide.folder, sim)
    (sim / "bstates").mkdir()
    # the p53 tutorial's name; pmemd's default restart is NetCDF under it
    bstate = sim / "bstates" / "bstate.rst"
    shutil.copy(peptide.bstate if bstate_kind == "ascii" else peptide.bstate_ncrst,
                bstate)
    (sim / "bstates" / "bstates.txt").write_text("folded 1.0 bstate.rst\n")
    west_cfg(sim)
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEST_")}

    check = streamrun("check", str(sim / "west.cfg"), env=env, cwd=sim)
    assert check.returncode == 0, check.stdout + check.stderr

    # w_init's get_pcoord of the basis state
    point = dict(env, WEST_SIM_ROOT=str(sim), WEST_STRUCT_DATA_REF=str(bstate),
                 WEST_PCOORD_RETURN=str(tmp_path / "bstate_pcoord"))
    proc = streamrun(env=point, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    bstate_row = np.loadtxt(tmp_path / "bstate_pcoord")

    references = [mda_positions(peptide, peptide.reference_rst, "INPCRD"),
                  openmm_positions(peptide.reference_ncrst)]
    segments = [(sim / "traj_segs" / "000001" / "000000", bstate,
                 "SEG_INITPOINT_NEWTRAJ", 0)]
    segments.append((sim / "traj_segs" / "000002" / "000000", segments[0][0],
                     "SEG_INITPOINT_CONTINUES", 4))
    rows = []
    for seg, parent, kind, seg_id in segments:
        seg.mkdir(parents=True)
        proc = streamrun(env=westpa_env(sim, seg, parent, kind, seg_id), cwd=seg)
        assert proc.returncode == 0, proc.stderr
        rows.append(np.loadtxt(seg / "returns" / "pcoord"))
        assert rows[-1].shape == (11, 3)
        # every row, row 0 included, is MDAnalysis on the script's DCD (start frame
        # and every streamed step)
        np.testing.assert_allclose(rows[-1], expected_rows(
            peptide, seg / "seg.dcd", "DCD", references), atol=1e-3, rtol=0)
    log1, log2 = (s[0] / "streamrun-engine.log" for s in segments)
    started = "Amber restart (ASCII)" if bstate_kind == "ascii" else "Amber NetCDF"
    assert f"start: {started} parent.rst: positions, velocities, time" in \
        log1.read_text()
    assert "start: OpenMM state parent.rst" in log2.read_text()
    assert os.readlink(segments[1][0] / "parent.rst") == \
        str(segments[0][0] / "seg.xml")
    np.testing.assert_allclose(rows[0][0], bstate_row, atol=1e-6)  # w_init = row 0
    # the continuing segment's row 0 is its parent's last row (the state XML keeps
    # OpenMM's double precision; the stream sends float32)
    np.testing.assert_allclose(rows[1][0], rows[0][-1], atol=1e-4, rtol=0)
    assert np.abs(rows[1][1:] - rows[0][1:]).max() > 1e-3  # it moved on


# --- the script's side ---------------------------------------------------------------

LOAD_START = '''
import sys
import numpy as np
from openmm import app
import streamrun.openmm

prmtop = app.AmberPrmtopFile(sys.argv[1])
import openmm
sim = app.Simulation(prmtop.topology, prmtop.createSystem(),
                     openmm.VerletIntegrator(0.001),
                     openmm.Platform.getPlatformByName("Reference"))
for path in sys.argv[2:]:
    start = streamrun.openmm.load_start(sim, path)
    state = sim.context.getState(positions=True, velocities=True)
    crd = app.AmberInpcrdFile(path)
    same = [np.abs(state.getPositions(asNumpy=True)._value
                   - crd.getPositions(asNumpy=True)._value).max()]
    if crd.velocities is not None:
        same.append(np.abs(state.getVelocities(asNumpy=True)._value
                           - crd.getVelocities(asNumpy=True)._value).max())
    print(start, "|", max(same), "|", round(state.getTime()._value, 6), "|",
          start.velocities)
print("MDAnalysis imported:", "MDAnalysis" in sys.modules)
'''


def test_load_start_sets_what_openmms_own_reader_reads_without_mdanalysis(
        peptide, tmp_path):
    script = tmp_path / "load.py"
    script.write_text(LOAD_START)
    netcdf = tmp_path / "restart.ncrst"
    write_netcdf_restart(netcdf, peptide.positions, peptide.velocities, time=3.5)
    proc = subprocess.run([sys.executable, str(script), str(peptide.prmtop),
                           str(peptide.bstate), str(netcdf),
                           str(peptide.reference_rst)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    ascii_line, netcdf_line, bare_line, imported = proc.stdout.strip().splitlines()
    assert ascii_line.startswith("Amber restart (ASCII)")
    assert netcdf_line.startswith("Amber NetCDF")
    for line, time in ((ascii_line, 0.0), (netcdf_line, 3.5)):
        what, diff, t, velocities = line.split("|")
        assert what.endswith(": positions, velocities, time ")
        assert float(diff) < 1e-9 and float(t) == time and velocities.strip() == "True"
    # positions only (the reference has no velocities): the script draws them
    what, diff, _, velocities = bare_line.split("|")
    assert what.endswith("reference.rst: positions ") and float(diff) < 1e-9
    assert velocities.strip() == "False"
    assert imported == "MDAnalysis imported: False"  # the script stays light
