"""Reading and validating the streamrun configuration.

A configuration is YAML: either a standalone file, or the ``streamrun:`` section of a
WESTPA ``west.cfg``. Command-line ``--set key=value`` pairs override it. Everything
that can be checked without the engine is checked here, so that a bad config fails
before any engine starts. Relative paths are relative to the config file's folder.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import westpa
from .inputs import (MAX_STRUCTURE_BYTES, MAX_TEXT_BYTES, TEMPORARY_NAME_EXTRA,
                     InputFileError, check_regular, name_too_long, os_error_reason,
                     read_text, short, short_path)
from .westpa import CONTINUES, NEWTRAJ
from .errors import ConfigError

#: Keys allowed at each level, with a one-line meaning (also used by ``--help``).
ENGINE_KEYS = {
    "name": "engine adapter: lammps (default), gromacs, namd or openmm",
    "input": "engine input file (LAMMPS: the -in script; OpenMM: your Python "
    "script)",
    "executable": "engine program; default: the adapter's (lmp), searched next to "
    "Python and on PATH",
    "args": "extra command-line arguments for the engine",
    "launcher": "command put before the engine program, e.g. [mpiexec, -n, 4]; "
    "searched next to Python and on PATH",
    "env": "variables set for the engine only, e.g. {OMP_NUM_THREADS: 4, "
    "CUDA_VISIBLE_DEVICES: '{worker}'}; OMP_NUM_THREADS is 1 unless set",
    "cores": "CPUs per engine: {cores} is then this worker's block of them (worker "
    "0: the first N CPUs streamrun may use, worker 1: the next N, ...), e.g. "
    "launcher: [taskset, -c, '{cores}']",
    "listener": "how the IMD listener is known to be the engine's: tree (default: "
    "a process the launcher started) or environment (a process on this node "
    "with this launch's token in its environment; for srun)",
    "variables": "name: value pairs for the engine (LAMMPS: -var name value); "
    "{config_dir} and {workdir} in values are replaced by those folders",
    "nsteps": "MD steps in the segment",
    "frame_interval": "MD steps between streamed frames",
    "workdir": "folder the engine runs in (default: the current folder)",
    "ready_timeout": "seconds to wait for the engine to accept IMD (default 300)",
    "periodic": "which box dimensions the engine treats as periodic: auto (default: "
    "read from the engine's input, e.g. LAMMPS boundary, GROMACS pbc, the OpenMM "
    "System), xyz, none, or the periodic axes (xy, z, ...); set it where the input "
    "cannot tell (a boundary given by a variable, a LAMMPS restart)",
    "resident": "on the warm path, keep an engine that serves segments in a loop "
    "(an OpenMM script looping over streamrun.openmm.segments()) running in each "
    "WESTPA worker between segments: true (default) or false",
    "accept_fixed_box": "accept minimum-image distances computed with the start "
    "structure's box under pressure coupling, when the stream has no box "
    "(GROMACS IMD v2); default false",
}
STREAM_KEYS = {
    "timeout": "seconds without a frame before the segment fails (default 600)",
    "buffer_mb": "imdclient frame buffer in MiB; the engine pauses when it is full "
    "(default 10)",
}
TOP_KEYS = {
    "engine": "the MD engine (see engine.*)",
    "topology": "file MDAnalysis reads for atoms (names, types, masses, bonds)",
    "topology_format": "MDAnalysis format of the topology, if not told by its suffix "
    "(a parser's name: DATA, TPR, PSF, ...; LAMMPS' data.NAME files are DATA)",
    "topology_options": "extra keyword arguments for mda.Universe (e.g. atom_style)",
    "start": "structure of the segment's start point for pcoord row 0 "
    "(default: the topology's coordinates)",
    "start_format": "MDAnalysis format of the start structure",
    "pcoord": "list of progress coordinates; each adds columns",
    "rows": "pcoord rows expected (WESTPA pcoord_len); default nsteps/frame_interval+1",
    "output": "pcoord file to write (default $WEST_PCOORD_RETURN, else pcoord.dat)",
    "log": "engine log file (default streamrun-engine.log in the workdir)",
    "stream": "IMD stream settings (see stream.*)",
    "files": "files set up in the segment folder before the engine starts: "
    "name: source, or name: {continues: src, newtraj: src, mode: link|copy}",
    "prepare": "shell commands run in the segment folder before the engine",
    "aux": "aux datasets: name: [coordinates], written to $WEST_<NAME>_RETURN",
    "restart": "files of the segment folder copied to $WEST_RESTART_RETURN",
    "trajectory": "write a trajectory from the stream, start frame first, time in "
    "ps: {every: N, format: trr}; off unless given",
    "get_pcoord": "WESTPA get_pcoord job: {structure: '{struct}'}",
    "pcoord_timeout": "seconds one pcoord row (the start structure's, or a frame's) "
    "may take before the segment fails (default 300)",
}
FILES_KEYS = {"continues": "source for a continuing segment (no newtraj: -> only "
                           "continuing segments get the file)",
              "newtraj": "source for a new trajectory (basis/initial state)",
              "source": "source in every case", "mode": "link (default) or copy"}
TRAJECTORY_KEYS = {"every": "keep every N-th streamed frame (default 1); the start "
                            "frame is always kept",
                   "format": "MDAnalysis writer format (default trr: full precision, "
                   "time in ps)"}
GET_PCOORD_KEYS = {"structure": "structure file of a basis/initial state "
                                "(default '{struct}', i.e. WEST_STRUCT_DATA_REF)",
                   "format": "MDAnalysis format of that structure (default: from its "
                   "suffix, or from the suffix of the file a suffix-less link such "
                   "as WESTPA's istates/1/0 points to)"}


@dataclass(frozen=True)
class EngineConfig:
    """What is needed to start the engine."""

    name: str
    input: Path | None
    executable: str | None
    args: tuple[str, ...]
    variables: dict[str, str]
    nsteps: int
    frame_interval: int
    workdir: Path
    ready_timeout: float
    accept_fixed_box: bool = False
    launcher: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    listener: str = "tree"
    periodic: str = "auto"
    resident: bool = True


@dataclass(frozen=True)
class PcoordSpec:
    """One progress coordinate as configured (not yet bound to a Universe)."""

    type: str
    key: str
    options: dict[str, Any]

    @property
    def uses_box(self) -> bool:
        """True when the values use minimum images (the box must be right)."""
        from .pcoords import REGISTRY

        return REGISTRY[self.type].uses_box(self.options)


@dataclass(frozen=True)
class FileSpec:
    """A file made available in the segment folder before the engine starts."""

    name: str
    source: Path
    mode: str = "link"


@dataclass(frozen=True)
class TrajectorySpec:
    """Trajectory written from the stream, only when the user asks.

    Attributes
    ----------
    every : int
        Keep every N-th streamed frame; frame 0 (the start structure) is always kept.
    path : Path
    to_westpa : bool
        ``path`` is in WESTPA's ``WEST_TRAJECTORY_RETURN`` folder (HDF5 framework).
    """

    every: int
    path: Path
    to_westpa: bool = False


@dataclass(frozen=True)
class Config:
    """A validated configuration. Paths are absolute."""

    source: str
    engine: EngineConfig
    topology: Path
    topology_format: str | None
    topology_options: dict[str, Any]
    start: Path | None
    start_format: str | None
    pcoords: tuple[PcoordSpec, ...]
    rows: int
    output: Path
    log: Path
    stream_timeout: float
    buffer_bytes: int
    base_dir: Path = field(default=Path("."))
    files: tuple = ()
    prepare: tuple = ()
    aux: dict = field(default_factory=dict)
    restart: tuple = ()
    log_return: Path | None = None
    restart_return: Path | None = None
    trajectory: TrajectorySpec | None = None
    trajectory_return: Path | None = None
    system: object = None
    mode: str = "segment"
    pcoord_timeout: float = 300.0


def load_yaml(path: Path) -> dict:
    """Read a YAML config file or a west.cfg and return streamrun's mapping.

    Raises
    ------
    ConfigError
        If the file is missing, is not a regular UTF-8 file of at most 16 MiB, is
        not YAML (or its aliases expand without bound), or has no streamrun
        settings.
    """
    try:
        text = read_text(Path(path), MAX_TEXT_BYTES)
    except FileNotFoundError:
        raise ConfigError("file not found; pass an existing file with --config",
                          source=path) from None
    except OSError as e:
        raise ConfigError(f"cannot read it ({e.strerror})", source=path) from None
    except InputFileError as e:
        raise ConfigError(f"the file {e}", source=path) from None
    try:
        data = westpa.read_yaml(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"not valid YAML{where}: {getattr(e, 'problem', e)}",
                          source=path) from None
    if not isinstance(data, dict):
        raise ConfigError("expected a mapping of keys (engine:, topology:, pcoord:, ...)",
                          source=path)
    west_cfg = "streamrun" in data or "west" in data
    for key, first, again in duplicate_keys(text):
        if west_cfg and key.split(".")[0].split("[")[0] != "streamrun":
            continue  # WESTPA's part of west.cfg: streamrun check reports it
        if west_cfg and key != "streamrun":
            key = key[len("streamrun."):]
        raise ConfigError(f"given twice, on line {first} and again on line {again}; "
                          f"YAML keeps only the last and drops the first without a "
                          f"word: merge them into one", source=path, key=key)
    if "streamrun" in data:
        section = data["streamrun"]
        if not isinstance(section, dict):
            raise ConfigError("the streamrun: section must be a mapping", source=path,
                              key="streamrun")
        return section
    if "west" in data:
        raise ConfigError("this west.cfg has no 'streamrun:' section; add one "
                          "(see the README's config reference)", source=path)
    return data


def duplicate_keys(text: str) -> list[tuple[str, int, int]]:
    """Keys given twice in one mapping of a YAML document, which YAML loaders
    accept silently, keeping the last value.

    Returns
    -------
    list of (str, int, int)
        The dotted key (``pcoord``, ``engine.nsteps``, ``pcoord[1].a``,
        ``west.system.system_options.pcoord_len``) and the line numbers of its
        first and its repeated occurrence, in document order. Empty for a document
        that cannot be read (the loader reports that).
    """
    try:
        node = yaml.compose(text, Loader=westpa.WestCfgLoader)
    except yaml.YAMLError:
        return []
    found, seen = [], set()

    def walk(node, prefix):
        if id(node) in seen:  # an alias: walked once (aliases may nest without bound)
            return
        seen.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            for i, child in enumerate(node.value):
                walk(child, f"{prefix}[{i}]")
        elif isinstance(node, yaml.MappingNode):
            lines = {}
            for key_node, value in node.value:
                name = key_node.value if isinstance(key_node, yaml.ScalarNode) \
                    else None
                dotted = f"{prefix}.{name}" if prefix else str(name)
                if name is not None and name != "<<":
                    line = key_node.start_mark.line + 1
                    if name in lines:
                        found.append((dotted, lines[name], line))
                    else:
                        lines[name] = line
                walk(value, dotted)

    try:
        walk(node, "")
    except RecursionError:
        return []  # nested too deeply: read_yaml refuses it
    return found


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply ``key.sub=value`` overrides (values parsed as YAML scalars)."""
    data = dict(data)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got '{item}'",
                              source="command line")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError:
            value = raw
        parts = key.strip().split(".")
        node = data
        for part in parts[:-1]:
            child = node.get(part)
            child = dict(child) if isinstance(child, dict) else {}
            node[part] = child
            node = child
        node[parts[-1]] = value
    return data


def _check_keys(mapping, allowed, source, prefix, problems=None):
    """Refuse keys not in ``allowed``; with ``problems`` (a list), record every
    unknown key there instead of raising at the first."""
    for key in mapping:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), list(allowed), n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            error = ConfigError(f"unknown key.{hint} Allowed: {', '.join(allowed)}.",
                                source=source, key=f"{prefix}{key}")
            if problems is None:
                raise error
            problems.append(error)


def _mapping(data, key, source, required=False):
    value = data.get(key)
    if value is None:
        if required:
            raise ConfigError("missing; it is required", source=source, key=key)
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"must be a mapping, got {short(value)}", source=source,
                          key=key)
    return value


def _number(value, key, source, kind=int, minimum=None, default=None, maximum=None):
    if value is None:
        if default is None:
            raise ConfigError("missing; it is required", source=source, key=key)
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            not math.isfinite(value) or (kind is int and not float(value).is_integer()):
        raise ConfigError(f"must be {'an integer' if kind is int else 'a number'}, "
                          f"got {short(value)}", source=source, key=key)
    value = kind(value)
    if minimum is not None and value < minimum:
        raise ConfigError(f"must be >= {minimum}, got {value}", source=source, key=key)
    if maximum is not None and value > maximum:
        raise ConfigError(f"must be <= {maximum}, got {value}", source=source, key=key)
    return value


def _flag(value, key, source):
    if not isinstance(value, bool):
        raise ConfigError(f"must be true or false, got {short(value)}",
                          source=source, key=key)
    return value


def _string(value, key, source, required=False):
    if value is None:
        if required:
            raise ConfigError("missing; it is required", source=source, key=key)
        return None
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise ConfigError(f"must be a string, got {short(value)}", source=source,
                          key=key)
    return str(value)


def _path(value, key, source, base, must_exist=True, extra=0):
    """A path from the config, absolute (relative to ``base``); ``extra``: bytes
    its name may grow by when streamrun writes it (a temporary name beside it)."""
    text = _string(value, key, source)
    if text is None:
        return None
    path = Path(os.path.expandvars(os.path.expanduser(text)))
    relative = not path.is_absolute()
    if relative:
        path = base / path
    too_long = name_too_long(path, extra)
    if too_long:  # every later look at it would fail with ENAMETOOLONG
        what = "use a shorter segment folder (-w, engine.workdir)" \
            if relative and key in WORKDIR_RELATIVE else "use a shorter path"
        raise ConfigError(f"the path {short_path(path)} is too long: {too_long}; "
                          f"{what}", source=source, key=key)
    if must_exist and not path.exists():
        raise ConfigError(f"file '{path}' does not exist; fix the path (relative "
                          f"paths are relative to {base})", source=source, key=key)
    return path


def _regular(path, key, source, limit):
    """Refuse a file that would hang or flood streamrun before the engine starts
    (a FIFO, a device such as /dev/zero, an absurd size); None passes."""
    if path is None or not path.exists():
        return path
    try:
        check_regular(path, limit)
    except InputFileError as e:
        raise ConfigError(f"'{path}' {e}; give a regular file", source=source,
                          key=key) from None
    return path


def _pcoords(value, ctx, prefix="pcoord"):
    """Check a list of coordinates with each type's own option declarations."""
    from . import pcoords

    return tuple(PcoordSpec(type=kind, key=key, options=options)
                 for kind, key, options in pcoords.parse(
                     value, ctx.source, prefix, ctx.path, ctx.problems))


class _Context:
    """What validation needs besides the mapping: where relative paths start and
    the placeholder values (``{rand16}``, ``{parent}``, ``{workdir}``, ...)."""

    def __init__(self, source, base_dir, environ, lenient=False, problems=None):
        self.source, self.base_dir, self.environ = source, base_dir, environ
        self.values = {}
        # get_pcoord runs no engine: segment-only placeholders may stay unfilled
        self.lenient = lenient
        self.problems = problems

    def soft(self, check, *args, default=None, **kwargs):
        """``check(*args, **kwargs)``; when collecting problems (``streamrun
        check``), a ConfigError is recorded and ``default`` returned, so that the
        checks that do not depend on this value still run."""
        if self.problems is None:
            return check(*args, **kwargs)
        try:
            return check(*args, **kwargs)
        except ConfigError as e:
            self.problems.append(e)
            return default

    def fill(self, value, key):
        def missing(name, variable):
            if self.lenient:
                return "{" + name + "}"
            if name == "worker":
                raise ConfigError(
                    f"uses {{worker}}, but {westpa.WORKER_VAR} is "
                    f"{short(self.environ.get(westpa.WORKER_VAR))}, not a worker "
                    f"index (0, 1, ...)", source=self.source, key=key)
            if name == "cores":
                raise ConfigError(
                    "uses {cores}, but engine.cores (CPUs per engine) is not set; "
                    "set it", source=self.source, key=key)
            variable = variable or "WEST_RAND32 (or WEST_RAND16)"
            raise ConfigError(
                f"uses {{{name}}}, but {variable} is not set (it is set by WESTPA for "
                f"a segment); set it, or give the value with --set {key}=...",
                source=self.source, key=key)
        return westpa.fill(str(value), self.values, missing)

    def path(self, value, key, base=None, must_exist=True, extra=0):
        text = _string(value, key, self.source)
        if text is None:
            return None
        return _path(self.fill(text, key), key, self.source, base or self.base_dir,
                     must_exist, extra)


def validate(data: dict, source: str, base_dir: Path, environ=None,
             mode: str = "segment", problems: list | None = None) -> Config:
    """Check a raw config mapping and return a :class:`Config`.

    Parameters
    ----------
    data : dict
        The mapping read from YAML (after overrides).
    source : str
        Name of the file the mapping came from, for error messages.
    base_dir : Path
        Folder that relative paths are relative to.
    environ : mapping, optional
        Environment (default ``os.environ``): ``WEST_*`` variables give the
        placeholders, the initial point type and the return paths.
    mode : {"segment", "pcoord"}
        ``pcoord`` is WESTPA's get_pcoord job: one row from ``get_pcoord.structure``.
    problems : list, optional
        Collect instead of stopping at the first problem (``streamrun check``):
        every ConfigError of a check that later checks do not depend on is
        appended here, and a Config is returned in which the values that failed
        are None or their defaults. Problems that leave nothing to check further
        (no engine section, an unknown engine, a bad nsteps) are still raised.

    Raises
    ------
    ConfigError
        Naming the file and key of the first problem found.
    """
    environ = os.environ if environ is None else environ
    base_dir = Path(base_dir).resolve()
    ctx = _Context(source, base_dir, environ, lenient=mode == "pcoord",
                   problems=problems)
    soft = ctx.soft
    _check_keys(data, TOP_KEYS, source, "", problems)
    eng = _mapping(data, "engine", source, required=True)
    _check_keys(eng, ENGINE_KEYS, source, "engine.", problems)

    name = _string(eng.get("name", "lammps"), "engine.name", source)
    from .engines import ADAPTERS  # adapters register themselves here

    if name not in ADAPTERS:
        raise ConfigError(f"unknown engine {name!r}; known: {', '.join(ADAPTERS)}",
                          source=source, key="engine.name")
    workdir = _path(eng.get("workdir"), "engine.workdir", source, Path.cwd())
    workdir = (workdir or Path.cwd()).resolve()
    ctx.values = westpa.placeholders(environ, base_dir, workdir)
    ctx.values["cores"] = _cores(eng.get("cores"), ctx)
    args = _words(eng.get("args", []), "engine.args", source)
    variables = eng.get("variables") or {}
    if not isinstance(variables, dict):
        raise ConfigError(f"must be a mapping name: value, got {short(variables)}",
                          source=source, key="engine.variables")
    for k, v in variables.items():
        if isinstance(v, (dict, list)) or v is None:
            raise ConfigError(f"must be a single value, got {short(v)}",
                              source=source, key=f"engine.variables.{k}")
    nsteps = _number(eng.get("nsteps"), "engine.nsteps", source, minimum=1)
    interval = _number(eng.get("frame_interval"), "engine.frame_interval", source,
                       minimum=1)
    if nsteps % interval:
        raise ConfigError(f"nsteps ({nsteps}) must be a multiple of frame_interval "
                          f"({interval}) so that the last step is streamed",
                          source=source, key="engine.nsteps")
    engine_input = soft(lambda: _regular(ctx.path(eng.get("input"), "engine.input"),
                                         "engine.input", source, MAX_TEXT_BYTES),
                        default=False)
    engine = EngineConfig(
        name=name,
        input=engine_input or None,
        executable=_string(eng.get("executable"), "engine.executable", source),
        args=tuple(ctx.fill(a, f"engine.args[{i}]") for i, a in enumerate(args)),
        variables={str(k): ctx.fill(v, f"engine.variables.{k}")
                   for k, v in variables.items()},
        nsteps=nsteps,
        frame_interval=interval,
        workdir=workdir,
        ready_timeout=_number(eng.get("ready_timeout"), "engine.ready_timeout", source,
                              kind=float, minimum=0.1, default=300.0),
        accept_fixed_box=_flag(eng.get("accept_fixed_box", False),
                               "engine.accept_fixed_box", source),
        launcher=soft(_launcher, eng.get("launcher"), ctx, default=()),
        env=soft(_engine_env, eng.get("env"), ctx, default={}),
        listener=soft(_choice, eng.get("listener", "tree"), "engine.listener", source,
                      LISTENER_CHECKS, default="tree"),
        periodic=soft(_periodic, eng.get("periodic", "auto"), source, default="auto"),
        resident=soft(_flag, eng.get("resident", True), "engine.resident", source,
                      default=True),
    )
    if engine_input is not False:  # an unreadable input was reported already
        soft(ADAPTERS[name].check_config, engine, source)

    stream = soft(_mapping, data, "stream", source, default={})
    _check_keys(stream, STREAM_KEYS, source, "stream.", problems)
    topo_opts = soft(_mapping, data, "topology_options", source, default={})
    system = _west_system(source, environ)
    rows_default = ADAPTERS[name].rows(nsteps, interval)
    rows = soft(lambda: _number(data.get("rows"), "rows", source, minimum=1,
                                default=rows_default), default=rows_default)
    if rows != rows_default:
        soft(_raise, ConfigError(
            f"{rows} rows asked, but engine.nsteps {nsteps} with engine.frame_interval "
            f"{interval} gives {rows_default} rows (start point + one per streamed "
            f"frame); make them agree", source=source, key="rows"))
        rows = rows_default
    if system and system.pcoord_len is not None and system.pcoord_len != rows:
        soft(_raise, ConfigError(
            f"pcoord_len is {system.pcoord_len} in {system.source}"
            f"{_whose(system, source)}, but engine.nsteps {nsteps} / "
            f"engine.frame_interval {interval} gives {rows} rows (start point + one "
            f"per frame); change one of them",
            source=source, key="engine.nsteps"))

    output = data.get("output") or environ.get("WEST_PCOORD_RETURN") or "pcoord.dat"
    output = ctx.path(output, "output", workdir, must_exist=False,
                      extra=TEMPORARY_NAME_EXTRA)
    log = ctx.path(data.get("log") or "streamrun-engine.log", "log", workdir,
                   must_exist=False)
    for key, path in (("output", output), ("log", log)):
        soft(_writable_folder, path, source, key)
    aux = soft(_aux, data.get("aux"), ctx, workdir, default={})
    pcoords = soft(_pcoords, data.get("pcoord"), ctx, default=())
    if engine.input is not None:
        soft(ADAPTERS[name].check_pcoords, engine,
             [*pcoords, *(s for specs, _ in aux.values() for s in specs)], source)
    get_pc = soft(_mapping, data, "get_pcoord", source, default={})
    _check_keys(get_pc, GET_PCOORD_KEYS, source, "get_pcoord.", problems)
    start = soft(lambda: _regular(ctx.path(data.get("start"), "start",
                                           must_exist=False), "start", source,
                                  MAX_STRUCTURE_BYTES))
    if mode == "pcoord":
        start = ctx.path(get_pc.get("structure", "{struct}"), "get_pcoord.structure")
        if start.is_dir():
            raise ConfigError(f"'{start}' is a folder; set get_pcoord.structure to the "
                              f"structure file in it, e.g. '{{struct}}/start.data'",
                              source=source, key="get_pcoord.structure")
        _regular(start, "get_pcoord.structure", source, MAX_STRUCTURE_BYTES)
        # an istate link (istates/1/0) has no suffix: see PcoordCalculator._load
        start_format = _string(get_pc.get("format"), "get_pcoord.format", source) or \
            _string(data.get("start_format"), "start_format", source)
        rows = 1
    if "topology" not in data:
        soft(_raise, ConfigError("missing; it is required", source=source,
                                 key="topology"))
    topology = soft(lambda: _regular(ctx.path(data.get("topology"), "topology"),
                                     "topology", source, MAX_STRUCTURE_BYTES))
    return Config(
        source=source,
        engine=engine,
        topology=topology,
        topology_format=soft(_topology_format, data.get("topology_format"), source),
        topology_options=dict(topo_opts),
        start=start,
        start_format=start_format if mode == "pcoord" else
        _string(data.get("start_format"), "start_format", source),
        pcoords=pcoords,
        rows=rows,
        output=output,
        log=log,
        stream_timeout=_number(stream.get("timeout"), "stream.timeout", source,
                               kind=float, minimum=1, default=600.0),
        buffer_bytes=int(_number(stream.get("buffer_mb"), "stream.buffer_mb", source,
                                 kind=float, minimum=0.01, maximum=65536,
                                 default=10.0) * 2**20),
        base_dir=base_dir,
        files=() if mode == "pcoord" else soft(_files, data.get("files"), ctx,
                                               westpa.initpoint(environ), default=()),
        prepare=soft(_prepare, data.get("prepare"), ctx, default=()),
        aux=aux,
        restart=soft(_string_list, data.get("restart"), ctx, "restart", default=()),
        restart_return=ctx.path(environ.get("WEST_RESTART_RETURN"),
                                "WEST_RESTART_RETURN", must_exist=False),
        log_return=ctx.path(environ.get("WEST_LOG_RETURN"), "WEST_LOG_RETURN",
                            must_exist=False),
        trajectory=soft(_trajectory, data.get("trajectory"), ctx, environ, workdir,
                        rows - 1),
        trajectory_return=ctx.path(environ.get("WEST_TRAJECTORY_RETURN"),
                                   "WEST_TRAJECTORY_RETURN", must_exist=False),
        system=system,
        mode=mode,
        pcoord_timeout=_number(data.get("pcoord_timeout"), "pcoord_timeout", source,
                               kind=float, minimum=0.1, default=300.0),
    )


#: Variables WESTPA sets when it runs its propagator or get_pcoord (and a
#: runseg.sh passes on): a config run with them is WESTPA's.
WESTPA_JOB_VARS = ("WEST_CURRENT_SEG_ID", "WEST_CURRENT_SEG_DATA_REF",
                   "WEST_STRUCT_DATA_REF")


def _west_system(source, environ):
    """``west.system.system_options`` of ``$WEST_SIM_ROOT/west.cfg`` (pcoord_len,
    pcoord_ndim), when they bind this config: WESTPA runs it (a segment, a
    get_pcoord job), or the config is that west.cfg's streamrun: section. A
    WEST_SIM_ROOT left in the shell (tutorials' env.sh export it) does not bind a
    one-off run of another config."""
    root = environ.get("WEST_SIM_ROOT")
    if not root:
        return None
    west_cfg = Path(root) / "west.cfg"
    if not any(environ.get(name) for name in WESTPA_JOB_VARS):
        try:
            if not os.path.samefile(source, west_cfg):
                return None
        except (OSError, TypeError, ValueError):  # "command line", no such file
            return None
    return westpa.system_options(west_cfg)


def _whose(system, source) -> str:
    """Why another file's pcoord_len applies to this config."""
    return "" if system.source == str(source) else \
        " ($WEST_SIM_ROOT/west.cfg: WESTPA runs this config)"


def _raise(error):
    raise error


def make_workdir(folder) -> Path:
    """Create the segment folder given with ``-w`` (and its parents); returns it
    absolute.

    Raises
    ------
    ConfigError
        If its name is too long or it cannot be created; the path is shown
        shortened.
    """
    folder = Path(os.path.abspath(folder))
    too_long = name_too_long(folder)
    if too_long:
        raise ConfigError(f"the folder {short_path(folder)} is too long: {too_long}; "
                          f"use a shorter path", source="command line",
                          key="-w/--workdir")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"cannot create the folder {short_path(folder)}: "
                          f"{os_error_reason(e)}", source="command line",
                          key="-w/--workdir") from None
    return folder.resolve()


#: What people write as topology_format for a program's own file, and the
#: MDAnalysis format that reads it.
FORMAT_BY_PROGRAM = {"LAMMPS": "DATA", "LAMMPSDATA": "DATA", "LMP": "DATA",
                     "GROMACS": "TPR", "AMBER": "PRMTOP", "CHARMM": "PSF",
                     "NAMD": "PSF", "OPENMM": "PDB"}


def _topology_format(value, source):
    """``topology_format``: a name among MDAnalysis' topology parsers (any case).

    MDAnalysis is imported for it (about 0.5 s) only when the key is set: an
    unknown name would otherwise reach MDAnalysis while the engine starts, and
    MDAnalysis ignores it for files whose suffix names a coordinate format.
    """
    fmt = _string(value, "topology_format", source)
    if fmt is None:
        return None
    from MDAnalysis.core._get_readers import _PARSERS

    known = sorted(k for k in _PARSERS if k != "MINIMAL")
    name = fmt.upper()
    if name not in _PARSERS:
        close = FORMAT_BY_PROGRAM.get(name.replace(" ", "")) or next(
            iter(difflib.get_close_matches(name, known, n=1)), None)
        hint = f"Did you mean '{close}'? " if close else ""
        raise ConfigError(f"'{short_path(fmt, 40)}' is not a topology format of "
                          f"MDAnalysis. {hint}Known: {', '.join(known)} (LAMMPS "
                          f"data file: DATA; GROMACS: TPR, GRO; Amber: PRMTOP)",
                          source=source, key="topology_format")
    return fmt


def _writable_folder(path, source, key):
    if not path.parent.is_dir():
        raise ConfigError(f"folder '{path.parent}' does not exist; create it or "
                          f"choose another path", source=source, key=key)
    try:  # a real write: permission bits do not stop root, read-only mounts do
        tempfile.TemporaryFile(dir=path.parent).close()
    except OSError as e:
        raise ConfigError(f"cannot write in folder '{path.parent}' "
                          f"({e.strerror or e}); choose another path",
                          source=source, key=key) from None


#: Keys whose relative paths are relative to the segment folder (engine.workdir).
WORKDIR_RELATIVE = ("output", "log")

#: engine.listener values: how the process listening on the IMD port is known to be
#: the engine streamrun launched.
LISTENER_CHECKS = ("tree", "environment")
#: Set by streamrun in the engine's environment (see streamrun.supervise).
RESERVED_ENV = ("STREAMRUN_ENGINE_TOKEN",)


def _words(value, key, source):
    """A list of strings, or one string split on whitespace."""
    if value is None:
        return []
    if isinstance(value, str):
        value = value.split()
    if not isinstance(value, list) or not all(
            isinstance(w, (str, int, float)) and not isinstance(w, bool) for w in value):
        raise ConfigError(f"must be a list of strings (quote words YAML reads as "
                          f"something else, such as on/yes), got {short(value)}",
                          source=source, key=key)
    return value


def _choice(value, key, source, allowed):
    if value not in allowed:
        raise ConfigError(f"must be {' or '.join(allowed)}, got {short(value)}",
                          source=source, key=key)
    return value


def _periodic(value, source):
    """``engine.periodic``: auto, none, or the periodic axes (normalised to xyz order)."""
    from .boundaries import AUTO, axes_text, parse_axes

    if value is False or value is None:  # YAML reads 'no' / 'none' loosely
        value = "none"
    text = str(value).strip().lower()
    if text == AUTO:
        return AUTO
    flags = parse_axes(text) if isinstance(value, str) else None
    if flags is None:
        raise ConfigError(f"must be auto, xyz, none or the periodic axes (e.g. xy), "
                          f"got {short(value)}", source=source, key="engine.periodic")
    return axes_text(flags)


def _cores(value, ctx):
    """``{cores}`` from ``engine.cores``: None when not set; an error when this
    worker's block of CPUs does not exist on the node."""
    if value is None or ctx.values.get("worker") is None:
        return None
    per_engine = _number(value, "engine.cores", ctx.source, minimum=1)
    index = int(ctx.values["worker"])
    block = westpa.cores(index, per_engine)
    if block is None:
        available = len(os.sched_getaffinity(0))
        raise ConfigError(
            f"worker {index} would get CPUs {index * per_engine}.."
            f"{(index + 1) * per_engine - 1} of the {available} this process may use; "
            f"lower engine.cores or run fewer workers per node",
            source=ctx.source, key="engine.cores")
    return block


def _launcher(value, ctx):
    """``engine.launcher``: the command prefix, its program resolved like an
    engine's (next to Python first: PyPI's mpich puts mpiexec there)."""
    from .engines.base import find_executable

    words = [ctx.fill(w, f"engine.launcher[{i}]")
             for i, w in enumerate(_words(value, "engine.launcher", ctx.source))]
    if not words:
        return ()
    found = find_executable(words[0])
    if found is None:
        raise ConfigError(f"launcher program '{words[0]}' not found next to Python "
                          f"({Path(sys.executable).parent}) or on PATH; install it "
                          f"(e.g. pip install mpich for mpiexec) or give its full path",
                          source=ctx.source, key="engine.launcher[0]")
    return (found, *words[1:])


def _engine_env(value, ctx):
    """``engine.env``: NAME: value pairs for the engine's environment only."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"must be a mapping NAME: value, got {short(value)}",
                          source=ctx.source, key="engine.env")
    env = {}
    for name, raw in value.items():
        key = f"engine.env.{name}"
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(name)):
            raise ConfigError("must be an environment variable name (letters, digits "
                              "and _, not starting with a digit)", source=ctx.source,
                              key=key)
        if name in RESERVED_ENV:
            raise ConfigError("is set by streamrun", source=ctx.source, key=key)
        if isinstance(raw, (dict, list, bool)) or raw is None:
            raise ConfigError(f"must be a single value (quote it: \"...\"), got "
                              f"{short(raw)}", source=ctx.source, key=key)
        env[str(name)] = ctx.fill(raw, key)
    return env


def _aux(value, ctx, workdir):
    """``aux: {name: [coordinates]}`` -> {name: (specs, output path)}."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError("must be a mapping of dataset name to a list of coordinates",
                          source=ctx.source, key="aux")
    out = {}
    for name, coords in value.items():
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(name)):
            raise ConfigError("dataset names must be letters, digits and _ (WESTPA "
                              "reads them from WEST_<NAME>_RETURN)", source=ctx.source,
                              key=f"aux.{name}")
        specs = _pcoords(coords, ctx, prefix=f"aux.{name}")
        var = westpa.aux_return_var(str(name))
        target = ctx.environ.get(var) or f"aux_{name}.dat"
        out[str(name)] = (specs, ctx.path(target, f"aux.{name}", workdir,
                                          must_exist=False,
                                          extra=TEMPORARY_NAME_EXTRA))
    return out


def _files(value, ctx, point):
    """``files: {name: source | {continues:, newtraj:, mode:}}`` -> FileSpecs."""
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise ConfigError("must be a mapping: name in the segment folder -> source",
                          source=ctx.source, key="files")
    specs = []
    for name, spec in value.items():
        key = f"files.{name}"
        mode = "link"
        if os.sep in str(name) or str(name) in ("", ".", ".."):
            raise ConfigError("must be a plain file name in the segment folder",
                              source=ctx.source, key=key)
        if isinstance(spec, dict):
            _check_keys(spec, FILES_KEYS, ctx.source, f"{key}.")
            mode = spec.get("mode", "link")
            if mode not in ("link", "copy"):
                raise ConfigError(f"mode must be link or copy, got {mode!r}",
                                  source=ctx.source, key=f"{key}.mode")
            if point is None and "source" not in spec:
                raise ConfigError(
                    "depends on WEST_CURRENT_SEG_INITPOINT_TYPE (continues/newtraj), "
                    "which is not set: run under WESTPA or set it", source=ctx.source,
                    key=key)
            which = "source" if "source" in spec else point
            if which not in spec:
                if CONTINUES in spec or NEWTRAJ in spec:
                    continue  # e.g. a checkpoint that only continuing segments have
                raise ConfigError("give a source: a path, or continues:/newtraj:",
                                  source=ctx.source, key=key)
            source_value, source_key = spec[which], f"{key}.{which}"
        else:
            source_value, source_key = spec, key
        path = ctx.path(source_value, source_key)
        specs.append(FileSpec(name=str(name), source=path, mode=mode))
    return tuple(specs)


def _string_list(value, ctx, key):
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(c, str) for c in value):
        raise ConfigError("must be a list of strings", source=ctx.source, key=key)
    return tuple(ctx.fill(c, f"{key}[{i}]") for i, c in enumerate(value))


def _prepare(value, ctx):
    return _string_list(value, ctx, "prepare")


#: Writer formats whose time WESTPA's default trajectory loader (MDTraj) does not
#: read: it numbers their frames 0, 1, 2, ... instead.
NO_TIME_FORMATS = ("dcd", "pdb", "gro", "xyz", "data")


def _trajectory(value, ctx, environ, workdir, frames):
    """``trajectory:`` -> TrajectorySpec (None when off).

    Under WESTPA's HDF5 framework (``WEST_TRAJECTORY_RETURN`` set) WESTPA stores
    each segment's frames in iter_*.h5 and lines segments up in time from the
    first and last frame's times, so the format must carry time and the segment's
    last frame (the next segment's start) must be kept.
    """
    if value is None or value is False:
        return None
    if value is True:
        value = {}
    if not isinstance(value, dict):
        raise ConfigError("must be a mapping {every: N, format: trr}",
                          source=ctx.source, key="trajectory")
    _check_keys(value, TRAJECTORY_KEYS, ctx.source, "trajectory.")
    every = _number(value.get("every"), "trajectory.every", ctx.source, minimum=1,
                    default=1)
    fmt = _string(value.get("format", "trr"), "trajectory.format", ctx.source).lower()
    folder = environ.get("WEST_TRAJECTORY_RETURN")
    if folder and fmt in NO_TIME_FORMATS:
        raise ConfigError(
            f"{fmt} carries no time that WESTPA's trajectory loader (MDTraj) reads: "
            f"iter_*.h5 would count frames instead of ps. Use trr (full precision), "
            f"xtc (0.001 nm) or ncdf", source=ctx.source, key="trajectory.format")
    if folder and frames % every:
        raise ConfigError(
            f"every {every} frame(s) of {frames} leaves out the segment's last frame, "
            f"which WESTPA's HDF5 framework needs (it is the next segment's start); "
            f"use a divisor of {frames}", source=ctx.source, key="trajectory.every")
    path = ctx.path(folder, "WEST_TRAJECTORY_RETURN", must_exist=False) if folder \
        else workdir
    return TrajectorySpec(every=every, path=path / f"seg.{fmt}", to_westpa=bool(folder))


def load(path: Path | None, overrides: list[str] = (), environ=None,
         mode: str = "segment", problems: list | None = None) -> Config:
    """Load, override and validate a config file.

    Parameters
    ----------
    path : Path or None
        YAML file or west.cfg. ``None`` means no file: everything comes from
        ``overrides``.
    overrides : list of str
        ``key=value`` strings from ``--set``.
    environ, mode, problems
        As for :func:`validate`.
    """
    if path is None:
        data, source, base = {}, "command line", Path.cwd()
    else:
        path = Path(path).resolve()
        data, source, base = load_yaml(path), str(path), path.parent
    data = apply_overrides(data, list(overrides))
    return validate(data, source, base, environ=environ, mode=mode,
                    problems=problems)
