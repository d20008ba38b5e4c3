"""streamrun started as WESTPA starts a propagator (no arguments, WEST_* variables):
parent files set up, seeds from WEST_RAND*, every return file written, get_pcoord
agreeing with row 0. Real LAMMPS; WESTPA itself runs in test_westpa.py."""

import os
import shutil
import subprocess
import sys
import time

import MDAnalysis as mda
import numpy as np
import psutil
import pytest
import yaml
from MDAnalysis.lib.distances import calc_bonds

STREAMRUN = [sys.executable, "-m", "streamrun"]


def west_cfg(sim, **streamrun_extra):
    """A west.cfg in ``sim`` whose streamrun: section runs the example like WESTPA."""
    section = {
        "engine": {"input": "nacl.in", "nsteps": 100, "frame_interval": 10,
                   "variables": {"start": "parent.data", "seed": "{rand16}",
                                 "dumpfile": "check.lammpstrj"}},
        "files": {"parent.data": {"continues": "{parent}/end.data",
                                  "newtraj": "{parent}"}},
        "topology": "start.data",
        "start": "{workdir}/parent.data",
        "pcoord": [{"type": "distance", "name": "na_cl", "a": "type 3", "b": "type 4"}],
        "restart": ["end.data"],
        **streamrun_extra,
    }
    cfg = {"west": {"system": {"system_options": {
        "pcoord_ndim": 1, "pcoord_len": 11, "pcoord_dtype": "float32"}}},
        "streamrun": section}
    (sim / "west.cfg").write_text(yaml.safe_dump(cfg, sort_keys=False))


def westpa_env(sim, seg, parent, point="SEG_INITPOINT_NEWTRAJ", seg_id=0, **extra):
    returns = seg / "returns"
    returns.mkdir(parents=True, exist_ok=True)
    return dict(os.environ, WEST_SIM_ROOT=str(sim), WEST_CURRENT_ITER="1",
                WEST_CURRENT_SEG_ID=str(seg_id), WEST_CURRENT_SEG_DATA_REF=str(seg),
                WEST_CURRENT_SEG_INITPOINT_TYPE=point, WEST_PARENT_DATA_REF=str(parent),
                WEST_RAND16=str(1000 + seg_id), WEST_PCOORD_RETURN=str(returns / "pcoord"),
                WEST_RESTART_RETURN=str(returns / "restart"),
                WEST_LOG_RETURN=str(returns / "seglog"), **extra)


def streamrun(env, cwd, *args):
    return subprocess.run([*STREAMRUN, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=180)


def dump_distances(topology, dump):
    u = mda.Universe(str(topology), str(dump), format="LAMMPSDUMP")
    na, cl = u.select_atoms("type 3"), u.select_atoms("type 4")
    return np.array([calc_bonds(na.positions[0], cl.positions[0], box=u.dimensions)
                     for _ in u.trajectory])


def test_a_newtraj_then_a_continuing_segment_chain_through_westpas_files(
        lmp, nacl_lammps, tmp_path, no_engine_left):
    west_cfg(nacl_lammps, aux={"na_o_min": [{
        "type": "plugin", "function": "hydration.py:na_o_min",
        "selections": ["type 3", "type 1"], "whole": False}]}, trajectory={"every": 2})
    (nacl_lammps / "hydration.py").write_text(
        "from MDAnalysis.lib.distances import distance_array\n"
        "def na_o_min(u, na, ow):\n"
        "    return distance_array(na.positions, ow.positions, box=u.dimensions).min()\n")
    bstate = nacl_lammps / "start.data"

    # get_pcoord for the basis state (w_init)
    point_env = dict(os.environ, WEST_SIM_ROOT=str(nacl_lammps),
                     WEST_STRUCT_DATA_REF=str(bstate),
                     WEST_PCOORD_RETURN=str(tmp_path / "bstate_pcoord"))
    proc = streamrun(point_env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    bstate_pcoord = np.loadtxt(tmp_path / "bstate_pcoord")
    assert bstate_pcoord.shape == ()  # one point of pcoord_ndim = 1 values

    # iteration 1: a new trajectory from the basis state
    seg1 = tmp_path / "traj_segs" / "000001" / "000000"
    seg1.mkdir(parents=True)
    env = westpa_env(nacl_lammps, seg1, bstate,
                     WEST_NA_O_MIN_RETURN=str(seg1 / "returns" / "na_o_min"),
                     WEST_TRAJECTORY_RETURN=str(seg1 / "returns" / "traj"))
    proc = streamrun(env, seg1)
    assert proc.returncode == 0, proc.stderr
    pc1 = np.loadtxt(seg1 / "returns" / "pcoord")
    assert pc1.shape == (11,)
    assert pc1[0] == pytest.approx(float(bstate_pcoord), abs=1e-6)
    assert np.abs(pc1 - dump_distances(bstate, seg1 / "check.lammpstrj")).max() <= 1e-3
    assert os.path.islink(seg1 / "parent.data")
    assert (seg1 / "returns" / "restart" / "end.data").is_file()
    assert "Waiting for IMD" in (seg1 / "returns" / "seglog").read_text()
    assert np.loadtxt(seg1 / "returns" / "na_o_min").shape == (11,)
    traj = mda.Universe(str(bstate), str(seg1 / "returns" / "traj" / "seg.trr"))
    ref = mda.Universe(str(bstate), str(seg1 / "check.lammpstrj"), format="LAMMPSDUMP")
    # the start structure, then streamed frames 2, 4, ..., 10 of 10; time in ps
    # from the segment's start (a frame every 10 steps of 2 fs)
    assert traj.trajectory.n_frames == 6
    assert [round(ts.time, 6) for ts in traj.trajectory] == \
        [0.0, 0.04, 0.08, 0.12, 0.16, 0.2]
    assert (seg1 / "returns" / "traj" / "seg.pdb").is_file()  # for WESTPA's loader
    for ts in traj.trajectory:  # frame k of the trr is step 20 k (dump frame 2 k)
        ref.trajectory[2 * ts.frame]
        moved = traj.atoms.positions - ref.atoms.positions
        moved -= moved[0]  # same up to LAMMPS' box shift, and frame 0 (read from
        box = ref.dimensions[:3]  # the data file, image flags ignored) up to images
        assert np.abs(moved - box * np.round(moved / box)).max() < 1e-3
        assert not ts.has_velocities  # positions only, never stale velocities

    # iteration 2: continues from segment 1's folder, with another seed
    seg2 = tmp_path / "traj_segs" / "000002" / "000000"
    seg2.mkdir(parents=True)
    env = westpa_env(nacl_lammps, seg2, seg1, point="SEG_INITPOINT_CONTINUES", seg_id=7,
                     WEST_NA_O_MIN_RETURN=str(seg2 / "returns" / "na_o_min"))
    proc = streamrun(env, seg2)
    assert proc.returncode == 0, proc.stderr
    pc2 = np.loadtxt(seg2 / "returns" / "pcoord")
    assert pc2[0] == pytest.approx(pc1[-1], abs=1e-4)  # row 0 = parent's last row
    assert os.readlink(seg2 / "parent.data") == str(seg1 / "end.data")
    assert "-var seed 1007" in (seg2 / "streamrun-engine.log").read_text()
    assert (seg2 / "seg.trr").exists()  # no WEST_TRAJECTORY_RETURN: kept in the folder


def test_pcoord_len_that_disagrees_with_nsteps_fails_before_the_engine_starts(
        lmp, nacl_lammps, tmp_path, no_engine_left):
    west_cfg(nacl_lammps)
    seg = tmp_path / "seg"
    seg.mkdir()
    env = westpa_env(nacl_lammps, seg, nacl_lammps / "start.data")
    proc = streamrun(env, seg, "segment", "--set", "engine.nsteps=200")
    assert proc.returncode == 2
    assert "pcoord_len is 11" in proc.stderr and "engine.nsteps" in proc.stderr
    assert not (seg / "streamrun-engine.log").exists()


def test_a_missing_westpa_variable_is_named(lmp, nacl_lammps, tmp_path):
    west_cfg(nacl_lammps)
    env = westpa_env(nacl_lammps, tmp_path / "seg", nacl_lammps / "start.data")
    del env["WEST_RAND16"]
    proc = streamrun(env, tmp_path, "segment", "--dry-run")
    assert proc.returncode == 2
    assert "engine.variables.seed" in proc.stderr and "WEST_RAND16" in proc.stderr


def test_dry_run_shows_the_resolved_segment_without_running_it(lmp, nacl_lammps,
                                                               tmp_path):
    west_cfg(nacl_lammps)
    seg = tmp_path / "seg"
    seg.mkdir()
    env = westpa_env(nacl_lammps, seg, nacl_lammps / "start.data")
    proc = streamrun(env, seg, "segment", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert "-var streamrun_port <port>" in proc.stdout and "-var seed 1000" in proc.stdout
    assert f"parent.data <- {nacl_lammps / 'start.data'} (link)" in proc.stdout
    assert "rows:        11" in proc.stdout
    assert [p.name for p in seg.iterdir()] == ["returns"]  # nothing set up or run


def test_the_seed_placeholder_is_always_a_valid_engine_seed():
    from streamrun.westpa import MAX_SEED, seed

    for raw in (0, 1, 2**31 - 2, 2**31 - 1, 2**31, 2**32 - 1):
        value = int(seed({"WEST_RAND32": str(raw)}))
        assert 1 <= value <= MAX_SEED
    assert seed({"WEST_RAND32": "7"}) != seed({"WEST_RAND32": "8"})
    assert seed({"WEST_RAND16": "0"}) == "1"
    assert seed({}) is None


def test_started_as_gen_istate_streamrun_says_it_does_not_do_that(tmp_path):
    env = dict(os.environ, WEST_BSTATE_DATA_REF=str(tmp_path / "b"),
               WEST_ISTATE_DATA_REF=str(tmp_path / "i"))
    for var in ("WEST_CURRENT_SEG_ID", "WEST_STRUCT_DATA_REF"):
        env.pop(var, None)
    proc = streamrun(env, tmp_path)
    assert proc.returncode == 2 and "gen_istates: false" in proc.stderr


def test_when_its_parent_dies_streamrun_stops_the_engine(lmp, nacl_lammps, tmp_path,
                                                        no_engine_left):
    """A WESTPA worker killed without its process group leaves streamrun orphaned;
    streamrun notices and stops the engine instead of running on."""
    log = tmp_path / "seg" / "streamrun-engine.log"
    parent = subprocess.Popen(
        [sys.executable, "-c",
         "import subprocess, sys, time; subprocess.Popen(sys.argv[1:]); time.sleep(600)",
         *STREAMRUN, "run", "-q", "-c", str(nacl_lammps / "streamrun.yaml"),
         "-w", str(tmp_path / "seg"), "--set", "engine.nsteps=50000"])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (
            log.exists() and "Waiting for IMD" in log.read_text()):
        time.sleep(0.1)
    child = psutil.Process(parent.pid).children()[0]
    tree = [child, *child.children(recursive=True)]
    parent.kill()
    parent.wait()
    gone, alive = psutil.wait_procs(tree, timeout=20)
    assert not alive, f"still running after their parent died: {alive}"


def test_get_pcoord_reads_a_suffix_less_istate_by_its_link_target_or_its_format(
        lmp, nacl_lammps, tmp_path):
    """With gen_istates: true WESTPA hands get_pcoord istates/<iter>/<id>: a link
    is read as the file it points to; a plain file without a suffix needs
    get_pcoord.format, and the error says so, naming get_pcoord.structure."""
    west_cfg(nacl_lammps)
    istates = tmp_path / "istates" / "1"
    istates.mkdir(parents=True)
    (istates / "0").symlink_to(nacl_lammps / "start.data")
    shutil.copy(nacl_lammps / "start.data", istates / "1")
    expected = np.loadtxt(_point(nacl_lammps, nacl_lammps / "start.data", tmp_path))

    assert np.loadtxt(_point(nacl_lammps, istates / "0", tmp_path)) == expected
    env = _point_env(nacl_lammps, istates / "1", tmp_path)
    proc = streamrun(env, tmp_path)
    assert proc.returncode == 2
    assert "key 'get_pcoord.structure'" in proc.stderr
    assert "set get_pcoord.format" in proc.stderr and "Traceback" not in proc.stderr
    proc = streamrun(env, tmp_path, "pcoord", "--set", "get_pcoord.format=DATA")
    assert proc.returncode == 0, proc.stderr
    assert np.loadtxt(env["WEST_PCOORD_RETURN"]) == expected


def _point_env(sim, structure, tmp_path):
    return dict(os.environ, WEST_SIM_ROOT=str(sim), WEST_STRUCT_DATA_REF=str(structure),
                WEST_PCOORD_RETURN=str(tmp_path / "point"))


def _point(sim, structure, tmp_path):
    """get_pcoord of ``structure`` as WESTPA runs it; the pcoord file."""
    proc = streamrun(_point_env(sim, structure, tmp_path), tmp_path)
    assert proc.returncode == 0, proc.stderr
    return tmp_path / "point"


def test_a_segment_asked_for_a_trajectory_it_does_not_write_says_how_to_tell_westpa(
        lmp, nacl_lammps, tmp_path, no_engine_left):
    west_cfg(nacl_lammps)
    seg = tmp_path / "seg"
    seg.mkdir()
    env = westpa_env(nacl_lammps, seg, nacl_lammps / "start.data",
                     WEST_TRAJECTORY_RETURN=str(seg / "returns" / "traj"))
    proc = streamrun(env, seg)
    assert proc.returncode == 0, proc.stderr
    assert "{name: trajectory, enabled: false}" in proc.stderr


@pytest.mark.parametrize("trajectory, key, words", [
    ({"format": "dcd"}, "trajectory.format", "carries no time"),
    ({"every": 3}, "trajectory.every", "leaves out the segment's last frame"),
])
def test_under_the_hdf5_framework_a_trajectory_westpa_cannot_line_up_is_refused(
        lmp, nacl_lammps, tmp_path, trajectory, key, words):
    from streamrun.config import load
    from streamrun.errors import ConfigError

    west_cfg(nacl_lammps, trajectory=trajectory)
    env = westpa_env(nacl_lammps, tmp_path, nacl_lammps / "start.data",
                     WEST_TRAJECTORY_RETURN=str(tmp_path / "traj"))
    with pytest.raises(ConfigError) as info:
        load(nacl_lammps / "west.cfg", environ=env)
    assert info.value.key == key and words in str(info.value)
