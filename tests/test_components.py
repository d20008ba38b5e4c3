"""Components along axes (issue 20): a drug's z distance from a membrane-like
leaflet that spans the box in x and y, streamed from a real LAMMPS run, equals the
same quantity computed from LAMMPS' own dump at the streamed steps.

The "leaflet" is a layer of 64 unbonded argon-like atoms on an 8 x 8 grid that
fills the 30 x 30 Å box in x and y, centred 1 Å above z = 0 with atoms below and
above it, so that LAMMPS wraps some of them to the top of the box: joined as one
compact group it spans the whole box laterally (refused, as it must be), but along
z it is 8 Å thick. The "drug" is one atom 15 Å above it.
"""

import numpy as np
import pytest
import yaml

from boundary_lammps import ARGON, dump_positions, stream_segment, write_data, \
    write_input
from pbc_systems import read_dump

pytestmark = pytest.mark.engine("lammps")

NSTEPS, EVERY = 200, 20
ROWS = NSTEPS // EVERY + 1
EDGE = np.array([30.0, 30.0, 40.0])

COORDINATES = [
    {"type": "position", "name": "leaflet_z", "select": "type 1", "axis": "z"},
    {"type": "distance", "name": "drug_leaflet_z", "a": "type 2", "b": "type 1",
     "axes": "z"},
    {"type": "distance", "name": "drug_leaflet_z_geometry", "a": "type 2",
     "b": "type 1", "axes": "z", "center": "geometry"},
    {"type": "position", "name": "drug_z_from_leaflet", "select": "type 2",
     "axis": "z", "relative_to": "type 1"},
]


def write_leaflet(folder, seed=3):
    rng = np.random.default_rng(seed)
    grid = (np.arange(8) + 0.5) * EDGE[0] / 8
    xy = np.array([(x, y) for x in grid for y in grid])
    z = 1.0 + rng.uniform(-4.0, 4.0, len(xy))
    layer = np.column_stack([xy, z])
    drug = np.array([[15.2, 14.8, 16.0]])
    positions = np.vstack([layer, drug])
    positions[:, 2] %= EDGE[2]  # wrapped, as a start structure from LAMMPS is
    assert (positions[:64, 2] > EDGE[2] / 2).any()  # premise: some wrapped to the top
    velocities = rng.normal(scale=0.002, size=positions.shape)  # Å/fs
    write_data(folder / "start.data", lo=np.zeros(3), hi=EDGE, positions=positions,
               types=[1] * 64 + [2], masses=[ARGON[2], 100.0], velocities=velocities,
               title="leaflet and drug")
    write_input(folder, boundary="boundary        p p p", title="leaflet and drug",
                integrate="fix             move all nve")


def references(folder):
    frames = read_dump(folder / "check.lammpstrj")
    assert [f.step for f in frames] == list(range(0, NSTEPS + 1, EVERY))
    pos = dump_positions(frames)                  # raw x y z, wrapped by LAMMPS
    layer_z = pos[:, :64, 2].copy()
    layer_z[layer_z > EDGE[2] / 2] -= EDGE[2]     # the layer, whole along z
    assert np.ptp(layer_z, axis=1).max() < EDGE[2] / 2
    centre = layer_z.mean(axis=1)                 # one mass: COM = geometry
    drug_z = pos[:, 64, 2]
    dz = drug_z - centre
    dz -= EDGE[2] * np.round(dz / EDGE[2])
    return {"leaflet_z": centre % EDGE[2], "drug_leaflet_z": np.abs(dz),
            "drug_leaflet_z_geometry": np.abs(dz), "drug_z_from_leaflet": dz}, pos


def test_a_drugs_z_distance_from_a_leaflet_spanning_the_box_laterally(
        lmp, tmp_path, no_engine_left):
    write_leaflet(tmp_path)
    setup = {"engine": {"name": "lammps", "input": "run.in", "nsteps": NSTEPS,
                        "frame_interval": EVERY},
             "topology": "start.data", "topology_options": {"atom_style":
                                                           "id resid type charge x y z"}}
    config, result = stream_segment(tmp_path, setup, COORDINATES)
    written = np.loadtxt(config.output, ndmin=2)
    assert written.shape == (ROWS, len(COORDINATES))
    expected, pos = references(tmp_path)
    # premise: laterally the layer spans the box, so only a component can be had
    assert (np.ptp(pos[0, :64, :2], axis=0) > EDGE[:2] / 2).all()
    for i, c in enumerate(COORDINATES):
        diff = np.abs(written[:, i] - expected[c["name"]])
        assert diff.max() <= 1e-3, (c["name"], written[:, i], expected[c["name"]])
    assert np.ptp(written[:, 1]) > 0.01  # the values move


def test_the_full_distance_to_a_group_spanning_the_box_is_still_refused(
        tmp_path):
    """Without axes, the leaflet's centre in x and y is ambiguous: the half-box
    refusal stays, naming the key, before any engine runs."""
    from streamrun.config import load
    from streamrun.errors import ConfigError
    from streamrun.segment import calculator_for

    write_leaflet(tmp_path)
    (tmp_path / "streamrun.yaml").write_text(yaml.safe_dump({
        "engine": {"name": "lammps", "input": "run.in", "nsteps": NSTEPS,
                   "frame_interval": EVERY, "executable": "/bin/true"},
        "topology": "start.data",
        "topology_options": {"atom_style": "id resid type charge x y z"},
        "pcoord": [{"type": "distance", "a": "type 2", "b": "type 1", "axes": "xz"}]}))
    config = load(tmp_path / "streamrun.yaml", environ={})
    with pytest.raises(ConfigError) as info:
        calculator_for(config).start_row()
    assert info.value.key == "pcoord[0].b"
    assert "more than half the box" in str(info.value)
