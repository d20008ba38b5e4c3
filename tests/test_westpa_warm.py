"""The warm path: west.cfg's ``propagator: streamrun.propagator.StreamrunPropagator``
runs each ``executable: streamrun`` job inside WESTPA's worker processes (no
``streamrun`` process per segment). The same example simulation as test_westpa.py,
the same checks (pcoords in west.h5 = MDAnalysis on the engine's own dumps, row 0 =
the parent's last row), under the processes and the zmq work managers; a failing
segment is reported failed and the worker goes on."""

import os
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


def probe_workers(sim):
    """Each engine prints the worker index it was given through engine.env and the
    CPUs it may run on, with `engine.cores: 1` and `launcher: [taskset, -c,
    "{cores}"]`: one core per worker, as on a cluster node."""
    edit(sim / "west.cfg", r"^( *)name: lammps\n",
         "\\g<0>\\1cores: 1\n\\1launcher: [taskset, -c, \"{cores}\"]\n"
         "\\1env: {STREAMRUN_TEST_WORKER: \"{worker}\"}\n")
    edit(sim.parent / "nacl.in", r"^units .*\n",
         "\\g<0>variable seen_worker getenv STREAMRUN_TEST_WORKER\n"
         "print \"seen: worker ${seen_worker}\"\n"
         "shell grep Cpus_allowed_list /proc/self/status\n")


def probed_workers(sim):
    """{worker: set of CPU lists its engines ran on}, from every segment's engine log."""
    seen = {}
    for log in sim.glob("traj_segs/*/*/streamrun-engine.log"):
        text = log.read_text()
        worker = re.search(r"^seen: worker (\d+)$", text, re.M)
        cpus = re.search(r"^Cpus_allowed_list:\s*(\S+)$", text, re.M)
        assert worker and cpus, f"{log}:\n{text[:2000]}"
        seen.setdefault(int(worker[1]), set()).add(cpus[1])
    return seen


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
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs 2 CPUs: one core per worker")
    sim = warm_example(tmp_path)
    add_engine_variable(sim / "west.cfg", "dumpfile", "check.lammpstrj")
    probe_workers(sim)
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
    # each worker's engines saw its own index and ran on its own core only
    cpus = sorted(os.sched_getaffinity(0))
    seen = probed_workers(sim)
    assert set(seen) <= {0, 1} and seen, seen
    for worker, lists in seen.items():
        assert lists == {str(cpus[worker])}, seen
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
