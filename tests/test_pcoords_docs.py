"""Every coordinate is documented from one source: its class in streamrun/pcoords.
The README's coordinate section and ``streamrun run --help`` are generated from the
registry, and bad coordinate settings are named with their key before any engine."""

import subprocess
import sys
from pathlib import Path

import pytest

from streamrun import pcoords
from streamrun.config import validate
from streamrun.errors import ConfigError

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_readme_coordinate_section_is_the_registry_reference():
    text = README.read_text()
    start = text.index("\n", text.index("<!-- coordinates:start")) + 1
    end = text.index("<!-- coordinates:end -->")
    assert text[start:end].strip() == pcoords.reference(markdown=True).strip(), (
        "README coordinates section is stale; regenerate it with "
        "streamrun.pcoords.reference(markdown=True)")


def test_run_help_lists_every_coordinate_and_its_keys():
    out = subprocess.run([sys.executable, "-m", "streamrun", "run", "--help"],
                         capture_output=True, text=True, check=True).stdout
    flat = " ".join(out.split())
    for kind, cls in pcoords.REGISTRY.items():
        assert f"{kind} [{cls.units}]" in flat
        for key in cls.options:
            assert key in flat


@pytest.mark.parametrize("item, key, words", [
    ({"type": "rmsd"}, "pcoord[0].select", "required"),
    ({"type": "rmsd", "select": "all", "weights": "charge"}, "pcoord[0].weights",
     "none or mass"),
    ({"type": "position", "select": "all", "axis": "w"}, "pcoord[0].axis", "x or y or z"),
    ({"type": "count", "a": "all", "b": "all", "cutoff": 0}, "pcoord[0].cutoff", "> 0"),
    ({"type": "contacts", "a": "all", "b": "all", "method": "soft"},
     "pcoord[0].method", "hard_cut"),
    ({"type": "contacts", "a": "all", "b": "all", "reference": "nope.pdb"},
     "pcoord[0].reference", "does not exist"),
    ({"type": "dihedral", "a": "all", "b": "all", "c": "all"}, "pcoord[0].d",
     "required"),
    ({"type": "rg", "select": "all", "radius": 3}, "pcoord[0].radius", "Allowed"),
    ({"type": "plugin", "function": "m:f", "whole": "yes"}, "pcoord[0].whole",
     "true or false"),
])
def test_bad_coordinate_settings_are_named_with_their_key(tmp_path, item, key, words):
    (tmp_path / "in.lmp").write_text(
        "fix s all imd ${streamrun_port} version 3 trate ${streamrun_every}\n"
        "run ${streamrun_nsteps}\n")
    (tmp_path / "top.pdb").write_text("ATOM      1  NA  NA      1       0.000   0.000"
                                      "   0.000  1.00  0.00          NA\n")
    data = {"engine": {"input": "in.lmp", "nsteps": 10, "frame_interval": 10,
                       "executable": sys.executable},
            "topology": "top.pdb", "pcoord": [item]}
    with pytest.raises(ConfigError) as info:
        validate(data, "c.yaml", tmp_path, environ={})
    assert info.value.key == key
    assert words in str(info.value)
