"""OpenMM adapter: the user's OpenMM script, streaming with :mod:`streamrun.openmm`.

OpenMM has no IMD server; :class:`streamrun.openmm.IMDReporter` is one. The engine
is the user's own OpenMM script (``engine.input``), run by the Python that runs
streamrun (``engine.executable`` to use another) in the segment folder, with
``engine.args`` as its arguments. Two lines make a script stream::

    simulation.reporters.append(streamrun.openmm.reporter())
    simulation.step(streamrun.openmm.nsteps())

streamrun passes everything through the environment:

- ``STREAMRUN_OPENMM_PORT=0``: the reporter listens on 127.0.0.1 only, on a port
  the operating system picks, and prints it (:data:`streamrun.openmm.READY_LINE`);
  streamrun reserves no port (``engine_picks_port``);
- ``STREAMRUN_FRAME_INTERVAL`` and ``STREAMRUN_NSTEPS`` (``engine.frame_interval``,
  ``engine.nsteps``);
- ``STREAMRUN_VARIABLES``: ``engine.variables`` as JSON, read in the script with
  ``streamrun.openmm.variable(name)`` (a ``{seed}`` for the integrator, the start
  state linked by ``files:``, ...);
- ``PYTHONUNBUFFERED=1``, so the script's own output reaches the log in order.

Frames: the reporter sends step ``frame_interval`` first (not the start point):
``nsteps / frame_interval`` frames. Time (ps), box (Å, every frame: pressure
coupling is fine) and positions (Å, ``enforcePeriodicBox=False``) are streamed.
Row 0 comes from ``start:``, which may be the OpenMM state XML the script loads
(read by :mod:`streamrun.engines.openmm_state`), an Amber restart (read as
:mod:`streamrun.amber` says; the script loads either with
``streamrun.openmm.load_start``), a PDB, or anything MDAnalysis reads. The
restart is whatever the script saves (``restart: [seg.xml]``).

Checks before launch: the script exists, is Python, and calls the reporter and
``nsteps()`` or ``segments()`` (a script without them would run without
streaming, or stream the wrong number of frames).

A script that loops over ``streamrun.openmm.segments()`` can be resident: on the
warm path the WESTPA worker keeps it running between segments
(:mod:`streamrun.resident`; its control socket is ``STREAMRUN_OPENMM_RESIDENT``).
"""

from __future__ import annotations

import ast
import json
import re
import sys
from pathlib import Path

from .. import openmm as reporter_module
from ..boundaries import Boundaries
from ..errors import ConfigError
from .base import EngineAdapter, resolve_executable
from .openmm_state import is_state_xml

_P = re.escape(reporter_module.PREFIX)


def _calls(tree, name) -> bool:
    """True if the script calls a function or method named ``name``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            if (isinstance(f, ast.Attribute) and f.attr == name) or \
                    (isinstance(f, ast.Name) and f.id == name):
                return True
    return False


class OpenMMAdapter(EngineAdapter):
    name = "openmm"
    #: The Python running streamrun, looked up by name next to it (a resolved
    #: path would leave its virtual environment, where openmm is installed).
    default_executable = Path(sys.executable).name
    install_hint = ("install OpenMM in the Python that runs streamrun (pip install "
                    "openmm), or set engine.executable to a Python that has it")
    ready_line = re.compile(_P + r" IMD v3 listening on 127\.0\.0\.1 port "
                                 r"(?P<port>\d+)(?: \(periodic box: "
                                 r"(?P<periodic>yes|no)\))?")
    handshake_dropped_line = re.compile(_P + r" no IMD_GO from the client")
    client_connected_line = re.compile(_P + r" IMD client connected from")
    # streamrun never leaves before the engine exits and never sends forces,
    # rate changes or unknown messages: these lines mean another client
    client_detached_line = re.compile(_P + r" (IMD client left|ignored)")
    pause_line = re.compile(_P + r" paused by the IMD client")
    resume_line = re.compile(_P + r" resumed by the IMD client")
    engine_picks_port = True
    leading_frames = 0
    segment_done_line = re.compile(_P + r" segment \d+ done$")
    resident_control_var = reporter_module.RESIDENT_VAR

    def check_config(self, engine, source) -> None:
        if engine.input is None:
            raise ConfigError("missing; the OpenMM adapter needs your OpenMM script "
                              "(a .py file that adds streamrun.openmm.reporter())",
                              source=source, key="engine.input")
        try:
            text = Path(engine.input).read_text(errors="replace")
        except OSError as e:
            raise ConfigError(f"cannot read '{engine.input}' ({e.strerror})",
                              source=source, key="engine.input") from None
        try:
            tree = ast.parse(text, filename=str(engine.input))
        except SyntaxError as e:
            raise ConfigError(f"{engine.input} line {e.lineno} is not valid Python "
                              f"({e.msg}); fix the script", source=source,
                              key="engine.input") from None
        missing = []
        if not _calls(tree, "reporter"):
            missing.append("'simulation.reporters.append(streamrun.openmm.reporter())'"
                           " (streams the frames)")
        if not _calls(tree, "nsteps") and not _calls(tree, "segments"):
            missing.append("'simulation.step(streamrun.openmm.nsteps())' (runs "
                           "engine.nsteps steps), or a loop 'for segment in "
                           "streamrun.openmm.segments(): ... simulation.step("
                           "segment.nsteps)'")
        if missing:
            raise ConfigError(
                f"{engine.input} does not stream to streamrun; add "
                + " and ".join(missing) + " after 'import streamrun.openmm'",
                source=source, key="engine.input")
        for name in engine.variables:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise ConfigError("must be a Python identifier (letters, digits, _)",
                                  source=source, key=f"engine.variables.{name}")
        resolve_executable(self, engine, source)

    def can_be_resident(self, engine) -> bool:
        """The script loops over ``streamrun.openmm.segments()`` (read with
        :mod:`ast`), and runs without a launcher."""
        if engine.launcher or engine.input is None:
            return False
        try:
            tree = ast.parse(Path(engine.input).read_text(errors="replace"))
        except (OSError, SyntaxError, ValueError):
            return False
        return _calls(tree, "segments")

    def engine_boundaries(self, config) -> None:
        """Only the script's System knows (``usesPeriodicBoundaryConditions``): the
        reporter tells it in its readiness line (:meth:`launch_boundaries`). A state
        XML carries a box even for a System without one (OpenMM's default 2 nm)."""
        return None

    def launch_boundaries(self, details) -> Boundaries | None:
        """``(periodic box: yes|no)`` of the reporter's readiness line."""
        periodic = details.get("periodic")
        if periodic is None:
            return None
        return Boundaries((periodic == "yes",) * 3,
                          "the OpenMM System (usesPeriodicBoundaryConditions() is "
                          f"{periodic == 'yes'})")

    def engine_env(self, engine) -> dict[str, str]:
        """What the script reads: port request, frame interval, steps, variables."""
        return {reporter_module.PORT_VAR: "0",
                reporter_module.INTERVAL_VAR: str(engine.frame_interval),
                reporter_module.NSTEPS_VAR: str(engine.nsteps),
                reporter_module.VARIABLES_VAR: json.dumps(dict(engine.variables)),
                "PYTHONUNBUFFERED": "1"}

    def command(self, engine, executable, port):
        return [executable, str(engine.input), *engine.args]

    def expected_frames(self, nsteps, frame_interval):
        return nsteps // frame_interval

    def structure_format(self, path) -> str | None:
        """``OPENMMSTATE`` for an OpenMM state XML (registers its reader)."""
        if path is not None and is_state_xml(path):
            from .openmm_state import register

            return register()
        return None

    @staticmethod
    def error_summary(lines) -> str | None:
        """The exception line of a Python traceback (``ValueError: ...``)."""
        lines = list(lines)
        if not any(l.startswith("Traceback (most recent call last)") for l in lines):
            return None
        for text in reversed(lines):
            if re.match(r"[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b", text):
                return text.strip()
        return None
