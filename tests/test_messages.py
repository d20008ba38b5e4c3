"""What a user sees when something is off: one line, naming the file and the key,
saying what to do, no traceback; and the README's recipes doing what they say.

Each test is a report of issue 21, replayed from the user's side: a config as the
README shows it, ``python -m streamrun ...`` as a subprocess, and the message (or
the result) read as the user reads it.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import EXAMPLES, ROOT

STREAMRUN = [sys.executable, "-m", "streamrun"]


def streamrun(*args, cwd, env=None, timeout=180):
    """``python -m streamrun ARGS`` in ``cwd``, outside WESTPA unless ``env`` says."""
    environ = {k: v for k, v in os.environ.items()
               if not k.startswith(("WEST_", "STREAMRUN_"))
               or k == "STREAMRUN_CACHE_DIR"}  # the session's (conftest)
    environ["PYTHONPATH"] = str(ROOT)
    environ.update(env or {})
    return subprocess.run([*STREAMRUN, *map(str, args)], cwd=cwd, env=environ,
                          capture_output=True, text=True, timeout=timeout)


def one_error_line(proc, code=2):
    """The single ``streamrun: error:`` line of a failed run."""
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("streamrun: error: ")
    return lines[0]


def problems(output):
    return [line[4:] for line in output.splitlines() if line.startswith("  - ")]


def spy_engine(folder, real):
    """An engine program that leaves a mark when it is started."""
    spy = Path(folder) / "spy-engine"
    spy.write_text(f"#!/bin/sh\ntouch '{folder}/ENGINE-STARTED'\n"
                   f"exec '{real}' \"$@\"\n")
    spy.chmod(0o755)
    return spy


# -- 1. a segment folder whose name is too long ------------------------------------

def deep_folder(base, length):
    """A folder path under ``base`` of about ``length`` characters (names of 100)."""
    path = str(base)
    while len(path) + 101 < length:
        path += "/" + "d" * 100
    return Path(path + "/" + "e" * (length - len(path) - 1))


def test_a_segment_folder_too_long_for_the_system_says_so_in_one_short_line(
        nacl_lammps, tmp_path):
    config = nacl_lammps / "streamrun.yaml"
    # longer than PATH_MAX: the folder cannot even be made
    line = one_error_line(streamrun("run", "-c", config, "-w",
                                    deep_folder(tmp_path / "a", 4200), cwd=tmp_path))
    assert "key '-w/--workdir'" in line and "is too long" in line
    assert "ENAMETOOLONG" in line and "use a shorter path" in line
    assert "free space" not in line and len(line) < 500, line
    # the folder fits, the engine log and pcoord file in it do not
    folder = deep_folder(tmp_path / "b", 4080)
    line = one_error_line(streamrun("run", "-c", config, "-w", folder, cwd=tmp_path))
    assert re.search(r"key '(output|log)'", line) and "ENAMETOOLONG" in line
    assert "use a shorter segment folder (-w, engine.workdir)" in line
    assert "free space" not in line and len(line) < 500, line
    assert "…" in line and "characters)" in line  # the path, shortened
    assert os.listdir(folder) == []  # no engine was started, nothing written


# -- 2. a topology_format MDAnalysis does not know -----------------------------------

def test_an_unknown_topology_format_is_named_before_the_engine_starts(
        nacl_lammps, tmp_path, lmp):
    config = nacl_lammps / "streamrun.yaml"
    with config.open("a") as f:
        f.write("topology_format: LAMMPS\n")
    spy = spy_engine(tmp_path, lmp)
    line = one_error_line(streamrun("run", "-c", config, "-w", tmp_path / "seg",
                                    "--set", f"engine.executable={spy}",
                                    cwd=tmp_path))
    assert "key 'topology_format'" in line and str(config) in line
    assert "'LAMMPS' is not a topology format of MDAnalysis" in line
    assert "Did you mean 'DATA'?" in line
    assert not (tmp_path / "ENGINE-STARTED").exists()
    check = streamrun("check", config, cwd=tmp_path)
    assert check.returncode == 1 and "Traceback" not in check.stdout + check.stderr
    assert any("key 'topology_format'" in p for p in problems(check.stdout))


def test_a_topology_format_that_does_not_fit_the_file_is_one_line(
        nacl_lammps, tmp_path, lmp, no_engine_left):
    config = nacl_lammps / "streamrun.yaml"
    with config.open("a") as f:
        f.write("topology_format: PSF\n")
    line = one_error_line(streamrun("run", "-c", config, "-w", tmp_path / "seg",
                                    cwd=tmp_path))
    assert "key 'topology'" in line and "as PSF" in line
    assert "is not valid PSF file" in line and "https://" not in line


# -- 3. a key given twice -----------------------------------------------------------

README_CONFIG = """\
engine:
  name: lammps
  input: nacl.in
  nsteps: 500
  frame_interval: 10
  variables:
    start: "{config_dir}/start.data"
topology: start.data
pcoord:
  - {type: distance, name: na_cl, a: type 3, b: type 4}
rows: 51
pcoord:
  - {type: distance, name: o_h, a: type 1, b: type 2}
"""


def test_a_pcoord_list_given_twice_is_an_error_naming_both_lines(nacl_lammps,
                                                                  tmp_path):
    config = nacl_lammps / "twice.yaml"
    config.write_text(README_CONFIG)
    check = streamrun("check", config, cwd=tmp_path)
    assert check.returncode == 1, check.stdout
    [line] = problems(check.stdout)
    assert f"{config}, key 'pcoord'" in line
    assert "on line 9 and again on line 12" in line and "merge them" in line
    line = one_error_line(streamrun("run", "-c", config, "-w", tmp_path / "seg",
                                    cwd=tmp_path))
    assert "key 'pcoord'" in line and "line 9 and again on line 12" in line


def test_keys_given_twice_in_west_cfg_are_found_by_check(tmp_path):
    shutil.copytree(EXAMPLES / "nacl_lammps", tmp_path / "nacl_lammps")
    sim = tmp_path / "nacl_lammps" / "westpa"
    shutil.copy(tmp_path / "nacl_lammps" / "start.data", sim / "bstates")
    west_cfg = sim / "west.cfg"
    text = west_cfg.read_text()
    text = text.replace("      pcoord_len: 11",
                        "      pcoord_len: 11\n      pcoord_len: 21", 1)
    west_cfg.write_text(text + "  topology: ../start.data\n")
    lines = west_cfg.read_text().splitlines()
    first_len = next(i for i, t in enumerate(lines, 1) if "pcoord_len: 11" in t)
    tops = [i for i, t in enumerate(lines, 1) if t.startswith("  topology:")]
    check = streamrun("check", cwd=sim)
    assert check.returncode == 1, check.stdout
    found = problems(check.stdout)
    assert any(f"key 'west.system.system_options.pcoord_len': given twice, on line "
               f"{first_len} and again on line {first_len + 1}" in p for p in found)
    assert any(f"key 'topology': given twice, on line {tops[0]} and again on line "
               f"{tops[1]}" in p for p in found), found


# -- 4. IMD v3 keys in an mdp, with a GROMACS release ------------------------------

V3_KEYS = "IMD-version = 3\nIMD-nst = 10\nIMD-time = yes\nIMD-box = yes\n"


def test_imd_v3_mdp_keys_get_a_warning_that_only_the_fork_takes_them(tmp_path, gmx):
    example = tmp_path / "nacl_gromacs"
    shutil.copytree(EXAMPLES / "nacl_gromacs", example,
                    ignore=shutil.ignore_patterns("westpa"))
    mdp = example / "md.mdp"
    mdp.write_text(mdp.read_text().rstrip("\n") + "\n" + V3_KEYS)
    # what the installed grompp (a release) does with them
    (tmp_path / "seg.mdp").write_text(mdp.read_text().replace("@SEED@", "5"))
    grompp = subprocess.run([gmx, "grompp", "-f", "seg.mdp", "-c",
                             example / "start.gro", "-p", example / "topol.top",
                             "-o", "seg.tpr"],
                            cwd=tmp_path, capture_output=True, text=True)
    release = "Unknown left-hand 'IMD-version'" in grompp.stdout + grompp.stderr
    if release:
        assert grompp.returncode != 0
    check = streamrun("check", example / "streamrun.yaml", cwd=tmp_path)
    assert check.returncode == 0, check.stdout
    warning = check.stdout.split("1 warning(s):", 1)[1].strip().splitlines()[0]
    assert "key 'engine.input'" in warning and "HeydenLab fork" in warning
    number = len(mdp.read_text().splitlines()) - 3
    assert f"IMD-version (line {number})" in warning
    assert "Unknown left-hand 'IMD-version'" in warning
    assert "remove these lines" in warning and "engine.executable" in warning
    # the IMD-nst rule of the fork, said with what a release does
    check = streamrun("check", example / "streamrun.yaml", "--set",
                      "engine.frame_interval=20", cwd=tmp_path)
    assert check.returncode == 1
    assert any("IMD-nst is 10 but engine.frame_interval is 20" in p and
               "HeydenLab fork" in p for p in problems(check.stdout)), check.stdout


# -- 5. check of the standalone GROMACS example ------------------------------------

def test_check_of_the_standalone_gromacs_example_reads_row_0_from_what_grompp_reads(
        tmp_path, gmx):
    import MDAnalysis as mda
    from MDAnalysis.lib.distances import calc_bonds

    example = tmp_path / "nacl_gromacs"
    shutil.copytree(EXAMPLES / "nacl_gromacs", example,
                    ignore=shutil.ignore_patterns("westpa"))
    check = streamrun("check", example / "streamrun.yaml", cwd=tmp_path)
    assert check.returncode == 0, check.stdout
    assert "no problems found" in check.stdout
    assert f"made by a prepare command from {example / 'start.gro'}" in check.stdout
    row0 = float(re.search(r"row 0:\s+(\S+)", check.stdout).group(1))
    u = mda.Universe(str(example / "start.gro"))
    na, cl = u.select_atoms("name NA"), u.select_atoms("name CL")
    expected = calc_bonds(na.positions[0], cl.positions[0], box=u.dimensions)
    assert row0 == pytest.approx(expected, abs=1e-4)
    # a prepare command streamrun cannot read: said, and the selections still checked
    check = streamrun("check", example / "streamrun.yaml", "--set",
                      "prepare=[sh make-run-input.sh]", cwd=tmp_path)
    assert check.returncode == 0, check.stdout
    assert "row 0 comes from its output" in check.stdout
    assert "selections were checked on the topology" in check.stdout


# -- 6. a WEST_SIM_ROOT left in the shell ------------------------------------------

def test_a_west_sim_root_left_in_the_shell_does_not_bind_another_config(
        tmp_path, lmp, no_engine_left):
    shutil.copytree(EXAMPLES / "nacl_lammps", tmp_path / "nacl_lammps")
    sim = tmp_path / "nacl_lammps" / "westpa"
    shutil.copy(tmp_path / "nacl_lammps" / "start.data", sim / "bstates")
    west_cfg = sim / "west.cfg"
    west_cfg.write_text(west_cfg.read_text().replace("pcoord_len: 11",
                                                     "pcoord_len: 21"))
    shutil.copytree(EXAMPLES / "nacl_lammps", tmp_path / "other",
                    ignore=shutil.ignore_patterns("westpa*"))
    other = tmp_path / "other" / "streamrun.yaml"
    env = {"WEST_SIM_ROOT": str(sim)}   # as the tutorials' env.sh leaves it
    run = streamrun("run", "-c", other, "-w", tmp_path / "seg", "-q", env=env,
                    cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert len(np.loadtxt(tmp_path / "seg" / "pcoord.dat")) == 51
    check = streamrun("check", other, env=env, cwd=tmp_path)
    assert check.returncode == 0, check.stdout
    assert f"{west_cfg} of WEST_SIM_ROOT not used" in check.stdout
    # the simulation's own config is still held to its pcoord_len
    dry = streamrun("segment", "--dry-run", env=env, cwd=sim)
    assert dry.returncode == 2, dry.stderr  # after the line naming the stand-ins:
    line = dry.stderr.strip().splitlines()[-1]
    assert "pcoord_len is 21" in line and "key 'engine.nsteps'" in line


# -- 8. the README's LAMMPS recipe -------------------------------------------------

ATOMIC_DATA = """\
LAMMPS data file via write_data, units = real

3 atoms
2 atom types

0 10 xlo xhi
0 10 ylo yhi
0 10 zlo zhi

Masses

1 22.99
2 35.45

Atoms # atomic

2 1 1.0 1.0 1.0 0 0 0
1 2 4.0 1.0 1.0 0 0 0
3 1 7.0 2.0 1.0 0 0 0
"""


def test_an_atomic_style_data_file_needs_its_columns_and_the_error_names_them(
        nacl_lammps, tmp_path):
    (nacl_lammps / "atomic.data").write_text(ATOMIC_DATA)
    config = nacl_lammps / "atomic.yaml"
    config.write_text("engine: {input: nacl.in, nsteps: 10, frame_interval: 10}\n"
                      "topology: atomic.data\n"
                      "pcoord: [{type: distance, a: id 1, b: id 2}]\n")
    check = streamrun("check", config, cwd=tmp_path)
    assert check.returncode == 1
    [line] = problems(check.stdout)
    assert "key 'topology'" in line and "Failed to parse atoms section" in line
    assert "atom_style atomic: set topology_options: {atom_style: 'id type x y z'}" \
        in line
    check = streamrun("check", config, "--set",
                      "topology_options={atom_style: 'id type x y z'}", cwd=tmp_path)
    assert check.returncode == 0, check.stdout
    # id 1 is LAMMPS' atom 1 (the second line of Atoms): 3 Å from atom 2
    assert re.search(r"row 0:\s+3 ", check.stdout), check.stdout


def test_atoms_are_selected_by_their_lammps_id_from_1(nacl_lammps, tmp_path):
    atoms = (nacl_lammps / "start.data").read_text().split("Atoms # full\n\n", 1)[1]
    atoms = atoms.split("\n\n", 1)[0].splitlines()  # up to the next section
    na = next(int(w[0]) for w in map(str.split, atoms) if w[2] == "3")
    by_type = streamrun("check", nacl_lammps / "streamrun.yaml", cwd=tmp_path)
    by_id = streamrun("check", nacl_lammps / "streamrun.yaml", "--set",
                      f"pcoord=[{{type: distance, a: id {na}, b: type 4}}]",
                      cwd=tmp_path)
    assert by_type.returncode == by_id.returncode == 0, by_id.stdout
    row0 = [re.search(r"row 0:\s+(\S+)", p.stdout).group(1) for p in (by_type, by_id)]
    assert row0[0] == row0[1]
    names = streamrun("check", nacl_lammps / "streamrun.yaml", "--set",
                      "pcoord=[{type: distance, a: name NA, b: type 4}]", cwd=tmp_path)
    [line] = problems(names.stdout)
    assert "'id 1' for atom IDs" in line and "index 0" not in line
    readme = (ROOT / "README.md").read_text()
    lammps = readme[readme.index("### LAMMPS"):readme.index("### GROMACS")]
    assert "`index 0`" not in lammps and "`id 7` (LAMMPS' atom ID, from 1" in lammps


def test_a_lammps_data_file_named_the_lammps_way_is_read_as_data(nacl_lammps,
                                                                 tmp_path):
    shutil.move(nacl_lammps / "start.data", nacl_lammps / "data.nacl")
    config = nacl_lammps / "streamrun.yaml"
    config.write_text(config.read_text().replace("start.data", "data.nacl"))
    check = streamrun("check", config, cwd=tmp_path)
    assert check.returncode == 0, check.stdout
    assert re.search(r"row 0:\s+5\.42", check.stdout), check.stdout


def test_the_example_runs_from_a_folder_with_a_space(tmp_path, lmp, no_engine_left):
    folder = tmp_path / "my sims"
    shutil.copytree(EXAMPLES / "nacl_lammps", folder / "nacl_lammps",
                    ignore=shutil.ignore_patterns("westpa*"))
    proc = streamrun("run", "-c", "my sims/nacl_lammps/streamrun.yaml", "-w",
                     "my sims/segment", "-q", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = np.loadtxt(folder / "segment" / "pcoord.dat")
    assert rows.shape == (51,) and rows[0] == pytest.approx(5.422, abs=1e-3)


# -- 9. the README's OpenMM recipe: a DCD at the streamed steps --------------------

RECIPE = '''\
import sys
from pathlib import Path

from openmm import app

import streamrun.openmm

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import build

pdb = app.PDBFile(str(HERE / "topology.pdb"))
simulation = app.Simulation(pdb.topology, build.system(pdb.topology, 5),
                            build.integrator(5), build.cpu(), {"Threads": "1"})
simulation.loadState(str(HERE / "late.xml"))        # a state at step 250020
if streamrun.openmm.variable("steps") == "from-start":
    simulation.currentStep = 0
    dcd = app.DCDReporter("seg.dcd", streamrun.openmm.frame_interval(),
                          enforcePeriodicBox=False)
    dcd.report(simulation, simulation.context.getState(getPositions=True))
else:                                                 # the DCDReporter as it was
    dcd = app.DCDReporter("seg.dcd", streamrun.openmm.frame_interval(),
                          enforcePeriodicBox=False)
simulation.reporters.append(dcd)
simulation.reporters.append(streamrun.openmm.reporter())
simulation.step(streamrun.openmm.nsteps())
'''


def test_the_readme_openmm_recipe_writes_a_dcd_at_the_streamed_steps(
        openmm, nacl_openmm, tmp_path, no_engine_left):
    import MDAnalysis as mda
    from MDAnalysis.lib.distances import calc_bonds

    from openmm import app

    sys.path.insert(0, str(nacl_openmm))
    try:
        import build
    finally:
        sys.path.remove(str(nacl_openmm))
    pdb = app.PDBFile(str(nacl_openmm / "topology.pdb"))
    simulation = app.Simulation(pdb.topology, build.system(pdb.topology, 5),
                                build.integrator(5), build.cpu(), {"Threads": "1"})
    simulation.loadState(str(nacl_openmm / "start.xml"))
    simulation.currentStep = 250020
    simulation.saveState(str(nacl_openmm / "late.xml"))
    (nacl_openmm / "recipe.py").write_text(RECIPE)
    config = nacl_openmm / "streamrun.yaml"

    def na_cl(dcd):
        u = mda.Universe(str(nacl_openmm / "topology.pdb"), str(dcd))
        na, cl = u.select_atoms("name NA"), u.select_atoms("name CL")
        return np.array([calc_bonds(na.positions[0], cl.positions[0],
                                    box=ts.dimensions) for ts in u.trajectory])

    rows = {}
    for recipe in ("from-start", "absolute"):
        seg = tmp_path / f"seg-{recipe}"
        proc = streamrun("run", "-c", config, "-w", seg, "-q",
                         "--set", "engine.input=recipe.py",
                         "--set", "engine.nsteps=300", "--set",
                         "engine.frame_interval=100", "--set", "start=late.xml",
                         "--set", f"engine.variables.steps={recipe}", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        rows[recipe] = (np.loadtxt(seg / "pcoord.dat"), na_cl(seg / "seg.dcd"))
    streamed, dcd = rows["from-start"]
    assert len(streamed) == len(dcd) == 4           # row 0 + steps 100, 200, 300
    np.testing.assert_allclose(dcd, streamed, atol=1e-3)
    streamed, dcd = rows["absolute"]                      # steps 250100, 250200, 250300
    assert len(dcd) == 3 and not np.allclose(dcd, streamed[1:], atol=1e-4)
