"""An in-process WESTPA propagator for the nacl_openmm example: the peer that keeps
OpenMM resident.

As WESTPA's ``wca-dimer_openmm`` example (``we_custom/openmm_propagator.py``) and
BioMedAI-UCSC/westpa_prop do, the segments run inside the WESTPA worker through
OpenMM's Python API: no process is started per segment. One ``Simulation`` is built
per worker, at its first segment, and reused for every segment after. Per segment:
load the parent's state (its ``seg.xml``, or the basis state file), step ``nsteps``
in chunks of ``frame_interval``, compute the Na-Cl minimum-image distance (Å) from the
positions in memory after each chunk, save the final state as ``seg.xml`` in the
segment's folder for the children, and hand WESTPA the pcoord.

In west.cfg::

    west:
      propagation:
        propagator: openmm_peer.propagator.OpenMMPeerPropagator
    openmm_peer:
      example: $WEST_SIM_ROOT/..   # the folder of build.py and topology.pdb
      nsteps: 100
      frame_interval: 10

with ``benchmarks`` on ``PYTHONPATH``. The force field, system, integrator and
platform are those of ``example_sims/nacl_openmm/build.py`` (CPU, one thread), as in
the example's ``nacl_prod.py``. The integrator and barostat seeds are drawn once per
worker (a Context keeps the seed it was created with); each segment continues the
worker's random stream.
"""

from __future__ import annotations

import os
import random
import sys
import time
from pathlib import Path

import numpy as np
import openmm
from openmm import app, unit
from westpa.core.data_manager import makepath
from westpa.core.propagators import WESTPropagator
from westpa.core.segment import Segment
from westpa.core.states import BasisState, InitialState

#: The name of the final state each segment saves (its children start from it).
STATE_FILE = "seg.xml"


def min_image_distance(positions, box) -> float:
    """Distance in Å between atoms 0 and 1 of ``positions`` (nm, shape (2, 3)), minimum
    image in ``box`` (3 x 3, nm, rows a, b, c in OpenMM's reduced form)."""
    d = positions[1] - positions[0]
    for i in (2, 1, 0):  # c, then b, then a: OpenMM's reduced triclinic form
        d = d - box[i] * np.round(d[i] / box[i][i])
    return float(np.sqrt(d @ d)) * 10.0


def state_distance(state, pair) -> float:
    """The Na-Cl distance (Å) of an OpenMM ``State``."""
    xyz = state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
    box = state.getPeriodicBoxVectors(asNumpy=True).value_in_unit(unit.nanometer)
    return min_image_distance(np.asarray(xyz)[list(pair)], np.asarray(box))


def read_state(path):
    with open(path) as f:
        return openmm.XmlSerializer.deserialize(f.read())


class OpenMMPeerPropagator(WESTPropagator):
    """One OpenMM ``Simulation`` per worker, reused for every segment."""

    def __init__(self, rc=None):
        super().__init__(rc)
        config = self.rc.config
        self.example = Path(makepath(config.require(["openmm_peer", "example"])))
        self.nsteps = int(config.require(["openmm_peer", "nsteps"]))
        self.interval = int(config.require(["openmm_peer", "frame_interval"]))
        pcoord_len = int(config["west", "system", "system_options", "pcoord_len"])
        if self.nsteps % self.interval or self.nsteps // self.interval + 1 != pcoord_len:
            raise ValueError(f"openmm_peer: nsteps {self.nsteps} / frame_interval "
                             f"{self.interval} + 1 must equal pcoord_len {pcoord_len}")
        refs = ("west", "data", "data_refs")
        self.segment_ref = config[(*refs, "segment")]
        self.basis_state_ref = config[(*refs, "basis_state")]
        self.initial_state_ref = config[(*refs, "initial_state")]
        self.topology = app.PDBFile(str(self.example / "topology.pdb")).topology
        names = [a.name for a in self.topology.atoms()]
        self.pair = (names.index("NA"), names.index("CL"))
        self.simulation = None  # built in the worker, at its first segment

    # ------------------------------------------------------------------ set-up

    def _build(self):
        if str(self.example) not in sys.path:
            sys.path.insert(0, str(self.example))
        import build  # the example's force field and settings

        seed = random.SystemRandom().randint(1, 2**31 - 2)
        self.simulation = app.Simulation(self.topology, build.system(self.topology, seed),
                                         build.integrator(seed), build.cpu(),
                                         {"Threads": "1"})
        return self.simulation

    def _start_file(self, segment) -> str:
        """The state a segment starts from: its parent's seg.xml, or the basis state."""
        if segment.initpoint_type == Segment.SEG_INITPOINT_CONTINUES:
            parent = Segment(n_iter=segment.n_iter - 1, seg_id=segment.parent_id)
            return os.path.join(makepath(self.segment_ref, {"segment": parent}),
                                STATE_FILE)
        istate = self.initial_states[segment.initial_state_id]
        if istate.istate_type == InitialState.ISTATE_TYPE_BASIS:
            return makepath(self.basis_state_ref,
                            {"basis_state": self.basis_states[istate.basis_state_id]})
        return makepath(self.initial_state_ref, {"initial_state": istate})

    # ------------------------------------------------------------- WESTPA API

    def get_pcoord(self, state):
        if isinstance(state, BasisState):
            path = makepath(self.basis_state_ref, {"basis_state": state})
        elif isinstance(state, InitialState):
            path = makepath(self.initial_state_ref, {"initial_state": state})
        else:
            raise TypeError(f"state must be a BasisState or InitialState, not {state!r}")
        state.pcoord = np.array([state_distance(read_state(path), self.pair)],
                                dtype=np.float32)

    def propagate(self, segments):
        sim = self.simulation or self._build()
        frames = self.nsteps // self.interval
        for segment in segments:
            t0, c0 = time.time(), time.process_time()
            folder = makepath(self.segment_ref, {"segment": segment})
            os.makedirs(folder, exist_ok=True)
            sim.loadState(self._start_file(segment))
            pcoord = np.empty((frames + 1, 1))
            pcoord[0] = state_distance(sim.context.getState(getPositions=True), self.pair)
            for i in range(1, frames + 1):
                sim.step(self.interval)
                pcoord[i] = state_distance(sim.context.getState(getPositions=True),
                                           self.pair)
            sim.saveState(os.path.join(folder, STATE_FILE))
            segment.pcoord = pcoord.astype(np.float32)
            segment.status = Segment.SEG_STATUS_COMPLETE
            segment.walltime = time.time() - t0
            segment.cputime = time.process_time() - c0
        return segments
