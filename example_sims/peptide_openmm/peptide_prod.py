"""One segment of the peptide (ubiquitin 57-76, OBC implicit solvent, no periodic
box) in OpenMM, streamed to streamrun over IMD v3.

streamrun runs this script with the same Python (``engine.name: openmm``) in the
segment folder and tells it, through the environment, how many steps to run, the
frame interval, and the engine.variables of its config:

- ``start``: the state to start from (an OpenMM state XML: the parent segment's
  ``seg.xml`` or the basis state ``start.xml``; an Amber restart works too, see
  ``streamrun.openmm.load_start``);
- ``seed``: the random seed of the Langevin integrator (different per segment).

It writes ``seg.xml``, the final state, which the next segment starts from.
Run by hand, without streamrun: ``STREAMRUN_FRAME_INTERVAL=10 python peptide_prod.py``
waits for an IMD client (see the README).
"""

import sys
from pathlib import Path

from openmm import app

import streamrun.openmm

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import build  # noqa: E402  (the force field and settings of the example)

seed = int(streamrun.openmm.variable("seed", "1"))
pdb = app.PDBFile(str(HERE / "topology.pdb"))
simulation = app.Simulation(pdb.topology, build.system(pdb.topology),
                            build.integrator(seed), build.cpu(), {"Threads": "1"})
start = streamrun.openmm.load_start(
    simulation, streamrun.openmm.variable("start", str(HERE / "start.xml")))
print(start, flush=True)
if not start.velocities:  # an Amber restart without them: draw them at 300 K
    simulation.context.setVelocitiesToTemperature(build.TEMPERATURE, seed)

simulation.reporters.append(streamrun.openmm.reporter())   # <- the one line
simulation.step(streamrun.openmm.nsteps())
simulation.saveState("seg.xml")
