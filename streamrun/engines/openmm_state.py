"""OpenMM state XML files (``Simulation.saveState``) as start structures.

An OpenMM segment restarts from the state its script saved: an XML file with the
positions (nm, molecules whole as integrated), the periodic box vectors (nm), the
time (ps) and the step. MDAnalysis has no reader for it; :func:`register` adds a
small one (format ``OPENMMSTATE``) so that pcoord row 0 is computed from that
file, exactly (the XML keeps OpenMM's double precision).
"""

from __future__ import annotations

import re
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


#: What OpenMM's XmlSerializer writes, attributes in this order (the fast path).
_HEAD = re.compile(rb'<State\b[^>]*>')
_ATTR = re.compile(rb'\b(time|stepCount)="([^"]*)"')
_XYZ = rb'x="([^"]*)" y="([^"]*)" z="([^"]*)"'
_VECTOR = re.compile(rb"<([ABC]) " + _XYZ + rb"\s*/>")
_POSITION = re.compile(rb"<Position " + _XYZ + rb"\s*/>")


def read_state(path) -> StateFile:
    """Read positions, box, time and step from an OpenMM state XML.

    OpenMM's own files are read with regular expressions (a tenth of the time of
    an XML parse: each warm segment reads one); anything else, e.g. a file
    rewritten by another tool, with an XML parser.

    Raises
    ------
    ValueError
        If the file is not an OpenMM state with positions.
    """
    fast = _read_serialized(Path(path).read_bytes())
    return fast if fast is not None else _parse_state(path)


def _read_serialized(data: bytes) -> StateFile | None:
    """The state, if ``data`` is laid out as XmlSerializer writes it, else None."""
    head = _HEAD.search(data, 0, 4096)
    start, end = data.find(b"<Positions>"), data.find(b"</Positions>")
    if head is None or start < 0 or end < start:
        return None
    section = data[start:end]
    found = _POSITION.findall(section)
    if not found or len(found) != section.count(b"<Position "):
        return None
    attrs = {k.decode(): v.decode() for k, v in _ATTR.findall(head.group(0))}
    box_start = data.find(b"<PeriodicBoxVectors>")
    box_end = data.find(b"</PeriodicBoxVectors>")
    box = dict((tag.decode(), xyz) for tag, *xyz in
               _VECTOR.findall(data, box_start, box_end)) if 0 <= box_start < box_end \
        else {}
    try:
        positions = np.array(found, dtype=np.float64) * 10.0
        vectors = (np.array([box[k] for k in "ABC"], dtype=np.float64) * 10.0
                   if len(box) == 3 else None)
        return StateFile(positions=positions, box=vectors,
                         time=float(attrs.get("time", 0.0)),
                         step=int(attrs.get("stepCount", 0)))
    except (ValueError, KeyError):
        return None


def _parse_state(path) -> StateFile:
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
