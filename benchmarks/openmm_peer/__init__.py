"""The peers of streamrun for OpenMM under WESTPA (benchmark ``openmm_westpa``).

- :mod:`openmm_peer.propagator`: an in-process WESTPA propagator that keeps one OpenMM
  ``Simulation`` per worker (as WESTPA's wca-dimer_openmm example and westpa_prop do);
- ``runseg.sh`` + ``nacl_seg.py`` + ``get_distance.py``: the tutorial way (a Python
  OpenMM script per segment writing a DCD, then a post-hoc pcoord script with mdtraj),
  run by WESTPA's executable propagator; ``get_pcoord.sh`` for the basis state.

Both use ``example_sims/nacl_openmm/build.py`` (force field, system, integrator, CPU
platform with one thread), as the example's ``nacl_prod.py`` does.
"""
