"""End to end on the real GROMACS (upstream mdrun, IMD v2): the pcoords streamrun
computes from the IMD stream are the ones MDAnalysis, and the tutorial's
``gmx distance``, compute from a trajectory the same mdrun wrote at the same steps;
no mdrun outlives streamrun; bad GROMACS settings fail before anything runs."""

import inspect
import re
import shutil
import subprocess
import sys
from pathlib import Path

import MDAnalysis as mda
import numpy as np
import pytest
from MDAnalysis.lib.distances import calc_bonds

from streamrun import config as config_module
from streamrun import segment
from streamrun.config import PcoordSpec, load
from streamrun.engines import ADAPTERS
from streamrun.engines.gromacs import GromacsAdapter, read_mdp
from streamrun.errors import ConfigError, StreamrunError

EXAMPLES = Path(__file__).resolve().parents[1] / "example_sims"
STREAMRUN = [sys.executable, "-m", "streamrun"]
ADAPTER = ADAPTERS["gromacs"]

pytestmark = pytest.mark.engine("gromacs")


@pytest.fixture
def nacl_gromacs(tmp_path):
    """A private copy of example_sims/nacl_gromacs whose mdp also writes a .trr
    at the streamed steps (step 0 included), for reference."""
    dest = tmp_path / "nacl_gromacs"
    shutil.copytree(EXAMPLES / "nacl_gromacs", dest)
    set_mdp(dest / "md.mdp", nstxout=10)
    (dest / "seg").mkdir()
    return dest


def set_mdp(path, **values):
    """Replace ``key = value`` lines of an mdp (keys given with '_' for '-')."""
    text = path.read_text()
    for key, value in values.items():
        pattern = re.compile(rf"^{key.replace('_', '[-_]')}\s*=.*$", re.M | re.I)
        line = f"{key.replace('_', '-')} = {value}"
        text = pattern.sub(line, text) if pattern.search(text) else text + line + "\n"
    path.write_text(text)


def core_sends_rate():
    return "client_sets_rate" in inspect.getsource(segment)


@pytest.fixture
def run_example(monkeypatch):
    """Run the example segment in-process; returns (result, config).

    Upstream mdrun streams every step until the client sends IMD_TRATE. Until
    segment.py sends it for adapters with ``client_sets_rate``, this fixture does,
    right after the handshake (where the core will).
    """
    def run(sim, *overrides):
        config = load(sim / "streamrun.yaml",
                      [f"engine.workdir={sim / 'seg'}", *overrides], environ={})
        if not core_sends_rate():
            from imdclient.IMDProtocol import IMDHeaderType, create_header_bytes

            real_connect = segment.connect

            def connect(*args, **kwargs):
                client = real_connect(*args, **kwargs)
                client._conn.sendall(create_header_bytes(
                    IMDHeaderType.IMD_TRATE, config.engine.frame_interval))
                return client

            monkeypatch.setattr(segment, "connect", connect)
        return segment.run_segment(config), config
    return run


def na_cl_from_trr(seg):
    """Na–Cl minimum-image distance (Å) in each frame of the run's own .trr."""
    u = mda.Universe(str(seg / "seg.tpr"), str(seg / "seg.trr"))
    na, cl = u.select_atoms("name NA"), u.select_atoms("name CL")
    return np.array([calc_bonds(na.positions[0], cl.positions[0], box=ts.dimensions)
                     for ts in u.trajectory]), u


def test_streamed_na_cl_distance_equals_mdanalysis_on_the_same_mdruns_trr(
        gmx, nacl_gromacs, run_example, no_engine_left):
    result, config = run_example(nacl_gromacs)

    seg = nacl_gromacs / "seg"
    written = np.loadtxt(config.output, ndmin=2)
    expected, u = na_cl_from_trr(seg)
    assert u.trajectory.n_frames == config.rows == 51  # steps 0, 10, ..., 500
    assert round(u.trajectory[-1].time / 0.002) == 500
    assert written.shape == (51, 1)
    # rows 1..50: the streamed frames (steps 10..500), same numbers as the .trr
    assert np.abs(written[1:, 0] - expected[1:]).max() <= 1e-3
    # row 0: the run input seg.tpr, whose positions mdrun starts from: its own
    # step 0 to float precision
    assert abs(written[0, 0] - expected[0]) <= 1e-5
    assert np.ptp(written) > 0.01  # really different steps, not one repeated
    assert result.frames == 51 and result.launches == 1  # step 0 streamed, skipped
    log = (seg / "streamrun-engine.log").read_text()
    assert f"IMD: Listening for IMD connection on port {result.port}." in log
    assert (seg / "seg.gro").exists() and (seg / "seg.cpt").exists()  # next segment


def test_same_numbers_as_the_tutorials_gmx_distance_on_the_trr(
        gmx, nacl_gromacs, run_example, no_engine_left):
    """westpa_tutorials basic_nacl_gmx computes the pcoord after the run with
    ``gmx distance -f seg.trr -s seg.tpr ... -oall dist.xvg`` times 10."""
    _, config = run_example(nacl_gromacs)

    seg = nacl_gromacs / "seg"
    subprocess.run([gmx, "-quiet", "distance", "-f", "seg.trr", "-s", "seg.tpr",
                    "-select", "resname NA plus resname CL", "-oall", "dist.xvg"],
                   cwd=seg, check=True, capture_output=True)
    xvg = np.loadtxt([line for line in (seg / "dist.xvg").read_text().splitlines()
                      if not line.startswith(("#", "@"))])
    tutorial = xvg[:, 1] * 10  # nm -> Å, as its runseg.sh does
    streamed = np.loadtxt(config.output)
    assert tutorial.shape == streamed.shape == (51,)
    # gmx distance prints nm with 3 decimals: 0.005 Å rounding
    assert np.abs(streamed - tutorial).max() <= 0.0051


def test_a_slow_pcoord_pauses_mdrun_and_loses_no_frame(
        gmx, nacl_gromacs, run_example, no_engine_left):
    """imdclient pauses mdrun when its buffer is full (IMD v2: a PAUSE toggle). The
    pcoord of frame 2 blocks until mdrun has logged the pause, so mdrun is ahead by
    construction, however loaded the machine: the buffer (8 frames, the least
    streamrun gives imdclient) is far smaller than the 50 frames mdrun has to send."""
    log = nacl_gromacs / "seg" / "streamrun-engine.log"
    (nacl_gromacs / "slow.py").write_text(
        "import time\n"
        "from pathlib import Path\n"
        "from MDAnalysis.lib.distances import calc_bonds\n"
        f"LOG = Path({str(log)!r})\n"
        "calls = 0\n"
        "def na_cl(u, na, cl):\n"
        "    global calls\n"
        "    calls += 1\n"
        "    if calls == 2:  # hold the stream until mdrun is paused (at most 120 s)\n"
        "        deadline = time.monotonic() + 120\n"
        "        while ('IMD: Pause command received' not in LOG.read_text()\n"
        "               and time.monotonic() < deadline):\n"
        "            time.sleep(0.05)\n"
        "    return calc_bonds(na.positions[0], cl.positions[0], box=u.dimensions)\n")
    _, config = run_example(
        nacl_gromacs, "stream.buffer_mb=0.06",  # 8 frames of 1040 atoms (the least)
        "pcoord_timeout=180",
        "pcoord=[{type: plugin, function: 'slow.py:na_cl', "
        "selections: [name NA, name CL]}]")

    seg = nacl_gromacs / "seg"
    text = log.read_text()
    assert "IMD: Pause command received" in text, "mdrun was never paused"
    assert "IMD: Un-pause command received" in text
    written = np.loadtxt(config.output)
    expected, _ = na_cl_from_trr(seg)
    assert written.shape == (51,)
    assert np.abs(written[1:] - expected[1:]).max() <= 1e-3


def test_an_mdrun_that_fails_at_start_fails_the_segment_with_a_clear_error(
        gmx, nacl_gromacs, tmp_path, no_engine_left):
    workdir = tmp_path / "segment"
    proc = subprocess.run(
        [*STREAMRUN, "run", "-c", str(nacl_gromacs / "streamrun.yaml"), "-w",
         str(workdir), "--set", "prepare=[]",  # no grompp: no seg.tpr
         "--set", "start=start.gro"],  # (row 0 from seg.tpr would fail first)
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "stopped before accepting the IMD connection" in lines[0]
    assert "exited with code 1" in lines[0]
    assert str(workdir / "streamrun-engine.log") in lines[0]
    if "error_summary" in inspect.getsource(segment):  # once the core uses it
        assert "File 'seg.tpr' does not exist or is not accessible" in lines[0]
    assert not (workdir / "pcoord.dat").exists()
    log = (workdir / "streamrun-engine.log").read_text()
    assert "File 'seg.tpr' does not exist or is not accessible" in log
    assert GromacsAdapter.error_summary(log.splitlines()[-15:]) == (
        "Error in user input: Invalid command-line options In command-line option -s "
        "File 'seg.tpr' does not exist or is not accessible. The file could not be "
        "opened. Reason: No such file or directory (call to fopen() returned error "
        "code 2)")


def test_a_segment_stopped_early_leaves_no_mdrun_waiting_for_a_client(
        gmx, nacl_gromacs, run_example, no_engine_left):
    """With -imdwait, mdrun blocks for a new client once streamrun disconnects;
    streamrun's stop must end it (no_engine_left checks)."""
    (nacl_gromacs / "bad.py").write_text(
        "calls = 0\n"
        "def f(u):\n"
        "    global calls\n"
        "    calls += 1\n"
        "    if calls == 4:\n"
        "        raise ValueError('bad frame')\n"
        "    return 1.0\n")
    with pytest.raises(StreamrunError, match=r"pcoord\[0\] \(f\) failed on frame 4: "
                                            r"ValueError: bad frame"):
        run_example(nacl_gromacs, "pcoord=[{type: plugin, function: 'bad.py:f'}]",
                    "engine.nsteps=5000")
    assert not (nacl_gromacs / "seg" / "pcoord.dat").exists()


def test_an_imd_group_other_than_the_topology_is_a_clear_error(
        gmx, nacl_gromacs, run_example, no_engine_left):
    set_mdp(nacl_gromacs / "md.mdp", IMD_group="Ion")  # streams Na+ and Cl- only
    with pytest.raises(StreamrunError, match="the engine streams 2 atoms but the "
                                             "topology has 1040"):
        run_example(nacl_gromacs)


# --- checks before anything runs (no engine needed) ---------------------------

def load_example(sim, *overrides):
    return load(sim / "streamrun.yaml", [f"engine.workdir={sim / 'seg'}",
                                         f"engine.executable={sys.executable}",
                                         *overrides], environ={})


def config_error(sim, *overrides):
    with pytest.raises(ConfigError) as info:
        load_example(sim, *overrides)
    return str(info.value)


def test_the_example_config_is_valid_and_runs_mdrun_on_the_segments_tpr(nacl_gromacs):
    config = load_example(nacl_gromacs)
    assert config.rows == 51
    assert ADAPTER.command(config.engine, "/usr/bin/gmx", 0) == [
        "/usr/bin/gmx", "mdrun", "-s", "seg.tpr", "-deffnm", "seg", "-nsteps", "500",
        "-imdport", "0", "-imdwait", "-nt", "1"]
    assert ADAPTER.engine_picks_port and ADAPTER.leading_frames == 1
    assert ADAPTER.expected_frames(500, 10) == 51
    assert ADAPTER.ready_line.search(
        "IMD: Listening for IMD connection on port 40123.")["port"] == "40123"


def test_own_deffnm_or_tpr_in_args_replace_the_defaults(nacl_gromacs):
    config = load_example(nacl_gromacs, "engine.args=[-deffnm, md, -nt, '2']")
    assert ADAPTER.command(config.engine, "gmx", 0)[2:6] == [
        "-s", "md.tpr", "-nsteps", "500"]
    config = load_example(nacl_gromacs, "engine.args=[-s, run.tpr]")
    assert ADAPTER.command(config.engine, "gmx", 0)[2:4] == ["-deffnm", "seg"]


@pytest.mark.parametrize("change, message", [
    ({"IMD_group": ""}, "has no 'IMD-group'; without it mdrun streams nothing"),
    ({"integrator": "steep"}, "integrator = steep is not dynamics"),
    ({"IMD_version": "3", "IMD_nst": "5"},
     "IMD-nst is 5 but engine.frame_interval is 10"),
])
def test_mdp_settings_that_cannot_stream_a_segment_are_refused(
        nacl_gromacs, change, message):
    set_mdp(nacl_gromacs / "md.mdp", **change)
    assert message in config_error(nacl_gromacs)


@pytest.mark.parametrize("override, message", [
    ("engine.input=start.gro", "is not an .mdp file"),
    ("engine.variables={seed: 1}", "GROMACS reads no input variables"),
    ("engine.args=[-imdpull]", "'-imdpull' is not allowed"),
    ("engine.args=[-nsteps, '10']", "'-nsteps' is not allowed: streamrun sets it"),
])
def test_engine_settings_gromacs_cannot_use_are_refused(nacl_gromacs, override,
                                                        message):
    assert message in config_error(nacl_gromacs, override)


def test_pressure_coupling_with_a_minimum_image_distance_is_refused(nacl_gromacs):
    engine = load_example(nacl_gromacs).engine
    set_mdp(nacl_gromacs / "md.mdp", pcoupl="C-rescale")  # the hook reads it now
    distance = PcoordSpec("distance", "pcoord[0]", {"a": "name NA", "b": "name CL",
                                                    "pbc": True})
    with pytest.raises(ConfigError, match=r"key 'pcoord\[0\].pbc'.*pcoupl = C-rescale "
                                          r"changes the box.*engine.accept_fixed_box"):
        ADAPTER.check_pcoords(engine, [distance], "streamrun.yaml")
    no_pbc = PcoordSpec("distance", "pcoord[0]", {"a": "name NA", "b": "name CL",
                                                  "pbc": False})
    ADAPTER.check_pcoords(engine, [no_pbc], "streamrun.yaml")
    accepted = type("Engine", (), {"input": engine.input, "accept_fixed_box": True})
    ADAPTER.check_pcoords(accepted, [distance], "streamrun.yaml")
    set_mdp(nacl_gromacs / "md.mdp", IMD_version="3", IMD_box="yes")
    ADAPTER.check_pcoords(engine, [distance], "streamrun.yaml")  # v3 streams the box


CONFIG_CHECKS_PCOORDS = "check_pcoords" in inspect.getsource(config_module)


@pytest.mark.xfail(not CONFIG_CHECKS_PCOORDS, strict=True,
                   reason="config.validate does not call adapter.check_pcoords yet")
def test_a_config_with_pressure_coupling_and_a_minimum_image_distance_is_refused(
        nacl_gromacs):
    set_mdp(nacl_gromacs / "md.mdp", pcoupl="C-rescale")
    message = config_error(nacl_gromacs)
    assert "key 'pcoord[0].pbc'" in message and "pcoupl = C-rescale" in message
    assert load_example(nacl_gromacs, "engine.accept_fixed_box=true").rows == 51


def test_mdp_keys_are_read_as_grompp_reads_them(tmp_path):
    mdp = tmp_path / "x.mdp"
    mdp.write_text("; comment\nIMD_Group = System ; streamed\nPcoupl=no\n\n"
                   "nstxout = 10\n")
    assert read_mdp(mdp) == {"imd-group": ("System", 2), "pcoupl": ("no", 3),
                             "nstxout": ("10", 5)}


def test_two_openmp_threads_with_ntomp_stream_the_same_numbers_as_the_trr(
        gmx, nacl_gromacs, run_example, no_engine_left):
    """``-ntomp 2`` in engine.args: streamrun's default OMP_NUM_THREADS=1 would make
    mdrun exit ("OMP_NUM_THREADS (1) and ... (2) have different values"); the
    adapter sets it from -ntomp instead."""
    _, config = run_example(nacl_gromacs, "engine.args=[-ntomp, '2', -ntmpi, '1']")
    seg = nacl_gromacs / "seg"
    written = np.loadtxt(config.output)
    expected, _ = na_cl_from_trr(seg)
    assert written.shape == (51,)
    assert np.abs(written[1:] - expected[1:]).max() <= 1e-3
    assert "Using 2 OpenMP threads" in (seg / "streamrun-engine.log").read_text()


def test_an_omp_num_threads_that_disagrees_with_ntomp_is_a_config_error(nacl_gromacs):
    with pytest.raises(ConfigError) as info:
        load(nacl_gromacs / "streamrun.yaml",
             ["engine.args=[-ntomp, '2']", "engine.env.OMP_NUM_THREADS=4"], environ={})
    assert info.value.key == "engine.env.OMP_NUM_THREADS"
    assert "-ntomp 2" in str(info.value)
