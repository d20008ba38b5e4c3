"""NAMD adapter (IMD v3: ``IMDversion 3``, NAMD 3 with IMDv3).

**Untested against a real NAMD binary** (none can be installed where streamrun is
developed): the command line, the config checks and the log parsing are unit
tested; the behaviour of NAMD itself is taken from its sources (``mainfunc.C``,
``GlobalMasterIMD.C``, ``Output.C`` of the IMDv3 branch) and imdclient's NAMD
tests. Report what differs.

The config file (``engine.input``) is the user's, with two rules:

- it must end its dynamics with ``run $streamrun_nsteps``;
- it must not set any ``IMD*`` keyword: streamrun gives them all on the command
  line (NAMD evaluates ``--keyword value`` arguments as config lines before the
  config file): ``IMDon yes``, ``IMDport`` (the reserved port), ``IMDwait yes``,
  ``IMDfreq`` (``engine.frame_interval``), ``IMDversion 3``, positions, time and
  box sent, energies, velocities and forces not, ``IMDwrapPositions no`` (whole
  molecules, for centres of mass), ``IMDignoreForces yes`` (nothing may push
  forces into a segment).

``engine.variables`` become Tcl variables (``--set name {value}``), as do
``streamrun_nsteps`` and ``streamrun_workdir`` (the segment folder). NAMD changes
into the folder of its config file before reading it, so relative output names
would land next to the config, shared by every segment: write them as
``outputname $streamrun_workdir/seg`` (checked for ``outputname``,
``restartname``, ``DCDfile``, ``XSTfile``, ...).

Port: NAMD refuses port 0, so streamrun reserves one and passes it. If that port
is taken, NAMD silently binds another (1025-4095) after a warning; it always
prints ``Info: Interactive MD listening on port N.`` (:attr:`NamdAdapter.port_line`),
and that port is the one to connect to. NAMD handshakes only once the first step
is computed, where it prints ``Info: INTERACTIVE MD AWAITING CONNECTION``
(:attr:`ready_line`); connecting at the listening line could exceed imdclient's
5 s handshake wait on a large system.

Back-pressure: in the IMDv3 branch read here (``GlobalMasterIMD.C``), NAMD's
handling of IMD_RESUME falls through to the disconnect case, so a stream that
imdclient had to pause (its buffer full) may end early; if that happens, raise
``stream.buffer_mb`` above frames x atoms x 12 bytes.

Frames: NAMD sends the first step (``firstTimestep``) and every ``IMDfreq`` steps:
``nsteps / frame_interval + 1`` frames, the first skipped (pcoord row 0 is the
start structure). ``firstTimestep``, if set, must be a multiple of
``engine.frame_interval`` (the steps are checked: IMD v3 streams them).
"""

from __future__ import annotations

import re
from pathlib import Path

from ..boundaries import Boundaries
from ..errors import ConfigError
from .base import EngineAdapter, UnknownPeriodicity, resolve_executable

NSTEPS_VAR, WORKDIR_VAR = "streamrun_nsteps", "streamrun_workdir"
#: Keywords naming output files; relative values would be shared by all segments.
OUTPUT_KEYWORDS = ("outputname", "restartname", "dcdfile", "veldcdfile",
                   "forcedcdfile", "xstfile")


def imd_settings(engine, port) -> list[tuple[str, str]]:
    """The IMD keywords streamrun gives NAMD, in order."""
    return [("IMDon", "yes"), ("IMDport", str(port)), ("IMDwait", "yes"),
            ("IMDfreq", str(engine.frame_interval)), ("IMDversion", "3"),
            ("IMDsendPositions", "yes"), ("IMDsendTime", "yes"),
            ("IMDsendBoxDimensions", "yes"), ("IMDsendEnergies", "no"),
            ("IMDsendVelocities", "no"), ("IMDsendForces", "no"),
            ("IMDwrapPositions", "no"), ("IMDignoreForces", "yes")]


def read_config(path) -> list[tuple[int, str]]:
    """Read a NAMD config as (line number, command): '#' comments removed,
    backslash continuations joined, ';' separating commands."""
    out, pending, start = [], "", 0
    text = Path(path).read_text(errors="replace")
    for number, raw in enumerate(text.splitlines(), 1):
        line = re.sub(r"(^|[\s;])#.*", r"\1", raw).rstrip()
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        for command in (pending + line).split(";"):
            if command.strip():
                out.append((start, command.strip()))
        pending = ""
    return out


def _tcl_word(value: str) -> str:
    return "{" + value + "}"


class NamdAdapter(EngineAdapter):
    name = "namd"
    default_executable = "namd3"
    install_hint = ("install NAMD 3 with IMDv3 support, or set engine.executable to "
                    "your namd3")
    ready_line = re.compile(r"INTERACTIVE MD AWAITING CONNECTION")
    #: The port NAMD really listens on (it may differ from the one asked).
    port_line = re.compile(r"Interactive MD listening on port (?P<port>\d+)")
    bind_failed_line = None
    # NAMD waits 1 s for the client's GO after its handshake
    handshake_dropped_line = re.compile(r"Incompatible Interactive MD")
    pause_line = re.compile(r"Info: Pausing IMD")
    resume_line = re.compile(r"Info: Resuming IMD")
    engine_picks_port = False
    #: NAMD streams the first step (the start point), which makes no pcoord row.
    leading_frames = 1

    def check_config(self, engine, source) -> None:
        if engine.input is None:
            raise ConfigError("missing; the NAMD adapter needs the config file "
                              "(namd3 FILE)", source=source, key="engine.input")
        try:
            commands = read_config(engine.input)
        except OSError as e:
            raise ConfigError(f"cannot read '{engine.input}' ({e.strerror})",
                              source=source, key="engine.input") from None
        for number, command in commands:
            words = command.split()
            keyword = words[0].lower()
            if keyword.startswith("imd"):
                raise ConfigError(
                    f"{engine.input} line {number} sets {words[0]}; remove it: "
                    f"streamrun sets every IMD keyword on the command line",
                    source=source, key="engine.input")
            if keyword in OUTPUT_KEYWORDS and len(words) > 1 and \
                    not words[1].startswith(("/", "$", "[")):
                raise ConfigError(
                    f"{engine.input} line {number}: '{command}' is relative to the "
                    f"config's folder (NAMD changes into it), which every segment "
                    f"shares; write {words[0]} ${WORKDIR_VAR}/{words[1]}",
                    source=source, key="engine.input")
        runs = [c for _, c in commands
                if re.fullmatch(rf"run\s+\$\{{?{NSTEPS_VAR}\}}?", c, re.IGNORECASE)]
        if not runs:
            raise ConfigError(f"{engine.input} has no 'run ${NSTEPS_VAR}' command; "
                              f"streamrun sets the segment length through it",
                              source=source, key="engine.input")
        for name, value in engine.variables.items():
            key = f"engine.variables.{name}"
            if name.startswith("streamrun_"):
                raise ConfigError("names starting with streamrun_ are set by "
                                  "streamrun", source=source, key=key)
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise ConfigError("must be a Tcl variable name (letters, digits, _)",
                                  source=source, key=key)
            if str(value).count("{") != str(value).count("}"):
                raise ConfigError("unbalanced braces cannot be passed to Tcl",
                                  source=source, key=key)
        resolve_executable(self, engine, source)

    def engine_boundaries(self, config) -> Boundaries:
        """A periodic cell along each of ``cellBasisVector1..3`` (or the vectors of
        an ``extendedSystem`` file) given; none without a cell. NAMD's cell is
        centred on ``cellOrigin``, so the box starts at cellOrigin minus half the
        cell vectors."""
        path = Path(config.engine.input)
        vectors, origin, where = [None, None, None], [0.0, 0.0, 0.0], []
        for number, command in read_config(path):
            words = command.split()
            keyword = words[0].lower()
            if keyword not in ("cellbasisvector1", "cellbasisvector2",
                               "cellbasisvector3", "cellorigin", "extendedsystem"):
                continue
            if any("$" in w or "[" in w for w in words[1:]):
                raise UnknownPeriodicity(f"{path.name} line {number} gives {words[0]} "
                                         f"by a Tcl expression")
            if keyword == "extendedsystem":
                xsc = _read_xsc(path.parent / words[1])
                if xsc is None:
                    raise UnknownPeriodicity(f"{path.name} line {number}: the cell of "
                                             f"extendedSystem {words[1]} cannot be read "
                                             f"before the run")
                vectors, origin = list(xsc[:3]), list(xsc[3])
            else:
                try:
                    values = [float(w) for w in words[1:4]]
                except ValueError:
                    raise UnknownPeriodicity(
                        f"{path.name} line {number}: '{command}' is not three "
                        f"numbers") from None
                if keyword == "cellorigin":
                    origin = values
                else:
                    vectors[int(keyword[-1]) - 1] = values
            where.append(f"line {number}: {words[0]}")
        periodic = tuple(v is not None and any(v) for v in vectors)
        corner = [o - 0.5 * sum(v[i] for v in vectors if v is not None)
                  for i, o in enumerate(origin)]
        source = (f"{path.name} " + ", ".join(where)) if where else \
            f"{path.name}: no cellBasisVector (no periodic cell)"
        # NAMD's barostat scales the cell about cellOrigin: the corner moves
        start = tuple(tuple(v) for v in vectors) if all(periodic) else None
        return Boundaries(periodic, source, tuple(corner),
                          "cellOrigin minus half the cell" if any(periodic) else "",
                          start)

    def engine_origin(self, config) -> dict:
        """Used only when the cell cannot be read (engine.periodic states it)."""
        return {"origin": None, "origin_source": "not known: the cell is not "
                "readable before the run"}

    def command(self, engine, executable, port):
        cmd = [executable, *engine.args]
        for keyword, value in imd_settings(engine, port):
            cmd += [f"--{keyword}", value]
        for name, value in ((NSTEPS_VAR, engine.nsteps), (WORKDIR_VAR, engine.workdir),
                            *engine.variables.items()):
            cmd += ["--set", f"{name} {_tcl_word(str(value))}"]
        return cmd + [str(engine.input)]

    def expected_frames(self, nsteps, frame_interval):
        return nsteps // frame_interval + 1


def _read_xsc(path):
    """(a, b, c, origin) of a NAMD extended-system file's last line, or None."""
    try:
        lines = [l.split() for l in Path(path).read_text(errors="replace").splitlines()
                 if l.strip() and not l.startswith("#")]
        numbers = [float(w) for w in lines[-1][1:13]]
    except (OSError, IndexError, ValueError):
        return None
    if len(numbers) < 12:
        return None
    a, b, c, o = (numbers[i:i + 3] for i in range(0, 12, 3))
    return a, b, c, o
