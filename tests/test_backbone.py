"""Backbone dihedrals of a protein, one column per angle per residue: a WE user
asks for ``{type: backbone, select: 'protein and resid 2-14'}`` instead of writing
26 ``dihedral`` entries, and gets cpptraj's column names (``phi:2``, ``psi:2``,
...) with the values of MDAnalysis' Ramachandran and Janin (and MDTraj's).

1. A real OpenMM segment of ubiquitin 57-76 in implicit solvent
   (tests/boundary_openmm.py): every row, row 0 included, against MDAnalysis (and
   MDTraj) on the DCD the user's script wrote at the same steps.
2. Without an engine: the columns are fixed by the topology (names, order, chain
   ends, a name as prefix); selections and angles that give nothing are config
   errors naming their key; a chain split across a periodic box (with bonds: made
   whole; without: a minimum image per bond) gives the angles of the whole chain,
   and a chain break between consecutive resids makes no angle.
"""

import contextlib
import sys
import time
import warnings

import numpy as np
import pytest

from boundary_openmm import build, imdclient_gro, write_config
from conftest import absent
from streamrun.boundaries import Boundaries
from streamrun.config import validate
from streamrun.errors import ConfigError
from streamrun.pcoords.calculator import PcoordCalculator

NSTEPS, EVERY = 200, 20  # 2 fs steps: 0.4 ps, a frame every 40 fs
ROWS = NSTEPS // EVERY + 1
TOLERANCE = 1e-2  # degrees


def turn(a, b):
    """a - b as an angle in [-180, 180) (so 179.99 and -180 are 0.01 apart)."""
    return (np.asarray(a) - np.asarray(b) + 180.0) % 360.0 - 180.0


@contextlib.contextmanager
def quiet():
    """MDAnalysis warns about terminal residues and missing attributes: expected."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


# ------------------------------------------------ 1. a real OpenMM segment

@pytest.fixture(scope="module")
def peptide(tmp_path_factory):
    """Ubiquitin 57-76 in OBC implicit solvent (no box), built once."""
    try:
        import openmm  # noqa: F401
    except ImportError:
        absent("openmm", f"openmm not installed for {sys.executable}")
    return build(tmp_path_factory.mktemp("peptide"))


def mdanalysis_angles(universe):
    """{column name: value per frame} from MDAnalysis: Ramachandran for phi/psi of
    the residues it keeps (not the first and last), Janin for chi1 where it has
    one, and each residue's own phi/psi/chi1 selection for the rest (psi of the
    first residue, phi of the last, chi1 of Ser, Thr, Val)."""
    from MDAnalysis.analysis.dihedrals import Janin, Ramachandran

    protein = universe.select_atoms("protein")
    expected = {}
    with quiet():
        rama = Ramachandran(protein).run()
        janin = Janin(protein).run()
    for k, resid in enumerate(rama.ag2.resids):
        expected[f"phi:{resid}"] = rama.results.angles[:, k, 0]
        expected[f"psi:{resid}"] = rama.results.angles[:, k, 1]
    for k, resid in enumerate(janin.ag1.resids):
        expected[f"chi1:{resid}"] = janin.results.angles[:, k, 0]  # [0, 360)
    own = {}
    for res in protein.residues:
        for angle, group in (("phi", res.phi_selection()), ("psi", res.psi_selection()),
                             ("chi1", res.chi1_selection())):
            if group is not None and f"{angle}:{res.resid}" not in expected:
                own[f"{angle}:{res.resid}"] = group
    for name in own:
        expected[name] = []
    for _ in universe.trajectory:
        for name, group in own.items():
            expected[name].append(group.dihedral.value())
    return {name: np.asarray(v, dtype=np.float64) for name, v in expected.items()}


def mdtraj_angles(topology, dcd):
    """{column name: value per frame} from MDTraj's compute_phi/compute_psi."""
    try:
        import mdtraj
    except ImportError:
        return None
    traj = mdtraj.load_dcd(str(dcd), top=str(topology))
    out = {}
    for angle, compute, atom in (("phi", mdtraj.compute_phi, 1),
                                 ("psi", mdtraj.compute_psi, 0)):
        indices, values = compute(traj)
        for k, quad in enumerate(indices):
            resid = traj.topology.atom(int(quad[atom])).residue.resSeq
            out[f"{angle}:{resid}"] = np.degrees(values[:, k])
    return out


def assert_columns_match(written, names, expected, who):
    """Every column with a reference (``name`` or, prefixed, ``x:name``) equal to it
    on every row; returns the largest difference."""
    bad, worst = [], 0.0
    for j, name in enumerate(names):
        ref = expected.get(name, expected.get(name.partition(":")[2]))
        if ref is None:
            continue
        diff = np.abs(turn(written[:, j], ref))
        worst = max(worst, diff.max())
        if diff.max() > TOLERANCE:
            row = int(np.argmax(diff))
            bad.append(f"{name}: row {row}: streamrun {written[row, j]:.4f}, "
                       f"{who} {ref[row]:.4f}")
    assert not bad, "\n".join(bad)
    return worst


def test_a_streamed_peptide_gives_every_backbone_dihedral_as_mdanalysis_and_mdtraj(
        peptide, tmp_path, no_engine_left):
    import MDAnalysis as mda
    from streamrun import segment
    from streamrun.config import load

    coords = [{"type": "backbone", "select": "protein",
               "angles": ["phi", "psi", "chi1"]},
              {"type": "backbone", "name": "tail", "select": "resid 70-74",
               "angles": "psi"}]
    config_path = write_config(tmp_path / "streamrun.yaml", peptide, coords,
                               nsteps=NSTEPS, frame_interval=EVERY)
    workdir = tmp_path / "seg"
    workdir.mkdir()
    config = load(config_path, [f"engine.workdir={workdir}"], environ={})
    started = time.monotonic()
    result = segment.run_segment(config)
    seconds = time.monotonic() - started
    assert result.frames == ROWS - 1

    u = mda.Universe(str(peptide.topology), str(workdir / "seg.dcd"))
    assert u.trajectory.n_frames == ROWS  # start frame + one per streamed step
    expected = mdanalysis_angles(u)

    # the columns: residue by residue, phi psi chi1 within one; 57 (first) has no
    # phi, 76 (last) no psi, Gly 75 and 76 no chi1; the named one is prefixed
    resids = range(57, 77)
    names = [f"{a}:{r}" for r in resids for a in ("phi", "psi", "chi1")
             if not (a == "phi" and r == 57) and not (a == "psi" and r == 76)
             and not (a == "chi1" and r in (75, 76))]
    names += [f"tail:psi:{r}" for r in range(70, 75)]
    header = (workdir / "pcoord.dat").read_text().splitlines()[0]
    assert header == "# streamrun pcoord: " + ", ".join(f"{n} [degrees]"
                                                        for n in names)
    written = np.loadtxt(config.output, ndmin=2)
    assert written.shape == (ROWS, len(names))
    assert np.all((written > -180.0) & (written <= 180.0))

    assert sorted(expected) == sorted(n for n in names if not n.startswith("tail:"))
    worst_mda = assert_columns_match(written, names, expected, "MDAnalysis")
    assert np.ptp(written, axis=0).min() > 1e-3  # the frames differ

    reference = mdtraj_angles(peptide.topology, workdir / "seg.dcd")
    if reference is None:
        pytest.skip("mdtraj is not installed (pip install mdtraj, or the test extra): "
                    "MDAnalysis agreed; the MDTraj comparison was not made")
    assert sorted(reference) == sorted(n for n in names if n.split(":")[0] in
                                       ("phi", "psi"))
    worst_mdtraj = assert_columns_match(written, names, reference, "MDTraj")
    print(f"segment {seconds:.1f} s; largest difference {worst_mda:.1e} degrees from "
          f"MDAnalysis, {worst_mdtraj:.1e} from MDTraj")


# ------------------------------------------------------ 2. without an engine

def checked_config(tmp_path, topology, pcoord):
    """A config with ``pcoord`` on ``topology`` (a LAMMPS input that is never run),
    as streamrun checks it."""
    (tmp_path / "in.lmp").write_text(
        "fix s all imd ${streamrun_port} version 3 trate ${streamrun_every}\n"
        "run ${streamrun_nsteps}\n")
    data = {"engine": {"input": "in.lmp", "nsteps": 10, "frame_interval": 10,
                       "executable": sys.executable},
            "topology": str(topology), "pcoord": pcoord}
    return validate(data, "c.yaml", tmp_path, environ={})


def calculator(tmp_path, topology, pcoord, periodic=(True, True, True)):
    """The pcoord calculator of that config (the topology's own coordinates are
    row 0), under the given periodic boundaries."""
    return PcoordCalculator(checked_config(tmp_path, topology, pcoord),
                            Boundaries(periodic, "test"))


@pytest.fixture(scope="module")
def ubiquitin():
    """imdclient's GROMACS ubiquitin in water (GRO: names, no bonds)."""
    return imdclient_gro()


def test_columns_are_named_as_cpptraj_residue_by_residue(tmp_path, ubiquitin):
    calc = calculator(tmp_path, ubiquitin, [
        {"type": "backbone", "select": "protein and resid 58-60"},
        {"type": "backbone", "name": "A", "select": "resid 58:60",
         "angles": ["chi1", "psi", "phi"]},  # any order: columns phi, psi, chi1
        {"type": "backbone", "name": "ends", "select": "resid 1 76",
         "angles": "phi, psi"}])
    assert calc.column_names() == [
        "phi:58", "psi:58", "phi:59", "psi:59", "phi:60", "psi:60",
        "A:phi:58", "A:psi:58", "A:chi1:58", "A:phi:59", "A:psi:59", "A:chi1:59",
        "A:phi:60", "A:psi:60", "A:chi1:60",
        "ends:psi:1", "ends:phi:76"]  # no residue before 1, none after 76
    assert calc.column_labels()[0] == "phi:58 [degrees]"
    row = calc.start_row()  # the columns were known before any frame
    assert row.size == 17 and np.array_equal(row[:6], row[[6, 7, 9, 10, 12, 13]])


@pytest.mark.parametrize("item, key, words", [
    ({"select": "resname SOL NA CL"}, "pcoord[0].select",
     ["'resname SOL NA CL'", "SOL", "no phi or psi", "N, CA and C"]),
    ({"select": "resid 75 76", "angles": ["chi1"]}, "pcoord[0].angles",
     ["chi1", "CB", "CG/CG1/OG/OG1/SG"]),  # two glycines
    ({"select": "resid 1", "angles": ["phi"]}, "pcoord[0].angles",
     ["no residue of 'resid 1' has phi"]),  # the N-terminus
], ids=["water-and-ions", "chi1-of-glycines", "phi-of-the-first-residue"])
def test_a_selection_without_the_angles_is_refused_naming_its_key(
        tmp_path, ubiquitin, item, key, words):
    with pytest.raises(ConfigError) as info:
        calculator(tmp_path, ubiquitin, [{"type": "backbone", **item}])
    assert info.value.key == key
    for w in words:
        assert w in str(info.value)


@pytest.mark.parametrize("angles, words", [
    (["phi", "omega"], "unknown angle 'omega'"),
    (["chi"], "Did you mean 'chi1'"),
    ([], "a list of angles"),
    (3, "a list of angles"),
])
def test_unknown_angles_are_refused_by_the_config_check(tmp_path, angles, words):
    (tmp_path / "top.pdb").write_text("ATOM      1  N   ALA     1       0.000   0.000"
                                      "   0.000  1.00  0.00           N\n")
    with pytest.raises(ConfigError) as info:
        checked_config(tmp_path, tmp_path / "top.pdb",
                       [{"type": "backbone", "angles": angles}])
    assert info.value.key == "pcoord[0].angles"
    assert words in str(info.value)


def test_a_topology_without_atom_names_is_refused_naming_the_key(tmp_path):
    """A LAMMPS data file has no atom names: say so, naming the key."""
    (tmp_path / "top.data").write_text(
        "x\n\n2 atoms\n1 atom types\n\n0 10 xlo xhi\n0 10 ylo yhi\n0 10 zlo zhi\n\n"
        "Masses\n\n1 1.0\n\nAtoms # full\n\n1 1 1 0.0 1 1 1\n2 1 1 0.0 2 2 2\n")
    with pytest.raises(ConfigError) as info:
        calculator(tmp_path, tmp_path / "top.data",
                   [{"type": "backbone", "select": "all"}])
    assert info.value.key == "pcoord[0].select"
    assert "no atom names" in str(info.value)


BOX = 25.0  # Å; ubiquitin spans 28-38 Å: split across the box along every axis


@pytest.fixture(scope="module")
def split_protein(tmp_path_factory):
    """Ubiquitin (no water) in a 25 Å cubic box, wrapped into it, so its chain is
    split across the box, as PDB files: with every bond (CONECT), without bonds,
    and with every bond but C(60)-N(61), a chain break; and the whole protein."""
    import MDAnalysis as mda

    folder = tmp_path_factory.mktemp("split")
    with quiet():
        u = mda.Universe(str(imdclient_gro()))
        protein = mda.Merge(u.select_atoms("protein"))
        protein.guess_TopologyAttrs(to_guess=["bonds"])
        protein.dimensions = None
        protein.atoms.write(str(folder / "whole.pdb"))
        protein.dimensions = [BOX, BOX, BOX, 90, 90, 90]
        protein.atoms.wrap()
        files = {"bonds": folder / "bonds.pdb", "no bonds": folder / "plain.pdb",
                 "chain break": folder / "break.pdb"}
        for kind, path in files.items():
            if kind == "chain break":
                c60 = protein.select_atoms("resid 60 and name C")[0]
                n61 = protein.select_atoms("resid 61 and name N")[0]
                protein.delete_bonds([(c60.index, n61.index)])
            with mda.Writer(str(path), bonds=None if kind == "no bonds" else "all") \
                    as w:
                w.write(protein.atoms)
    # the reference: the split structure as read, moved by whole box vectors
    with quiet():
        whole = mda.Universe(str(folder / "whole.pdb"))
        read = mda.Universe(str(files["bonds"])).atoms.positions
    original = whole.atoms.positions.copy()
    assert np.ptp(original, axis=0).min() > BOX
    assert np.ptp(read, axis=0).max() < BOX  # wrapped: split across the box
    shift = (original - read) / BOX
    assert np.abs(shift - np.round(shift)).max() < 1e-3
    whole.atoms.positions = read + np.round(shift) * BOX
    return whole, files


@pytest.mark.parametrize("kind", ["bonds", "no bonds"])
def test_a_chain_split_across_the_box_gives_the_angles_of_the_whole_chain(
        tmp_path, split_protein, kind):
    """With bonds the chain is made whole and followed (no minimum image); without,
    each bond vector is the minimum image, as Ramachandran does."""
    from MDAnalysis.analysis.dihedrals import Ramachandran

    whole, files = split_protein
    calc = calculator(tmp_path, files[kind], [
        {"type": "backbone", "select": "protein", "angles": ["phi", "psi", "chi1"]}])
    coordinate = calc.coordinates[0]
    assert coordinate.along == (kind == "bonds")
    # with bonds: one group, the chain (one molecule), kept whole
    assert len(coordinate.whole_groups()) == (1 if kind == "bonds" else 0)
    with quiet():
        rama = Ramachandran(whole.select_atoms("protein")).run()
    names = calc.column_names()
    columns = [names.index(f"{a}:{r}") for r in rama.ag2.resids for a in ("phi", "psi")]
    expected = rama.results.angles[0].ravel()

    row = calc.start_row()
    assert np.abs(turn(row[columns], expected)).max() <= TOLERANCE
    # the same structure sent with each atom in another image
    rng = np.random.default_rng(7)
    positions = calc.universe.atoms.positions.copy()
    for frame in range(1, 4):
        images = rng.integers(-1, 2, size=positions.shape) * BOX
        again = calc.frame_row((positions + images).astype(np.float32), index=frame,
                               label=f"frame {frame}")
        assert np.abs(turn(again, row)).max() <= 1e-3


def test_consecutive_resids_across_a_chain_break_make_no_angle(tmp_path,
                                                               split_protein):
    _, files = split_protein
    names = calculator(tmp_path, files["chain break"], [
        {"type": "backbone", "select": "resid 59-62"}]).column_names()
    assert names == ["phi:59", "psi:59", "phi:60", "psi:61", "phi:62", "psi:62"]
    # psi:60 (N CA C of 60, N of 61) and phi:61 (C of 60, N CA C of 61) would cross
    # the break
