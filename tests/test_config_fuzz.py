"""Whatever a config file holds, the user sees a ConfigError (one line, file and
key), never a traceback."""

import sys

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamrun.config import ENGINE_KEYS, STREAM_KEYS, TOP_KEYS, load
from streamrun.errors import ConfigError
from streamrun.segment import calculator_for

from test_config import LAMMPS_INPUT, PDB

KEYS = st.sampled_from([*TOP_KEYS, *ENGINE_KEYS, *STREAM_KEYS, *STREAM_KEYS, "stream", "type", "a", "b",
                        "function", "selections", "name", "continues", "newtraj",
                        "zzz"])
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-5, 10**6),
                    st.floats(allow_nan=True), st.text(max_size=12),
                    st.sampled_from(["in.lmp", "top.pdb", "name NA", "distance",
                                     "plugin", "{rand16}", "{parent}/x", "lammps",
                                     "math:sqrt", "100", "10"]))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(KEYS, inner, max_size=4)),
    max_leaves=12)


def base():
    return {"engine": {"input": "in.lmp", "nsteps": 100, "frame_interval": 10,
                       "executable": sys.executable},
            "topology": "top.pdb",
            "pcoord": [{"type": "distance", "a": "name NA", "b": "name CL"}]}


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.lists(KEYS, min_size=1, max_size=3), value=VALUES)
def test_any_value_anywhere_gives_a_config_error_or_a_valid_config(tmp_path, path,
                                                                  value):
    (tmp_path / "in.lmp").write_text(LAMMPS_INPUT)
    (tmp_path / "top.pdb").write_text(PDB)
    data = base()
    node = data
    for key in path[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = node[key] = {}
        node = child
    node[path[-1]] = value
    config_file = tmp_path / "streamrun.yaml"
    config_file.write_text(yaml.safe_dump(data))
    try:
        config = load(config_file, environ={})
        calculator_for(config).start_row()
    except ConfigError as e:
        assert str(config_file) in str(e) or "command line" in str(e)
        assert "\n" not in str(e).split(":", 1)[0]


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=200))
def test_any_file_content_gives_a_config_error_or_a_valid_config(tmp_path, text):
    config_file = tmp_path / "streamrun.yaml"
    config_file.write_text(text)
    try:
        load(config_file, environ={})
    except ConfigError as e:
        assert str(config_file) in str(e)
