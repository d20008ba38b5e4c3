"""The protein WE user's first example, example_sims/peptide_openmm: a peptide in
implicit solvent (ubiquitin 57-76, amber99sb-ildn + OBC GB, no cut-off, no periodic
box) run by OpenMM, a 2-D pcoord (Cα RMSD to the folded structure, end-to-end Cα
distance) and phi/psi of every residue as an aux dataset.

1. One standalone segment of the example's config: every pcoord row (row 0
   included) equals MDAnalysis (RMSD after superposition, plain distance: there is
   no box) and every phi/psi column equals MDTraj's compute_phi/compute_psi, both on
   a DCD that the example's script (a copy with a DCDReporter added) wrote at the
   same steps, start frame included.
2. The WESTPA simulation, as its README says to run it (init.sh, run.sh): two
   iterations, every segment complete, row 0 of every segment equal to its
   parent's last row (pcoord and phi/psi), phi/psi stored in west.h5.

Segments are shortened to 100 steps, a frame every 10 (pcoord_len stays 11).
"""

import os
import shutil
import subprocess
import sys
import warnings

import numpy as np
import pytest

from conftest import EXAMPLES, absent
from streaming import STREAMRUN

pytestmark = pytest.mark.engine("openmm")

EXAMPLE = EXAMPLES / "peptide_openmm"
NSTEPS, EVERY = 100, 10
ROWS = NSTEPS // EVERY + 1
FIRST, LAST = 57, 76               # residues of the peptide (ubiquitin's numbers)
N_ANGLES = 2 * (LAST - FIRST)      # psi of 57-75, phi of 58-76
REPORTER_LINE = "simulation.reporters.append(streamrun.openmm.reporter())"
#: inserted before the reporter line of a copy of the script: a DCD of the start
#: frame and of every streamed step
DCD_LINES = (
    "dcd = app.DCDReporter('seg.dcd', streamrun.openmm.frame_interval())\n"
    "dcd.report(simulation, simulation.context.getState(positions=True))\n"
    "simulation.reporters.append(dcd)\n")


@pytest.fixture
def peptide(openmm, tmp_path):
    """A private copy of example_sims/peptide_openmm (without run products)."""
    dest = tmp_path / "peptide_openmm"
    shutil.copytree(EXAMPLE, dest, ignore=shutil.ignore_patterns(
        "__pycache__", "west.h5", "traj_segs", "seg_logs", "istates", "*.log"))
    return dest


def turn(a, b):
    """a - b as an angle in [-180, 180) degrees."""
    return (np.asarray(a) - np.asarray(b) + 180.0) % 360.0 - 180.0


def column_names(path):
    """Column names from the header of a streamrun pcoord/aux file."""
    with open(path) as f:
        header = f.readline()
    assert header.startswith("# "), header
    return [c.strip().rsplit(" [", 1)[0]
            for c in header.split(":", 1)[1].split(",")]


def mdanalysis_rows(example, dcd):
    """(rmsd_ca, ends) per DCD frame, as MDAnalysis computes them (float64)."""
    import MDAnalysis as mda
    from MDAnalysis.analysis import rms

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        u = mda.Universe(str(example / "topology.pdb"), str(dcd))
        ref = mda.Universe(str(example / "reference.pdb"))
    ca, ref_ca = u.select_atoms("name CA"), ref.select_atoms("name CA")
    first = u.select_atoms(f"resid {FIRST} and name CA")
    last = u.select_atoms(f"resid {LAST} and name CA")
    assert len(ca) == LAST - FIRST + 1 and len(first) == len(last) == 1
    rows = []
    for _ in u.trajectory:
        assert u.dimensions is None  # no box in the DCD either
        rows.append([
            rms.rmsd(ca.positions.astype(np.float64),
                     ref_ca.positions.astype(np.float64), center=True,
                     superposition=True),
            np.linalg.norm(last.positions[0].astype(np.float64)
                           - first.positions[0].astype(np.float64))])
    return np.array(rows)


def mdtraj_angles(example, dcd):
    """{'phi:58': degrees per frame, ...} from MDTraj's compute_phi/compute_psi."""
    try:
        import mdtraj
    except ImportError:
        pytest.skip("mdtraj not installed (the phi/psi reference)")
    traj = mdtraj.load_dcd(str(dcd), top=str(example / "topology.pdb"))
    out = {}
    for angle, compute, atom in (("phi", mdtraj.compute_phi, 1),   # N of the residue
                                 ("psi", mdtraj.compute_psi, 0)):  # its N
        indices, values = compute(traj)
        for k, quad in enumerate(indices):
            resid = traj.topology.atom(int(quad[atom])).residue.resSeq
            out[f"{angle}:{resid}"] = np.degrees(values[:, k])
    return out


# ------------------------------------------------------ 1. a standalone segment

def test_a_segment_of_the_example_equals_mdanalysis_and_mdtraj_on_its_own_dcd(
        peptide, tmp_path, no_engine_left):
    script = peptide / "peptide_prod.py"
    text = script.read_text()
    assert text.count(REPORTER_LINE) == 1
    script.write_text(text.replace(REPORTER_LINE, DCD_LINES + REPORTER_LINE))
    seg = tmp_path / "seg"
    proc = subprocess.run(
        [*STREAMRUN, "run", "-c", str(peptide / "streamrun.yaml"), "-w", str(seg),
         "--set", f"engine.nsteps={NSTEPS}", "--set", f"engine.frame_interval={EVERY}"],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    log = (seg / "streamrun-engine.log").read_text()
    assert "(periodic box: no)" in log and f"sent {ROWS - 1} frames" in log, log
    assert "OpenMM state" in log and (seg / "seg.xml").exists()

    # pcoord: rmsd_ca, ends (Å) against MDAnalysis
    assert column_names(seg / "pcoord.dat") == ["rmsd_ca", "ends"]
    rows = np.loadtxt(seg / "pcoord.dat", ndmin=2)
    expected = mdanalysis_rows(peptide, seg / "seg.dcd")
    assert rows.shape == expected.shape == (ROWS, 2)
    np.testing.assert_allclose(rows, expected, atol=1e-3, rtol=0)
    assert 0.1 < rows[0, 0] < 2.0 and 10.0 < rows[0, 1] < 40.0  # a sane start

    # aux phipsi (degrees) against MDTraj: every angle the chain has, no other
    names = column_names(seg / "aux_phipsi.dat")
    angles = np.loadtxt(seg / "aux_phipsi.dat", ndmin=2)
    reference = mdtraj_angles(peptide, seg / "seg.dcd")
    assert len(names) == N_ANGLES and sorted(names) == sorted(reference)
    assert names[:3] == [f"psi:{FIRST}", f"phi:{FIRST + 1}", f"psi:{FIRST + 1}"]
    assert angles.shape == (ROWS, N_ANGLES)
    worst = max(np.abs(turn(angles[:, j], reference[name])).max()
                for j, name in enumerate(names))
    assert worst <= 1e-2, f"phi/psi differ from MDTraj by up to {worst:.2g} degrees"


# ------------------------------------------------------------------ 2. WESTPA

@pytest.fixture
def westpa_bin():
    """Folder of w_init/w_run/streamrun next to the running Python; skips (fails
    when STREAMRUN_REQUIRE_ENGINES names westpa) without WESTPA."""
    from pathlib import Path

    bindir = Path(sys.executable).parent
    missing = [t for t in ("w_init", "w_run", "streamrun") if not (bindir / t).exists()]
    try:
        import h5py  # noqa: F401
    except ImportError:
        missing.append("h5py")
    if missing:
        absent("westpa", f"WESTPA not installed next to {sys.executable}: {missing} "
                         f"missing")
    return bindir


def replace_once(path, old, new):
    text = path.read_text()
    assert text.count(old) == 1, (path, old)
    path.write_text(text.replace(old, new))


def test_the_westpa_example_runs_two_iterations_with_phi_psi_stored(
        peptide, westpa_bin, no_engine_left):
    import h5py
    from westpa.core.segment import Segment

    sim = peptide / "westpa"
    cfg = sim / "west.cfg"
    replace_once(cfg, "max_total_iterations: 5", "max_total_iterations: 2")
    replace_once(cfg, "nsteps: 500 ", f"nsteps: {NSTEPS} ")
    replace_once(cfg, "frame_interval: 50 ", f"frame_interval: {EVERY} ")
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEST_")}
    env.update(PATH=f"{westpa_bin}{os.pathsep}{env.get('PATH', '')}",
               WEST_SIM_ROOT=str(sim))
    for script in ("./init.sh", "./run.sh"):
        proc = subprocess.run([script], cwd=sim, env=env, capture_output=True,
                              text=True, timeout=240)
        assert proc.returncode == 0 and "ERROR" not in proc.stdout + proc.stderr, \
            proc.stdout + proc.stderr
    with h5py.File(sim / "west.h5", "r") as f:
        bstate = f["ibstates/0/bstate_pcoord"][0]
        iterations = []
        for n in (1, 2):
            group = f[f"iterations/iter_{n:08d}"]
            iterations.append((group["seg_index"][:], group["pcoord"][:],
                               group["auxdata/phipsi"][:]))
    assert bstate.shape == (2,)
    for n, (index, pcoord, phipsi) in enumerate(iterations, start=1):
        count = len(index)
        assert (index["status"] == Segment.SEG_STATUS_COMPLETE).all(), index["status"]
        assert pcoord.shape == (count, ROWS, 2) and np.isfinite(pcoord).all()
        assert phipsi.shape == (count, ROWS, N_ANGLES) and np.isfinite(phipsi).all()
        assert (np.abs(phipsi) <= 180.0).all()
        if n == 1:  # new trajectories from the basis state: its get_pcoord point
            assert (index["parent_id"] < 0).all()
            np.testing.assert_allclose(pcoord[:, 0], np.broadcast_to(bstate, (count, 2)),
                                       atol=1e-3, rtol=0)
            assert count >= 2  # bin_target_counts 2: the basis state split in two
        else:       # continuing: row 0 = the parent's last row
            parents = index["parent_id"]
            _, last_pcoord, last_phipsi = iterations[0]
            np.testing.assert_allclose(pcoord[:, 0], last_pcoord[parents, -1],
                                       atol=1e-3, rtol=0)
            assert np.abs(turn(phipsi[:, 0], last_phipsi[parents, -1])).max() <= 1e-2
    # siblings ran with different seeds: they end in different places
    ends = iterations[0][1][:, -1, 0]
    assert len(set(ends.tolist())) == len(ends), ends
