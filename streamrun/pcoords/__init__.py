"""Progress coordinates: one module per family, one class per coordinate.

=================  ==============================================  ==========
type               what                                            module
=================  ==============================================  ==========
distance           distance between two group centres (Å)          distances
min_distance       closest atom pair between two groups (Å)        distances
position           one component of a group centre (Å)             distances
count              atoms of b within a cutoff of a                 distances
rmsd               RMSD to a reference after superposition (Å)     rms
rg                 radius of gyration (Å)                          gyration
angle, dihedral    angles between group centres (degrees)          angles
backbone           phi, psi (chi1) of each residue (degrees)       backbone
contacts           fraction of native contacts Q                   contacts
plugin             your own function                               plugin
=================  ==============================================  ==========

Each class declares its options (help text, defaults, checks) beside its
computation; the config, ``streamrun run --help`` and the README table are made from
:data:`REGISTRY`. Importing this package does not import MDAnalysis.
"""

from __future__ import annotations

from ..errors import ConfigError
# imported in the order --help and the README list them
from . import (distances, rms, gyration, angles, backbone,  # noqa: F401,I001
               contacts, plugin)
from .base import REGISTRY, Coordinate, Option, register
from .calculator import PcoordCalculator, build_coordinate

__all__ = ["REGISTRY", "Coordinate", "Option", "register", "PcoordCalculator",
           "build_coordinate", "parse", "reference"]


def parse(value, source, prefix, resolve_path, problems=None):
    """Check a ``pcoord:`` (or ``aux.<name>:``) list.

    Parameters
    ----------
    value : list of dict, or dict
        As read from YAML.
    source : str
        Config file, for messages.
    prefix : str
        Key of the list, e.g. ``pcoord``.
    resolve_path : callable
        ``resolve_path(text, key)`` -> absolute Path of an existing file.
    problems : list, optional
        Record a bad item's ConfigError here and go on with the next item
        (``streamrun check``), instead of raising.

    Returns
    -------
    list of (type, key, options)
    """
    if value is None:
        raise ConfigError("missing; give at least one coordinate, e.g. "
                          "[{type: distance, a: 'type 3', b: 'type 4'}]",
                          source=source, key=prefix)
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list) or not value:
        raise ConfigError("must be a non-empty list of coordinates", source=source,
                          key=prefix)
    out = []
    for i, item in enumerate(value):
        try:
            out.append(_parse_item(item, source, f"{prefix}[{i}]", resolve_path))
        except ConfigError as e:
            if problems is None:
                raise
            problems.append(e)
    return out


def _parse_item(item, source, key, resolve_path):
    if not isinstance(item, dict):
        raise ConfigError("must be a mapping with a 'type'", source=source, key=key)
    kind = item.get("type")
    if not isinstance(kind, str) or kind not in REGISTRY:
        shown = repr(kind)[:40]
        raise ConfigError(f"type must be one of {', '.join(REGISTRY)}; got {shown}",
                          source=source, key=f"{key}.type")
    return kind, key, REGISTRY[kind].parse(item, source, key, resolve_path)


def reference(markdown=False) -> str:
    """Every coordinate type with its keys, units and periodic-boundary behaviour,
    as plain text (``--help``) or a Markdown section (README)."""
    lines = []
    for kind, cls in REGISTRY.items():
        options = cls.options
        if markdown:
            lines += [f"#### `{kind}` ({cls.units})", "", f"{cls.summary[0].upper()}"
                      f"{cls.summary[1:]}. Periodic boundaries: {cls.pbc_note}.", "",
                      "| key | meaning | default |", "|---|---|---|"]
            for name, opt in options.items():
                default = "required" if opt.required else (
                    "as the engine" if opt.default is None and opt.kind == "flag"
                    else "—" if opt.default is None else f"`{opt.default}`".lower()
                    if isinstance(opt.default, bool) else f"`{opt.default}`")
                lines.append(f"| `{name}` | {opt.help} | {default} |")
            lines.append("")
        else:
            import textwrap

            lines += textwrap.wrap(f"{kind} [{cls.units}]: {cls.summary}", 78,
                                   initial_indent="  ", subsequent_indent="      ")
            lines += textwrap.wrap(f"keys: {', '.join(options)}. PBC: {cls.pbc_note}",
                                   78, initial_indent="      ",
                                   subsequent_indent="      ")
    return "\n".join(lines)
