"""The engine adapter interface and helpers shared by adapters."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import sys
from pathlib import Path

from ..boundaries import Boundaries, from_config
from ..errors import ConfigError


class UnknownPeriodicity(Exception):
    """The engine's input does not tell which dimensions are periodic before the run
    (a boundary given by a variable, a restart file): ``engine.periodic`` must."""


class EngineAdapter:
    """What streamrun needs to know about one MD engine.

    Attributes
    ----------
    name : str
        Name used in ``engine.name``.
    default_executable : str
        Program started when ``engine.executable`` is not set.
    install_hint : str
        What to tell a user whose engine program is missing.
    ready_line : re.Pattern
        Engine output line printed once it accepts IMD connections; group
        ``port`` is the port it listens on.
    bind_failed_line : re.Pattern or None
        Engine output line meaning the port was taken; streamrun relaunches
        the engine on another port.
    engine_picks_port : bool
    leading_frames : int
    """

    name = ""
    default_executable = ""
    install_hint = ""
    ready_line: re.Pattern = re.compile(r"(?!)")
    bind_failed_line: re.Pattern | None = None
    #: Engine output line giving the port the engine really listens on (group
    #: ``port``), when it can differ from the one asked and is printed before
    #: ``ready_line`` (NAMD). A ``port`` group in ``ready_line`` wins.
    port_line: re.Pattern | None = None
    #: True when the engine streams every step until the client sends IMD_TRATE
    #: (upstream GROMACS); streamrun then sends engine.frame_interval at connect.
    client_sets_rate = False
    #: Engine output line meaning it gave up on the client during the handshake
    #: (too slow to answer); streamrun starts the engine again.
    handshake_dropped_line: re.Pattern | None = None
    #: Engine output lines logged when IMD back-pressure pauses / resumes it
    #: (None if the engine logs nothing); used to report the time paused.
    pause_line: re.Pattern | None = None
    resume_line: re.Pattern | None = None
    #: Engine output line logged each time it accepts an IMD client (None if the
    #: engine logs nothing then). More than one in a launch means another
    #: process was a client too.
    client_connected_line: re.Pattern | None = None
    #: Engine output line logged when a client leaves while the engine runs on
    #: (or sends what streamrun never sends). streamrun never leaves before the
    #: engine exits, so this line means another process was the engine's client.
    client_detached_line: re.Pattern | None = None
    #: True when the engine chooses its own port (e.g. ``mdrun -imdport 0``) and
    #: reports it in ``ready_line``; streamrun then reserves none.
    engine_picks_port = False
    #: Streamed frames that make no pcoord row, e.g. GROMACS' step 0 (row 0 is
    #: computed from the start structure instead).
    leading_frames = 0
    #: Output line of a resident engine (:mod:`streamrun.resident`) once it has
    #: run a segment; None for engines that run one segment per process.
    segment_done_line: re.Pattern | None = None
    #: Environment variable telling a resident engine its control socket.
    resident_control_var = ""

    def check_config(self, engine, source) -> None:
        """Raise :class:`ConfigError` if the engine settings cannot work."""

    def can_be_resident(self, engine) -> bool:
        """True when the engine input serves segments in a loop, so that a WESTPA
        worker may keep it running between segments (:mod:`streamrun.resident`)."""
        return False

    def engine_boundaries(self, config) -> Boundaries | None:
        """Which box dimensions the engine treats as periodic in this segment, read
        from its input (``config``: the whole :class:`~streamrun.config.Config`).

        Returns None when only the launched engine can tell (see
        :meth:`launch_boundaries`). Raises :class:`UnknownPeriodicity` when the input
        does not tell. Adapters override it; the default is a fully periodic box,
        which every engine streamrun knows uses unless told otherwise.
        """
        return Boundaries((True, True, True), f"{self.name}'s default")

    def engine_origin(self, config) -> dict:
        """Where the engine's box starts, as :class:`Boundaries` fields (``origin``,
        ``origin_source``, ``start_box``); by default at 0. Used as it is when
        ``engine.periodic`` states what the input cannot tell."""
        return {}

    def launch_boundaries(self, details: dict) -> Boundaries | None:
        """Periodicity the launched engine announced (``details``: the named groups
        of its readiness line), or None if it announces none."""
        return None

    def boundaries(self, config) -> Boundaries | None:
        """The segment's periodic boundaries: the engine's input, checked against
        ``engine.periodic`` when that is set (None: learned at launch).

        Raises
        ------
        ConfigError
            The input does not tell and ``engine.periodic`` is not set, or the two
            disagree.
        """
        engine, source = config.engine, config.source
        stated = from_config(engine.periodic)
        try:
            found = self.engine_boundaries(config)
        except UnknownPeriodicity as e:
            if stated is None:
                raise ConfigError(f"{e}, so streamrun cannot tell which box dimensions "
                                  f"are periodic; set engine.periodic (xyz, none, or "
                                  f"the periodic axes such as xy)", source=source,
                                  key="engine.periodic") from None
            return dataclasses.replace(stated, **self.engine_origin(config))
        if stated is None or found is None:
            return found if stated is None else stated
        if stated.periodic != found.periodic:
            raise _disagree(config, found, "the engine's input says")
        return found

    def check_launch_boundaries(self, config, details) -> Boundaries | None:
        """The boundaries announced at launch, checked against ``engine.periodic``.

        Raises
        ------
        ConfigError
            They disagree.
        """
        found = self.launch_boundaries(details)
        stated = from_config(config.engine.periodic)
        if found is not None and stated is not None and \
                found.periodic != stated.periodic:
            raise _disagree(config, found, "the engine announced")
        return found or stated

    def check_pcoords(self, engine, coordinates, source) -> None:
        """Raise :class:`ConfigError` if a coordinate cannot be computed right from
        this engine's stream (``coordinates``: every PcoordSpec, aux included)."""

    def engine_env(self, engine) -> dict[str, str]:
        """Environment this engine needs in a segment folder, or that its own
        options imply (e.g. ``OMP_NUM_THREADS`` agreeing with a thread count in
        ``engine.args``); given to the engine and to ``prepare`` commands.
        ``engine.env`` wins."""
        return {}

    def stream_time_to_ps(self, engine) -> float | None:
        """Factor from the time an IMD v3 stream carries to ps (IMD v3 defines ps,
        but an engine may send its own units); None when it cannot be told."""
        return 1.0

    def timestep_ps(self, engine) -> float | None:
        """The MD time step in ps when the engine input tells it, for streams that
        carry no time (IMD v2); None if unknown."""
        return None

    def error_summary(self, lines) -> str | None:
        """The engine's reason for a fatal error, from its last output lines, or
        None to let streamrun pick the last line that mentions an error."""
        return None

    def structure_format(self, path) -> str | None:
        """MDAnalysis format of a start structure in the engine's own format that
        MDAnalysis cannot tell from its name (OpenMM state XML), or None to let
        MDAnalysis guess. ``start_format`` in the config wins."""
        return None

    def prepared_from(self, config, made) -> tuple[Path, str] | None:
        """The structure a prepare command reads to make ``made`` (a start
        structure that does not exist before the segment runs, e.g. grompp's
        ``-c`` for its ``-o seg.tpr``), and what to say about using it instead;
        None when the prepare commands do not tell. For ``streamrun check``."""
        return None

    def notes(self, engine) -> list[str]:
        """What ``streamrun check`` should say about the engine input that is not
        an error streamrun can prove (e.g. keys only some builds of the engine
        accept)."""
        return []

    def command(self, engine, executable: str, port: int) -> list[str]:
        """The engine's command line, streaming IMD on ``port``."""
        raise NotImplementedError

    def expected_frames(self, nsteps: int, frame_interval: int) -> int:
        """Number of frames the engine streams in a segment of ``nsteps``
        (``leading_frames`` included)."""
        raise NotImplementedError

    def rows(self, nsteps: int, frame_interval: int) -> int:
        """pcoord rows of a segment: the start point plus one per frame that
        makes a row."""
        return self.expected_frames(nsteps, frame_interval) - self.leading_frames + 1


def _disagree(config, found, who) -> ConfigError:
    """``engine.periodic`` contradicts what the engine's input or launch tells."""
    return ConfigError(f"is {config.engine.periodic} but {who} {found.axes} "
                       f"({found.source}); make them agree, or remove engine.periodic",
                       source=config.source, key="engine.periodic")


def find_executable(name: str) -> str | None:
    """Find an engine program.

    Looks next to the running Python first: WESTPA may start streamrun with a PATH
    that lacks the virtual environment's ``bin``, where ``pip`` put ``lmp``.

    Returns
    -------
    str or None
        Absolute path, or None if not found.
    """
    if os.sep in name:
        # absolute, not resolved: a virtual environment's python is a symlink
        # whose target runs outside the environment
        path = Path(os.path.abspath(Path(name).expanduser()))
        return str(path) if path.is_file() and os.access(path, os.X_OK) else None
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which(name)


def resolve_executable(adapter: EngineAdapter, engine, source) -> str:
    """Return the engine program's path or raise a ConfigError saying how to get it."""
    name = engine.executable or adapter.default_executable
    found = find_executable(name)
    if found is None:
        raise ConfigError(
            f"engine program '{name}' not found next to Python "
            f"({Path(sys.executable).parent}) or on PATH; {adapter.install_hint}",
            source=source, key="engine.executable")
    return found


def read_commands(path: Path) -> list[tuple[int, str]]:
    """Read an input script as (line number, command) with '&' continuations joined
    and '#' comments removed."""
    out, pending, start = [], "", 0
    for number, raw in enumerate(Path(path).read_text(errors="replace").splitlines(), 1):
        line = raw.split("#", 1)[0].rstrip()
        if not pending:
            start = number
        if line.endswith("&"):
            pending += line[:-1] + " "
            continue
        text = (pending + line).strip()
        pending = ""
        if text:
            out.append((start, text))
    return out
