"""streamrun: one process that runs a WESTPA segment's MD engine and turns its IMD
stream into progress coordinates while the engine runs.

Lengths are in Å throughout (the IMD v3 unit; LAMMPS ``units real``/``metal``).
"""

__version__ = "0.1.0"
