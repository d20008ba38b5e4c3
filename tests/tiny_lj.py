"""A 256-atom Lennard-Jones argon box: the smallest real LAMMPS segment, for fault
and load tests where the chemistry does not matter and speed does."""

import subprocess
from pathlib import Path

import yaml

BUILD = """\
units real
atom_style atomic
lattice fcc 5.26
region box block 0 4 0 4 0 4
create_box 1 box
create_atoms 1 box
mass 1 39.948
write_data lj.data
"""

SEGMENT = """\
variable seed index 1
variable dumpfile index none
units real
atom_style atomic
read_data {data}
pair_style lj/cut 8.5
pair_coeff 1 1 0.238 3.405
velocity all create 120.0 ${{seed}} dist gaussian
fix nve all nve
timestep 5.0
thermo 100
variable nodump_none index 1
variable dodump equal !is_defined(variable,nodump_${{dumpfile}})
if "${{dodump}}" then &
   "dump check all custom ${{streamrun_every}} ${{dumpfile}} id type xu yu zu" &
   "dump_modify check sort id format float %20.15g"
{before_imd}
fix stream all imd ${{streamrun_port}} version 3 trate ${{streamrun_every}} unwrap on velocities off forces off
run ${{streamrun_nsteps}}
{after_run}
"""


def make_tiny_sim(folder: Path, lmp: str, nsteps=100, every=10, before_imd="",
                  after_run="", **config):
    """Write and build the tiny system in ``folder``; return the config path."""
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / "lj.data"
    if not data.exists():
        (folder / "build.in").write_text(BUILD)
        subprocess.run([lmp, "-in", "build.in", "-log", "none", "-nocite"], cwd=folder,
                       check=True, capture_output=True, timeout=60)
    (folder / "lj.in").write_text(SEGMENT.format(data=data, before_imd=before_imd,
                                                 after_run=after_run))
    cfg = {"engine": {"input": "lj.in", "nsteps": nsteps, "frame_interval": every},
           "topology": "lj.data", "topology_options": {"atom_style": "id type x y z"},
           "pcoord": [{"type": "distance", "name": "d12", "a": "index 0",
                       "b": "index 1"}]}
    for key, value in config.items():
        cfg[key] = value
    path = folder / "streamrun.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path
