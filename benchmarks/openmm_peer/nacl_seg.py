"""One nacl_openmm segment the way WESTPA's OpenMM tutorial runs it
(tutorial7.1-basic-nacl's ``nacl_prod.py``): a new Python process per segment that
builds the system, loads ``parent.xml``, writes a DCD every ``NACL_INTERVAL`` steps
and the final state ``seg.xml``. The pcoord is computed afterwards from the DCD
(``get_distance.py``).

    python nacl_seg.py EXAMPLE_DIR SEED     # in the segment folder

``EXAMPLE_DIR`` holds the example's ``build.py`` and ``topology.pdb``; the system,
integrator and platform (CPU, one thread) are the example's, as in its
``nacl_prod.py``. Steps and frame interval: ``NACL_NSTEPS``, ``NACL_INTERVAL``.
"""

import os
import sys

from openmm import app

example, seed = sys.argv[1], int(sys.argv[2])
sys.path.insert(0, example)
import build  # noqa: E402  (the example's force field and settings)

pdb = app.PDBFile(os.path.join(example, "topology.pdb"))
simulation = app.Simulation(pdb.topology, build.system(pdb.topology, seed),
                            build.integrator(seed), build.cpu(), {"Threads": "1"})
simulation.loadState("parent.xml")
simulation.reporters.append(app.DCDReporter("seg.dcd", int(os.environ["NACL_INTERVAL"])))
simulation.step(int(os.environ["NACL_NSTEPS"]))
simulation.saveState("seg.xml")
