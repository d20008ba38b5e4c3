"""Engine adapters: everything that differs between MD engines lives here.

An adapter says how to build the engine's command line for a given IMD port, how to
recognise that the engine is accepting IMD connections (or failed to bind), and how
many frames a segment streams. The rest of streamrun never asks which engine it runs.
"""

from .base import EngineAdapter, find_executable
from .gromacs import GromacsAdapter
from .lammps import LammpsAdapter
from .namd import NamdAdapter
from .openmm import OpenMMAdapter

#: Adapters by the name used in ``engine.name``.
ADAPTERS: dict[str, EngineAdapter] = {
    "lammps": LammpsAdapter(),
    "gromacs": GromacsAdapter(),
    "namd": NamdAdapter(),
    "openmm": OpenMMAdapter(),
}

__all__ = ["ADAPTERS", "EngineAdapter", "find_executable"]
