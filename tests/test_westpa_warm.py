"""The warm path: west.cfg's ``propagator: streamrun.propagator.StreamrunPropagator``
runs each ``executable: streamrun`` job inside WESTPA's worker processes (no
``streamrun`` process per segment). The same example simulation as test_westpa.py,
the same checks (pcoords in west.h5 = MDAnalysis on the engine's own dumps, row 0 =
the parent's last row), under the processes and the zmq work managers; a failing
segment is reported failed and the worker goes on."""

import re

import h5py
import pytest

from test_westpa import (ITERATIONS, add_engine_variable, check_simulation,  # noqa: F401
                         copy_example, edit, init, run, seg_dir, sim_env,
                         westpa_path)  # westpa_path: the fixture

pytestmark = [pytest.mark.engine("lammps"), pytest.mark.engine("westpa")]

WARM = "streamrun.propagator.StreamrunPropagator"


def warm_example(tmp_path):
    sim = copy_example(tmp_path, "westpa")
    edit(sim / "west.cfg", r"^( *)propagator: executable\b", rf"\1propagator: {WARM}")
    return sim


def worker_pids(sim):
    """WESTPA worker pid of every segment log, from streamrun's warm-path line."""
    pids = []
    for log in sorted((sim / "seg_logs").glob("*.log")):
        m = re.search(r"running in WESTPA worker pid (\d+) \(warm path", log.read_text())
        assert m, f"{log.name} has no warm-path line:\n{log.read_text()}"
        pids.append(int(m[1]))
    return pids


@pytest.mark.parametrize("manager", ["processes", "zmq"])
def test_the_warm_propagator_runs_every_segment_inside_the_workers(
        manager, lmp, westpa_path, tmp_path, no_engine_left):
    sim = warm_example(tmp_path)
    add_engine_variable(sim / "west.cfg", "dumpfile", "check.lammpstrj")
    env = sim_env(sim, westpa_path)
    init(sim, env)
    extra = (["--zmq-master-heartbeat", "1", "--zmq-worker-heartbeat", "1"]
             if manager == "zmq" else [])
    rc, out = run(["w_run", "--work-manager", manager, "--n-workers", "2", *extra],
                  sim, env, "run.log")
    assert rc == 0 and "WEST run complete." in out, out
    assert "ERROR" not in out, out
    counts = check_simulation(sim)
    # every segment ran in one of the two worker processes, each used again
    pids = worker_pids(sim)
    assert len(pids) == sum(counts) and len(set(pids)) <= 2, pids
    log = (sim / "seg_logs" / f"{ITERATIONS:06d}-000000.log").read_text()
    assert "alpha" in log and "engine launched" in log, log


def test_a_failing_segment_on_the_warm_path_is_failed_in_westpa_and_the_worker_lives(
        lmp, westpa_path, tmp_path, no_engine_left):
    """The engine cannot read its start file: streamrun's exit code reaches WESTPA
    (on this path it is not lost), every segment is failed, each seg log has the
    one-line error, and the workers, not killed by the failure, run every segment."""
    sim = warm_example(tmp_path)
    edit(sim / "west.cfg", r"^( *)start: parent\.data\b", r"\1start: missing.data")
    env = sim_env(sim, westpa_path)
    init(sim, env)
    _, out = run(["w_run", "--work-manager", "processes", "--n-workers", "2"], sim,
                 env, "run.log")
    assert "WEST run complete." not in out
    assert re.search(r"child process for segment \d+ exited with code [1-9]", out), out
    with h5py.File(sim / "west.h5", "r") as f:
        assert f.attrs["west_current_iteration"] == 1
        status = f["iterations/iter_00000001/seg_index"]["status"]
    from westpa.core.segment import Segment

    assert (status == Segment.SEG_STATUS_FAILED).all(), status
    for seg_id in range(len(status)):
        log = (sim / "seg_logs" / f"000001-{seg_id:06d}.log").read_text()
        assert "streamrun: error:" in log and "missing.data" in log, log
        assert not (seg_dir(sim, 1, seg_id) / "end.data").exists()
    assert len(worker_pids(sim)) == len(status)
