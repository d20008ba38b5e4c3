"""GROMACS adapter (``gmx mdrun``; upstream IMD v2, HeydenLab fork IMD v3).

How a segment runs, the way a GROMACS WESTPA user already does it (westpa_tutorials
``basic_nacl_gmx``: grompp from the parent's files with a seed, then mdrun):

- ``prepare:`` commands make the run input in the segment folder, e.g.::

      prepare:
        - sed "s/@SEED@/${WEST_RAND16:-4928459}/" {config_dir}/md.mdp > seg.mdp
        - gmx grompp -f seg.mdp -c {parent}/seg.gro -t {parent}/seg.cpt
            -p {config_dir}/topol.top -o seg.tpr

- ``engine.input`` is the .mdp that grompp reads (the template). The run input
  (.tpr) does not exist yet when the config is checked, so the checks read the
  .mdp: ``IMD-group`` must be set (without it mdrun silently streams nothing),
  the integrator must be a dynamical one, and under pressure coupling a
  minimum-image distance needs the box, which IMD v2 does not stream (see
  :meth:`GromacsAdapter.check_pcoords`).
- streamrun runs ``gmx mdrun -s seg.tpr -deffnm seg -nsteps N -imdport 0
  -imdwait`` plus ``engine.args`` in the segment folder: it reads ``seg.tpr`` and
  writes ``seg.gro``, ``seg.cpt``, ``seg.log``, ... for the next segment
  (``-deffnm`` or ``-s`` in ``engine.args`` replace the defaults).
  ``-nsteps`` overrides the mdp's ``nsteps``. ``engine.variables`` is not used:
  mdrun options go in ``engine.args`` (e.g. ``[-nt, 1]``), per-segment mdp values
  (seeds) through a prepare command.

Port: ``-imdport 0`` lets the OS choose; mdrun logs (stderr and md.log)
``IMD: Listening for IMD connection on port N.`` at once, then waits for a client
(``-imdwait``). streamrun reserves no port and reads N from that line.

Frames: upstream mdrun streams every step to a connected client until the
client sets the transmission rate (IMD_TRATE): the mdp ``nstcalcenergy`` is used
only after a client disconnects, and mdrun has no rate option. streamrun sends
``engine.frame_interval`` as the rate right after the handshake
(``client_sets_rate``); mdrun sleeps 1 s after the handshake, so the rate is in
place before step 0. Step 0 is streamed: ``nsteps / frame_interval + 1`` frames,
the first one (the start point) skipped because pcoord row 0 comes from the
start structure. Coordinates are sent in Å (mdrun multiplies nm by 10) with
molecules made whole.

IMD v2 frames carry no box and no time: the start structure's box is used for
minimum images (exact at constant volume) and frame steps are not checked.
The HeydenLab fork (``IMD-version = 3`` in the mdp) streams time and box when
``IMD-time``/``IMD-box`` are on; its ``IMD-nst`` must equal
``engine.frame_interval``. imdclient detects the version from the handshake.

After streamrun disconnects early, an ``-imdwait`` mdrun blocks waiting for a new
client; streamrun's SIGTERM ends it at once (``-imdterm`` only lets a client send
IMD_KILL, which imdclient never does, so it is not used). ``-imdpull`` is refused:
nothing may push forces into a WESTPA segment.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from ..boundaries import Boundaries
from ..errors import ConfigError
from .base import EngineAdapter, UnknownPeriodicity, resolve_executable

#: mdrun options streamrun sets itself, or that would break streaming.
RESERVED_ARGS = {
    "-nsteps": "streamrun sets it from engine.nsteps",
    "-imdport": "streamrun lets the OS choose the port",
    "-imdwait": "streamrun always passes it",
    "-noimdwait": "mdrun would start before streamrun connects and lose frames",
    "-imdpull": "a client could push forces into the segment",
    "-multidir": "mdrun disables IMD for multi-simulations",
    "-rerun": "a rerun is not a segment",
}
DYNAMICAL = {"md", "md-vv", "md-vv-avek", "sd", "bd"}
#: mdp keys of the HeydenLab fork's IMD v3 (normalised: lower case, '-'), as its
#: demo mdp writes them; GROMACS releases' grompp rejects them.
IMD_V3_KEYS = {"imd-version": "IMD-version", "imd-nst": "IMD-nst",
               "imd-time": "IMD-time", "imd-box": "IMD-box",
               "imd-coords": "IMD-coords", "imd-vels": "IMD-vels",
               "imd-forces": "IMD-forces", "imd-unwrap": "IMD-unwrap",
               "imd-energies": "IMD-energies"}
#: Shell words that end one command of a prepare line.
SHELL_SEPARATORS = {"&&", "||", ";", "|", "&"}
DEFAULT_DEFFNM = "seg"


def _norm(key: str) -> str:
    # grompp ignores case and treats '-' and '_' alike in mdp keys
    return key.strip().lower().replace("_", "-")


def read_mdp(path) -> dict[str, tuple[str, int]]:
    """Read an .mdp file as {normalised key: (value, line number)}.

    Keys are lower case with '_' written as '-' (grompp treats them alike);
    ';' starts a comment.

    Raises
    ------
    OSError
        If the file cannot be read.
    """
    out = {}
    text = Path(path).read_text(errors="replace")
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split(";", 1)[0].strip()
        if "=" not in line:
            continue
        key, value = line.split("=", 1)
        out[_norm(key)] = (value.strip(), number)
    return out


def _options(words) -> dict[str, str]:
    """``-flag value`` pairs of a GROMACS command line (flags without a value,
    such as ``-quiet``, are skipped)."""
    out = {}
    for flag, value in zip(words, words[1:]):
        if flag.startswith("-") and not value.startswith("-"):
            out[flag] = value
    return out


def _yes(value: str) -> bool:
    return value.strip().lower() in ("yes", "true", "on", "1")


class GromacsAdapter(EngineAdapter):
    name = "gromacs"
    default_executable = "gmx"
    install_hint = ("install GROMACS (e.g. apt-get install gromacs, or conda install "
                    "-c conda-forge gromacs), or set engine.executable to your gmx")
    ready_line = re.compile(r"IMD: Listening for IMD connection on port (?P<port>\d+)")
    bind_failed_line = None
    # mdrun waits 1 s for the client's GO after its handshake
    handshake_dropped_line = re.compile(r"No IMD_GO order received")
    # src/gromacs/imd/imd.cpp: tryConnect() logs this for every accepted client,
    # readCommand() the second on IMD_DISCONNECT (mdrun then accepts a new client
    # at any step)
    client_connected_line = re.compile(r"IMD: Connection established")
    client_detached_line = re.compile(r"IMD:\s+Disconnecting client")
    pause_line = re.compile(r"IMD: Pause command received")
    resume_line = re.compile(r"IMD: Un-pause command received")
    engine_picks_port = True
    #: mdrun streams step 0 (the start point), which makes no pcoord row.
    leading_frames = 1
    #: mdrun streams every step until the client sends IMD_TRATE.
    client_sets_rate = True

    def check_config(self, engine, source) -> None:
        mdp = self._mdp(engine, source)
        where = engine.input

        def line(key):
            return f" (line {mdp[key][1]})" if key in mdp else ""

        group = mdp.get("imd-group", ("", 0))[0]
        if not group:
            raise ConfigError(
                f"{where} has no 'IMD-group'; without it mdrun streams nothing. Add "
                f"'IMD-group = System' (or the group whose atoms the topology has)",
                source=source, key="engine.input")
        integrator = mdp.get("integrator", ("md", 0))[0].lower()
        if integrator not in DYNAMICAL:
            raise ConfigError(
                f"{where}{line('integrator')}: integrator = {integrator} is not "
                f"dynamics; a segment needs one of {', '.join(sorted(DYNAMICAL))} "
                f"(sd gives the stochastic dynamics weighted ensemble needs)",
                source=source, key="engine.input")
        if self._version(mdp) == 3:
            nst = mdp.get("imd-nst", ("1", 0))[0]
            if nst != str(engine.frame_interval):
                raise ConfigError(
                    f"{where}{line('imd-nst')}: IMD-nst is {nst} but "
                    f"engine.frame_interval is {engine.frame_interval}; make them "
                    f"equal (IMD-version = 3 and IMD-nst are keys of the HeydenLab "
                    f"fork; the grompp of a GROMACS release rejects them: remove "
                    f"both to stream IMD v2)", source=source, key="engine.input")
            if "imd-coords" in mdp and not _yes(mdp["imd-coords"][0]):
                raise ConfigError(f"{where}{line('imd-coords')}: IMD-coords must be "
                                  f"yes (pcoords need the coordinates)",
                                  source=source, key="engine.input")
        if engine.variables:
            name = next(iter(engine.variables))
            raise ConfigError(
                "GROMACS reads no input variables: put mdrun options in engine.args "
                "(e.g. [-nt, 1]) and per-segment mdp values (seeds) in a prepare "
                "command that writes the mdp", source=source,
                key=f"engine.variables.{name}")
        for i, arg in enumerate(engine.args):
            if arg in RESERVED_ARGS:
                raise ConfigError(f"'{arg}' is not allowed: {RESERVED_ARGS[arg]}",
                                  source=source, key=f"engine.args[{i}]")
        ntomp = self.engine_env(engine).get("OMP_NUM_THREADS")
        omp = engine.env.get("OMP_NUM_THREADS")
        if ntomp is not None and omp is not None and omp.strip() != ntomp:
            raise ConfigError(
                f"is {omp} but engine.args has -ntomp {ntomp}; mdrun refuses different "
                f"values: remove one (streamrun sets OMP_NUM_THREADS from -ntomp)",
                source=source, key="engine.env.OMP_NUM_THREADS")
        resolve_executable(self, engine, source)

    def engine_boundaries(self, config) -> Boundaries:
        """From the mdp's ``pbc`` (xyz, GROMACS' default; xy; no); the box starts
        at 0. ``pbc = screw`` is refused: its images are rotated, not translated."""
        mdp = self._mdp(config.engine, config.source)
        value, number = mdp.get("pbc", ("xyz", 0))
        flags = {"xyz": (True, True, True), "xy": (True, True, False),
                 "no": (False, False, False)}.get(value.lower())
        where = Path(config.engine.input).name
        if flags is None:
            raise UnknownPeriodicity(f"{where} line {number} has pbc = {value}, whose "
                                     f"images streamrun does not handle (it handles "
                                     f"xyz, xy and no)")
        return Boundaries(flags, f"{where} line {number}: pbc = {value}" if number
                          else f"GROMACS' default pbc = xyz (no pbc in {where})")

    def check_pcoords(self, engine, coordinates, source) -> None:
        """Refuse minimum-image distances that would use a stale box.

        IMD v2 streams no box, so distances use the start structure's box; under
        pressure coupling (mdp ``pcoupl``) the box changes and such distances
        would be wrong. Accepted when ``engine.accept_fixed_box`` is true, or when
        the stream carries the box (fork ``IMD-version = 3`` with ``IMD-box =
        yes``).

        Parameters
        ----------
        engine : streamrun.config.EngineConfig
        coordinates : iterable of streamrun.config.PcoordSpec
            Every coordinate of the pcoord and the aux datasets.
        source : str
        """
        mdp = self._mdp(engine, source)
        pcoupl = mdp.get("pcoupl", ("no", 0))
        if pcoupl[0].lower() in ("no", "") or getattr(engine, "accept_fixed_box", False):
            return
        if self._version(mdp) == 3 and _yes(mdp.get("imd-box", ("no", 0))[0]):
            return
        for spec in coordinates:
            if spec.uses_box:
                raise ConfigError(
                    f"{engine.input} line {pcoupl[1]}: pcoupl = {pcoupl[0]} changes "
                    f"the box, but GROMACS' IMD (v2) streams no box, so this "
                    f"coordinate's minimum images would use the start structure's box. "
                    f"Use pcoupl = no (NVT), set pbc: false if the groups never "
                    f"cross the box edge, or set engine.accept_fixed_box: true to "
                    f"accept distances in the start box", source=source,
                    key=f"{spec.key}.pbc")

    def prepared_from(self, config, made):
        """The ``-c`` structure of the ``gmx grompp`` prepare command whose ``-o``
        is ``made`` (grompp's defaults: ``-c conf.gro``, ``-o topol.tpr``), relative
        to the segment folder; the note says what ``-t`` changes."""
        for command in config.prepare:
            try:
                words = shlex.split(command, comments=True)
            except ValueError:
                continue  # shell syntax shlex cannot follow: nothing to tell
            if "grompp" not in words:
                continue
            rest = words[words.index("grompp") + 1:]
            ends = [i for i, w in enumerate(rest) if w in SHELL_SEPARATORS]
            options = _options(rest[:ends[0]] if ends else rest)
            output = config.engine.workdir / options.get("-o", "topol.tpr")
            if output != Path(made):
                continue
            structure = config.engine.workdir / options.get("-c", "conf.gro")
            note = "grompp -c"
            if "-t" in options:
                note += (f"; grompp -t {options['-t']} gives the run input its "
                         f"positions at full precision, so a segment's row 0 may "
                         f"differ from this one by the .gro's 0.001 nm")
            return structure, note
        return None

    def notes(self, engine) -> list[str]:
        """IMD v3 keys in the mdp: only the HeydenLab fork's grompp knows them."""
        if engine.input is None or Path(engine.input).suffix.lower() != ".mdp":
            return []
        try:
            mdp = read_mdp(engine.input)
        except OSError:
            return []
        found = [(key, number) for key, (_, number) in mdp.items()
                 if key in IMD_V3_KEYS]
        if not found:
            return []
        names = ", ".join(f"{IMD_V3_KEYS[k]} (line {n})" for k, n in found)
        return [f"{Path(engine.input).name}: {names} exist only in the HeydenLab "
                f"fork of GROMACS (IMD v3); grompp of every GROMACS release stops "
                f"on them (2022.5: \"Unknown left-hand 'IMD-version' in parameter "
                f"file\", then \"Too many warnings\"). With a release, remove these "
                f"lines (mdrun streams IMD v2); with the fork, set engine.executable "
                f"to its gmx. check cannot tell which gmx this is without running it"]

    def engine_env(self, engine) -> dict[str, str]:
        """``GMX_MAXBACKUP=-1``, and ``OMP_NUM_THREADS`` equal to ``-ntomp`` in
        engine.args.

        GROMACS tools rename a file they would overwrite to ``#name.N#``. Under
        WESTPA's HDF5 framework the parent's restart files (``seg.gro``,
        ``seg.cpt``) are unpacked into the new segment folder before it runs, so
        mdrun would leave such a backup in every segment folder; ``-1`` turns
        backups off. mdrun exits with a fatal error when ``OMP_NUM_THREADS`` and
        ``-ntomp`` differ (streamrun's default is 1).
        """
        env = {"GMX_MAXBACKUP": "-1"}
        args = list(engine.args)
        if "-ntomp" in args[:-1]:
            env["OMP_NUM_THREADS"] = str(args[args.index("-ntomp") + 1])
        return env

    def timestep_ps(self, engine) -> float | None:
        """mdp ``dt`` (ps; GROMACS' default 0.001)."""
        try:
            return float(self._mdp(engine, None).get("dt", ("0.001", 0))[0])
        except (ValueError, ConfigError):
            return None

    def command(self, engine, executable, port):
        cmd = [executable]
        if not Path(executable).name.startswith("mdrun"):
            cmd.append("mdrun")
        args = list(engine.args)
        deffnm = args[args.index("-deffnm") + 1] if "-deffnm" in args[:-1] \
            else DEFAULT_DEFFNM
        # -s explicitly: with -deffnm alone, a missing tpr is reported as a
        # missing 'topol.tpr'
        if "-s" not in args:
            cmd += ["-s", f"{deffnm}.tpr"]
        if "-deffnm" not in args:
            cmd += ["-deffnm", deffnm]
        cmd += ["-nsteps", str(engine.nsteps), "-imdport", str(port), "-imdwait"]
        return cmd + list(engine.args)

    def expected_frames(self, nsteps, frame_interval):
        return nsteps // frame_interval + 1

    @staticmethod
    def error_summary(lines) -> str | None:
        """GROMACS' reason for a fatal error, from its last output lines.

        mdrun prints a block ending in a link to its website (``... Errors``),
        which a generic "last line with 'error'" would pick; the reason is the
        text after ``Error in ...:`` / ``Fatal error:`` up to the blank line.
        """
        lines = list(lines)
        start = None
        for i, text in enumerate(lines):
            if re.match(r"\s*(Fatal error:|Error in .*:|Inconsistency in user input:"
                        r"|Software inconsistency error:)", text):
                start = i
        if start is None:
            return None
        words = []
        for text in lines[start + 1:]:
            if not text.strip() or text.startswith("For more information") or \
                    text.startswith("----"):
                break
            words.append(text.strip())
        head = lines[start].strip().rstrip(":")
        return f"{head}: {' '.join(words)}" if words else head

    def _mdp(self, engine, source):
        if engine.input is None:
            raise ConfigError("missing; the GROMACS adapter needs the .mdp file that "
                              "the prepare command gives to gmx grompp (it checks "
                              "IMD-group, the integrator and pressure coupling)",
                              source=source, key="engine.input")
        if Path(engine.input).suffix.lower() != ".mdp":
            raise ConfigError(
                f"'{engine.input}' is not an .mdp file; give the .mdp that grompp "
                f"reads (the .tpr is made by a prepare command and run as "
                f"-deffnm {DEFAULT_DEFFNM})", source=source, key="engine.input")
        try:
            return read_mdp(engine.input)
        except OSError as e:
            raise ConfigError(f"cannot read '{engine.input}' ({e.strerror})",
                              source=source, key="engine.input") from None

    @staticmethod
    def _version(mdp) -> int:
        try:
            return int(mdp.get("imd-version", ("2", 0))[0])
        except ValueError:
            return 2
