"""Many segments at once on one node, as a WESTPA worker pool runs them: no port
collision, each pcoord file from its own engine, no engine left."""

import re
import subprocess
import sys

import MDAnalysis as mda
import numpy as np
import pytest
from MDAnalysis.lib.distances import calc_bonds

from tiny_lj import make_tiny_sim

STREAMRUN = [sys.executable, "-m", "streamrun"]
N_SEGMENTS = 32


@pytest.mark.parametrize("round_", [1, 2, 3])
def test_32_concurrent_segments_each_match_their_own_engine(lmp, tmp_path, round_,
                                                            no_engine_left):
    config = make_tiny_sim(tmp_path / "sim", lmp, nsteps=100, every=10)
    procs = []
    for i in range(N_SEGMENTS):
        workdir = tmp_path / f"seg{i:02d}"
        procs.append((workdir, subprocess.Popen(
            [*STREAMRUN, "run", "-q", "-c", str(config), "-w", str(workdir),
             "--set", f"engine.variables.seed={round_ * 1000 + i + 1}",
             "--set", "engine.variables.dumpfile=check.lammpstrj"],
            stderr=subprocess.PIPE, text=True)))
    ports, finals = [], set()
    for workdir, proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, f"{workdir.name}: {err}"
        log = (workdir / "streamrun-engine.log").read_text()
        ports.append(int(re.search(r"Waiting for IMD connection on port (\d+)",
                                   log).group(1)))
        written = np.loadtxt(workdir / "pcoord.dat")
        u = mda.Universe(str(tmp_path / "sim" / "lj.data"),
                         str(workdir / "check.lammpstrj"), topology_format="DATA",
                         format="LAMMPSDUMP", atom_style="id type x y z")
        ref = [calc_bonds(u.atoms[0].position, u.atoms[1].position, box=u.dimensions)
               for _ in u.trajectory]
        assert written.shape == (11,)
        assert np.abs(written - ref).max() <= 1e-3
        finals.add(round(float(written[-1]), 5))
    assert len(set(ports)) == N_SEGMENTS, "two segments shared an IMD port"
    assert len(finals) == N_SEGMENTS, "two segments produced the same trajectory"
