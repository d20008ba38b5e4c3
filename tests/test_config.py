"""A bad config fails before any engine starts, with the file, the key and what to do."""

import os
import sys
import textwrap

import pytest
import yaml

from streamrun.config import load
from streamrun.errors import ConfigError
from streamrun.segment import calculator_for

LAMMPS_INPUT = """\
units real
read_data ${start}
fix stream all imd ${streamrun_port} version 3 trate ${streamrun_every} unwrap on
run ${streamrun_nsteps}
"""

PDB = """\
CRYST1   20.000   20.000   20.000  90.00  90.00  90.00 P 1           1
ATOM      1 NA   NA      1       1.000   1.000   1.000  1.00  0.00          NA
ATOM      2 CL   CL      2       4.000   1.000   1.000  1.00  0.00          CL
ATOM      3 OW   SOL     3      19.000   1.000   1.000  1.00  0.00           O
END
"""


@pytest.fixture
def sim(tmp_path):
    """A folder with an engine input, a topology and a writer for configs."""
    (tmp_path / "in.lmp").write_text(LAMMPS_INPUT)
    (tmp_path / "top.pdb").write_text(PDB)

    def write(**changes):
        data = {
            "engine": {"input": "in.lmp", "nsteps": 100, "frame_interval": 10,
                       "executable": sys.executable},
            "topology": "top.pdb",
            "pcoord": [{"type": "distance", "a": "name NA", "b": "name CL"}],
            "output": str(tmp_path / "pcoord.dat"),
        }
        for key, value in changes.items():
            node, parts = data, key.split("__")
            for p in parts[:-1]:
                node = node.setdefault(p, {})
            if value is None:
                node.pop(parts[-1], None)
            else:
                node[parts[-1]] = value
        path = tmp_path / "streamrun.yaml"
        path.write_text(yaml.safe_dump(data))
        return path

    return write


def error_of(path, *overrides):
    with pytest.raises(ConfigError) as info:
        config = load(path, list(overrides), environ={})
        calculator_for(config).start_row()
    return info.value, str(info.value)


def test_a_valid_config_loads_with_defaults(sim):
    config = load(sim(), environ={})
    assert config.rows == 11  # start row + 100/10 frames
    assert config.engine.name == "lammps"
    assert config.topology.name == "top.pdb" and config.topology.is_absolute()
    row = calculator_for(config).start_row()
    assert row.tolist() == pytest.approx([3.0])


def test_minimum_image_is_used_for_the_start_row(sim):
    config = load(sim(pcoord=[{"type": "distance", "a": "name NA", "b": "name OW"}]),
                  environ={})
    assert calculator_for(config).start_row()[0] == pytest.approx(2.0, abs=1e-5)


@pytest.mark.parametrize("changes, key, words", [
    ({"engine__nstep": 5}, "engine.nstep", "Did you mean 'nsteps'"),
    ({"engine__nsteps": None}, "engine.nsteps", "required"),
    ({"engine__nsteps": "many"}, "engine.nsteps", "integer"),
    ({"engine__nsteps": 105}, "engine.nsteps", "multiple of frame_interval"),
    ({"engine__frame_interval": 0}, "engine.frame_interval", ">= 1"),
    ({"engine__input": "missing.in"}, "engine.input", "does not exist"),
    ({"engine__name": "amber"}, "engine.name", "unknown engine"),
    ({"engine__executable": "/no/such/lmp"}, "engine.executable", "not found"),
    ({"topology": None}, "topology", "required"),
    ({"topology": "nope.pdb"}, "topology", "does not exist"),
    ({"pcoord": None}, "pcoord", "at least one"),
    ({"pcoord": [{"type": "angles"}]}, "pcoord[0].type", "one of"),
    ({"pcoord": [{"type": "distance", "a": "name NA"}]}, "pcoord[0].b", "required"),
    ({"pcoord": [{"type": "distance", "a": "name NA", "b": "name CL", "centre": "x"}]},
     "pcoord[0].centre", "Did you mean 'center'"),
    ({"pcoord": [{"type": "distance", "a": "name XX", "b": "name CL"}]},
     "pcoord[0].a", "selects no atoms"),
    ({"pcoord": [{"type": "distance", "a": "name NA and (", "b": "name CL"}]},
     "pcoord[0].a", "not valid"),
    ({"pcoord": [{"type": "plugin", "function": "no_such_module_xyz:f"}]},
     "pcoord[0].function", "could not import"),
    ({"pcoord": [{"type": "plugin", "function": "math:no_such"}]},
     "pcoord[0].function", "no function"),
    ({"pcoord": [{"type": "plugin", "function": "plugins/missing.py:f"}]},
     "pcoord[0].function", "does not exist"),
    ({"pcoord": [{"type": "plugin", "function": "json"}]},
     "pcoord[0].function", "package.module:function"),
    ({"rows": 51}, "rows", "gives 11 rows"),
    ({"stream__timeout": -1}, "stream.timeout", ">= 1"),
    ({"output": "/no/such/dir/pcoord.dat"}, "output", "does not exist"),
    ({"engine__launcher": ["mpiexec_nope", "-n", 2]}, "engine.launcher[0]",
     "'mpiexec_nope' not found"),
    ({"engine__launcher": {"n": 2}}, "engine.launcher", "list of strings"),
    ({"engine__launcher": ["mpiexec", ["-n", 2]]}, "engine.launcher",
     "list of strings"),
    ({"engine__env": ["OMP_NUM_THREADS=4"]}, "engine.env", "mapping NAME: value"),
    ({"engine__env": {"OMP-THREADS": 4}}, "engine.env.OMP-THREADS",
     "environment variable name"),
    ({"engine__env": {"CUDA_VISIBLE_DEVICES": [0, 1]}},
     "engine.env.CUDA_VISIBLE_DEVICES", "single value"),
    ({"engine__env": {"STREAMRUN_ENGINE_TOKEN": "x"}},
     "engine.env.STREAMRUN_ENGINE_TOKEN", "set by streamrun"),
    ({"engine__listener": "srun"}, "engine.listener", "tree or environment"),
    ({"engine__args": ["-pk", "omp", True]}, "engine.args", "quote words"),
])
def test_each_bad_value_is_named_with_its_file_and_key(sim, changes, key, words):
    path = sim(**changes)
    err, text = error_of(path)
    assert err.key == key
    assert str(path) in text
    assert words in text


def test_the_engine_input_must_stream_on_streamruns_port(sim, tmp_path):
    (tmp_path / "in.lmp").write_text(LAMMPS_INPUT.replace("${streamrun_port}", "8888"))
    err, text = error_of(sim())
    assert err.key == "engine.input" and "in.lmp line 3" in text
    assert "${streamrun_port}" in text


def test_the_engine_input_needs_a_fix_imd_and_version_3(sim, tmp_path):
    (tmp_path / "in.lmp").write_text("run ${streamrun_nsteps}\n")
    assert "no 'fix ... imd'" in error_of(sim())[1]
    (tmp_path / "in.lmp").write_text(LAMMPS_INPUT.replace("version 3", "version 2"))
    assert "version 3" in error_of(sim())[1]


def test_plugin_signature_must_match_its_selections(sim, tmp_path):
    (tmp_path / "plug.py").write_text("def f(u):\n    return 1.0\n")
    err, text = error_of(sim(pcoord=[{"type": "plugin", "function": "plug.py:f",
                                      "selections": ["name NA"]}]))
    assert err.key == "pcoord[0].function" and "cannot be called" in text


def test_a_plugin_from_a_file_gives_several_columns(sim, tmp_path):
    (tmp_path / "plug.py").write_text(textwrap.dedent("""
        import numpy as np
        def f(u, na, cl):
            return np.concatenate([na.positions[0], cl.positions[0]])
    """))
    config = load(sim(pcoord=[{"type": "plugin", "function": "plug.py:f",
                               "selections": ["name NA", "name CL"]}]), environ={})
    calc = calculator_for(config)
    assert calc.start_row().tolist() == pytest.approx([1, 1, 1, 4, 1, 1])
    assert calc.column_names() == [f"f[{i}]" for i in range(6)]


def test_overrides_from_the_command_line_win(sim):
    config = load(sim(), ["engine.nsteps=200", "engine.frame_interval=20"], environ={})
    assert (config.engine.nsteps, config.rows) == (200, 11)


def test_a_west_cfg_without_a_streamrun_section_says_so(tmp_path):
    path = tmp_path / "west.cfg"
    path.write_text("west:\n  system:\n    driver: x\n")
    err, text = error_of(path)
    assert "no 'streamrun:' section" in text and str(path) in text


def test_the_streamrun_section_of_a_west_cfg_is_used(sim, tmp_path):
    standalone = yaml.safe_load(sim().read_text())
    path = tmp_path / "west.cfg"
    path.write_text(yaml.safe_dump({"west": {"system": {}}, "streamrun": standalone}))
    assert load(path, environ={}).rows == 11


def test_yaml_syntax_errors_name_the_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("engine:\n  nsteps: [1, 2\n")
    err, text = error_of(path)
    assert str(path) in text and "line" in text


def test_pcoord_output_defaults_to_westpas_return_path(sim, tmp_path):
    path = sim(output=None)
    target = tmp_path / "ret" / "pcoord.txt"
    target.parent.mkdir()
    assert load(path, environ={"WEST_PCOORD_RETURN": str(target)}).output == target


def test_a_real_west_cfg_with_python_tags_is_read_and_pcoord_len_checked(sim, tmp_path):
    standalone = yaml.safe_load(sim().read_text())
    path = tmp_path / "west.cfg"
    path.write_text(
        "west:\n  system:\n    driver: westpa.core.systems.WESTSystem\n"
        "    system_options:\n      pcoord_ndim: 1\n      pcoord_len: 21\n"
        "      pcoord_dtype: !!python/name:numpy.float32\n"
        "      bins:\n        type: RectilinearBinMapper\n"
        "        boundaries: [[0.0, 5.0, 'inf']]\n"
        + yaml.safe_dump({"streamrun": standalone}))
    assert load(path, environ={}).rows == 11  # outside WESTPA: no pcoord_len check
    with pytest.raises(ConfigError, match="pcoord_len is 21"):
        load(path, environ={"WEST_SIM_ROOT": str(tmp_path)})
    assert load(path, ["engine.nsteps=200"], environ={"WEST_SIM_ROOT": str(tmp_path)}
                ).rows == 21


def test_worker_is_wm_process_index_in_launcher_env_args_and_variables(sim):
    """One GPU (or core set) per WESTPA worker: {worker} is WM_PROCESS_INDEX, 0
    outside WESTPA. The launcher's program is resolved like an engine's."""
    path = sim(engine__launcher=["mpiexec", "-n", 2, "-bind-to", "core{worker}"],
               engine__env={"CUDA_VISIBLE_DEVICES": "{worker}", "OMP_NUM_THREADS": 4},
               engine__args=["-sf", "omp"], engine__variables={"gpu": "{worker}"})
    config = load(path, environ={"WM_PROCESS_INDEX": "3"})
    engine = config.engine
    assert engine.launcher[0].endswith("mpiexec") and "/" in engine.launcher[0]
    assert engine.launcher[1:] == ("-n", "2", "-bind-to", "core3")
    assert engine.env == {"CUDA_VISIBLE_DEVICES": "3", "OMP_NUM_THREADS": "4"}
    assert engine.variables == {"gpu": "3"} and engine.listener == "tree"
    outside = load(path, environ={}).engine
    assert outside.env["CUDA_VISIBLE_DEVICES"] == "0"


def test_a_worker_index_that_is_not_a_number_is_named(sim):
    path = sim(engine__env={"CUDA_VISIBLE_DEVICES": "{worker}"})
    with pytest.raises(ConfigError) as info:
        load(path, environ={"WM_PROCESS_INDEX": "gpu1"})
    assert info.value.key == "engine.env.CUDA_VISIBLE_DEVICES"
    assert "WM_PROCESS_INDEX is 'gpu1'" in str(info.value)


def test_cores_gives_each_worker_its_own_block_of_cpus(sim):
    """engine.cores: N makes {cores} worker i's N CPUs, as a taskset -c list; a
    worker whose block is not on this node gets an error naming engine.cores."""
    from streamrun.westpa import cores

    assert [cores(w, 2, range(8)) for w in range(4)] == ["0-1", "2-3", "4-5", "6-7"]
    assert cores(0, 3, [0, 2, 3, 5]) == "0,2-3" and cores(4, 2, range(8)) is None
    n_cpus = len(os.sched_getaffinity(0))
    path = sim(engine__cores=1, engine__launcher=["taskset", "-c", "{cores}"])
    first = sorted(os.sched_getaffinity(0))[0]
    assert load(path, environ={}).engine.launcher[1:] == ("-c", str(first))
    with pytest.raises(ConfigError) as info:
        load(path, environ={"WM_PROCESS_INDEX": str(n_cpus)})
    assert info.value.key == "engine.cores" and "fewer workers" in str(info.value)
    with pytest.raises(ConfigError) as info:
        load(sim(engine__launcher=["taskset", "-c", "{cores}"]), environ={})
    assert info.value.key == "engine.launcher[2]" and "engine.cores" in str(info.value)


def test_the_engine_environment_keeps_one_openmp_thread_unless_told(sim, monkeypatch):
    from streamrun.engines import ADAPTERS
    from streamrun.supervise import env_for_engine

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    adapter = ADAPTERS["lammps"]
    plain = load(sim(), environ={}).engine
    assert env_for_engine(plain, adapter)["OMP_NUM_THREADS"] == "1"
    told = load(sim(engine__env={"OMP_NUM_THREADS": 4}), environ={}).engine
    assert env_for_engine(told, adapter)["OMP_NUM_THREADS"] == "4"


#: Every key table of the config schema, with the prefix its keys have in a config.
def _schema():
    from streamrun import config

    return (("", config.TOP_KEYS), ("engine.", config.ENGINE_KEYS),
            ("stream.", config.STREAM_KEYS), ("files.<name>.", config.FILES_KEYS),
            ("trajectory.", config.TRAJECTORY_KEYS),
            ("get_pcoord.", config.GET_PCOORD_KEYS))


def test_the_schema_tables_are_what_the_config_accepts(sim):
    """The tables --help and the README are checked against are the ones the
    config refuses unknown keys with: a key cannot be accepted yet undocumented."""
    for key, tables in (("bogus", "TOP_KEYS"), ("engine__bogus", "ENGINE_KEYS"),
                        ("stream__bogus", "STREAM_KEYS"),
                        ("trajectory__bogus", "TRAJECTORY_KEYS"),
                        ("get_pcoord__bogus", "GET_PCOORD_KEYS")):
        _, message = error_of(sim(**{key: 1}))
        import streamrun.config as config

        allowed = message.split("Allowed: ", 1)[1].rstrip(".")
        assert allowed.split(", ") == list(getattr(config, tables)), key


def test_help_lists_every_config_key_and_coordinate():
    """``streamrun run --help`` is generated from the schema: every key, every
    engine adapter, every coordinate type and its options."""
    from click.testing import CliRunner

    from streamrun.cli import main
    from streamrun.engines import ADAPTERS
    from streamrun.pcoords import REGISTRY

    for command in ("run", "segment"):
        text = CliRunner().invoke(main, [command, "--help"]).output
        missing = [f"{prefix}{key}" for prefix, keys in _schema() for key in keys
                   if f"{prefix}{key} " not in text]
        assert not missing, f"streamrun {command} --help lacks {missing}"
        assert all(name in text for name in ADAPTERS)
        for kind, cls in REGISTRY.items():
            assert f"{kind} [{cls.units}]" in text
            assert all(option in text for option in cls.options), kind
    main_help = CliRunner().invoke(main, ["--help"]).output
    assert "check" in main_help


def test_the_readme_config_reference_lists_every_key():
    """``streamrun run --help`` prints the key tables of streamrun.config; the
    README's table is written by hand and must name each of them (a sub-key either
    with its own row or in its parent's row)."""
    from pathlib import Path

    from streamrun.engines import ADAPTERS

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    table = readme[readme.index("## Config reference"):readme.index("### Progress")]
    rows = {line.split("|")[1].strip().strip("`"): line
            for line in table.splitlines() if line.startswith("| `")}
    missing = []
    for prefix, keys in _schema():
        for key in keys:
            parent = prefix.split(".")[0]
            name = f"{prefix}{key}"
            if name in rows or any(r.startswith(f"{name}.") for r in rows) or \
                    (prefix and parent in rows and key in rows[parent]):
                continue
            missing.append(f"{prefix}{key}")
    assert not missing, f"README config reference lacks {missing}"
    assert all(f"`{name}`" in rows["engine.name"] for name in ADAPTERS)


@pytest.mark.parametrize("cache", ["on", "off"])
def test_a_warm_worker_parses_its_topology_once_until_the_file_changes(
        sim, tmp_path, monkeypatch, cache):
    """On the warm path one process runs many segments: the topology is parsed
    once (later segments take it from the topology cache, or from the process's
    memory when the cache is off), each segment's Universe gets its own copy with
    its own start coordinates, and an edited topology file is parsed again."""
    from streamrun import topocache
    from streamrun.pcoords import calculator

    monkeypatch.setenv("STREAMRUN_CACHE_DIR",
                       str(tmp_path / "cache") if cache == "on" else "off")
    parsed = []
    parse = topocache._parsed
    monkeypatch.setattr(topocache, "_parsed",
                        lambda *args: parsed.append(args) or parse(*args))
    path = sim(start="top.pdb")
    first = calculator_for(load(path, environ={}))
    second = calculator_for(load(path, environ={}))
    assert len(parsed) == 1
    assert first.universe._topology is not second.universe._topology
    assert (first.start_row() == second.start_row()).all()
    topology = tmp_path / "top.pdb"
    topology.write_text(topology.read_text().replace("NA ", "NA1", 1))
    calculator.parsed_topology(topology)
    assert len(parsed) == 2


def test_keys_given_twice_are_found_in_every_mapping_with_both_lines():
    """YAML loaders keep the last of two equal keys without a word; streamrun
    names each one, nested in lists too, and never expands aliases to look."""
    from streamrun.config import duplicate_keys

    text = ("engine:\n  nsteps: 10\n  nsteps: 20\n"
            "pcoord:\n  - {type: distance, a: type 1, a: type 2}\n"
            "streamrun:\n  x: 1\n  x: 2\n")
    assert duplicate_keys(text) == [("engine.nsteps", 2, 3), ("pcoord[0].a", 5, 5),
                                    ("streamrun.x", 7, 8)]
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
        for p, c in zip("abcdefgh", "bcdefghi"))
    assert duplicate_keys(bomb) == []
    assert duplicate_keys("a: [1, 2\n") == []  # not YAML: the loader reports it


def test_a_west_cfg_binds_only_the_configs_westpa_runs(sim, tmp_path):
    """$WEST_SIM_ROOT/west.cfg's pcoord_len applies when WESTPA runs the config,
    or when the config is that west.cfg; not to a one-off run of another file."""
    standalone = yaml.safe_load(sim().read_text())
    west = tmp_path  # the same folder: paths in both files are relative to it
    (west / "west.cfg").write_text(yaml.safe_dump({
        "west": {"system": {"system_options": {"pcoord_len": 21}}},
        "streamrun": standalone}))
    root = {"WEST_SIM_ROOT": str(west)}
    assert load(sim(), environ=root).rows == 11
    for started in ("WEST_CURRENT_SEG_ID", "WEST_CURRENT_SEG_DATA_REF",
                    "WEST_STRUCT_DATA_REF"):
        with pytest.raises(ConfigError, match=r"pcoord_len is 21 in .*west.cfg "
                           r"\(\$WEST_SIM_ROOT/west.cfg: WESTPA runs this config\)"):
            load(sim(), environ={**root, started: str(tmp_path)})
    with pytest.raises(ConfigError, match="pcoord_len is 21"):
        load(west / "west.cfg", environ=root)
