"""Reading and validating the streamrun configuration.

A configuration is YAML: either a standalone file, or the ``streamrun:`` section of a
WESTPA ``west.cfg``. Command-line ``--set key=value`` pairs override it. Everything
that can be checked without the engine is checked here, so that a bad config fails
before any engine starts. Relative paths are relative to the config file's folder.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError

#: Keys allowed at each level, with a one-line meaning (also used by ``--help``).
ENGINE_KEYS = {
    "name": "engine adapter: lammps",
    "input": "engine input file (LAMMPS: the -in script)",
    "executable": "engine program; default: the adapter's (lmp), searched next to "
    "Python and on PATH",
    "args": "extra command-line arguments for the engine",
    "variables": "name: value pairs for the engine (LAMMPS: -var name value); "
    "{config_dir} and {workdir} in values are replaced by those folders",
    "nsteps": "MD steps in the segment",
    "frame_interval": "MD steps between streamed frames",
    "workdir": "folder the engine runs in (default: the current folder)",
    "ready_timeout": "seconds to wait for the engine to accept IMD (default 300)",
}
STREAM_KEYS = {
    "timeout": "seconds without a frame before the segment fails (default 600)",
    "buffer_mb": "imdclient frame buffer in MiB; the engine pauses when it is full "
    "(default 10)",
}
TOP_KEYS = {
    "engine": "the MD engine (see engine.*)",
    "topology": "file MDAnalysis reads for atoms (names, types, masses, bonds)",
    "topology_format": "MDAnalysis format of the topology, if not told by its suffix",
    "topology_options": "extra keyword arguments for mda.Universe (e.g. atom_style)",
    "start": "structure of the segment's start point for pcoord row 0 "
    "(default: the topology's coordinates)",
    "start_format": "MDAnalysis format of the start structure",
    "pcoord": "list of progress coordinates; each adds columns",
    "rows": "pcoord rows expected (WESTPA pcoord_len); default nsteps/frame_interval+1",
    "output": "pcoord file to write (default $WEST_PCOORD_RETURN, else pcoord.dat)",
    "log": "engine log file (default streamrun-engine.log in the workdir)",
    "stream": "IMD stream settings (see stream.*)",
}
PCOORD_KEYS = {
    "distance": {
        "type": "distance",
        "name": "column name",
        "a": "MDAnalysis selection of the first group",
        "b": "MDAnalysis selection of the second group",
        "center": "mass (default) or geometry",
        "pbc": "minimum-image distance when the stream has a box (default true)",
    },
    "plugin": {
        "type": "plugin",
        "name": "column name",
        "function": "'package.module:function' or 'path/to/file.py:function'",
        "selections": "list of MDAnalysis selections passed as AtomGroups after "
        "the Universe",
        "columns": "number of values the function returns (default: found from "
        "the start structure)",
    },
}


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


@dataclass(frozen=True)
class PcoordSpec:
    """One progress coordinate as configured (not yet bound to a Universe)."""

    type: str
    key: str
    options: dict[str, Any]


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


def load_yaml(path: Path) -> dict:
    """Read a YAML config file or a west.cfg and return streamrun's mapping.

    Raises
    ------
    ConfigError
        If the file is missing, is not YAML, or has no streamrun settings.
    """
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise ConfigError("file not found; pass an existing file with --config",
                          source=path) from None
    except OSError as e:
        raise ConfigError(f"cannot read it ({e.strerror})", source=path) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"not valid YAML{where}: {getattr(e, 'problem', e)}",
                          source=path) from None
    if not isinstance(data, dict):
        raise ConfigError("expected a mapping of keys (engine:, topology:, pcoord:, ...)",
                          source=path)
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


def _check_keys(mapping, allowed, source, prefix):
    for key in mapping:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), list(allowed), n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise ConfigError(f"unknown key.{hint} Allowed: {', '.join(allowed)}.",
                              source=source, key=f"{prefix}{key}")


def _mapping(data, key, source, required=False):
    value = data.get(key)
    if value is None:
        if required:
            raise ConfigError("missing; it is required", source=source, key=key)
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"must be a mapping, got {value!r}", source=source, key=key)
    return value


def _number(value, key, source, kind=int, minimum=None, default=None):
    if value is None:
        if default is None:
            raise ConfigError("missing; it is required", source=source, key=key)
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (
            kind is int and not float(value).is_integer()):
        raise ConfigError(f"must be {'an integer' if kind is int else 'a number'}, "
                          f"got {value!r}", source=source, key=key)
    value = kind(value)
    if minimum is not None and value < minimum:
        raise ConfigError(f"must be >= {minimum}, got {value}", source=source, key=key)
    return value


def _string(value, key, source, required=False):
    if value is None:
        if required:
            raise ConfigError("missing; it is required", source=source, key=key)
        return None
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise ConfigError(f"must be a string, got {value!r}", source=source, key=key)
    return str(value)


def _path(value, key, source, base, must_exist=True):
    text = _string(value, key, source)
    if text is None:
        return None
    path = Path(os.path.expandvars(os.path.expanduser(text)))
    if not path.is_absolute():
        path = base / path
    if must_exist and not path.exists():
        raise ConfigError(f"file '{path}' does not exist; fix the path (relative "
                          f"paths are relative to {base})", source=source, key=key)
    return path


def _pcoords(value, source):
    if value is None:
        raise ConfigError("missing; give at least one coordinate, e.g. "
                          "[{type: distance, a: 'type 3', b: 'type 4'}]",
                          source=source, key="pcoord")
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list) or not value:
        raise ConfigError("must be a non-empty list of coordinates", source=source,
                          key="pcoord")
    specs = []
    for i, item in enumerate(value):
        key = f"pcoord[{i}]"
        if not isinstance(item, dict):
            raise ConfigError(f"must be a mapping with a 'type', got {item!r}",
                              source=source, key=key)
        kind = item.get("type")
        if kind not in PCOORD_KEYS:
            raise ConfigError(f"type must be one of {', '.join(PCOORD_KEYS)}; "
                              f"got {kind!r}", source=source, key=f"{key}.type")
        _check_keys(item, PCOORD_KEYS[kind], source, f"{key}.")
        options = {k: v for k, v in item.items() if k != "type"}
        if kind == "distance":
            for sel in ("a", "b"):
                _string(options.get(sel), f"{key}.{sel}", source, required=True)
                options[sel] = str(options[sel])
            center = options.setdefault("center", "mass")
            if center not in ("mass", "geometry"):
                raise ConfigError(f"must be 'mass' or 'geometry', got {center!r}",
                                  source=source, key=f"{key}.center")
            pbc = options.setdefault("pbc", True)
            if not isinstance(pbc, bool):
                raise ConfigError(f"must be true or false, got {pbc!r}",
                                  source=source, key=f"{key}.pbc")
        elif kind == "plugin":
            _string(options.get("function"), f"{key}.function", source, required=True)
            sels = options.setdefault("selections", [])
            if isinstance(sels, str):
                sels = options["selections"] = [sels]
            if not isinstance(sels, list) or not all(isinstance(s, str) for s in sels):
                raise ConfigError(f"must be a list of selection strings, got {sels!r}",
                                  source=source, key=f"{key}.selections")
            if "columns" in options:
                options["columns"] = _number(options["columns"], f"{key}.columns",
                                             source, minimum=1)
        specs.append(PcoordSpec(type=kind, key=key, options=options))
    return tuple(specs)


def validate(data: dict, source: str, base_dir: Path, environ=None) -> Config:
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
        Environment (default ``os.environ``): ``WEST_PCOORD_RETURN`` sets the
        default output.

    Raises
    ------
    ConfigError
        Naming the file and key of the first problem found.
    """
    environ = os.environ if environ is None else environ
    base_dir = Path(base_dir).resolve()
    _check_keys(data, TOP_KEYS, source, "")
    eng = _mapping(data, "engine", source, required=True)
    _check_keys(eng, ENGINE_KEYS, source, "engine.")

    name = _string(eng.get("name", "lammps"), "engine.name", source)
    from .engines import ADAPTERS  # adapters register themselves here

    if name not in ADAPTERS:
        raise ConfigError(f"unknown engine {name!r}; known: {', '.join(ADAPTERS)}",
                          source=source, key="engine.name")
    args = eng.get("args", [])
    if isinstance(args, str):
        args = args.split()
    if not isinstance(args, list):
        raise ConfigError(f"must be a list of strings, got {args!r}", source=source,
                          key="engine.args")
    variables = eng.get("variables") or {}
    if not isinstance(variables, dict):
        raise ConfigError(f"must be a mapping name: value, got {variables!r}",
                          source=source, key="engine.variables")
    for k, v in variables.items():
        if isinstance(v, (dict, list)) or v is None:
            raise ConfigError(f"must be a single value, got {v!r}", source=source,
                              key=f"engine.variables.{k}")
    nsteps = _number(eng.get("nsteps"), "engine.nsteps", source, minimum=1)
    interval = _number(eng.get("frame_interval"), "engine.frame_interval", source,
                       minimum=1)
    if nsteps % interval:
        raise ConfigError(f"nsteps ({nsteps}) must be a multiple of frame_interval "
                          f"({interval}) so that the last step is streamed",
                          source=source, key="engine.nsteps")
    workdir = _path(eng.get("workdir"), "engine.workdir", source, Path.cwd())
    workdir = (workdir or Path.cwd()).resolve()
    places = {"{config_dir}": str(base_dir), "{workdir}": str(workdir)}
    engine = EngineConfig(
        name=name,
        input=_path(eng.get("input"), "engine.input", source, base_dir),
        executable=_string(eng.get("executable"), "engine.executable", source),
        args=tuple(_fill(str(a), places) for a in args),
        variables={str(k): _fill(str(v), places) for k, v in variables.items()},
        nsteps=nsteps,
        frame_interval=interval,
        workdir=workdir,
        ready_timeout=_number(eng.get("ready_timeout"), "engine.ready_timeout", source,
                              kind=float, minimum=0.1, default=300.0),
    )
    ADAPTERS[name].check_config(engine, source)

    stream = _mapping(data, "stream", source)
    _check_keys(stream, STREAM_KEYS, source, "stream.")
    topo_opts = _mapping(data, "topology_options", source)
    rows_default = ADAPTERS[name].expected_frames(nsteps, interval) + 1
    rows = _number(data.get("rows"), "rows", source, minimum=1, default=rows_default)
    if rows != rows_default:
        raise ConfigError(
            f"{rows} rows asked, but engine.nsteps {nsteps} with engine.frame_interval "
            f"{interval} gives {rows_default} rows (start point + one per streamed "
            f"frame); make them agree", source=source, key="rows")
    output = data.get("output") or environ.get("WEST_PCOORD_RETURN") or "pcoord.dat"
    output = _path(output, "output", source, workdir, must_exist=False)
    log = _path(data.get("log") or "streamrun-engine.log", "log", source, workdir,
                must_exist=False)
    for key, path in (("output", output), ("log", log)):
        if not path.parent.is_dir():
            raise ConfigError(f"folder '{path.parent}' does not exist; create it or "
                              f"choose another path", source=source, key=key)
    return Config(
        source=source,
        engine=engine,
        topology=_path(data.get("topology") if "topology" in data else None,
                       "topology", source, base_dir)
        or _missing("topology", source),
        topology_format=_string(data.get("topology_format"), "topology_format", source),
        topology_options=dict(topo_opts),
        start=_path(data.get("start"), "start", source, base_dir),
        start_format=_string(data.get("start_format"), "start_format", source),
        pcoords=_pcoords(data.get("pcoord"), source),
        rows=rows,
        output=output,
        log=log,
        stream_timeout=_number(stream.get("timeout"), "stream.timeout", source,
                               kind=float, minimum=1, default=600.0),
        buffer_bytes=int(_number(stream.get("buffer_mb"), "stream.buffer_mb", source,
                                 kind=float, minimum=0.01, default=10.0) * 2**20),
        base_dir=base_dir,
    )


def _fill(text, places):
    """Replace the placeholders streamrun knows ({config_dir}, {workdir}); leave
    everything else (e.g. LAMMPS ${var}) alone."""
    for key, value in places.items():
        text = text.replace(key, value)
    return text


def _missing(key, source):
    raise ConfigError("missing; it is required", source=source, key=key)


def load(path: Path | None, overrides: list[str] = (), environ=None) -> Config:
    """Load, override and validate a config file.

    Parameters
    ----------
    path : Path or None
        YAML file or west.cfg. ``None`` means no file: everything comes from
        ``overrides``.
    overrides : list of str
        ``key=value`` strings from ``--set``.
    """
    if path is None:
        data, source, base = {}, "command line", Path.cwd()
    else:
        path = Path(path).resolve()
        data, source, base = load_yaml(path), str(path), path.parent
    data = apply_overrides(data, list(overrides))
    return validate(data, source, base, environ=environ)
