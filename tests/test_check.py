"""A WESTPA user's first day: ``streamrun check`` catches each mistake before w_init.

WESTPA hides what goes wrong (w_init exits 0 with a NaN basis-state pcoord, the
propagator's message sits in a log nobody reads), so every mistake here must come
out of ``streamrun check`` as one line naming the file and key, with a non-zero exit
code, and without any engine being started. The examples are the real
example_sims simulations, copied as a user would and prepared as their init.sh
does (the basis-state structure copied into bstates/).
"""

import os
import re
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import yaml

from conftest import EXAMPLES, ROOT

ENGINE_NAMES = {"lmp", "gmx", "mdrun", "gmx_mpi", "namd2", "namd3"}


def _prepared(tmp_path, example, structure):
    """A copy of example_sims/<example> with init.sh's first step done."""
    shutil.copytree(EXAMPLES / example, tmp_path / example)
    westpa = tmp_path / example / "westpa"
    shutil.copy(tmp_path / example / structure, westpa / "bstates" / structure)
    return westpa


@pytest.fixture
def lammps_sim(tmp_path):
    return _prepared(tmp_path, "nacl_lammps", "start.data")


@pytest.fixture
def gromacs_sim(tmp_path):
    return _prepared(tmp_path, "nacl_gromacs", "start.gro")


def spy_engine(folder, real):
    """An engine program that leaves a mark if it is ever started."""
    spy = Path(folder) / "spy-engine"
    spy.write_text(f"#!/bin/sh\ntouch '{folder}/ENGINE-STARTED'\nexec '{real}' \"$@\"\n")
    spy.chmod(0o755)
    return spy


def check(folder, *args, env=None):
    """Run ``streamrun check`` in ``folder`` as a user would; watch its process tree
    with psutil the whole time: no engine may appear in it."""
    environ = {k: v for k, v in os.environ.items()
               if not k.startswith(("WEST_", "STREAMRUN_"))
               or k == "STREAMRUN_CACHE_DIR"}  # the session's (conftest)
    environ["PYTHONPATH"] = str(ROOT)
    environ.update(env or {})
    proc = subprocess.Popen([sys.executable, "-m", "streamrun", "check", *map(str, args)],
                            cwd=folder, env=environ, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    seen = set()
    watched = psutil.Process(proc.pid)
    while proc.poll() is None:
        try:
            seen |= {c.name() for c in watched.children(recursive=True)}
        except psutil.Error:
            pass
        time.sleep(0.01)
    out, err = proc.communicate()
    assert not seen & ENGINE_NAMES, f"check started {seen & ENGINE_NAMES}"
    assert not (Path(folder) / "ENGINE-STARTED").exists(), "check started the engine"
    assert "Traceback" not in out + err, out + err
    return proc.returncode, out + err


def problems(output):
    return [line[4:] for line in output.splitlines() if line.startswith("  - ")]


def one_problem_and_nan_basis_state(output, label):
    """The problem line of a mistake that get_pcoord meets too: the mistake, then
    the basis state w_init would give a NaN pcoord (said once, not repeated)."""
    mistake, bstate = problems(output)
    assert bstate.startswith(f"basis state {label!r}") and "NaN pcoord" in bstate
    return mistake


def edit_west_cfg(folder, change):
    """Change west.cfg's YAML (comments and python tags are lost, values kept)."""
    path = Path(folder) / "west.cfg"
    text = path.read_text().replace("!!python/name:numpy.float32", "numpy.float32")
    data = yaml.safe_load(text)
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


# -- a good simulation passes ----------------------------------------------------

@pytest.mark.parametrize("example", ["lammps", "gromacs"])
def test_a_prepared_example_passes_and_shows_what_a_segment_would_do(
        example, request):
    # check resolves the engine program (a missing one is a problem), so a machine
    # without it skips (or fails where STREAMRUN_REQUIRE_ENGINES names it)
    request.getfixturevalue({"lammps": "lmp", "gromacs": "gmx"}[example])
    folder = request.getfixturevalue(f"{example}_sim")
    code, out = check(folder)
    assert code == 0, out
    assert "no problems found" in out
    assert "engine:" in out and "<port>" in out or "-imdport 0" in out
    row0 = float(re.search(r"row 0:\s+(\S+)", out).group(1))
    bstate = float(re.search(r"bstate:.*pcoord (\S+)", out).group(1))
    assert row0 == bstate  # a segment's row 0 is its basis state's pcoord


def test_check_of_a_streamrun_yaml_passes(tmp_path):
    shutil.copytree(EXAMPLES / "nacl_lammps", tmp_path / "nacl_lammps")
    code, out = check(tmp_path, tmp_path / "nacl_lammps" / "streamrun.yaml")
    assert code == 0, out
    assert "west.cfg:    none found" in out


def test_check_never_starts_the_engine(gromacs_sim, gmx):
    spy = spy_engine(gromacs_sim, gmx)
    code, out = check(gromacs_sim, "--set", f"engine.executable={spy}")
    assert code == 0, out
    assert str(spy) in out


# -- each mistake: one line, non-zero exit ------------------------------------------

def test_the_basis_state_not_copied_yet_is_a_missing_file(tmp_path):
    shutil.copytree(EXAMPLES / "nacl_lammps", tmp_path / "nacl_lammps")
    code, out = check(tmp_path / "nacl_lammps" / "westpa")
    assert code == 1
    found = [p for p in problems(out) if "bstates/start.data' does not exist" in p]
    assert any("key 'get_pcoord.structure'" in p and "basis state 'nacl_5.4A'" in p
               for p in found), out
    assert any("key 'files.parent.data.newtraj'" in p for p in found), out


def test_a_gromacs_mdp_without_imd_group(gromacs_sim):
    mdp = gromacs_sim / "md.mdp"
    mdp.write_text(re.sub(r"(?m)^IMD-group.*$", "", mdp.read_text()))
    code, out = check(gromacs_sim)
    assert code == 1
    [line] = [p for p in problems(out) if "IMD-group" in p]
    assert "key 'engine.input'" in line and "md.mdp has no 'IMD-group'" in line


def test_a_selection_that_matches_nothing(lammps_sim):
    edit_west_cfg(lammps_sim, lambda d: d["streamrun"]["pcoord"][0].update(b="type 9"))
    code, out = check(lammps_sim)
    assert code == 1
    line = one_problem_and_nan_basis_state(out, "nacl_5.4A")
    assert "key 'pcoord[0].b'" in line and "'type 9' selects no atoms" in line


def test_names_on_a_topology_without_names(lammps_sim):
    edit_west_cfg(lammps_sim, lambda d: d["streamrun"]["pcoord"][0].update(
        a="name NA", b="name CL"))
    code, out = check(lammps_sim)
    assert code == 1
    line = problems(out)[0]
    assert "key 'pcoord[0].a'" in line
    assert "has no atom names" in line and "types" in line and "'type 3'" in line
    assert "not valid" not in out


def test_pcoord_len_that_disagrees_with_the_segment(lammps_sim):
    edit_west_cfg(lammps_sim, lambda d: d["west"]["system"]["system_options"].update(
        pcoord_len=12))
    code, out = check(lammps_sim)
    assert code == 1
    [line] = problems(out)
    assert "pcoord_len is 12" in line and "gives 11 rows" in line
    assert "key 'engine.nsteps'" in line


def test_pcoord_ndim_that_disagrees_with_the_coordinates(gromacs_sim):
    edit_west_cfg(gromacs_sim, lambda d: d["west"]["system"]["system_options"].update(
        pcoord_ndim=2))
    code, out = check(gromacs_sim)
    assert code == 1
    assert any("1 pcoord column(s)" in p and "pcoord_ndim is 2" in p
               for p in problems(out)), out
    # w_init would store the basis state's pcoord as NaN
    assert any("basis state 'nacl_7.0A'" in p for p in problems(out)), out


def test_an_integer_pcoord_dtype(lammps_sim):
    edit_west_cfg(lammps_sim, lambda d: d["west"]["system"]["system_options"].update(
        pcoord_dtype="numpy.int32"))
    code, out = check(lammps_sim)
    assert code == 1
    [line] = problems(out)
    assert "pcoord_dtype" in line and "not a floating-point type" in line


def test_a_plugin_that_cannot_be_imported(lammps_sim):
    (lammps_sim / "mine.py").write_text("import not_a_module_anywhere\n"
                                        "def f(u): return 1.0\n")
    edit_west_cfg(lammps_sim, lambda d: d["streamrun"]["pcoord"].append(
        {"type": "plugin", "function": "mine.py:f"}))
    code, out = check(lammps_sim)
    assert code == 1
    line = one_problem_and_nan_basis_state(out, "nacl_5.4A")
    assert "key 'pcoord[1].function'" in line and "could not import plugin" in line
    assert "not_a_module_anywhere" in line


def test_a_plugin_that_gives_nan_makes_a_nan_basis_state(lammps_sim):
    (lammps_sim / "mine.py").write_text("def f(u):\n    return float('nan')\n")
    edit_west_cfg(lammps_sim, lambda d: d["streamrun"]["pcoord"].__setitem__(
        0, {"type": "plugin", "function": "mine.py:f"}))
    code, out = check(lammps_sim)
    assert code == 1
    assert any("non-finite pcoord value" in p for p in problems(out)), out
    assert any("basis state 'nacl_5.4A'" in p and "non-finite" in p
               for p in problems(out)), out


def test_a_basis_state_outside_the_bins(lammps_sim):
    edit_west_cfg(lammps_sim, lambda d: d["west"]["system"]["system_options"]["bins"]
                  .update(boundaries=[[0.0, 3.0, 5.0]]))
    code, out = check(lammps_sim)
    assert code == 1
    [line] = problems(out)
    assert "outside the bins [0, 5)" in line and "5.42" in line


def test_every_problem_is_reported_not_only_the_first(gromacs_sim):
    """Five independent mistakes, five lines, in one run."""
    mdp = gromacs_sim / "md.mdp"
    mdp.write_text(re.sub(r"(?m)^IMD-group.*$", "", mdp.read_text()))

    def change(d):
        d["west"]["system"]["system_options"]["pcoord_len"] = 21
        s = d["streamrun"]
        s["topolgy"] = s.pop("topology")           # a typo
        s["pcoord"].append({"type": "plugin", "function": "missing.py:f"})
        s["stream"] = {"timeout": 10, "bufer_mb": 1}  # another typo
    edit_west_cfg(gromacs_sim, change)
    code, out = check(gromacs_sim)
    assert code == 1
    found = problems(out)
    for expected in ("key 'topolgy': unknown key. Did you mean 'topology'?",
                     "key 'topology': missing",
                     "no 'IMD-group'", "pcoord_len is 21",
                     "key 'pcoord[1].function'",
                     "key 'stream.bufer_mb': unknown key"):
        assert any(expected in p for p in found), (expected, out)


def test_no_west_cfg_here_says_where_to_run(tmp_path):
    code, out = check(tmp_path)
    assert code == 1
    assert "no config to check" in out and "streamrun check FILE" in out


# -- segment --dry-run outside WESTPA -----------------------------------------------

def test_segment_dry_run_needs_no_west_variables(lammps_sim):
    environ = {k: v for k, v in os.environ.items() if not k.startswith("WEST_")}
    environ.update(PYTHONPATH=str(ROOT), WEST_SIM_ROOT=str(lammps_sim))
    proc = subprocess.run([sys.executable, "-m", "streamrun", "segment", "--dry-run"],
                          cwd=lammps_sim, env=environ, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "stand-ins for" in proc.stderr and "WEST_RAND32" in proc.stderr
    assert "-var seed " in proc.stdout and "columns:     na_cl [Å]" in proc.stdout


# -- small defects of the first day ---------------------------------------------------

def test_pcoord_files_follow_the_umask(tmp_path):
    from streamrun.returns import write_pcoord

    old = os.umask(0o022)
    try:
        write_pcoord(tmp_path / "pcoord.dat", np.zeros((3, 1)))
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "pcoord.dat").stat().st_mode) == 0o644


def test_a_failed_rerun_leaves_no_pcoord_of_the_previous_run(tmp_path):
    shutil.copytree(EXAMPLES / "nacl_lammps", tmp_path / "nacl_lammps")
    folder = tmp_path / "segment"
    folder.mkdir()
    (folder / "pcoord.dat").write_text("5.0\n" * 51)   # the previous, good run
    environ = {k: v for k, v in os.environ.items() if not k.startswith("WEST_")}
    environ["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run(
        [sys.executable, "-m", "streamrun", "run", "-q", "-c",
         str(tmp_path / "nacl_lammps" / "streamrun.yaml"), "-w", str(folder),
         "--set", "prepare=[exit 3]"], env=environ, capture_output=True, text=True)
    assert proc.returncode == 1, proc.stderr
    assert "prepare command 1" in proc.stderr
    assert not (folder / "pcoord.dat").exists()


def test_an_empty_pcoord_return_made_by_westpa_is_kept(tmp_path):
    from streamrun.returns import discard_stale

    (tmp_path / "tmpabc").write_text("")
    discard_stale(tmp_path / "tmpabc")
    assert (tmp_path / "tmpabc").exists()


def test_the_summary_counts_frames_the_same_way_for_every_engine():
    from streamrun.segment import SegmentResult

    def summary(frames, skipped):
        return SegmentResult(rows=np.zeros((51, 1)), output=Path("pcoord.dat"),
                             frames=frames, wall_seconds=1, stream_seconds=1,
                             compute_seconds=0, port=1, launches=1,
                             column_labels=["na_cl [Å]"], skipped=skipped).summary()

    lammps, gromacs = summary(50, 0), summary(51, 1)   # GROMACS also sends step 0
    assert lammps.startswith("50 frames streamed -> 51 rows x 1 (na_cl [Å])")
    assert gromacs.startswith("50 frames streamed -> 51 rows x 1 (na_cl [Å])")
    assert "(row 0: the start structure)" in lammps
    assert "(row 0: the start structure + 1 at step 0, the start point again)" \
        in gromacs
