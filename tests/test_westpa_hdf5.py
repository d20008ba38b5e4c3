"""WESTPA's HDF5 framework with streamrun as the GROMACS propagator: a real run
(w_init + w_run) of example_sims/nacl_gromacs/westpa switched to what a WESTPA
tutorial of that kind uses, ``data_refs.iteration`` (per-iteration iter_*.h5 files
holding each segment's trajectory, restart files and log) and ``gen_istates: true``
with a gen_istate script that links the basis state (WESTPA's ``istates/1/0``, a
name without a suffix).

What a user of that set-up sees:

- w_init's get_pcoord reads the suffix-less istate links (by their target, a .gro);
- every segment's restart files (seg.gro, seg.cpt) go through iter_*.h5 and are
  unpacked into the child's folder, and mdrun leaves no ``#seg.gro.1#`` backups;
- WESTPA's log has no "could not read any trajectory data" warning;
- the trajectories WESTPA stored, read back with WESTPA's own WESTIterationFile,
  hold each segment's start frame and its streamed frames with time in ps, and
  joined along a walker's history (each segment's first frame is its parent's
  last one) they are one continuous trajectory: times increasing in equal steps
  across iterations, frame k of a segment = pcoord row k;
- row 0 of every continuing segment equals its parent's last row to 1e-5 Å.
"""

import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from MDAnalysis.lib.distances import calc_bonds

from test_westpa import init, run, seg_dir, sim_env, westpa_path  # noqa: F401
from test_westpa_gromacs import copy_example

ITERATIONS = 3
ROWS = 11            # 100 steps, a frame every 10
FRAME_PS = 0.02      # 10 steps of 2 fs
GEN_ISTATE = """#!/bin/sh
# WESTPA's gen_istate: the initial state is a link to its basis state
mkdir -p "$(dirname "$WEST_ISTATE_DATA_REF")"
ln -s "$WEST_BSTATE_DATA_REF" "$WEST_ISTATE_DATA_REF"
"""

pytestmark = [pytest.mark.engine("gromacs"), pytest.mark.engine("westpa")]


def edit(path, old, new):
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def hdf5_framework(sim):
    """The example's west.cfg with iter_*.h5 files, generated initial states, and
    the streamrun: section returning the restart files and a trajectory."""
    cfg = sim / "west.cfg"
    (sim / "gen_istate.sh").write_text(GEN_ISTATE)
    (sim / "gen_istate.sh").chmod(0o755)
    edit(cfg, "    gen_istates: false", "    gen_istates: true")
    edit(cfg, "    data_refs:\n",
         "    data_refs:\n      iteration: $WEST_SIM_ROOT/traj_segs/iter_{n_iter:06d}.h5\n")
    edit(cfg, "    get_pcoord:\n",
         "    gen_istate:\n      executable: $WEST_SIM_ROOT/gen_istate.sh\n"
         "    get_pcoord:\n")
    edit(cfg, "  topology: ../start.gro",
         "  restart: [seg.gro, seg.cpt]   # stored in iter_*.h5, unpacked for the child\n"
         "  trajectory: {every: 1}        # seg.trr + seg.pdb to WEST_TRAJECTORY_RETURN\n"
         "  topology: ../start.gro")


def na_cl_nm(xyz, box_nm):
    """Na-Cl minimum-image distance in Å from MDTraj coordinates (nm); atoms 0, 1
    of the example are NA and CL."""
    return float(calc_bonds(xyz[0] * 10, xyz[1] * 10, box=[*(box_nm * 10), 90, 90, 90]))


def test_hdf5_framework_with_generated_istates_stores_continuous_trajectories(
        gmx, westpa_path, tmp_path, no_engine_left):
    import h5py
    from westpa.core.h5io import WESTIterationFile

    sim = copy_example(tmp_path)
    hdf5_framework(sim)
    env = sim_env(sim, westpa_path)
    init_out = init(sim, env)
    rc, out = run(["./run.sh", "--n-workers", "2"], sim, env, "run.log")
    assert rc == 0 and "WEST run complete." in out, out
    assert "ERROR" not in out, out
    for text in (init_out, out, (sim / "west.log").read_text()
                 if (sim / "west.log").exists() else ""):
        assert "could not read any trajectory data" not in text
        assert "could not write HDF5 Framework restart" not in text

    # get_pcoord read the suffix-less istate link by the .gro it points to
    istate = sim / "istates" / "1" / "0"
    assert istate.is_symlink() and istate.suffix == ""
    with h5py.File(sim / "west.h5", "r") as f:
        bstate_pcoord = f["ibstates/0/bstate_pcoord"][:]
        istate_pcoord = f["ibstates/0/istate_pcoord"][:]
        index = {n: f[f"iterations/iter_{n:08d}/seg_index"][:]
                 for n in range(1, ITERATIONS + 1)}
        pcoord = {n: f[f"iterations/iter_{n:08d}/pcoord"][:]
                  for n in range(1, ITERATIONS + 1)}
    assert np.isfinite(istate_pcoord).all()
    assert np.abs(istate_pcoord - bstate_pcoord[0, 0]).max() <= 1e-6

    # no mdrun backups, though WESTPA unpacked seg.gro/seg.cpt into the folders
    folders = [seg_dir(sim, n, s) for n in index for s in range(len(index[n]))]
    assert all((seg_dir(sim, n, s) / "seg.cpt").exists() for n in index
               for s in range(len(index[n])))
    backups = [str(p.relative_to(sim)) for d in folders for p in d.glob("#*#")]
    assert not backups, backups

    # row 0 of a continuing segment = its parent's last row, exactly
    for n in range(2, ITERATIONS + 1):
        for s, parent in enumerate(index[n]["parent_id"]):
            assert abs(pcoord[n][s, 0, 0] - pcoord[n - 1][parent, -1, 0]) <= 1e-5

    def stored(n, s):
        path = sim / "traj_segs" / f"iter_{n:06d}.h5"
        with WESTIterationFile(str(path)) as f:
            return f.read_as_traj(iteration=n, segment=s)

    # one walker's history, iteration 1 to the last, read from iter_*.h5
    history, s = [], 0
    for n in range(ITERATIONS, 0, -1):
        history.append((n, s))
        s = int(index[n]["parent_id"][s])
    history.reverse()
    joined_times, joined_na_cl = [], []
    for i, (n, s) in enumerate(history):
        traj = stored(n, s)
        assert traj.n_frames == ROWS, f"iteration {n} segment {s}"  # start + 10
        na_cl = [na_cl_nm(traj.xyz[k], traj.unitcell_lengths[k])
                 for k in range(traj.n_frames)]
        # frame k is pcoord row k: frame 0 the start structure, then the stream
        assert np.abs(np.array(na_cl) - pcoord[n][s, :, 0]).max() <= 2e-3
        # WESTPA lines iterations up from first/last frame time: iteration n
        # spans (n-1)*0.2 ps .. n*0.2 ps, a frame every 0.02 ps
        assert np.allclose(traj.time, (n - 1) * (ROWS - 1) * FRAME_PS
                           + FRAME_PS * np.arange(ROWS), atol=1e-4), traj.time
        first = 0 if i == 0 else 1  # a segment's first frame is its parent's last
        if i:
            assert abs(traj.time[0] - joined_times[-1]) <= 1e-4
            assert abs(na_cl[0] - joined_na_cl[-1]) <= 2e-3
        joined_times += list(traj.time[first:])
        joined_na_cl += na_cl[first:]
    assert len(joined_times) == 1 + ITERATIONS * (ROWS - 1)
    steps = np.diff(joined_times)
    assert np.allclose(steps, FRAME_PS, atol=1e-4), steps
    print(f"walker {history}: {len(joined_times)} frames, "
          f"{joined_times[0]:.2f}..{joined_times[-1]:.2f} ps")


def test_without_a_trajectory_west_cfg_says_so_and_westpa_does_not_warn(
        gmx, westpa_path, tmp_path, no_engine_left):
    """No ``trajectory:``: WESTPA's HDF5 framework would still ask for one and warn
    'could not read any trajectory data' for every state and segment (streamrun's
    seg log says how to stop it). ``{name: trajectory, enabled: false}`` in
    west.executable.datasets tells WESTPA there is none: no warning, no note."""
    sim = copy_example(tmp_path)
    hdf5_framework(sim)
    cfg = sim / "west.cfg"
    edit(cfg, "  trajectory: {every: 1}", "  # no trajectory")
    edit(cfg, "max_total_iterations: 3", "max_total_iterations: 1")
    edit(cfg, "    environ: {}",
         "    environ: {}\n    datasets:\n      - {name: trajectory, enabled: false}")
    env = sim_env(sim, westpa_path)
    init_out = init(sim, env)
    rc, out = run(["./run.sh", "--n-workers", "2"], sim, env, "run.log")
    assert rc == 0 and "WEST run complete." in out, out
    assert "could not read any trajectory data" not in init_out + out
    logs = sorted((sim / "seg_logs").glob("*.log"))
    assert logs and not any("trajectory: is off" in p.read_text() for p in logs)
