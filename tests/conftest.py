"""Shared fixtures: real engines, the example systems, and the orphan check.

Tests that need an engine program skip with a visible reason when it is absent,
unless ``STREAMRUN_REQUIRE_ENGINES`` names it (CI sets
``lammps,gromacs,westpa,openmm``): then a missing engine fails the test instead of
skipping it.
"""

import os
import shutil
import sys
import uuid
from pathlib import Path

import psutil
import pytest

from streamrun.engines import ADAPTERS, find_executable

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "example_sims"
ENGINE_PROGRAMS = {"lammps": "lmp", "gromacs": "gmx"}


def absent(name, message):
    """Skip the test with ``message``, or fail it when ``STREAMRUN_REQUIRE_ENGINES``
    names ``name`` (an engine, or westpa)."""
    if name in os.environ.get("STREAMRUN_REQUIRE_ENGINES", "").split(","):
        pytest.fail(message + f"; STREAMRUN_REQUIRE_ENGINES requires {name}")
    pytest.skip(message)


def _engine_or_skip(name):
    program = find_executable(ENGINE_PROGRAMS[name])
    if program is None:
        absent(name, f"{name} program '{ENGINE_PROGRAMS[name]}' not found next to "
                     f"Python or on PATH; {ADAPTERS[name].install_hint}")
    return program


@pytest.fixture(autouse=True, scope="session")
def topology_cache(tmp_path_factory):
    """streamrun's topology cache in a folder of this test session, for every test
    and every streamrun a test starts: tests never write to the user's cache."""
    patch = pytest.MonkeyPatch()
    folder = tmp_path_factory.mktemp("topology-cache")
    patch.setenv("STREAMRUN_CACHE_DIR", str(folder))
    yield folder
    patch.undo()


@pytest.fixture
def lmp():
    """Path of the LAMMPS program; skips (or fails in CI) when absent."""
    return _engine_or_skip("lammps")


@pytest.fixture
def gmx():
    """Path of the GROMACS program; skips (or fails in CI) when absent."""
    return _engine_or_skip("gromacs")


def processes_with_token(token):
    """Live processes (not zombies) whose environment carries ``token``: every
    process a test started, directly or through streamrun, and its descendants,
    even after they were re-parented."""
    found = []
    for p in psutil.process_iter(["pid", "status"]):
        if p.pid == os.getpid() or p.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        try:
            if p.environ().get("STREAMRUN_TEST_TOKEN") == token:
                found.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            pass
    return found


@pytest.fixture
def no_engine_left(monkeypatch):
    """Fail the test if any process it started (engine or launcher) is still running
    when it ends; checked with psutil through an environment token."""
    token = uuid.uuid4().hex
    monkeypatch.setenv("STREAMRUN_TEST_TOKEN", token)
    yield token
    leftover = processes_with_token(token)
    names = [f"{p.pid} {p.name()}" for p in leftover if p.is_running()]
    for p in leftover:  # clean up so one failure does not cascade
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    assert not names, f"processes left running: {names}"


@pytest.fixture
def nacl_lammps(tmp_path):
    """A private copy of example_sims/nacl_lammps to run segments in."""
    dest = tmp_path / "nacl_lammps"
    shutil.copytree(EXAMPLES / "nacl_lammps", dest)
    return dest


@pytest.fixture
def openmm():
    """The openmm Python package, importable by the Python running the tests (the
    OpenMM engine is a script run by it); skips (or fails when
    STREAMRUN_REQUIRE_ENGINES names openmm) when it is missing."""
    try:
        import openmm as module
    except ImportError:
        absent("openmm", f"openmm not installed for {sys.executable}; "
                         f"{ADAPTERS['openmm'].install_hint}")
    return module


@pytest.fixture
def nacl_openmm(tmp_path):
    """A private copy of example_sims/nacl_openmm (without WESTPA's run products)."""
    dest = tmp_path / "nacl_openmm"
    shutil.copytree(EXAMPLES / "nacl_openmm", dest, ignore=shutil.ignore_patterns(
        "__pycache__", "west.h5", "traj_segs", "seg_logs", "istates", "*.log"))
    return dest
