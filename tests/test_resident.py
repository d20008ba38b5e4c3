"""The resident OpenMM engine: on the warm path, each WESTPA worker keeps the user's
script (one that loops over ``streamrun.openmm.segments()``) running between its
segments, so a segment pays its MD and not Python, OpenMM and Context start-up.

The user's story, on example_sims/nacl_openmm/westpa as shipped (its script and its
west.cfg use the resident engine), under w_run with the processes and the zmq work
managers: every segment's pcoord is what MDAnalysis computes on a DCD the same
engine wrote at the streamed steps, row 0 is the parent's last row, siblings
diverge, each worker's engine serves its segments after the first, and nothing is
left when w_run ends. A resident engine killed in the middle of a segment fails
that segment alone; the worker starts a fresh engine, and the resumed simulation
completes.
"""

import os
import re
import shutil
import signal
import subprocess
import time

import h5py
import numpy as np
import psutil
import pytest

from conftest import processes_with_token
from streamrun.openmm import RESIDENT_VAR
from test_openmm import na_cl_on_dcd, westpa_bin  # noqa: F401,F811 (westpa_bin: fixture)
from test_westpa import (ZMQ_TIMING, act_during_w_run, add_engine_variable,
                         ctrl_c_w_run, edit, finish, start)

pytestmark = [pytest.mark.engine("openmm"), pytest.mark.engine("westpa")]

ITERATIONS = 3


def example(nacl_openmm, westpa_bin, iterations=ITERATIONS, nsteps=100):
    """The WESTPA example as shipped, with a DCD written by each segment's engine
    (``engine.variables.dcd``); returns (simulation folder, environment)."""
    sim = nacl_openmm / "westpa"
    cfg = sim / "west.cfg"
    edit(cfg, r"max_total_iterations: \d+", f"max_total_iterations: {iterations}")
    if nsteps != 100:
        edit(cfg, r"^( *)nsteps: 100\b", rf"\1nsteps: {nsteps}")
        edit(cfg, r"^( *)pcoord_len: 11\b", rf"\1pcoord_len: {nsteps // 10 + 1}")
    add_engine_variable(cfg, "dcd", "seg.dcd")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("WEST_") and k != "STREAMRUN_CONFIG"}
    env.update(PATH=f"{westpa_bin}{os.pathsep}{env.get('PATH', '')}",
               WEST_SIM_ROOT=str(sim))
    proc = subprocess.run(["./init.sh"], cwd=sim, env=env, capture_output=True,
                          text=True, timeout=240)
    assert proc.returncode == 0 and "ERROR" not in proc.stdout, \
        proc.stdout + proc.stderr
    return sim, env


def iterations(sim):
    with h5py.File(sim / "west.h5", "r") as f:
        done = f.attrs["west_current_iteration"] - 1
        bstate = f["ibstates/0/bstate_pcoord"][0, 0]
        return bstate, [(f[f"iterations/iter_{n:08d}/seg_index"][:],
                         f[f"iterations/iter_{n:08d}/pcoord"][:])
                        for n in range(1, done + 1)]


def check_against_dcds(nacl_openmm, sim, expect_iterations):
    """Every segment complete; its rows 1.. = MDAnalysis on its own DCD, row 0 =
    the parent's last row (the basis state's pcoord in iteration 1), siblings
    differ. Returns the number of segments."""
    from westpa.core.segment import Segment

    bstate, its = iterations(sim)
    assert len(its) == expect_iterations
    total = 0
    for n, (index, pcoord) in enumerate(its, start=1):
        assert (index["status"] == Segment.SEG_STATUS_COMPLETE).all(), index["status"]
        for seg_id, (rows, parent) in enumerate(zip(pcoord[:, :, 0],
                                                    index["parent_id"])):
            folder = sim / "traj_segs" / f"{n:06d}" / f"{seg_id:06d}"
            np.testing.assert_allclose(
                rows[1:], na_cl_on_dcd(nacl_openmm, folder / "seg.dcd"), atol=1e-3,
                rtol=0, err_msg=f"iteration {n} segment {seg_id}")
            expected = bstate if n == 1 else its[n - 2][1][parent, -1, 0]
            assert abs(rows[0] - expected) <= 1e-4, (n, seg_id, rows[0], expected)
        for parent in set(index["parent_id"]):
            ends = pcoord[index["parent_id"] == parent, -1, 0]
            assert len(set(ends.tolist())) == len(ends), \
                f"iteration {n}: siblings of {parent} ended identically: {ends}"
        total += len(index)
    return total


def resident_segments(sim):
    """{seg log name: resident engine pid} of the segments a resident engine ran."""
    found = {}
    for log in sorted((sim / "seg_logs").glob("0*.log")):
        m = re.search(r"; resident engine pid (\d+), its segment (\d+)$",
                      log.read_text(), re.M)
        if m:
            found[log.name] = int(m[1])
    return found


def nothing_left(token, within=15.0):
    """No process of the test (resident engine, its watchdog) is left within
    ``within`` s of w_run's end (a watchdog whose worker died may sleep 3 s)."""
    deadline = time.monotonic() + within
    while processes_with_token(token) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = [f"{p.pid} {' '.join(_cmdline(p))}" for p in processes_with_token(token)]
    assert not left, f"still running after w_run: {left}"


def _cmdline(p):
    try:
        return p.cmdline()
    except psutil.Error:
        return []


def resident_engines(token):
    """Running resident engines of this test (their launch environment has the
    control socket variable and the test's token)."""
    return [p for p in processes_with_token(token)
            if RESIDENT_VAR in _environ(p) and p.status() != psutil.STATUS_ZOMBIE]


def _environ(p):
    try:
        return p.environ()
    except psutil.Error:
        return {}


@pytest.mark.parametrize("manager", ["processes", "zmq"])
def test_each_worker_keeps_its_openmm_engine_and_every_pcoord_matches_its_dcd(
        manager, openmm, westpa_bin, nacl_openmm, no_engine_left):
    sim, env = example(nacl_openmm, westpa_bin)
    extra = ZMQ_TIMING if manager == "zmq" else []
    proc = start(["w_run", "--work-manager", manager, "--n-workers", "2", *extra],
                 sim, env, "run.log")
    rc = finish(proc, 300, "w_run")
    out = (sim / "run.log").read_text()
    assert rc == 0 and "WEST run complete." in out, out
    total = check_against_dcds(nacl_openmm, sim, ITERATIONS)
    # every segment after a worker's first ran in that worker's resident engine:
    # at most one engine per worker, each serving several segments
    served = resident_segments(sim)
    engines = set(served.values())
    assert 1 <= len(engines) <= 2, served
    assert len(served) >= total - 2, (len(served), total)
    for pid in engines:
        assert list(served.values()).count(pid) >= 2, served
    logs = list((sim / "seg_logs").glob("streamrun-resident-*.log"))
    assert logs and all("resident engine of streamrun" in p.read_text()
                        for p in logs), logs
    nothing_left(no_engine_left)


def streaming(token):
    """A resident engine of this test that has its IMD client now, or None."""
    for p in resident_engines(token):
        try:
            if any(c.status == psutil.CONN_ESTABLISHED for c in p.net_connections("tcp")):
                return p
        except psutil.Error:
            pass
    return None


def test_ctrl_c_on_w_run_stops_the_resident_engines(
        openmm, westpa_bin, nacl_openmm, no_engine_left):
    """Ctrl-C in the terminal while resident engines stream: w_run shuts down and
    no engine (nor its watchdog) outlives it."""
    sim, env = example(nacl_openmm, westpa_bin, iterations=3, nsteps=1000)
    ctrl_c_w_run(sim, env, lambda: streaming(no_engine_left) is not None)
    nothing_left(no_engine_left)


def test_a_resident_engine_killed_mid_segment_fails_that_segment_alone(
        openmm, westpa_bin, nacl_openmm, no_engine_left):
    """kill -9 of the resident engine while it streams a segment: WESTPA reports
    that segment failed with streamrun's one-line reason, the other segment of the
    iteration completes, the worker starts a fresh engine (said in the seg log),
    and w_run, run again, resumes and completes with correct pcoords."""
    from westpa.core.segment import Segment

    sim, env = example(nacl_openmm, westpa_bin, iterations=2, nsteps=1000)
    proc = start(["w_run", "--work-manager", "processes", "--n-workers", "1"], sim,
                 env, "run.log")

    def kill(victim):
        folder = victim.cwd()  # the segment's
        victim.send_signal(signal.SIGKILL)
        return folder

    rc, _, folder = act_during_w_run(proc, sim, lambda: streaming(no_engine_left),
                                     kill, "kill -9 of the resident engine", within=120)
    out = (sim / "run.log").read_text()
    assert rc == 0 and "propagation failed for 1 segment(s)" in out, out
    seg_id = int(os.path.basename(folder))
    with h5py.File(sim / "west.h5", "r") as f:
        status = f["iterations/iter_00000001/seg_index"]["status"]
    assert status[seg_id] == Segment.SEG_STATUS_FAILED, status
    assert all(s == Segment.SEG_STATUS_COMPLETE for i, s in enumerate(status)
               if i != seg_id), status
    log = (sim / "seg_logs" / f"000001-{seg_id:06d}.log").read_text()
    assert re.search(r"streamrun: error: .*resident, pid \d+\) ended before its "
                     r"segment was done", log), log
    assert re.search(r"started the resident engine \(pid \d+\) after the failed "
                     r"segment", log), log
    nothing_left(no_engine_left)

    # w_run again: the failed segment runs again, then iteration 2
    shutil.copy(sim / "run.log", sim / "run1.log")
    proc = start(["w_run", "--work-manager", "processes", "--n-workers", "1"], sim,
                 env, "run.log")
    rc = finish(proc, 300, "w_run, resumed")
    out = (sim / "run.log").read_text()
    assert rc == 0 and "WEST run complete." in out, out
    check_against_dcds(nacl_openmm, sim, 2)


def test_an_exception_in_a_resident_segment_fails_it_with_the_scripts_error(
        openmm, westpa_bin, nacl_openmm, no_engine_left):
    """The loop's body raises in the resident engine's first segment: that segment
    fails with the script's exception as its one-line reason (its traceback is in
    the segment's engine log), the other completes, the worker starts a fresh
    engine, and nothing is left."""
    from westpa.core.segment import Segment

    script = nacl_openmm / "nacl_prod.py"
    text = script.read_text()
    body = "    simulation.step(segment.nsteps)\n"
    assert body in text
    script.write_text(text.replace(body, "    if segment.resident and segment.number "
                                         "== 1:\n        raise RuntimeError('the "
                                         "integrator blew up')\n" + body))
    sim, env = example(nacl_openmm, westpa_bin, iterations=1)
    proc = start(["w_run", "--work-manager", "processes", "--n-workers", "1"], sim,
                 env, "run.log")
    rc = finish(proc, 240, "w_run")
    out = (sim / "run.log").read_text()
    assert rc == 0 and "propagation failed for 1 segment(s)" in out, out
    with h5py.File(sim / "west.h5", "r") as f:
        status = list(f["iterations/iter_00000001/seg_index"]["status"])
    assert status == [Segment.SEG_STATUS_COMPLETE, Segment.SEG_STATUS_FAILED], status
    log = (sim / "seg_logs" / "000001-000001.log").read_text()
    assert re.search(r"streamrun: error: .*RuntimeError: the integrator blew up", log), log
    assert "started the resident engine" in log, log
    engine_log = (sim / "traj_segs" / "000001" / "000001" /
                  "streamrun-engine.log").read_text()
    assert "Traceback (most recent call last)" in engine_log, engine_log
    nothing_left(no_engine_left)
