#!/usr/bin/env python
"""The analysis half of a classic runseg.sh: after the engine has written its
trajectory, a new Python process reads it with MDAnalysis and writes the pcoord
(one row per trajectory frame, step 0 included), like WESTPA's tutorials do.

    python posthoc.py TOPOLOGY TRAJECTORY OUTPUT --distance SEL_A SEL_B
    python posthoc.py TOPOLOGY TRAJECTORY OUTPUT --plugin FILE.py:FUNC SEL_A SEL_B

The distance is computed as streamrun's ``distance`` coordinate (centres of mass,
minimum image). Prints one JSON line with the time spent in each phase.
"""

import argparse
import json
import time

T0 = time.perf_counter()

import numpy as np  # noqa: E402
import MDAnalysis as mda  # noqa: E402
from MDAnalysis.lib.distances import calc_bonds  # noqa: E402

T_IMPORT = time.perf_counter()


def load_plugin(spec):
    import importlib.util
    path, _, func = spec.rpartition(":")
    s = importlib.util.spec_from_file_location("posthoc_plugin", path)
    m = importlib.util.module_from_spec(s)
    s.loader.exec_module(m)
    return getattr(m, func)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("topology")
    p.add_argument("trajectory")
    p.add_argument("output")
    p.add_argument("--format", default="LAMMPS", help="MDAnalysis trajectory format")
    p.add_argument("--distance", nargs=2, metavar=("SEL_A", "SEL_B"))
    p.add_argument("--plugin", nargs=3, metavar=("FILE:FUNC", "SEL_A", "SEL_B"))
    a = p.parse_args()
    u = mda.Universe(a.topology, a.trajectory, format=a.format)
    if a.distance:
        ga, gb = (u.select_atoms(s) for s in a.distance)

        def centre(g):
            return g.positions[0] if len(g) == 1 else g.center_of_mass()

        def value(u):
            box = u.dimensions
            return calc_bonds(np.asarray(centre(ga), np.float64),
                              np.asarray(centre(gb), np.float64), box=box)
    else:
        func = load_plugin(a.plugin[0])
        ga, gb = (u.select_atoms(s) for s in a.plugin[1:])

        def value(u):
            return func(u, ga, gb)
    t_load = time.perf_counter()
    rows = [np.atleast_1d(np.asarray(value(u), dtype=np.float64)) for _ in u.trajectory]
    t_compute = time.perf_counter()
    np.savetxt(a.output, np.vstack(rows), fmt="%.10g")
    t_end = time.perf_counter()
    print(json.dumps({"import": T_IMPORT - T0, "load": t_load - T_IMPORT,
                      "compute": t_compute - t_load, "write": t_end - t_compute,
                      "frames": len(rows)}))


if __name__ == "__main__":
    main()
