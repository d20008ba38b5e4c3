"""A non-periodic OpenMM system for the boundary tests, built by the tests.

Implicit solvent, no box: the C-terminal 20 residues (57-76: the last strand and
the extended tail) of imdclient's GROMACS ubiquitin (package ``imdclient.data``),
heavy atoms only, hydrogens added by OpenMM's Modeller, force field
``amber99sbildn.xml`` + ``amber99_obc.xml`` (OBC GB; both ship with OpenMM),
``NoCutoff``, H bonds constrained. Nothing is downloaded.

Why these: OpenMM's ``implicit/*.xml`` files (GBn2, OBC2, ...) are all
``CustomGBForce``, which the CPU platform evaluates slowly (0.2 s per step for the
whole 1231-atom protein on one thread here); ``amber99_obc.xml`` is the native
``GBSAOBCForce``. The fragment keeps the protein's real C-terminus (OXT) and gets a
charged N-terminus from ``addHydrogens``; its tail puts residue 74 about 35 Å from
residue 63, far more than half of the 2 nm box that OpenMM reports for a System
without periodic boundaries.

:func:`build` writes into a folder:

- ``topology.pdb``: the minimised structure, ubiquitin's residue numbers, no
  CRYST1 (no box): the topology of the script and of MDAnalysis;
- ``reference.pdb``: the structure before minimisation (an rmsd reference);
- ``system.xml``: the serialised System (``usesPeriodicBoundaryConditions()`` False);
- ``start.xml``: an OpenMM state (time 0, step 0, positions, velocities at 300 K
  and the default box OpenMM puts in every state: 2 nm);
- ``protein_prod.py``: the user's segment script (as example_sims/nacl_openmm's
  ``nacl_prod.py``), which can also write a DCD of the start frame and of every
  streamed step (``engine.variables.dcd``) for the reference.

:func:`write_config` writes a streamrun config for it. The references are
MDAnalysis on that DCD, centres in float64 (:func:`reference_rows`).
"""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

#: ubiquitin residues kept (inclusive)
FIRST, LAST = 57, 76
FORCE_FIELD = ("amber99sbildn.xml", "amber99_obc.xml")
#: OpenMM's default box edge for a System without periodic boundaries (Å)
DEFAULT_BOX = 20.0

SCRIPT = '''\
"""One segment of a peptide in implicit solvent (OBC GB, no cut-off, no periodic
box) in OpenMM, streamed to streamrun over IMD v3.

engine.variables: ``start`` (the state XML to load), ``seed`` (Langevin seed),
``dcd`` (optional: also write a DCD of the start frame and of every streamed step).
Writes ``seg.xml``, the final state.
"""

from pathlib import Path

import openmm
from openmm import app, unit

import streamrun.openmm

HERE = Path(__file__).resolve().parent
seed = int(streamrun.openmm.variable("seed", "1"))
pdb = app.PDBFile(str(HERE / "topology.pdb"))
system = openmm.XmlSerializer.deserialize((HERE / "system.xml").read_text())
integrator = openmm.LangevinMiddleIntegrator(300 * unit.kelvin, 1 / unit.picosecond,
                                             0.002 * unit.picoseconds)
integrator.setRandomNumberSeed(seed)
simulation = app.Simulation(pdb.topology, system, integrator,
                            openmm.Platform.getPlatformByName("CPU"), {"Threads": "1"})
simulation.loadState(streamrun.openmm.variable("start", str(HERE / "start.xml")))
box = simulation.context.getState().getPeriodicBoxVectors()
print(f"system: usesPeriodicBoundaryConditions={system.usesPeriodicBoundaryConditions()}"
      f" box={[round(v[i].value_in_unit(unit.nanometer), 6) for i, v in enumerate(box)]}"
      f" nm", flush=True)

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
    topology: Path
    reference: Path
    start: Path
    script: Path
    n_atoms: int
    #: seconds: addHydrogens, createSystem, Context creation, minimisation
    timings: dict


def imdclient_gro() -> Path:
    import imdclient.data

    return Path(os.path.dirname(imdclient.data.__file__)) / "gromacs" / "md" / \
        "gromacs_struct.gro"


def build(folder: Path, seed: int = 5) -> Peptide:
    """Write the peptide system (see the module docstring) into ``folder``."""
    import MDAnalysis as mda
    import openmm
    from openmm import app, unit

    folder.mkdir(parents=True, exist_ok=True)
    timings = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MDAnalysis' PDB writer: missing attributes
        u = mda.Universe(str(imdclient_gro()))
        heavy = u.select_atoms(f"protein and resid {FIRST}:{LAST} and not name H*")
        u.dimensions = None  # no CRYST1
        heavy.write(str(folder / "heavy.pdb"))
    pdb = app.PDBFile(str(folder / "heavy.pdb"))
    modeller = app.Modeller(pdb.topology, pdb.positions)
    modeller.topology.setPeriodicBoxVectors(None)
    forcefield = app.ForceField(*FORCE_FIELD)
    t = time.monotonic()
    modeller.addHydrogens(forcefield, pH=7.0)
    timings["addHydrogens"] = time.monotonic() - t
    t = time.monotonic()
    system = forcefield.createSystem(modeller.topology, nonbondedMethod=app.NoCutoff,
                                     constraints=app.HBonds)
    timings["createSystem"] = time.monotonic() - t
    assert not system.usesPeriodicBoundaryConditions()
    with open(folder / "reference.pdb", "w") as f:
        app.PDBFile.writeFile(modeller.topology, modeller.positions, f, keepIds=True)

    integrator = openmm.LangevinMiddleIntegrator(300 * unit.kelvin,
                                                 1 / unit.picosecond,
                                                 0.002 * unit.picoseconds)
    t = time.monotonic()
    sim = app.Simulation(modeller.topology, system, integrator,
                         openmm.Platform.getPlatformByName("CPU"), {"Threads": "1"})
    sim.context.setPositions(modeller.positions)
    timings["Simulation"] = time.monotonic() - t
    t = time.monotonic()
    sim.minimizeEnergy(maxIterations=200)
    timings["minimizeEnergy"] = time.monotonic() - t
    sim.context.setVelocitiesToTemperature(300 * unit.kelvin, seed)
    sim.context.setTime(0)
    sim.context.setStepCount(0)
    sim.saveState(str(folder / "start.xml"))
    state = sim.context.getState(positions=True)
    with open(folder / "topology.pdb", "w") as f:
        app.PDBFile.writeFile(modeller.topology, state.getPositions(), f, keepIds=True)
    (folder / "system.xml").write_text(openmm.XmlSerializer.serialize(system))
    (folder / "protein_prod.py").write_text(SCRIPT)
    return Peptide(folder=folder, topology=folder / "topology.pdb",
                   reference=folder / "reference.pdb", start=folder / "start.xml",
                   script=folder / "protein_prod.py",
                   n_atoms=modeller.topology.getNumAtoms(), timings=timings)


def write_config(path: Path, peptide: Peptide, pcoord, *, nsteps, frame_interval,
                 seed=4711, dcd="seg.dcd", engine=None, **top) -> Path:
    """A streamrun config for one segment of ``peptide`` (absolute paths), with
    ``pcoord`` and extra ``engine`` / top-level keys."""
    variables = {"start": str(peptide.start), "seed": str(seed)}
    if dcd:
        variables["dcd"] = dcd
    cfg = {"engine": {"name": "openmm", "input": str(peptide.script),
                      "nsteps": nsteps, "frame_interval": frame_interval,
                      "variables": variables, **(engine or {})},
           "topology": str(peptide.topology), "start": str(peptide.start),
           "restart": ["seg.xml"], "pcoord": pcoord, **top}
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


# --- references: MDAnalysis on the script's own DCD, centres in float64 ------------

def centre(group) -> np.ndarray:
    """Centre of mass in float64 (the DCD holds float32)."""
    return np.average(group.positions.astype(np.float64), axis=0,
                      weights=group.masses.astype(np.float64))


def reference_rows(universe, coordinates, references=None) -> np.ndarray:
    """One row per frame of ``universe``, one column per coordinate: what each
    built-in coordinate is for a system without periodic boundaries (plain
    Cartesian: no minimum image, no wrapping, nothing to make whole)."""
    from MDAnalysis.analysis import rms
    from MDAnalysis.lib.distances import (calc_angles, calc_dihedrals,
                                          distance_array)

    references = references or {}
    groups = []
    for c in coordinates:
        keys = {"distance": "ab", "min_distance": "ab", "angle": "abc",
                "dihedral": "abcd"}.get(c["type"])
        if keys:
            groups.append([universe.select_atoms(c[k]) for k in keys])
        else:
            groups.append([universe.select_atoms(c["select"])])
        assert all(len(g) for g in groups[-1]), c
    rows = []
    for _ in universe.trajectory:
        assert universe.dimensions is None  # the DCD has no box either
        row = []
        for c, gs in zip(coordinates, groups):
            kind = c["type"]
            if kind == "distance":
                row.append(np.linalg.norm(centre(gs[1]) - centre(gs[0])))
            elif kind == "min_distance":
                row.append(distance_array(gs[0].positions.astype(np.float64),
                                          gs[1].positions.astype(np.float64)).min())
            elif kind == "angle":
                a, b, cc = (centre(g)[None] for g in gs)
                row.append(np.degrees(calc_angles(a, b, cc))[0])
            elif kind == "dihedral":
                a, b, cc, d = (centre(g)[None] for g in gs)
                row.append(np.degrees(calc_dihedrals(a, b, cc, d))[0])
            elif kind == "position":
                row.append(centre(gs[0])["xyz".index(c.get("axis", "z"))])
            elif kind == "rg":
                x = gs[0].positions.astype(np.float64)
                m = gs[0].masses.astype(np.float64)
                row.append(np.sqrt(np.sum(m * np.sum((x - centre(gs[0])) ** 2, axis=1))
                                   / m.sum()))
            elif kind == "rmsd":
                ref = references[c["name"]]
                row.append(rms.rmsd(gs[0].positions.astype(np.float64), ref,
                                    center=True, superposition=True))
            else:
                raise ValueError(kind)
        rows.append(row)
    return np.array(rows, dtype=np.float64)


def minimum_image(vector, box=DEFAULT_BOX) -> np.ndarray:
    """``vector`` (Å) as the minimum image in a cubic box of edge ``box``."""
    return vector - box * np.round(vector / box)
