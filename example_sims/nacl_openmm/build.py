"""Build the Na+/Cl- in TIP3P water example with OpenMM alone.

Writes, next to this file:

- ``topology.pdb``: atoms, residues and the periodic box (the topology that the
  segment script and MDAnalysis read);
- ``start.xml``: an OpenMM state (positions, velocities, box) after minimisation
  and 20 ps of NPT at 300 K and 1 bar: the start point of the segments.

Run it with ``python build.py`` (about 30 s on one core). The segment script
``nacl_prod.py`` uses the same force field and settings (see ``system()``).
"""

from pathlib import Path

import openmm
from openmm import app, unit

HERE = Path(__file__).resolve().parent
#: Cubic box edge before NPT; with a 0.8 nm cut-off it stays above twice the cut-off.
BOX_NM = 1.85
#: Na-Cl distance the ions are placed at (nm).
ION_DISTANCE_NM = 0.5
TEMPERATURE = 300 * unit.kelvin
PRESSURE = 1 * unit.bar


def forcefield():
    """Amber14 ions with TIP3P water, both shipped with OpenMM."""
    return app.ForceField("amber14-all.xml", "amber14/tip3p.xml")


def system(topology, seed=0):
    """PME, 0.8 nm cut-off, H bonds constrained (rigid water), Monte Carlo barostat
    (random seed ``seed``; 0 lets OpenMM pick one)."""
    s = forcefield().createSystem(topology, nonbondedMethod=app.PME,
                                  nonbondedCutoff=0.8 * unit.nanometer,
                                  constraints=app.HBonds, rigidWater=True)
    barostat = openmm.MonteCarloBarostat(PRESSURE, TEMPERATURE, 25)
    barostat.setRandomNumberSeed(seed)
    s.addForce(barostat)
    return s


def integrator(seed=0):
    """Langevin (middle scheme), 2 fs, 1/ps friction, at 300 K."""
    i = openmm.LangevinMiddleIntegrator(TEMPERATURE, 1 / unit.picosecond,
                                        0.002 * unit.picoseconds)
    i.setRandomNumberSeed(seed)
    return i


def cpu():
    return openmm.Platform.getPlatformByName("CPU")


def ions():
    """One Na+ and one Cl-, ION_DISTANCE_NM apart along x, in the box centre."""
    top = app.Topology()
    chain = top.addChain()
    positions = []
    centre = BOX_NM / 2
    for name, element, dx in (("NA", "Na", -ION_DISTANCE_NM / 2),
                              ("CL", "Cl", ION_DISTANCE_NM / 2)):
        residue = top.addResidue(name, chain)
        top.addAtom(name, app.Element.getBySymbol(element), residue)
        positions.append(openmm.Vec3(centre + dx, centre, centre))
    return top, positions * unit.nanometer


def main():
    top, positions = ions()
    modeller = app.Modeller(top, positions)
    modeller.addSolvent(forcefield(), model="tip3p",
                        boxSize=openmm.Vec3(BOX_NM, BOX_NM, BOX_NM) * unit.nanometer,
                        neutralize=False)
    sim = app.Simulation(modeller.topology, system(modeller.topology), integrator(1),
                         cpu(), {"Threads": "1"})
    sim.context.setPositions(modeller.positions)
    sim.minimizeEnergy()
    sim.context.setVelocitiesToTemperature(TEMPERATURE, 1)
    sim.step(10000)  # 20 ps NPT
    state = sim.context.getState(positions=True, velocities=True, parameters=True,
                                 enforcePeriodicBox=True)
    # a fresh clock: the basis state is time 0, step 0
    sim.context.setTime(0)
    sim.context.setStepCount(0)
    sim.context.setState(state)
    sim.context.setTime(0)
    sim.context.setStepCount(0)
    sim.saveState(str(HERE / "start.xml"))
    top = modeller.topology
    top.setPeriodicBoxVectors(state.getPeriodicBoxVectors())
    with open(HERE / "topology.pdb", "w") as f:
        app.PDBFile.writeFile(top, state.getPositions(), f)
    print(f"{top.getNumAtoms()} atoms ({top.getNumResidues() - 2} waters), box "
          f"{state.getPeriodicBoxVectors()[0][0].value_in_unit(unit.nanometer):.3f} nm")


if __name__ == "__main__":
    main()
