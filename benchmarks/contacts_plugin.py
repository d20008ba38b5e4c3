"""A deliberately expensive pcoord for the overlap benchmark: the number of atom
pairs (group a x group b) closer than 3.5 Å, minimum image, computed with
MDAnalysis' distance_array in blocks of 256 rows of a (bounded memory). Its cost
per frame is proportional to len(a) * len(b); the benchmark sizes group a so that
the pcoord takes about as long as the engine needs for one frame (alpha ~ 1).

Used unchanged by both variants: as a streamrun plugin
(``function: contacts_plugin.py:contacts, selections: [a, b]``) and by the post-hoc
script of the runseg.sh variant.
"""

import numpy as np
from MDAnalysis.lib.distances import distance_array

CUTOFF = 3.5   # Å
BLOCK = 256    # rows of group a per distance_array call


def contacts(u, a, b):
    box = u.dimensions
    pa, pb = a.positions, b.positions
    out = np.empty((min(BLOCK, len(pa)), len(pb)), dtype=np.float64)
    n = 0
    for i in range(0, len(pa), BLOCK):
        block = pa[i:i + BLOCK]
        d = distance_array(block, pb, box=box, result=out[:len(block)])
        n += np.count_nonzero(d < CUTOFF)
    return float(n)
