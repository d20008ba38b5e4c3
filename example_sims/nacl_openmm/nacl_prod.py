"""One Na+/Cl- segment in OpenMM, streamed to streamrun over IMD v3.

streamrun runs this script with the same Python (``engine.name: openmm``) in the
segment folder and tells it, through the environment, how many steps to run, the
frame interval, and the engine.variables of its config:

- ``start``: the state to start from (an OpenMM state XML: the parent segment's
  ``seg.xml`` or the basis state ``start.xml``);
- ``seed``: the random seed of the Langevin integrator and the barostat. OpenMM
  reads it when the Context is made: a script that serves many segments
  (``segments()``) is seeded by its first, and its random numbers continue from
  segment to segment, so siblings still differ;
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

pdb = app.PDBFile(str(HERE / "topology.pdb"))
seed = int(streamrun.openmm.variable("seed", "1"))  # the first segment's: see below
simulation = app.Simulation(pdb.topology, build.system(pdb.topology, seed),
                            build.integrator(seed), build.cpu(), {"Threads": "1"})
simulation.reporters.append(streamrun.openmm.reporter())   # <- streams each segment

# One segment when streamrun runs the script one-shot; every segment of a WESTPA
# worker on the warm path, which keeps the script running between them (the set-up
# above is then paid once per worker).
for segment in streamrun.openmm.segments():
    simulation.loadState(segment.variable("start", str(HERE / "start.xml")))
    dcd = segment.variable("dcd", "")
    if dcd:
        writer = app.DCDReporter(dcd, segment.frame_interval, enforcePeriodicBox=False)
        simulation.reporters.append(writer)
    simulation.step(segment.nsteps)
    simulation.saveState("seg.xml")
    if dcd:
        simulation.reporters.remove(writer)
        del writer  # DCDReporter has no close(): it closes its file when deleted
