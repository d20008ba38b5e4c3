"""``streamrun check``: everything that can be checked without running MD.

WESTPA hides a propagator's failures: ``w_init`` exits 0 with a NaN basis-state
pcoord, ``w_run`` exits 0 after failed segments, and the propagator's own message
sits in a log. ``check`` runs what a segment and ``w_init``'s get_pcoord would run
up to the engine launch, with stand-in values for the ``WEST_*`` variables:

- west.cfg: pcoord_len, pcoord_ndim and pcoord_dtype (``west.system``), the
  propagator and get_pcoord executables, the keys WESTPA 2022 requires;
- the streamrun config, every key (all problems, not the first), with the engine
  adapter's checks of the engine input and program;
- the selections, plugins and row 0 of a segment that starts from the first basis
  state (a new trajectory, as in iteration 1), against pcoord_ndim;
- each basis state: its pcoord computed as ``w_init`` would (get_pcoord, i.e. row 0
  from the structure), finite in pcoord_dtype and inside the bins.

No engine, prepare command or MD runs; nothing is written outside a temporary
folder that is removed at the end, but for the topology cache
(:mod:`streamrun.topocache`), which check reads and fills as a segment does, and
says which it did.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ConfigError, StreamrunError

#: Names of the streamrun program as a west.cfg executable.
STREAMRUN_EXECUTABLES = ("streamrun",)
#: The warm-path propagator (west.propagation.propagator).
WARM_PROPAGATOR = "streamrun.propagator.StreamrunPropagator"


@dataclass
class Report:
    """What ``check`` found: a plan of what a segment would do, and problems."""

    lines: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def say(self, line: str) -> None:
        self.lines.append(line)

    def warn(self, text: str) -> None:
        """Record what may fail but check cannot prove (exit code unchanged)."""
        text = str(text)
        if text not in self.warnings:
            self.warnings.append(text)

    def problem(self, error) -> None:
        """Record a problem once (the same mistake seen by two checks counts once)."""
        text = str(error)
        if text not in self.problems:
            self.problems.append(text)

    def text(self) -> str:
        out = list(self.lines)
        if self.warnings:
            out += ["", f"{len(self.warnings)} warning(s):"]
            out += [f"  - {w}" for w in self.warnings]
        if self.problems:
            out += ["", f"{len(self.problems)} problem(s):"]
            out += [f"  - {p}" for p in self.problems]
        else:
            out += ["", "no problems found"]
        return "\n".join(out)


@dataclass
class Where:
    """The files ``check`` looks at."""

    config: Path | None = None      # the streamrun config (YAML or west.cfg)
    west_cfg: Path | None = None    # WESTPA's config, if there is one
    west: dict | None = None        # its contents
    ignored: Path | None = None     # $WEST_SIM_ROOT/west.cfg, unrelated to config


def locate(path, environ) -> Where:
    """Find the streamrun config and the west.cfg as WESTPA and the CLI would.

    ``path`` may be a west.cfg (its ``streamrun:`` section, else
    ``STREAMRUN_CONFIG`` from its ``west.executable.environ`` or the environment)
    or a streamrun YAML (the west.cfg is then ``$WEST_SIM_ROOT/west.cfg``, else
    the one next to it). Without ``path``: ``$STREAMRUN_CONFIG``, else
    ``$WEST_SIM_ROOT/west.cfg``, else ``west.cfg`` in the current folder.

    Raises
    ------
    ConfigError
        If there is nothing to check, or the file is not YAML.
    """
    from .config import load_yaml

    where = Where()
    if path is None:
        if environ.get("STREAMRUN_CONFIG"):
            path = Path(environ["STREAMRUN_CONFIG"])
        elif environ.get("WEST_SIM_ROOT"):
            path = Path(environ["WEST_SIM_ROOT"]) / "west.cfg"
        else:
            path = Path("west.cfg")
        if not path.is_file():
            raise ConfigError(f"no config to check: '{path.resolve()}' does not exist; "
                              f"run in the simulation folder (where west.cfg is) or "
                              f"name the file: streamrun check FILE")
    path = Path(path).resolve()
    data = _read(path)
    if isinstance(data, dict) and "west" in data:
        where.west_cfg, where.west = path, data
        if "streamrun" in data:
            where.config = path
        else:
            named = _environ_of(data).get("STREAMRUN_CONFIG") or \
                environ.get("STREAMRUN_CONFIG")
            if named:
                where.config = Path(os.path.expandvars(str(named).replace(
                    "$WEST_SIM_ROOT", str(path.parent)))).resolve()
            elif _uses_streamrun(data):
                raise ConfigError("this west.cfg runs streamrun but has no "
                                  "'streamrun:' section and no STREAMRUN_CONFIG in "
                                  "west.executable.environ; add one", source=path)
            else:
                where.config = None  # a runseg.sh simulation: only west.cfg
    else:
        load_yaml(path)  # the errors of a streamrun YAML, as run would give them
        where.config = path
        candidates = [path.parent / "west.cfg"]
        if environ.get("WEST_SIM_ROOT"):
            root = Path(environ["WEST_SIM_ROOT"]).resolve()
            named = environ.get("STREAMRUN_CONFIG")
            if path.is_relative_to(root) or \
                    (named and Path(named).resolve() == path):
                candidates.insert(0, root / "west.cfg")
            elif (root / "west.cfg").is_file():
                # a WEST_SIM_ROOT left in the shell: another simulation's
                where.ignored = root / "west.cfg"
        for candidate in candidates:
            if candidate.is_file():
                where.west_cfg = candidate.resolve()
                where.west = _read(where.west_cfg)
                break
    if where.west is not None and not isinstance(where.west, dict):
        where.west = None
    return where


def _read(path):
    from . import westpa
    from .config import load_yaml

    try:
        text = westpa.read_text(path)
        return westpa.read_yaml(text)
    except FileNotFoundError:
        raise ConfigError("file not found", source=path) from None
    except Exception:  # not YAML or unreadable: load_yaml words it
        load_yaml(path)
        raise


def _environ_of(west) -> dict:
    try:
        env = west["west"]["executable"]["environ"]
    except (KeyError, TypeError):
        return {}
    return env if isinstance(env, dict) else {}


def _executable(west, job) -> str | None:
    try:
        value = west["west"]["executable"][job]["executable"]
    except (KeyError, TypeError):
        return None
    return None if value is None else str(value)


def _uses_streamrun(west) -> bool:
    return any(Path(os.path.expandvars(_executable(west, job) or "")).name
               in STREAMRUN_EXECUTABLES for job in ("propagator", "get_pcoord"))


def _propagation(west, key):
    try:
        return west["west"]["propagation"][key]
    except (KeyError, TypeError):
        return None


# -- west.cfg ---------------------------------------------------------------------

@dataclass
class System:
    """What the pcoord must look like, from the west.cfg."""

    pcoord_len: int | None = None
    pcoord_ndim: int | None = None
    dtype: object = None           # numpy dtype
    boundaries: list | None = None  # RectilinearBinMapper boundaries per dimension


def check_west_cfg(where: Where, report: Report) -> System:
    """The west.cfg keys streamrun and WESTPA 2022 depend on."""
    from .lazy import numpy as np

    system = System()
    west, source = where.west, where.west_cfg
    if west is None:
        report.say("west.cfg:    none found (pcoord_len, pcoord_ndim and basis "
                   "states not checked)")
        if where.ignored is not None:
            report.say(f"  ({where.ignored} of WEST_SIM_ROOT not used: the config is "
                       f"outside that folder; to check it against that west.cfg, "
                       f"export STREAMRUN_CONFIG={where.config})")
        return system

    def problem(message, key):
        report.problem(ConfigError(message, source=source, key=key))

    _duplicates(source, problem)
    section = west.get("west") if isinstance(west.get("west"), dict) else {}
    driver = (section.get("system") or {}).get("driver") if isinstance(
        section.get("system"), dict) else None
    options = _system_options(west)
    if options is None:
        driver = driver or "westpa.core.systems.WESTSystem"
        problem(f"no system_options; streamrun reads pcoord_len, pcoord_ndim and "
                f"pcoord_dtype there (driver {driver}; use WESTSystem with "
                f"system_options, as the examples do)", "west.system.system_options")
        options = {}
    for name in ("pcoord_len", "pcoord_ndim"):
        value = options.get(name)
        if value is None:
            problem("missing; WESTPA needs it", f"west.system.system_options.{name}")
        elif isinstance(value, bool) or not isinstance(value, int) or value < 1:
            problem(f"must be a positive integer, got {value!r}",
                    f"west.system.system_options.{name}")
        else:
            setattr(system, name, value)
    dtype = options.get("pcoord_dtype", "numpy.float64")
    try:
        system.dtype = np.dtype(str(dtype).replace("numpy.", "").replace("np.", ""))
    except TypeError:
        problem(f"{dtype!r} is not a numpy type (e.g. !!python/name:numpy.float32)",
                "west.system.system_options.pcoord_dtype")
    else:
        if system.dtype.kind != "f":
            problem(f"{system.dtype} is not a floating-point type: distances and "
                    f"angles would be cut to whole numbers; use numpy.float32",
                    "west.system.system_options.pcoord_dtype")
    bins = options.get("bins")
    if isinstance(bins, dict) and bins.get("type") == "RectilinearBinMapper":
        try:
            system.boundaries = [[float(b) for b in dim] for dim in bins["boundaries"]]
        except (KeyError, TypeError, ValueError):
            pass

    if not isinstance(section.get("executable"), dict) or \
            "environ" not in section["executable"]:
        problem("missing; WESTPA 2022 stops with a KeyError without it: add "
                "'environ: {}'", "west.executable.environ")
    propagator = _propagation(west, "propagator")
    runs = _executable(west, "propagator")
    if propagator == WARM_PROPAGATOR:
        how = "streamrun inside WESTPA's workers (warm path)"
    elif _uses_streamrun(west) and Path(runs or "").name in STREAMRUN_EXECUTABLES:
        how = "streamrun, one process per segment"
    else:
        how = f"{runs or '?'} (which should call streamrun segment)"
    if _propagation(west, "gen_istates") is True and \
            Path(_executable(west, "gen_istate") or "").name in STREAMRUN_EXECUTABLES:
        problem("gen_istates is true and gen_istate runs streamrun, which does not "
                "generate initial states; set gen_istates: false or use your own "
                "gen_istate script", "west.propagation.gen_istates")
    report.say(f"west.cfg:    {source}")
    report.say(f"  pcoord:    pcoord_len {system.pcoord_len}, pcoord_ndim "
               f"{system.pcoord_ndim}, pcoord_dtype {system.dtype}")
    report.say(f"  segments:  {how}")
    report.say(f"  w_init:    get_pcoord runs {_executable(west, 'get_pcoord') or '?'}")
    return system


def _duplicates(path, problem):
    """Keys given twice in WESTPA's part of west.cfg (the streamrun: section is
    checked with the streamrun config): YAML silently keeps the last."""
    from .config import duplicate_keys
    from .inputs import read_text

    try:
        text = read_text(path)
    except (OSError, ValueError):
        return  # read before: reported there
    for key, first, again in duplicate_keys(text):
        if key.split(".")[0].split("[")[0] != "streamrun":
            problem(f"given twice, on line {first} and again on line {again}; YAML "
                    f"(and WESTPA) keep only the last: merge them into one", key)


def _system_options(west):
    try:
        options = west["west"]["system"]["system_options"]
    except (KeyError, TypeError):
        return None
    return options if isinstance(options, dict) else None


# -- the stand-in environment ---------------------------------------------------

def segment_environ(environ, sim_root: Path | None, scratch: Path, parent: str | None,
                    west: dict | None = None) -> dict:
    """The ``WEST_*`` variables WESTPA would set for a new trajectory of
    iteration 1 (starting from the basis state ``parent``), with stand-ins.

    WESTPA's own ``WEST_*`` variables in ``environ`` are replaced; the rest is
    kept (``STREAMRUN_CONFIG``, ``PATH``, ``WM_PROCESS_INDEX``, ...).
    """
    from . import westpa

    env = {k: v for k, v in environ.items() if not k.startswith("WEST_")}
    if sim_root is not None:
        env["WEST_SIM_ROOT"] = str(sim_root)
    seg = scratch / "segment"
    seg.mkdir(exist_ok=True)
    env.update(westpa.STAND_IN_RANDOM)
    env.update(WEST_CURRENT_ITER="1", WEST_CURRENT_SEG_ID="0",
               WEST_CURRENT_SEG_DATA_REF=str(seg),
               WEST_CURRENT_SEG_INITPOINT_TYPE="SEG_INITPOINT_NEWTRAJ",
               WEST_PCOORD_RETURN=str(scratch / "pcoord_return"),
               WEST_BSTATE_ID="0", WEST_ISTATE_ID="0")
    if parent is not None:
        env.update(WEST_PARENT_DATA_REF=parent, WEST_BSTATE_DATA_REF=parent)
    if west is not None and sim_root is not None:
        env["WEST_ISTATE_DATA_REF"] = westpa.fill_data_ref(
            westpa.data_ref_template(west, "initial_state"), sim_root,
            initial_state={"iter_created": 0, "state_id": 0})
    if westpa.data_ref_template(west or {}, "iteration") is not None:
        # HDF5 framework: WESTPA makes these per segment
        for name in ("RESTART", "TRAJECTORY"):
            (scratch / name.lower()).mkdir(exist_ok=True)
            env[f"WEST_{name}_RETURN"] = str(scratch / name.lower())
        env["WEST_LOG_RETURN"] = str(scratch / "log_return")
    return env


def pcoord_environ(environ, sim_root, scratch: Path, structure: str) -> dict:
    """The variables of w_init's get_pcoord for one basis state."""
    env = {k: v for k, v in environ.items() if not k.startswith("WEST_")}
    if sim_root is not None:
        env["WEST_SIM_ROOT"] = str(sim_root)
    env.update(WEST_STRUCT_DATA_REF=structure, WEST_BSTATE_ID="0",
               WEST_BSTATE_DATA_REF=structure,
               WEST_PCOORD_RETURN=str(scratch / "get_pcoord_return"))
    return env


# -- the checks -----------------------------------------------------------------

def check(path=None, environ=None, bstate_file=None, overrides=()) -> Report:
    """Check a simulation without running MD; see the module docstring.

    Parameters
    ----------
    path : path-like, optional
        A west.cfg or a streamrun YAML (default: as WESTPA and the CLI find it).
    environ : mapping, optional
        Default ``os.environ``.
    bstate_file : path-like, optional
        Basis-state file (``w_init --bstate-file``); default
        ``bstates/bstates.txt`` next to the west.cfg.
    overrides : list of str
        ``--set key=value`` overrides for the streamrun config.

    Returns
    -------
    Report
    """
    environ = dict(os.environ if environ is None else environ)
    report = Report()
    try:
        where = locate(path, environ)
    except StreamrunError as e:
        report.problem(e)
        return report
    system = check_west_cfg(where, report)
    sim_root = where.west_cfg.parent if where.west_cfg else None
    states = _basis_states(where, sim_root, bstate_file, report)
    if where.config is None:
        report.say("streamrun:   not used by this west.cfg (no streamrun: section "
                   "or STREAMRUN_CONFIG); only west.cfg was checked")
        return report
    scratch = Path(tempfile.mkdtemp(prefix="streamrun-check-"))
    try:
        parent = states[0].data_ref if states else None
        _check_segment(where, system, states, environ, sim_root, scratch, parent,
                       list(overrides), report)
        for state in states:
            _check_basis_state(where, system, state, environ, sim_root, scratch,
                               list(overrides), report)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return report


def _basis_states(where, sim_root, bstate_file, report):
    from . import westpa

    if bstate_file is None:
        if sim_root is None:
            return []
        bstate_file = sim_root / "bstates" / "bstates.txt"
        if not bstate_file.is_file():
            report.say(f"bstates:     {bstate_file} not found; basis states not "
                       f"checked (give --bstate-file)")
            return []
    bstate_file = Path(bstate_file).resolve()
    try:
        states = westpa.read_basis_states(bstate_file, where.west or {},
                                          sim_root or bstate_file.parent)
    except (OSError, ValueError, UnicodeError) as e:
        report.problem(f"basis-state file {bstate_file}: "
                       f"{getattr(e, 'strerror', None) or e}")
        return []
    if not states:
        report.problem(f"basis-state file {bstate_file}: no basis states in it")
    for s in states:
        if not s.probability > 0:
            report.problem(f"basis-state file {bstate_file} line {s.line}: "
                           f"probability {s.probability:g} of {s.label!r} must be "
                           f"> 0")
    report.say(f"bstates:     {bstate_file} ({len(states)} basis state(s))")
    return states


def _check_segment(where, system, states, environ, sim_root, scratch, parent,
                   overrides, report):
    """A segment of iteration 1, from the first basis state: config, engine input,
    selections, plugins, row 0, against pcoord_len and pcoord_ndim."""
    from .config import load
    from .engines import ADAPTERS
    from .engines.base import resolve_executable
    from .segment import made_by_prepare

    env = segment_environ(environ, sim_root, scratch, parent, where.west)
    stand = ", ".join(f"{k}={env[k]}" for k in (
        "WEST_CURRENT_ITER", "WEST_CURRENT_SEG_ID", "WEST_CURRENT_SEG_INITPOINT_TYPE",
        "WEST_RAND32") if k in env)
    report.say("")
    report.say(f"segment:     a new trajectory of iteration 1 from basis state "
               f"{states[0].label!r}" if states else
               "segment:     a new trajectory of iteration 1 (no basis state: "
               "{parent} unset)")
    report.say(f"  stand-ins: {stand}; segment folder and returns in a temporary "
               f"folder")
    problems = []
    try:
        config = load(where.config, _workdir_override(where.config, overrides,
                                                      scratch / "segment"),
                      environ=env, problems=problems)
    except StreamrunError as e:
        for p in problems:
            report.problem(p)
        report.problem(e)
        return
    for p in problems:
        report.problem(p)
    adapter = ADAPTERS[config.engine.name]
    try:
        executable = resolve_executable(adapter, config.engine, config.source)
    except StreamrunError as e:
        report.problem(e)
        executable = f"<{config.engine.executable or adapter.default_executable}>"
    try:
        for line in _plan(config, executable):
            report.say("  " + line)
    except Exception as e:  # describing must never hide the other checks
        report.problem(f"could not describe the segment: {type(e).__name__}: {e}")
    if config.prepare:
        report.say("  (prepare commands are not run by check)")
    for note in adapter.notes(config.engine):
        report.warn(f"{config.source}, key 'engine.input': {note}")
    files_failed = any((getattr(p, "key", None) or "").startswith("files.")
                       for p in problems)
    start = _start_of(config)
    if files_failed and start is not None and not Path(start).exists():
        return  # row 0 would read a file that files: did not set up (reported)
    unread = False
    if made_by_prepare(config) and Path(start).parent == config.engine.workdir:
        config, unread = _prepared_start(config, adapter, Path(start), parent, report)
    row0 = _row0(config, report, "segment row 0")
    if row0 is not None and unread:
        report.say(f"  row 0:     not computed: its structure is the prepare "
                   f"command's output; the selections were checked on the "
                   f"topology's coordinates ({_values(row0)} there)")
    elif row0 is not None:
        report.say(f"  row 0:     {_values(row0)} (start structure "
                   f"{_start_of(config)})")


def _prepared_start(config, adapter, made, parent, report):
    """Row 0's structure when ``start`` is made by a prepare command (grompp's
    seg.tpr), which check does not run: the basis state of a WESTPA run (a new
    trajectory starts from its coordinates), else the structure the prepare
    command reads, when the engine adapter can tell; else the topology's
    coordinates, only to check the selections. Returns the config to compute
    row 0 with, and True when that row is not the segment's row 0."""
    from .segment import before_set_up

    if parent is not None:
        report.say(f"  start:     {made.name} is made by a prepare command; row 0 "
                   f"read from the basis state {parent} instead")
        return dataclasses.replace(config, start=Path(parent), start_format=None), False
    found = adapter.prepared_from(config, made)
    if found is not None:
        source = before_set_up(dataclasses.replace(config, start=found[0],
                                                   start_format=None))
        if source.start is not None and source.start.is_file():
            report.say(f"  start:     {made.name} is made by a prepare command from "
                       f"{source.start} ({found[1]}); row 0 read from that file")
            return source, False
    report.say(f"  start:     {made.name} is made by a prepare command, which check "
               f"does not run; row 0 comes from its output")
    return dataclasses.replace(config, start=None, start_format=None), True


def _workdir_override(path, overrides, folder):
    """Run the check's segment in ``folder`` unless the config names a workdir."""
    from .config import load_yaml

    try:
        data = load_yaml(path)
    except StreamrunError:
        return overrides
    engine = data.get("engine") if isinstance(data, dict) else None
    if isinstance(engine, dict) and engine.get("workdir") is not None:
        return overrides
    if any(o.startswith("engine.workdir=") for o in overrides):
        return overrides
    return [*overrides, f"engine.workdir={folder}"]


def _plan(config, executable):
    from .segment import plan, plan_outputs

    return [*plan(config, executable), *plan_outputs(config)]


def _start_of(config):
    from .segment import before_set_up

    start = before_set_up(config).start
    return start or config.topology


def _row0(config, report, what):
    """Build the calculator (selections, plugins) and compute row 0 as a segment
    would; record every problem. Returns the pcoord part of row 0, or None."""
    from .segment import _calculator, before_set_up

    if config.topology is None or (config.mode == "segment" and not config.pcoords):
        _plugins(config, report)  # what can be checked without a Universe
        return None  # the rest was reported by the config
    config = before_set_up(config)
    boundaries = None
    if config.mode == "segment" and _told_at_launch(config):
        # an OpenMM System: check the selections, but show no values that a
        # periodic box (or its absence) could change
        from .boundaries import stand_in

        boundaries = stand_in()
        report.say("  row 0:     computed when the engine runs (the OpenMM System "
                   "tells whether it is periodic); set engine.periodic: xyz or none "
                   "to see it here")
    try:
        calculator, row = _calculator(config, boundaries)
        if calculator.bonds_note():
            report.say(f"  bonds:     {calculator.bonds_note()}")
        report.say(f"  topology cache: {calculator.topology_cache}")
        if boundaries is not None:
            return None
    except ConfigError as e:
        if not (e.key or "").startswith(("pcoord[", "aux.")):
            report.problem(e)
            return None
        # a coordinate failed: try each alone, to report every bad one
        _each_coordinate(config, report, boundaries)
        return None
    except StreamrunError as e:
        report.problem(f"{what}: {e}" if what not in str(e) else e)
        return None
    return calculator.split(row[None])["pcoord"][0]


def _told_at_launch(config) -> bool:
    """True when only the running engine can tell the periodic boundaries."""
    from .engines import ADAPTERS

    try:
        return ADAPTERS[config.engine.name].boundaries(config) is None
    except StreamrunError:
        return False  # reported with row 0


def _plugins(config, report):
    """Import every plugin function (as a segment does before its first row)."""
    from .pcoords.plugin import load_function

    specs = [*config.pcoords, *(s for group, _ in config.aux.values() for s in group)]
    for spec in specs:
        if spec.type == "plugin":
            try:
                load_function(spec.options["function"], config.base_dir,
                              f"{spec.key}.function", config.source)
            except StreamrunError as e:
                report.problem(e)


def _each_coordinate(config, report, boundaries=None):
    from .segment import _calculator

    specs = [("pcoord", s) for s in config.pcoords] + \
        [(name, s) for name, (group, _) in config.aux.items() for s in group]
    for dataset, spec in specs:
        one = dataclasses.replace(
            config, pcoords=(spec,) if dataset == "pcoord" else (),
            aux={} if dataset == "pcoord" else {dataset: ((spec,),
                                                          config.aux[dataset][1])},
            system=None)
        try:
            _calculator(one, boundaries)
        except StreamrunError as e:
            report.problem(e)


def _check_basis_state(where, system, state, environ, sim_root, scratch, overrides,
                       report):
    """w_init's get_pcoord for one basis state: one finite point of pcoord_ndim
    values, representable in pcoord_dtype, inside the bins."""
    from .lazy import numpy as np
    from .config import load

    structure = state.data_ref
    env = pcoord_environ(environ, sim_root, scratch, structure)
    label = f"basis state {state.label!r} ({structure})"
    problems = []
    try:
        config = load(where.config, overrides, environ=env, mode="pcoord",
                      problems=problems)
    except StreamrunError as e:
        # the segment's check met the same mistake: say only what it does here
        report.problem(f"{label}: get_pcoord fails (see above), so w_init would "
                       f"store a NaN pcoord for it and exit 0" if str(e) in
                       report.problems else f"{label}: {e}")
        for p in problems:
            report.problem(p)
        return
    for p in problems:
        report.problem(p)
    own = Report()
    point = _row0(config, own, label)
    new = [p for p in own.problems if p not in report.problems]
    for p in new:
        report.problem(p if p.startswith(label) else f"{label}: {p}")
    if own.problems and not new:
        report.problem(f"{label}: get_pcoord fails (see above), so w_init would store "
                       f"a NaN pcoord for it and exit 0")
    if point is None:
        report.say(f"  bstate:    {state.label} (p={state.probability:g}): no pcoord "
                   f"(see the problems)")
        return
    shown = _values(point)
    report.say(f"  bstate:    {state.label} (p={state.probability:g}) {structure}: "
               f"pcoord {shown}")
    if system.pcoord_ndim is not None and point.size != system.pcoord_ndim:
        report.problem(f"{label}: get_pcoord gives {point.size} value(s), "
                       f"pcoord_ndim is {system.pcoord_ndim} in {where.west_cfg}; "
                       f"WESTPA would store NaN")
        return
    if system.dtype is not None:
        with np.errstate(over="ignore", invalid="ignore"):
            stored = point.astype(system.dtype)
        if not np.all(np.isfinite(stored)):
            report.problem(f"{label}: pcoord {shown} is not finite as "
                           f"{system.dtype} (pcoord_dtype); use numpy.float32 or "
                           f"float64")
    if system.boundaries is not None and len(system.boundaries) == point.size:
        for i, (value, edges) in enumerate(zip(point, system.boundaries)):
            if not edges[0] <= value < edges[-1]:
                report.problem(
                    f"{label}: pcoord[{i}] = {value:g} is outside the bins "
                    f"[{edges[0]:g}, {edges[-1]:g}) of {where.west_cfg} "
                    f"(west.system.system_options.bins); w_init would fail")


def _values(row) -> str:
    return " ".join(f"{v:.6g}" for v in row)


def check_results(h5_path, logs=()) -> Report:
    """After ``w_init`` or ``w_run``: what WESTPA reported only in passing.

    ``w_init`` stores a failed get_pcoord as a NaN pcoord and ``w_run`` goes on
    after failed segments, both with exit code 0. Problems: a NaN pcoord in the
    basis/initial states or a finished iteration, a segment marked failed, and an
    error line in a WESTPA output log given in ``logs``.

    Parameters
    ----------
    h5_path : path-like
        WESTPA's data file (``west_data_file``, usually west.h5).
    logs : iterable of path-like
        Output of w_init/w_run (e.g. captured with ``tee``).
    """
    import h5py
    import numpy as np

    report = Report()
    h5_path = Path(h5_path)
    try:
        f = h5py.File(h5_path, "r")
    except OSError as e:
        report.problem(f"{h5_path}: cannot read it as WESTPA's HDF5 file ({e}); "
                       f"run w_init first")
        return report
    failed = 3  # westpa.core.segment.Segment.SEG_STATUS_FAILED (WESTPA 2022)
    with f:
        current = int(f.attrs.get("west_current_iteration", 1))
        groups = ["ibstates/0/bstate_pcoord", "ibstates/0/istate_pcoord"] + [
            f"iterations/iter_{n:08d}/pcoord" for n in range(1, current)]
        for name in groups:
            if name in f and np.isnan(f[name][...]).any():
                report.problem(f"{h5_path}: NaN pcoord in {name}; WESTPA stores one "
                               f"when the propagator or get_pcoord fails (see the "
                               f"seg_logs and the w_init/w_run output)")
        for n in range(1, current + 1):
            index = f.get(f"iterations/iter_{n:08d}/seg_index")
            if index is not None:
                bad = np.flatnonzero(index["status"][...] == failed)
                if bad.size:
                    report.problem(f"{h5_path}: iteration {n}: {bad.size} failed "
                                   f"segment(s) ({', '.join(map(str, bad[:5]))}"
                                   f"{', ...' if bad.size > 5 else ''}); their "
                                   f"seg_logs say why")
        report.say(f"{h5_path}: {current - 1} finished iteration(s) checked")
    for log in map(Path, logs):
        try:
            text = log.read_text(errors="replace")
        except OSError as e:
            report.problem(f"{log}: cannot read it ({e.strerror})")
            continue
        for line in text.splitlines():
            if "ERROR" in line or "streamrun: error" in line or \
                    "propagation failed" in line:
                report.problem(f"{log}: {line.strip()}")
                break
    return report
