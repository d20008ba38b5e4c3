"""A small Amber system for the Amber-input tests, built by the tests from what the
installed packages ship (nothing is downloaded, no AmberTools).

The peptide: ubiquitin's last four residues (73-76, Leu-Arg-Gly-Gly, with its real
C-terminus) from imdclient's GROMACS ubiquitin (package ``imdclient.data``), heavy
atoms only, hydrogens added by OpenMM's Modeller, force field ``amber99sbildn.xml``
(ships with OpenMM), minimised in vacuum. No box, as the p53 tutorial's implicit
solvent system.

No installed package writes a prmtop (OpenMM only reads them, MDAnalysis has no
writer, ParmEd is a 20 MB source build), so :func:`write_prmtop` writes one from
the OpenMM System: the ``%FLAG`` sections that OpenMM's ``AmberPrmtopFile`` and
MDAnalysis' ``TOPParser`` read, in LEaP's layout and units (charges x 18.2223,
kcal/mol, Å, radians; one Lennard-Jones type per distinct sigma/epsilon; 1-4 pairs
marked as LEaP marks them; mbondi2 GB radii for OBC). The restarts are written the
way pmemd writes them: ASCII (``%12.7f``, velocities in Å/(1/20.455 ps)) and NetCDF
(``Conventions = AMBERRESTART``, 64-bit offsets, velocities with
``scale_factor = 20.455``).

:func:`build` writes into a folder:

- ``peptide.prmtop``: the topology (names, residues, masses, charges, bonds and the
  force field);
- ``bstate.rst7``: the basis state, an ASCII restart with velocities at 300 K
  (what LEaP/pmemd leave for WESTPA's ``bstates/``); ``bstate.ncrst``: the same as
  a NetCDF restart (what pmemd writes by default, ``ntxo = 2``);
- ``reference.rst``: an ASCII restart of the structure before minimisation (an rmsd
  reference, p53-style ``.rst``);
- ``reference.ncrst``: the same structure as a NetCDF restart;
- ``peptide_prod.py``: the user's segment script (AmberPrmtopFile, OBC2 implicit
  solvent, ``streamrun.openmm.load_start``), which can also write a DCD of the start
  frame and of every streamed step (``engine.variables.dcd``) for the reference.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: ubiquitin residues kept (inclusive)
FIRST, LAST = 73, 76
#: Amber's velocity unit is Å per (1/20.455) ps
AMBER_VELOCITY = 20.455
#: Amber's charge unit: e x 18.2223
AMBER_CHARGE = 18.2223
KCAL = 4.184

SCRIPT = '''\
"""One segment of a peptide in implicit solvent (OBC2, no cut-off, no box) in
OpenMM from Amber files, streamed to streamrun over IMD v3.

Starts from ``parent.rst`` in the segment folder (``engine.variables.start`` to
name another file): an Amber restart for a new trajectory, the parent's ``seg.xml``
for a continuing one. engine.variables: ``seed`` (Langevin seed), ``dcd``
(optional: also write a DCD of the start frame and of every streamed step).
Writes ``seg.xml``.
"""

from pathlib import Path

import openmm
from openmm import app, unit

import streamrun.openmm

HERE = Path(__file__).resolve().parent
prmtop = app.AmberPrmtopFile(str(HERE / "peptide.prmtop"))
system = prmtop.createSystem(implicitSolvent=app.OBC2, nonbondedMethod=app.NoCutoff,
                             constraints=app.HBonds)
integrator = openmm.LangevinMiddleIntegrator(300 * unit.kelvin, 1 / unit.picosecond,
                                             0.002 * unit.picoseconds)
integrator.setRandomNumberSeed(int(streamrun.openmm.variable("seed", "1")))
simulation = app.Simulation(prmtop.topology, system, integrator,
                            openmm.Platform.getPlatformByName("CPU"), {"Threads": "1"})
# the basis state (an Amber restart) or the parent's seg.xml, as WESTPA links it
start = streamrun.openmm.load_start(simulation,
                                    streamrun.openmm.variable("start", "parent.rst"))
print(f"start: {start}", flush=True)

dcd = streamrun.openmm.variable("dcd", "")
if dcd:  # the start frame, then every streamed step
    writer = app.DCDReporter(dcd, streamrun.openmm.frame_interval())
    writer.report(simulation, simulation.context.getState(positions=True))
    simulation.reporters.append(writer)
simulation.reporters.append(streamrun.openmm.reporter())
simulation.step(streamrun.openmm.nsteps())
simulation.saveState("seg.xml")
'''


@dataclass
class Peptide:
    folder: Path
    prmtop: Path
    bstate: Path
    bstate_ncrst: Path
    reference_rst: Path
    reference_ncrst: Path
    script: Path
    n_atoms: int
    #: the basis state (Å, Å/ps) as written
    positions: np.ndarray
    velocities: np.ndarray
    #: the reference structure (Å)
    reference: np.ndarray


def imdclient_gro() -> Path:
    import imdclient.data

    return Path(os.path.dirname(imdclient.data.__file__)) / "gromacs" / "md" / \
        "gromacs_struct.gro"


def build(folder: Path, seed: int = 7) -> Peptide:
    """Write the peptide system (see the module docstring) into ``folder``."""
    import MDAnalysis as mda
    import openmm
    from openmm import app, unit

    folder.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MDAnalysis' PDB writer: missing attributes
        u = mda.Universe(str(imdclient_gro()))
        heavy = u.select_atoms(f"protein and resid {FIRST}:{LAST} and not name H*")
        u.dimensions = None  # no CRYST1
        heavy.write(str(folder / "heavy.pdb"))
    pdb = app.PDBFile(str(folder / "heavy.pdb"))
    modeller = app.Modeller(pdb.topology, pdb.positions)
    modeller.topology.setPeriodicBoxVectors(None)
    forcefield = app.ForceField("amber99sbildn.xml")
    modeller.addHydrogens(forcefield, pH=7.0)
    # every bond a force (no constraints): the prmtop lists them all
    system = forcefield.createSystem(modeller.topology, nonbondedMethod=app.NoCutoff,
                                     constraints=None, rigidWater=False)
    write_prmtop(folder / "peptide.prmtop", modeller.topology, system)
    reference = _angstrom(modeller.positions)
    write_ascii_restart(folder / "reference.rst", reference)
    write_netcdf_restart(folder / "reference.ncrst", reference)

    # the basis state: minimised, with velocities at 300 K, through the prmtop
    prmtop = app.AmberPrmtopFile(str(folder / "peptide.prmtop"))
    system = prmtop.createSystem(implicitSolvent=app.OBC2,
                                 nonbondedMethod=app.NoCutoff, constraints=app.HBonds)
    integrator = openmm.LangevinMiddleIntegrator(300 * unit.kelvin,
                                                 1 / unit.picosecond,
                                                 0.002 * unit.picoseconds)
    sim = app.Simulation(prmtop.topology, system, integrator,
                         openmm.Platform.getPlatformByName("CPU"), {"Threads": "1"})
    sim.context.setPositions(modeller.positions)
    sim.minimizeEnergy(maxIterations=200)
    sim.context.setVelocitiesToTemperature(300 * unit.kelvin, seed)
    sim.context.applyVelocityConstraints(1e-7)
    state = sim.context.getState(positions=True, velocities=True)
    positions = _angstrom(state.getPositions(asNumpy=True))
    velocities = _angstrom(state.getVelocities(asNumpy=True))  # Å/ps
    write_ascii_restart(folder / "bstate.rst7", positions, velocities, time=0.0)
    write_netcdf_restart(folder / "bstate.ncrst", positions, velocities, time=0.0)
    (folder / "peptide_prod.py").write_text(SCRIPT)
    return Peptide(folder=folder, prmtop=folder / "peptide.prmtop",
                   bstate=folder / "bstate.rst7",
                   bstate_ncrst=folder / "bstate.ncrst",
                   reference_rst=folder / "reference.rst",
                   reference_ncrst=folder / "reference.ncrst",
                   script=folder / "peptide_prod.py",
                   n_atoms=modeller.topology.getNumAtoms(),
                   positions=positions, velocities=velocities, reference=reference)


def _angstrom(quantity) -> np.ndarray:
    """Å (or Å/ps) from an OpenMM Quantity in nm (nm/ps)."""
    return np.asarray(getattr(quantity, "_value", quantity), dtype=np.float64) * 10.0


# --- restarts, as pmemd writes them -------------------------------------------------

def _ascii_block(values) -> str:
    flat = np.asarray(values, dtype=np.float64).ravel()
    lines = ["".join(f"{v:12.7f}" for v in flat[i:i + 6])
             for i in range(0, len(flat), 6)]
    return "\n".join(lines) + "\n"


def write_ascii_restart(path, positions, velocities=None, box=None, time=None):
    """An ASCII Amber restart: title, ``%5d%15.7e`` atoms and time, positions (Å),
    then velocities (Å/ps, written in Amber's unit) and a box line
    (a b c alpha beta gamma) when given."""
    n = len(positions)
    head = f"{n:5d}" + ("" if time is None else f"{time:15.7e}")
    text = f"streamrun test restart\n{head}\n" + _ascii_block(positions)
    if velocities is not None:
        text += _ascii_block(np.asarray(velocities) / AMBER_VELOCITY)
    if box is not None:
        text += "".join(f"{v:12.7f}" for v in box) + "\n"
    Path(path).write_text(text)


def write_netcdf_restart(path, positions, velocities=None, box=None, time=0.0):
    """A NetCDF Amber restart (AMBERRESTART convention 1.0, 64-bit offsets)."""
    from scipy.io import netcdf_file

    n = len(positions)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f = netcdf_file(str(path), "w", version=2)
        try:
            f.Conventions = b"AMBERRESTART"
            f.ConventionVersion = b"1.0"
            f.application = b"AMBER"
            f.program = b"streamrun-tests"
            f.programVersion = b"1.0"
            f.title = b"streamrun test restart"
            f.createDimension("spatial", 3)
            f.createDimension("atom", n)
            spatial = f.createVariable("spatial", "c", ("spatial",))
            spatial[:] = np.array(list("xyz"), dtype="S1")
            t = f.createVariable("time", "d", ())
            t.units = b"picosecond"
            t[...] = time
            c = f.createVariable("coordinates", "d", ("atom", "spatial"))
            c.units = b"angstrom"
            c[:] = np.asarray(positions, dtype=np.float64)
            if velocities is not None:
                v = f.createVariable("velocities", "d", ("atom", "spatial"))
                v.units = b"angstrom/picosecond"
                v.scale_factor = AMBER_VELOCITY
                v[:] = np.asarray(velocities, dtype=np.float64) / AMBER_VELOCITY
            if box is not None:
                f.createDimension("cell_spatial", 3)
                f.createDimension("cell_angular", 3)
                f.createDimension("label", 5)
                cs = f.createVariable("cell_spatial", "c", ("cell_spatial",))
                cs[:] = np.array(list("abc"), dtype="S1")
                ca = f.createVariable("cell_angular", "c", ("cell_angular", "label"))
                ca[:] = np.array([list("alpha"), list("beta "), list("gamma")],
                                 dtype="S1")
                lengths = f.createVariable("cell_lengths", "d", ("cell_spatial",))
                lengths.units = b"angstrom"
                lengths[:] = np.asarray(box[:3], dtype=np.float64)
                angles = f.createVariable("cell_angles", "d", ("cell_angular",))
                angles.units = b"degree"
                angles[:] = np.asarray(box[3:], dtype=np.float64)
        finally:
            f.close()


# --- a prmtop from an OpenMM System --------------------------------------------------

def _section(flag, fmt, values) -> str:
    count, kind, width = _parse_format(fmt)
    items = []
    for v in values:
        if kind == "a":
            items.append(f"{str(v):<{width}.{width}}")
        elif kind == "I":
            items.append(f"{int(v):{width}d}")
        else:  # E16.8
            items.append(f"{float(v):{width}.8E}")
    lines = ["".join(items[i:i + count]) for i in range(0, len(items), count)]
    return f"%FLAG {flag}\n%FORMAT({fmt})\n" + "\n".join(lines or [""]) + "\n"


def _parse_format(fmt):
    import re

    m = re.fullmatch(r"(\d+)([aIE])(\d+)(?:\.\d+)?", fmt)
    return int(m.group(1)), m.group(2), int(m.group(3))


def _forces(system):
    import openmm

    found = {}
    for f in system.getForces():
        for kind in (openmm.NonbondedForce, openmm.HarmonicBondForce,
                     openmm.HarmonicAngleForce, openmm.PeriodicTorsionForce):
            if isinstance(f, kind):
                found[kind.__name__] = f
    return found


def write_prmtop(path, topology, system):
    """Write an Amber prmtop for ``topology`` with the parameters of ``system``
    (NonbondedForce, HarmonicBondForce, HarmonicAngleForce, PeriodicTorsionForce;
    no constraints, no box, no virtual sites)."""
    from openmm.app.internal.customgbforces import GBSAOBC2Force

    forces = _forces(system)
    nb = forces["NonbondedForce"]
    atoms = list(topology.atoms())
    n = len(atoms)
    hydrogen = [a.element is not None and a.element.symbol == "H" for a in atoms]

    # atoms and Lennard-Jones types (one per distinct sigma, epsilon)
    charges, lj = [], []
    for i in range(n):
        q, sigma, eps = nb.getParticleParameters(i)
        charges.append(q._value * AMBER_CHARGE)
        rhalf = sigma._value * 10.0 * 2 ** (1 / 6) / 2  # Rmin/2, Å
        lj.append((round(rhalf, 8), round(eps._value / KCAL, 10)))
    types = sorted(set(lj))
    type_index = [types.index(p) + 1 for p in lj]
    ntypes = len(types)
    nbindex, acoef, bcoef = [0] * (ntypes * ntypes), [], []
    for j in range(ntypes):
        for i in range(j + 1):
            rij = types[i][0] + types[j][0]
            eij = math.sqrt(types[i][1] * types[j][1])
            acoef.append(eij * rij ** 12)
            bcoef.append(2 * eij * rij ** 6)
            nbindex[i * ntypes + j] = nbindex[j * ntypes + i] = len(acoef)

    # bonds, angles, torsions with their parameter tables
    bonded = set()
    bond_types, bonds_h, bonds = [], [], []
    bf = forces["HarmonicBondForce"]
    for b in range(bf.getNumBonds()):
        i, j, r0, k = bf.getBondParameters(b)
        bonded.add(frozenset((i, j)))
        t = _type(bond_types, (k._value / 2 / KCAL / 100, r0._value * 10))
        (bonds_h if hydrogen[i] or hydrogen[j] else bonds).append((3 * i, 3 * j, t))
    angle_types, angles_h, angles = [], [], []
    af = forces["HarmonicAngleForce"]
    for a in range(af.getNumAngles()):
        i, j, k, theta0, kt = af.getAngleParameters(a)
        t = _type(angle_types, (kt._value / 2 / KCAL, theta0._value))
        (angles_h if hydrogen[i] or hydrogen[k] or hydrogen[j] else angles).append(
            (3 * i, 3 * j, 3 * k, t))
    # 1-4 pairs: the exceptions with a non-zero interaction; LEaP counts each once
    pairs14 = set()
    for e in range(nb.getNumExceptions()):
        i, j, qq, sigma, eps = nb.getExceptionParameters(e)
        if qq._value != 0 or eps._value != 0:
            pairs14.add(frozenset((i, j)))
    dihedral_types, dihedrals_h, dihedrals = [], [], []
    tf = forces["PeriodicTorsionForce"]
    counted = set()
    for d in range(tf.getNumTorsions()):
        i, j, k, l, periodicity, phase, kd = tf.getTorsionParameters(d)
        t = _type(dihedral_types, (kd._value / KCAL, float(periodicity), phase._value))
        proper = {frozenset((i, j)), frozenset((j, k)), frozenset((k, l))} <= bonded
        if 0 in (k, l):  # a negative index marks; atom 0 cannot be negative
            i, j, k, l = l, k, j, i  # the same dihedral angle, reversed
            assert 0 not in (k, l)
        end = frozenset((i, l))
        if not proper:
            entry = (3 * i, 3 * j, 3 * k, -3 * l, t)  # improper: no 1-4
        elif end in pairs14 and end not in counted:
            counted.add(end)
            entry = (3 * i, 3 * j, 3 * k, 3 * l, t)
        else:  # another term of a counted pair: no second 1-4
            entry = (3 * i, 3 * j, -3 * k, 3 * l, t)
        (dihedrals_h if any(hydrogen[x] for x in (i, j, k, l)) else
         dihedrals).append(entry)
    # a 1-4 pair whose torsions all have no energy (OpenMM drops zero terms): LEaP
    # lists a zero dihedral for it, which carries the 1-4 interaction
    neighbours = {i: set() for i in range(n)}
    for pair in bonded:
        i, j = tuple(pair)
        neighbours[i].add(j)
        neighbours[j].add(i)
    zero = None
    for pair in sorted(pairs14 - counted, key=sorted):
        i, l = sorted(pair)
        j, k = next((j, k) for j in sorted(neighbours[i]) for k in
                    sorted(neighbours[l]) if k in neighbours[j])
        if 0 in (k, l):
            i, j, k, l = l, k, j, i
        zero = zero or _type(dihedral_types, (0.0, 2.0, 0.0))
        entry = (3 * i, 3 * j, 3 * k, 3 * l, zero)
        (dihedrals_h if any(hydrogen[x] for x in (i, j, k, l)) else
         dihedrals).append(entry)

    # excluded atoms: every exception (1-2, 1-3, 1-4), listed once from its lower atom
    excluded = [[] for _ in range(n)]
    for e in range(nb.getNumExceptions()):
        i, j = nb.getExceptionParameters(e)[:2]
        excluded[min(i, j)].append(max(i, j) + 1)
    excluded = [sorted(x) or [0] for x in excluded]

    residues = list(topology.residues())
    res_pointer = [next(iter(r.atoms())).index + 1 for r in residues]
    radii_screen = GBSAOBC2Force.getStandardParameters(topology)
    masses = [system.getParticleMass(i)._value for i in range(n)]
    amber_types = [f"{a.element.symbol}{type_index[a.index]}"[:4] for a in atoms]

    nnb = sum(len(x) for x in excluded)
    pointers = [n, ntypes, len(bonds_h), len(bonds), len(angles_h), len(angles),
                len(dihedrals_h), len(dihedrals), 0, 0, nnb, len(residues),
                len(bonds), len(angles), len(dihedrals), len(bond_types),
                len(angle_types), len(dihedral_types), 1, 0, 0, 0, 0, 0, 0, 0, 0,
                0, max(len(list(r.atoms())) for r in residues), 0, 0, 0]
    flat = lambda rows: [v for row in rows for v in row]  # noqa: E731
    text = "%VERSION  VERSION_STAMP = V0001.000  DATE = 01/01/25  00:00:00\n"
    text += _section("TITLE", "20a4", ["streamrun test peptide"])
    text += _section("POINTERS", "10I8", pointers)
    text += _section("ATOM_NAME", "20a4", [a.name for a in atoms])
    text += _section("CHARGE", "5E16.8", charges)
    text += _section("ATOMIC_NUMBER", "10I8", [a.element.atomic_number for a in atoms])
    text += _section("MASS", "5E16.8", masses)
    text += _section("ATOM_TYPE_INDEX", "10I8", type_index)
    text += _section("NUMBER_EXCLUDED_ATOMS", "10I8", [len(x) for x in excluded])
    text += _section("NONBONDED_PARM_INDEX", "10I8", nbindex)
    text += _section("RESIDUE_LABEL", "20a4", [r.name for r in residues])
    text += _section("RESIDUE_POINTER", "10I8", res_pointer)
    text += _section("BOND_FORCE_CONSTANT", "5E16.8", [t[0] for t in bond_types])
    text += _section("BOND_EQUIL_VALUE", "5E16.8", [t[1] for t in bond_types])
    text += _section("ANGLE_FORCE_CONSTANT", "5E16.8", [t[0] for t in angle_types])
    text += _section("ANGLE_EQUIL_VALUE", "5E16.8", [t[1] for t in angle_types])
    text += _section("DIHEDRAL_FORCE_CONSTANT", "5E16.8",
                     [t[0] for t in dihedral_types])
    text += _section("DIHEDRAL_PERIODICITY", "5E16.8", [t[1] for t in dihedral_types])
    text += _section("DIHEDRAL_PHASE", "5E16.8", [t[2] for t in dihedral_types])
    text += _section("SCEE_SCALE_FACTOR", "5E16.8", [1.2] * len(dihedral_types))
    text += _section("SCNB_SCALE_FACTOR", "5E16.8", [2.0] * len(dihedral_types))
    text += _section("SOLTY", "5E16.8", [0.0])
    text += _section("LENNARD_JONES_ACOEF", "5E16.8", acoef)
    text += _section("LENNARD_JONES_BCOEF", "5E16.8", bcoef)
    text += _section("BONDS_INC_HYDROGEN", "10I8", flat(bonds_h))
    text += _section("BONDS_WITHOUT_HYDROGEN", "10I8", flat(bonds))
    text += _section("ANGLES_INC_HYDROGEN", "10I8", flat(angles_h))
    text += _section("ANGLES_WITHOUT_HYDROGEN", "10I8", flat(angles))
    text += _section("DIHEDRALS_INC_HYDROGEN", "10I8", flat(dihedrals_h))
    text += _section("DIHEDRALS_WITHOUT_HYDROGEN", "10I8", flat(dihedrals))
    text += _section("EXCLUDED_ATOMS_LIST", "10I8", flat(excluded))
    text += _section("HBOND_ACOEF", "5E16.8", [])
    text += _section("HBOND_BCOEF", "5E16.8", [])
    text += _section("HBCUT", "5E16.8", [])
    text += _section("AMBER_ATOM_TYPE", "20a4", amber_types)
    text += _section("TREE_CHAIN_CLASSIFICATION", "20a4", ["M"] * n)
    text += _section("JOIN_ARRAY", "10I8", [0] * n)
    text += _section("IROTAT", "10I8", [0] * n)
    text += _section("RADIUS_SET", "1a80", ["modified Bondi radii (mbondi2)"])
    text += _section("RADII", "5E16.8", [p[0] * 10 for p in radii_screen])
    text += _section("SCREEN", "5E16.8", [p[1] for p in radii_screen])
    text += _section("IPOL", "1I8", [0])
    Path(path).write_text(text)


def _type(table, params) -> int:
    """1-based index of ``params`` in ``table`` (appended when new)."""
    key = tuple(round(p, 8) for p in params)
    for index, known in enumerate(table):
        if tuple(round(p, 8) for p in known) == key:
            return index + 1
    table.append(params)
    return len(table)
