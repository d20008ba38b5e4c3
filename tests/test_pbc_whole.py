"""Groups stay whole whatever images the engine sends (streamrun.pcoords.pbc), shown
on synthetic frames where the truth is known; the same against real engines is in
tests/test_pcoords_lammps.py and tests/test_pcoords_gromacs.py."""

import MDAnalysis as mda
import numpy as np
import pytest
from MDAnalysis.lib.mdamath import triclinic_vectors

from streamrun.errors import ConfigError, PcoordError
from streamrun.pcoords.pbc import WholeTracker

DIMS = np.array([15.0, 16.0, 17.0, 70.0, 80.0, 75.0])  # triclinic
H = triclinic_vectors(DIMS)


def wrap(x):
    f = x @ np.linalg.inv(H)
    return (f - np.floor(f)) @ H


def chain_universe(n=12, solvent=5, seed=0):
    rng = np.random.default_rng(seed)
    u = mda.Universe.empty(n + solvent, trajectory=True)
    u.add_TopologyAttr("masses", np.ones(n + solvent))
    u.add_bonds([(i, i + 1) for i in range(n - 1)])
    chain = np.cumsum(rng.normal(size=(n, 3)) * 0.3 + [1.2, 0.5, 0.3], axis=0) + 10
    truth = np.vstack([chain, rng.random((solvent, 3)) @ H])
    u.atoms.positions = wrap(truth)
    u.dimensions = DIMS
    return u, truth, rng


def test_a_bonded_chain_split_at_the_start_is_whole_on_every_frame_whatever_the_images():
    u, truth, rng = chain_universe()
    n = 12
    tracker = WholeTracker(u, [(u.atoms[:n], "pcoord[0].select", "chain")], "c.yaml")
    whole = tracker.start(u.atoms.positions, DIMS)
    offset = whole - truth[:n]
    assert np.allclose(offset, offset[0], atol=1e-4)  # one rigid lattice shift
    pos = truth.copy()
    for t in range(200):  # drifts across the box several times
        pos[:n] += rng.normal(size=3) * 0.5 + rng.normal(size=(n, 3)) * 0.05
        sent = wrap(pos) + rng.integers(-2, 3, size=pos.shape) @ H
        whole = tracker.follow(sent, DIMS, f"frame {t + 1}")
        offset = whole - pos[:n]
        assert np.allclose(offset, offset[0], atol=1e-3)


def test_unbonded_atoms_are_joined_compactly_or_refused_when_half_the_box_is_spanned():
    u = mda.Universe.empty(4, trajectory=True)
    u.dimensions = [10, 10, 10, 90, 90, 90]
    compact = np.array([[0.5, 5, 5], [9.5, 5, 5], [1.0, 5, 5], [9.0, 5, 5]])
    joined = WholeTracker(u, [(u.atoms, "pcoord[0].a", "all")], "c.yaml").start(
        compact, u.dimensions)
    assert np.ptp(joined[:, 0]) == pytest.approx(2.0)
    spread = np.array([[0.5, 5, 5], [5.5, 5, 5], [1.0, 5, 5], [9.0, 5, 5]])
    with pytest.raises(ConfigError) as info:
        WholeTracker(u, [(u.atoms, "pcoord[0].a", "all")], "c.yaml").start(
            spread, u.dimensions)
    assert info.value.key == "pcoord[0].a" and "more than half the box" in str(info.value)


def test_a_start_structure_that_is_not_the_engines_start_is_caught_on_the_first_frame():
    u, truth, rng = chain_universe()
    tracker = WholeTracker(u, [(u.atoms[:12], "pcoord[0].select", "chain")], "c.yaml")
    tracker.start(u.atoms.positions, DIMS)
    elsewhere = truth + rng.random(truth.shape) * 6.0
    with pytest.raises(PcoordError, match="start structure"):
        tracker.follow(elsewhere, DIMS, "frame 1 (step 10)")
