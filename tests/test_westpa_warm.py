"""The warm path: west.cfg's ``propagator: streamrun.propagator.StreamrunPropagator``
runs each ``executable: streamrun`` job in a process forked from WESTPA's worker
processes (no new ``streamrun`` program per segment). The same example simulation
as test_westpa.py, the same checks (pcoords in west.h5 = MDAnalysis on the engine's
own dumps, row 0 = the parent's last row), under the processes and the zmq work
managers; a failing segment is reported failed and the worker goes on, also when
the segment's process is killed (kill -9, as the OOM killer does) or exceeds its
memory limit."""

import os
import re
import signal
import time

import h5py
import psutil
import pytest

from conftest import processes_with_token
from streamrun.propagator import MEMORY_VAR, SEGMENT_VAR
from test_westpa import (ITERATIONS, ZMQ_TIMING, act_during_w_run,  # noqa: F401
                         add_engine_variable, check_simulation, copy_example,
                         ctrl_c_w_run, edit, finish,
                         init, run, seg_dir, sim_env, start,
                         westpa_path)  # westpa_path: fixture

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
    return [pid for pid, _ in forked_pids(sim)]


def forked_pids(sim):
    """(WESTPA worker pid, forked process pid) of every segment log."""
    pids = []
    for log in sorted((sim / "seg_logs").glob("*.log")):
        m = re.search(r"running in WESTPA worker pid (\d+) \(warm path.* forked "
                      r"process pid (\d+)\)", log.read_text())
        assert m, f"{log.name} has no warm-path line:\n{log.read_text()}"
        pids.append((int(m[1]), int(m[2])))
    return pids


def streaming_segment(token):
    """(forked segment process, its seg_id) of a segment whose engine runs now, or
    None: the process (of the test) whose own child is the engine launcher ``lmp``.
    Its /proc environment is the worker's (a fork, no exec): the seg_id is read from
    the engine's, which streamrun started with the segment's environment."""
    for p in processes_with_token(token):
        try:
            for child in p.children():
                if child.name() == "lmp" and SEGMENT_VAR in child.environ():
                    return p, int(child.environ()["WEST_CURRENT_SEG_ID"])
        except psutil.Error:
            pass
    return None


def long_segments(sim, nsteps=2000):
    """Segments of ``nsteps`` steps (a frame every 10), long enough to act on one
    while its engine runs."""
    cfg = sim / "west.cfg"
    edit(cfg, r"^( *)nsteps: 100\b", rf"\1nsteps: {nsteps}")
    edit(cfg, r"^( *)pcoord_len: 11\b", rf"\1pcoord_len: {nsteps // 10 + 1}")


def one_failed_segment(sim, out):
    """Iteration 1 ended with exactly one failed segment, the others complete, and
    w_run stopped there; returns (failed seg_id, statuses)."""
    from westpa.core.segment import Segment

    assert "WEST run complete." not in out, out
    assert "propagation failed for 1 segment(s)" in out, out
    with h5py.File(sim / "west.h5", "r") as f:
        assert f.attrs["west_current_iteration"] == 1
        status = f["iterations/iter_00000001/seg_index"]["status"]
    failed = [i for i, s in enumerate(status) if s == Segment.SEG_STATUS_FAILED]
    assert len(failed) == 1 and len(status) >= 2, status
    assert all(s == Segment.SEG_STATUS_COMPLETE for i, s in enumerate(status)
               if i not in failed), status
    return failed[0], status


def nothing_left(token, within=15.0):
    """No process of the test is left (engines, forked segments) within ``within`` s
    of w_run's end; the no_engine_left fixture checks again."""
    deadline = time.monotonic() + within
    while processes_with_token(token) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = [f"{p.pid} {p.name()}" for p in processes_with_token(token)]
    assert not left, f"still running after w_run: {left}"


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
    extra = ZMQ_TIMING if manager == "zmq" else []
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


@pytest.mark.parametrize("manager", ["processes", "zmq"])
def test_a_segment_killed_with_kill_9_fails_alone_and_the_worker_runs_the_next(
        manager, lmp, westpa_path, tmp_path, no_engine_left):
    """kill -9 of a segment's process while its engine streams (what the OOM killer
    does): WESTPA reports that segment failed on SIGKILL, the same worker runs the
    other segment of the iteration, w_run ends (before the fork, the processes work
    manager hung forever), the seg log says why in one line, and no engine is left."""
    sim = warm_example(tmp_path)
    long_segments(sim)
    env = sim_env(sim, westpa_path)
    init(sim, env)
    extra = ZMQ_TIMING if manager == "zmq" else []
    proc = start(["w_run", "--work-manager", manager, "--n-workers", "1", *extra],
                 sim, env, "run.log")

    def kill(found):
        time.sleep(0.5)  # streaming by now
        engines = found[0].children(recursive=True)
        found[0].send_signal(signal.SIGKILL)
        return engines

    rc, (victim, seg_id), engines = act_during_w_run(
        proc, sim, lambda: streaming_segment(no_engine_left), kill,
        "kill -9 of a segment's process")
    out = (sim / "run.log").read_text()
    assert rc == 0, out
    failed, status = one_failed_segment(sim, out)
    assert failed == seg_id
    assert f"child process for segment {seg_id} exited on signal 9 (SIGKILL)" in out
    log = (sim / "seg_logs" / f"000001-{seg_id:06d}.log").read_text()
    assert re.search(rf"streamrun: error: the segment's process \(pid {victim.pid}, "
                     r"forked from WESTPA worker pid \d+\) was killed by SIGKILL "
                     r"\(signal 9: the kernel's OOM killer, or kill -9\); (nothing it "
                     r"started is left running|stopped what it left running: [^;]*); "
                     r"the segment failed, the worker goes on\n$", log), log
    assert not any(e.is_running() and e.status() != psutil.STATUS_ZOMBIE
                   for e in engines), engines
    # one worker ran every segment, each in a process of its own
    pids = forked_pids(sim)
    assert len(pids) == len(status) and len({w for w, _ in pids}) == 1, pids
    assert len({f for _, f in pids}) == len(pids), pids
    nothing_left(no_engine_left)


def test_a_plugin_that_exceeds_the_memory_limit_fails_its_segment_only(
        lmp, westpa_path, tmp_path, no_engine_left):
    """STREAMRUN_SEGMENT_MEMORY_MB (west.cfg west.executable.environ): a pcoord
    plugin that allocates 50 MiB per frame in segment 0 only is killed at the limit;
    segment 0 fails with one line in its seg log, the same worker runs segment 1
    (whose plugin leaks nothing) to the end, and no engine is left."""
    sim = warm_example(tmp_path)
    long_segments(sim, nsteps=1000)
    (sim / "hog.py").write_text(
        "import os\n"
        "import time\n"
        "from MDAnalysis.lib.distances import calc_bonds\n"
        "held = []\n"
        "def na_cl(u, na, cl):\n"
        "    # segment 0 leaks 50 MiB a frame, up to 3 GiB (a safety stop)\n"
        "    if os.environ.get('WEST_CURRENT_SEG_ID') == '0' and len(held) < 60:\n"
        "        held.append(b'x' * (50 << 20))\n"
        "        time.sleep(0.2)  # 250 MiB/s: the 0.25 s check may be late\n"
        "    return calc_bonds(na.positions[0], cl.positions[0], box=u.dimensions)\n")
    cfg = sim / "west.cfg"
    edit(cfg, r"^( *)environ: \{\}", rf"\1environ: {{{MEMORY_VAR}: 1200}}")
    edit(cfg, r"^  pcoord:\n(    .*\n)+",
         "  pcoord:\n    - {type: plugin, name: na_cl, function: 'hog.py:na_cl', "
         "selections: ['type 3', 'type 4']}\n")
    env = sim_env(sim, westpa_path)
    init(sim, env)
    rc, out = run(["w_run", "--work-manager", "processes", "--n-workers", "1"], sim,
                  env, "run.log")
    assert rc == 0, out
    failed, status = one_failed_segment(sim, out)
    assert failed == 0
    assert "child process for segment 0 exited on signal 9 (SIGKILL)" in out, out
    log = (sim / "seg_logs" / "000001-000000.log").read_text()
    m = re.search(r"streamrun: error: the segment's process \(pid \d+, forked from "
                  r"WESTPA worker pid \d+\) used (\d+) MiB of memory \(resident, "
                  r"\d+ MiB of it at most shared with the worker\), more than "
                  rf"{MEMORY_VAR}=1200, and was killed; .*the worker goes on\n$", log)
    assert m and 1200 < int(m[1]) < 2500, log
    pids = forked_pids(sim)
    assert len(pids) == len(status) and len({w for w, _ in pids}) == 1, pids
    nothing_left(no_engine_left)


def test_ctrl_c_on_w_run_stops_every_forked_segment_and_engine(
        lmp, westpa_path, tmp_path, no_engine_left):
    """Ctrl-C in the terminal (SIGINT to w_run's process group, which the forked
    segments share with their workers) while segments stream: w_run shuts down and
    no forked segment or LAMMPS process outlives it."""
    sim = warm_example(tmp_path)
    long_segments(sim, nsteps=4000)
    env = sim_env(sim, westpa_path)
    init(sim, env)
    ctrl_c_w_run(sim, env, lambda: streaming_segment(no_engine_left) is not None)
    nothing_left(no_engine_left)


def test_under_the_threads_work_manager_segments_run_as_streamrun_programs(
        lmp, westpa_path, tmp_path, no_engine_left):
    """The threads work manager runs segments in threads other than the main one,
    where a fork can copy a lock another segment's thread holds (a forked segment
    hung there): the propagator runs `streamrun` programs instead, says so once, and
    the run completes."""
    sim = warm_example(tmp_path)
    env = sim_env(sim, westpa_path)
    init(sim, env)
    rc, out = run(["w_run", "--work-manager", "threads", "--n-workers", "2"], sim,
                  env, "run.log")
    assert rc == 0 and "WEST run complete." in out, out
    assert out.count("forks segments only from a worker's main thread") == 1, out
    logs = [p.read_text() for p in (sim / "seg_logs").glob("*.log")]
    assert logs and not any("warm path" in text for text in logs), logs
    check_simulation(sim, check_dumps=False)
