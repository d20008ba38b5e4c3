"""The WESTPA side of the contract: what the ``WEST_*`` variables mean for a
segment, the placeholders they provide to the config, and the system options of
west.cfg that the pcoord file must agree with.

WESTPA (westpa/core/propagators/executable.py) starts the propagator as
``Popen([executable])`` in ``WEST_CURRENT_SEG_DATA_REF``, and reads back
``WEST_PCOORD_RETURN`` (``numpy.loadtxt``, ``pcoord_len`` x ``pcoord_ndim``),
``WEST_<NAME>_RETURN`` for each aux dataset, and, with the HDF5 framework,
``WEST_RESTART_RETURN``/``WEST_TRAJECTORY_RETURN`` (folders) and ``WEST_LOG_RETURN``.
"""

from __future__ import annotations

import copy
import os
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from .inputs import InputFileError, read_text

#: Placeholder -> environment variable it comes from.
PLACEHOLDER_VARS = {
    "rand16": "WEST_RAND16",
    "rand32": "WEST_RAND32",
    "rand64": "WEST_RAND64",
    "rand128": "WEST_RAND128",
    "randfloat": "WEST_RANDFLOAT",
    "seg_id": "WEST_CURRENT_SEG_ID",
    "iter": "WEST_CURRENT_ITER",
    "parent": "WEST_PARENT_DATA_REF",
    "parent_id": "WEST_PARENT_ID",
    "sim_root": "WEST_SIM_ROOT",
    "struct": "WEST_STRUCT_DATA_REF",
    "bstate": "WEST_BSTATE_DATA_REF",
    "istate": "WEST_ISTATE_DATA_REF",
}
PLACEHOLDER = re.compile(r"(?<!\$)\{(" + "|".join(
    [*PLACEHOLDER_VARS, "seed", "config_dir", "workdir", "worker", "cores"]) + r")\}")
#: Environment variable giving ``{worker}``, the WESTPA worker's index (processes
#: and zmq work managers); 0 when it is not set (outside WESTPA, serial manager).
WORKER_VAR = "WM_PROCESS_INDEX"
#: Largest seed LAMMPS' velocity command accepts (2^31 - 2; 2^31 - 1 hangs it).
MAX_SEED = 2**31 - 2

CONTINUES, NEWTRAJ = "continues", "newtraj"


class WestCfgLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """A safe YAML loader that also reads west.cfg files: WESTPA configs carry
    Python tags such as ``!!python/name:numpy.float32``; they are read as the plain
    name (``numpy.float32``), nothing is imported or executed. libyaml's parser
    when PyYAML has it (10 times faster: each segment reads west.cfg)."""


def _python_tag(loader, suffix, node):
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        return f"{suffix.split(':', 1)[-1]}{value}" if suffix.startswith("name:") \
            else value
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node)
    return loader.construct_mapping(node)


WestCfgLoader.add_multi_constructor("tag:yaml.org,2002:python/", _python_tag)


#: Most values a YAML document may stand for once its aliases are expanded. A
#: 559-byte "billion laughs" (nine aliases of nine aliases ...) stands for 10^9,
#: which anything that walks or prints the value would expand.
MAX_YAML_VALUES = 100_000


class YamlTooLarge(yaml.YAMLError):
    """A YAML document whose aliases expand without bound, or that nests too
    deeply to be read."""


def _expanded_size(node, sizes, limit):
    """Values ``node`` stands for with aliases expanded; shared nodes are counted
    once per use, but computed once (``sizes``), so this costs one pass."""
    key = id(node)
    if key in sizes:
        if sizes[key] is None:
            raise YamlTooLarge("an alias refers to the value that contains it; "
                               "write the value out instead")
        return sizes[key]
    sizes[key] = None  # in progress
    size = 1
    if isinstance(node, yaml.SequenceNode):
        children = node.value
    elif isinstance(node, yaml.MappingNode):
        children = [n for pair in node.value for n in pair]
    else:
        children = []
    for child in children:
        size += _expanded_size(child, sizes, limit)
        if size > limit:
            raise YamlTooLarge(f"its aliases (*name) expand to more than {limit} "
                               f"values; write the values out instead of nesting "
                               f"aliases")
    sizes[key] = size
    return size


def read_yaml(text: str):
    """Parse a streamrun config or a west.cfg (see :class:`WestCfgLoader`); a
    fresh copy of the last text parsed comes from memory (a segment reads its
    west.cfg more than once).

    Raises
    ------
    yaml.YAMLError
        If the text is not YAML, or is a document whose aliases expand to more
        than :data:`MAX_YAML_VALUES` values (:class:`YamlTooLarge`).
    """
    if _LAST[0] == text:
        return copy.deepcopy(_LAST[1])
    data = _read_yaml(text)
    _LAST[:] = [text, copy.deepcopy(data)]
    return data


_LAST: list = [None, None]


def _read_yaml(text):
    loader = WestCfgLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _expanded_size(node, {}, MAX_YAML_VALUES)
        return loader.construct_document(node)
    except RecursionError:
        raise YamlTooLarge("it nests lists or mappings too deeply to be read") \
            from None
    finally:
        loader.dispose()


def in_segment(environ) -> bool:
    """True when WESTPA started us for a segment."""
    return bool(environ.get("WEST_CURRENT_SEG_ID"))


def in_get_pcoord(environ) -> bool:
    """True when WESTPA started us to compute a basis/initial state's pcoord."""
    return bool(environ.get("WEST_STRUCT_DATA_REF")) and not in_segment(environ)


def initpoint(environ) -> str | None:
    """``continues``, ``newtraj``, or None outside WESTPA."""
    value = environ.get("WEST_CURRENT_SEG_INITPOINT_TYPE", "")
    if value.endswith("CONTINUES"):
        return CONTINUES
    if value.endswith("NEWTRAJ"):
        return NEWTRAJ
    return None


def placeholders(environ, config_dir, workdir) -> dict[str, str | None]:
    """Values of every placeholder; None for those whose variable is unset."""
    values = {name: environ.get(var) or None for name, var in PLACEHOLDER_VARS.items()}
    values.update(config_dir=str(config_dir), workdir=str(workdir), seed=seed(environ),
                  worker=worker(environ))
    return values


def worker(environ) -> str | None:
    """``{worker}``: the WESTPA worker's index (``WM_PROCESS_INDEX``), "0" when unset,
    None when it is not a non-negative integer."""
    raw = str(environ.get(WORKER_VAR) or "0").strip()
    return raw if raw.isdigit() else None


def cores(worker_index, per_engine, available=None) -> str | None:
    """``{cores}``: this worker's CPUs as a list for ``taskset -c`` (e.g. ``4-7``):
    block ``worker`` of ``per_engine`` CPUs among those this process may use, in
    order. None when the block does not fit.

    Parameters
    ----------
    worker_index : int
        ``{worker}``.
    per_engine : int
        ``engine.cores``.
    available : iterable of int, optional
        CPUs to share out (default: this process's affinity).
    """
    cpus = sorted(os.sched_getaffinity(0) if available is None else available)
    block = cpus[worker_index * per_engine:(worker_index + 1) * per_engine]
    if len(block) < per_engine:
        return None
    runs, start = [], block[0]
    for prev, cpu in zip(block, block[1:] + [None]):
        if cpu is None or cpu != prev + 1:
            runs.append(str(start) if start == prev else f"{start}-{prev}")
            start = cpu
    return ",".join(runs)


def seed(environ) -> str | None:
    """``{seed}``: a velocity seed in 1 .. 2^31-2 from WEST_RAND32 (else WEST_RAND16).

    WESTPA's raw values include 0 and numbers >= 2^31, which engines reject
    (LAMMPS' ``velocity create`` needs 1 .. 2^31-2): with ``{rand32}`` about half of
    all segments would fail.
    """
    for var in ("WEST_RAND32", "WEST_RAND16"):
        raw = environ.get(var)
        if raw:
            try:
                return str(int(raw) % MAX_SEED + 1)
            except ValueError:
                return None
    return None


def fill(text: str, values: dict, on_missing) -> str:
    """Replace ``{name}`` placeholders in ``text``. LAMMPS ``${name}`` is left alone.

    ``on_missing(name, variable)`` is called for a placeholder whose environment
    variable is not set; it raises, or returns the text to put in its place.
    """
    def sub(m):
        value = values.get(m.group(1))
        if value is None:
            return on_missing(m.group(1), PLACEHOLDER_VARS.get(m.group(1)))
        return value

    return PLACEHOLDER.sub(sub, text)


def aux_return_var(name: str) -> str:
    """Environment variable WESTPA sets for aux dataset ``name``."""
    return f"WEST_{name.upper()}_RETURN"


@dataclass(frozen=True)
class SystemOptions:
    """``west.system.system_options`` of a west.cfg (None where not given)."""

    source: str
    pcoord_len: int | None = None
    pcoord_ndim: int | None = None
    pcoord_dtype: str | None = None


def system_options(west_cfg: Path) -> SystemOptions | None:
    """Read pcoord_len/pcoord_ndim/pcoord_dtype from a west.cfg, if it has them."""
    try:
        data = read_yaml(read_text(Path(west_cfg)))
        options = data["west"]["system"]["system_options"]
    except (OSError, InputFileError, yaml.YAMLError, KeyError, TypeError):
        return None
    if not isinstance(options, dict):
        return None

    def integer(key):
        value = options.get(key)
        return int(value) if isinstance(value, int) else None

    return SystemOptions(str(west_cfg), integer("pcoord_len"), integer("pcoord_ndim"),
                         str(options["pcoord_dtype"]) if "pcoord_dtype" in options
                         else None)


#: Stand-in values of the random ``WEST_*`` variables, for runs outside WESTPA
#: (``streamrun check``, ``--dry-run``); the seeds are valid engine seeds.
STAND_IN_RANDOM = {"WEST_RAND16": "4928", "WEST_RAND32": "4928459",
                   "WEST_RAND64": "4928459", "WEST_RAND128": "4928459",
                   "WEST_RANDFLOAT": "0.5"}


@dataclass(frozen=True)
class BasisState:
    """One line of a WESTPA basis-state file (``label probability [auxref]``) and
    the structure it stands for (``west.data.data_refs.basis_state`` filled in)."""

    label: str
    probability: float
    auxref: str | None
    data_ref: str
    line: int


def read_basis_states(path: Path, west: dict, sim_root: Path) -> list[BasisState]:
    """Read a basis-state file as ``BasisState.states_from_file`` (westpa.core.states)
    does: ``#`` comments, blank lines skipped, whitespace-separated fields.

    Raises
    ------
    ValueError
        Naming the line of a malformed entry.
    OSError
        If the file cannot be read.
    """
    template = data_ref_template(west, "basis_state")
    out = []
    for number, raw in enumerate(read_text(Path(path)).splitlines(), 1):
        fields = raw.partition("#")[0].split()
        if not fields:
            continue
        if len(fields) < 2:
            raise ValueError(f"line {number}: expected 'label probability [file]', "
                             f"got {raw.strip()!r}")
        try:
            probability = float(fields[1])
        except ValueError:
            raise ValueError(f"line {number}: probability {fields[1]!r} is not a "
                             f"number") from None
        auxref = fields[2] if len(fields) > 2 else None
        state = {"label": fields[0], "probability": probability, "auxref": auxref,
                 "state_id": len(out)}
        out.append(BasisState(fields[0], probability, auxref,
                              fill_data_ref(template, sim_root, basis_state=state),
                              number))
    return out


def data_ref_template(west: dict, kind: str) -> str | None:
    """``west.data.data_refs.<kind>`` of a west.cfg mapping, or None."""
    try:
        value = west["west"]["data"]["data_refs"][kind]
    except (KeyError, TypeError):
        return None
    return str(value) if value is not None else None


def fill_data_ref(template: str | None, sim_root: Path, **objects) -> str:
    """A data-ref template filled in as WESTPA's ``makepath`` does
    (``str.format`` with attribute access, then ``$VARIABLES``), with
    ``$WEST_SIM_ROOT`` set to ``sim_root``. Without a template: ``sim_root``."""
    import os
    from types import SimpleNamespace

    if template is None:
        return str(sim_root)
    args = {name: SimpleNamespace(**fields) for name, fields in objects.items()}
    text = template.replace("$WEST_SIM_ROOT", str(sim_root)) \
        .replace("${WEST_SIM_ROOT}", str(sim_root))
    try:
        text = text.format(**args)
    except (KeyError, AttributeError, IndexError, ValueError):
        pass
    return os.path.normpath(os.path.expandvars(text))
