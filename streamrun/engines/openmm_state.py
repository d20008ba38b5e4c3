"""OpenMM state XML files (``Simulation.saveState``) as start structures.

An OpenMM segment restarts from the state its script saved: an XML file with the
positions (nm, molecules whole as integrated), the periodic box vectors (nm), the
time (ps) and the step. MDAnalysis has no reader for it; :func:`register` adds a
small one (format ``OPENMMSTATE``) so that pcoord row 0 is computed from that
file, exactly (the XML keeps OpenMM's double precision).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from ..lazy import numpy as np

#: MDAnalysis format name of the reader that :func:`register` adds.
FORMAT = "OPENMMSTATE"


@dataclass
class StateFile:
    """What an OpenMM state XML holds that a pcoord needs (Å, ps)."""

    positions: "np.ndarray"
    box: "np.ndarray | None"
    time: float
    step: int


def is_state_xml(path) -> bool:
    """True if ``path`` starts like an OpenMM state XML (its suffix is not needed:
    WESTPA may link a state under an extension-less name)."""
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError:
        return False
    return b"<State" in head


def read_state(path) -> StateFile:
    """Read positions, box, time and step from an OpenMM state XML.

    Raises
    ------
    ValueError
        If the file is not an OpenMM state with positions.
    """
    positions, box, time, step = [], {}, 0.0, 0
    root_seen = in_box = False
    for event, elem in ET.iterparse(str(path), events=("start", "end")):
        tag = elem.tag
        if event == "start":
            if not root_seen:
                if tag != "State":
                    raise ValueError(f"the root element is <{tag}>, not <State>")
                root_seen = True
                time = float(elem.get("time", 0.0))
                step = int(elem.get("stepCount", 0))
            elif tag == "PeriodicBoxVectors":
                in_box = True
            continue
        if tag == "Position":
            positions.append((float(elem.get("x")), float(elem.get("y")),
                              float(elem.get("z"))))
        elif in_box and tag in ("A", "B", "C"):
            box[tag] = (float(elem.get("x")), float(elem.get("y")),
                        float(elem.get("z")))
        elif tag == "PeriodicBoxVectors":
            in_box = False
        if tag != "State":
            elem.clear()
    if not positions:
        raise ValueError("it holds no <Positions>; save it with "
                         "Simulation.saveState (positions included)")
    vectors = np.array([box[k] for k in "ABC"]) * 10.0 if len(box) == 3 else None
    return StateFile(positions=np.array(positions, dtype=np.float64) * 10.0,
                     box=vectors, time=time, step=step)


_registered = False


def register() -> str:
    """Make MDAnalysis read OpenMM state XML files (format :data:`FORMAT`);
    returns the format name. Imports MDAnalysis."""
    global _registered
    if _registered:
        return FORMAT
    from MDAnalysis.coordinates import base
    from MDAnalysis.lib.mdamath import triclinic_box

    class OpenMMStateReader(base.SingleFrameReaderBase):
        """One frame from an OpenMM state XML (positions, box, time, step)."""

        format = FORMAT
        units = {"time": "ps", "length": "Angstrom"}

        def _read_first_frame(self):
            try:
                state = read_state(Path(self.filename))
            except (ET.ParseError, ValueError, TypeError) as e:
                raise ValueError(f"not an OpenMM state XML ({e})") from None
            self.n_atoms = len(state.positions)
            self.ts = self._Timestep.from_coordinates(state.positions,
                                                      **self._ts_kwargs)
            if state.box is not None:
                self.ts.dimensions = triclinic_box(*state.box)
            self.ts.frame = 0
            self.ts.time = state.time
            self.ts.data["step"] = state.step

    _registered = True
    return FORMAT
