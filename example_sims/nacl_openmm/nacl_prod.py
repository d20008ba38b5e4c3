"""One Na+/Cl- segment in OpenMM, streamed to streamrun over IMD v3.

streamrun runs this script with the same Python (``engine.name: openmm``) in the
segment folder and tells it, through the environment, how many steps to run, the
frame interval, and the engine.variables of its config:

- ``start``: the state to start from (an OpenMM state XML: the parent segment's
  ``seg.xml`` or the basis state ``start.xml``);
- ``seed``: the random seed of the Langevin integrator and the barostat
  (different per segment);
- ``dcd`` (optional): also write a DCD at the streamed steps (for checking).

It writes ``seg.xml``, the final state, which the next segment starts from.
Run by hand, without streamrun: ``STREAMRUN_FRAME_INTERVAL=10 python nacl_prod.py``
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
simulation = app.Simulation(pdb.topology, build.system(pdb.topology, seed),
                            build.integrator(seed), build.cpu(), {"Threads": "1"})
simulation.loadState(streamrun.openmm.variable("start", str(HERE / "start.xml")))

simulation.reporters.append(streamrun.openmm.reporter())   # <- the one line
dcd = streamrun.openmm.variable("dcd", "")
if dcd:
    simulation.reporters.append(app.DCDReporter(
        dcd, streamrun.openmm.frame_interval(), enforcePeriodicBox=False))
simulation.step(streamrun.openmm.nsteps())
simulation.saveState("seg.xml")
