"""The post-hoc half of the tutorial's runseg.sh: read the structures and trajectories
with mdtraj (as tutorial7.1-basic-nacl's ``get_distance.py``) and write the Na-Cl
minimum-image distance in Å, one row per frame, in the order given.

    python get_distance.py TOPOLOGY OUTPUT parent.xml seg.dcd   # a segment's pcoord
    python get_distance.py TOPOLOGY OUTPUT bstates/start.xml    # a basis state's
"""

import sys

import mdtraj
import numpy as np

topology, output, files = sys.argv[1], sys.argv[2], sys.argv[3:]
top = mdtraj.load_topology(topology)
pair = [[top.select("name NA")[0], top.select("name CL")[0]]]
rows = [mdtraj.compute_distances(mdtraj.load(f, top=top), pair, periodic=True)
        for f in files]
np.savetxt(output, np.concatenate(rows)[:, 0] * 10.0)
