"""Build the implicit-solvent peptide example with OpenMM alone (nothing downloaded).

The peptide is the C-terminal 20 residues of ubiquitin (57-76,
SDYNIQKESTLHLVLRLRGG) from the GROMACS structure that imdclient ships
(``imdclient/data/gromacs/md/gromacs_struct.gro``): heavy atoms as in that file,
hydrogens added by OpenMM's Modeller (charged N-terminus, the protein's own
C-terminal OXT), force field ``amber99sbildn.xml`` + ``amber99_obc.xml`` (OBC
generalized Born; both ship with OpenMM), no cut-off, no periodic box.

Writes, next to this file:

- ``reference.pdb``: the structure as it is in ubiquitin (plus hydrogens), before
  minimisation: the reference of the Cα RMSD;
- ``topology.pdb``: the same atoms after minimisation, no CRYST1 (no box): the
  topology that the segment script and MDAnalysis read;
- ``start.xml``: an OpenMM state (minimised positions, velocities drawn at 300 K,
  time 0, step 0): the start point of the segments.

Run it with ``python build.py`` (a few seconds on one core). The segment script
``peptide_prod.py`` uses the same force field and settings (``system()``,
``integrator()``, ``cpu()``). Residues keep ubiquitin's numbers (57-76).
"""

import os
import tempfile
import warnings
from pathlib import Path

import openmm
from openmm import app, unit

HERE = Path(__file__).resolve().parent
#: ubiquitin residues kept (inclusive)
FIRST, LAST = 57, 76
#: amber99_obc.xml is OpenMM's native GBSAOBCForce; the implicit/*.xml files are
#: CustomGBForce, about 10 times slower on the CPU platform.
FORCE_FIELD = ("amber99sbildn.xml", "amber99_obc.xml")
TEMPERATURE = 300 * unit.kelvin
#: seed of the start velocities
VELOCITY_SEED = 5


def forcefield():
    return app.ForceField(*FORCE_FIELD)


def system(topology):
    """OBC implicit solvent, no cut-off (so no periodic box), H bonds constrained."""
    return forcefield().createSystem(topology, nonbondedMethod=app.NoCutoff,
                                     constraints=app.HBonds)


def integrator(seed=0):
    """Langevin (middle scheme), 2 fs, 1/ps friction, at 300 K; random seed ``seed``
    (0 lets OpenMM pick one)."""
    i = openmm.LangevinMiddleIntegrator(TEMPERATURE, 1 / unit.picosecond,
                                        0.002 * unit.picoseconds)
    i.setRandomNumberSeed(seed)
    return i


def cpu():
    return openmm.Platform.getPlatformByName("CPU")


def source_structure():
    """imdclient's GROMACS ubiquitin (a file of the installed package)."""
    import imdclient.data

    return Path(os.path.dirname(imdclient.data.__file__)) / "gromacs" / "md" / \
        "gromacs_struct.gro"


def peptide():
    """Heavy atoms of residues FIRST-LAST as an OpenMM PDBFile (via MDAnalysis)."""
    import MDAnalysis as mda

    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MDAnalysis' PDB writer: missing attributes
        u = mda.Universe(str(source_structure()))
        heavy = u.select_atoms(f"protein and resid {FIRST}:{LAST} and not name H*")
        u.dimensions = None  # no CRYST1: no box
        heavy.write(os.path.join(tmp, "heavy.pdb"))
        return app.PDBFile(os.path.join(tmp, "heavy.pdb"))


def write_pdb(path, topology, positions):
    with open(path, "w") as f:
        app.PDBFile.writeFile(topology, positions, f, keepIds=True)


def main():
    pdb = peptide()
    modeller = app.Modeller(pdb.topology, pdb.positions)
    modeller.topology.setPeriodicBoxVectors(None)
    modeller.addHydrogens(forcefield(), pH=7.0)
    top = modeller.topology
    write_pdb(HERE / "reference.pdb", top, modeller.positions)

    s = system(top)
    assert not s.usesPeriodicBoundaryConditions()
    sim = app.Simulation(top, s, integrator(1), cpu(), {"Threads": "1"})
    sim.context.setPositions(modeller.positions)
    sim.minimizeEnergy()
    sim.context.setVelocitiesToTemperature(TEMPERATURE, VELOCITY_SEED)
    sim.context.setTime(0)       # the basis state is time 0, step 0
    sim.context.setStepCount(0)
    sim.saveState(str(HERE / "start.xml"))
    state = sim.context.getState(positions=True, energy=True)
    write_pdb(HERE / "topology.pdb", top, state.getPositions())
    print(f"{top.getNumAtoms()} atoms, {top.getNumResidues()} residues "
          f"({FIRST}-{LAST}), potential energy "
          f"{state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole):.1f} "
          f"kJ/mol")


if __name__ == "__main__":
    main()
