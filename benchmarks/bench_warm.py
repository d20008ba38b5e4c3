"""Benchmark 6 - the warm path: a segment inside a WESTPA worker vs the engine alone.

One Python process stands in for a WESTPA worker: it runs the example segment
(917 atoms; the streamrun: section of example_sims/nacl_lammps/westpa/west.cfg with
500 steps, a frame every 10) again and again through ``streamrun.propagator.run_in_worker``, the call
``StreamrunPropagator`` makes for each segment, with the ``WEST_*`` environment
``ExecutablePropagator`` builds for a segment started from the basis state. Its
first segment pays the imports and the topology and is not counted. After it,
interleaved in pairs:

  warm   one segment through run_in_worker (same seed every time)
  alone  the engine alone: ``lmp -in`` the same input minus its fix imd line, the
         same steps and seed, output to a file

Reported: warm wall / engine-alone wall (median of the per-pair ratios), and the
warm path's CPU beyond the engine, two ways: the job's CPU (the worker and its
reaped engine, as run_in_worker reports it to WESTPA) minus the engine-alone
run's CPU; and the worker's own CPU over the segment (RUSAGE_SELF: every thread of
streamrun, nothing of the engine). Targets (issue 14): ratio <= 1.05, CPU beyond
the engine <= 0.1 s.

    python bench_warm.py worker SPEC   # the stand-in worker (started by run())
"""

from __future__ import annotations

import itertools
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_westpa import engine_input, make_sims, reset
from common import (bench_env, check, column, failure_note, failures, interleave,
                    lmp_segment_cmd, load_note, med, paired_ratios, spread, table,
                    timed_run, verdict)

TARGET_RATIO = 1.05
TARGET_CPU = 0.1
SEED = 4928459  # the example's; streamrun's {seed} is WEST_RAND32 % (2^31 - 2) + 1


def own_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def median_range(values) -> list[str]:
    """Median and range for the table ('-' where no run succeeded)."""
    values = [v for v in values if v is not None]
    if not values:
        return ["-", "-"]
    return [f"{med(values):.3f}", "{:.3f} to {:.3f}".format(*spread(values))]


def segment_environ(sim: Path, seg_id: int, pcoord_return: str) -> dict:
    """The environment ExecutablePropagator gives a segment of iteration 1 that
    starts from the basis state (SEG_INITPOINT_NEWTRAJ)."""
    bstate = str(sim / "bstates" / "start.data")
    env = dict(os.environ)
    env.update(WEST_SIM_ROOT=str(sim), WEST_CURRENT_ITER="1",
               WEST_CURRENT_SEG_ID=str(seg_id),
               WEST_CURRENT_SEG_DATA_REF=str(sim / "traj_segs" / "000001" / f"{seg_id:06d}"),
               WEST_CURRENT_SEG_INITPOINT_TYPE="SEG_INITPOINT_NEWTRAJ",
               WEST_BSTATE_ID="0", WEST_BSTATE_DATA_REF=bstate,
               WEST_ISTATE_ID=str(seg_id),
               WEST_ISTATE_DATA_REF=str(sim / "istates" / "1" / str(seg_id)),
               WEST_PARENT_DATA_REF=bstate, WEST_PCOORD_RETURN=pcoord_return,
               WEST_RAND16="4242", WEST_RAND32=str(SEED - 1), WEST_RAND64="42",
               WEST_RAND128="42", WEST_RANDFLOAT="0.42")
    return env


def worker(spec: dict) -> None:
    """The stand-in WESTPA worker: a cold segment, then ``pairs`` interleaved pairs;
    prints the results as one JSON line."""
    from streamrun.propagator import run_in_worker

    sim, rows = Path(spec["sim"]), spec["nsteps"] // spec["every"] + 1
    alone_cmd = [*lmp_segment_cmd(Path(spec["alone_in"]), spec["every"], spec["nsteps"]),
                 "-var", "start", spec["start"], "-var", "seed", str(SEED)]
    # run numbers of their own: interleave counts from 0 in each call
    seg_ids, alone_ids = itertools.count(), itertools.count()

    def warm(i):
        seg_id = next(seg_ids)
        fd, pcoord_return = tempfile.mkstemp(dir=sim, suffix=".pcoord")  # as WESTPA
        os.close(fd)
        env = segment_environ(sim, seg_id, pcoord_return)
        folder = Path(env["WEST_CURRENT_SEG_DATA_REF"])
        folder.mkdir(parents=True)  # WESTPA's prepare_file_system
        log = sim / "seg_logs" / f"000001-{seg_id:06d}.log"
        c0, t0 = own_cpu(), time.perf_counter()
        code, usage = run_in_worker(env, folder, log, "stdout")
        wall, own = time.perf_counter() - t0, own_cpu() - c0
        written = [line for line in Path(pcoord_return).read_text()
                   .splitlines() if line.strip() and not line.startswith("#")]
        if code != 0 or len(written) != rows:
            raise RuntimeError(f"warm segment {seg_id}: exit code {code}, "
                               f"{len(written)} of {rows} pcoord rows; "
                               f"{log.read_text()[-1500:]}")
        job = usage.ru_utime + usage.ru_stime
        return {"wall": wall, "job_cpu": job, "own_cpu": own, "engine_cpu": job - own}

    def alone(i):
        folder = sim / "alone" / str(next(alone_ids))
        folder.mkdir(parents=True)
        log = folder / "engine.log"
        t = check(timed_run(alone_cmd, folder, stdout_path=log), "engine alone", log)
        return {"wall": t.wall, "cpu": t.cpu}

    def say(msg):
        print(msg, file=sys.stderr, flush=True)

    say("first segment of the worker (imports, topology): not counted")
    cold = interleave({"warm": warm, "alone": alone}, 1, say)
    res = interleave({"warm": warm, "alone": alone}, spec["pairs"], say)
    print(json.dumps({"cold": cold, "results": res}))


def run(args, work, say):
    nsteps = args.nsteps or 500
    every = args.every
    pairs = args.repeats or (3 if args.quick else 9)
    sim = make_sims(work, 1, 1, nsteps, every, names=("w",))[0]["w"]
    reset(sim)  # traj_segs, seg_logs, istates
    alone_in = sim.parent / "alone.in"
    alone_in.write_text(engine_input((sim.parent / "nacl.in").read_text()))
    spec = {"sim": str(sim), "alone_in": str(alone_in), "nsteps": nsteps,
            "every": every, "pairs": pairs, "start": str(sim / "bstates" / "start.data")}
    say(f"917 atoms, {nsteps} steps, a frame every {every}; {pairs} pairs after the "
        f"worker's first segment; worker = {sys.executable} {Path(__file__).name} worker")
    proc = subprocess.run([sys.executable, __file__, "worker", json.dumps(spec)],
                          cwd=work, env=bench_env(), stdout=subprocess.PIPE, text=True,
                          timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(f"the stand-in worker failed with exit code {proc.returncode}")
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    res, cold = data["results"], data["cold"]
    warm, alone = res["warm"], res["alone"]

    ratios = paired_ratios(column(warm, "wall"), column(alone, "wall"))
    beyond = [w - a for w, a in zip(column(warm, "job_cpu"), column(alone, "cpu"))
              if None not in (w, a)]
    own = [x for x in column(warm, "own_cpu") if x is not None]
    out = {"benchmark": "warm", "target": f"warm/engine alone <= {TARGET_RATIO}, CPU "
           f"beyond the engine <= {TARGET_CPU} s", "nsteps": nsteps,
           "frame_interval": every, "pairs": pairs,
           "warm_over_alone_median": med(ratios),
           "warm_over_alone_each": [round(r, 4) for r in ratios],
           "cpu_job_minus_alone_median": med(beyond), "cpu_job_minus_alone_range":
           spread(beyond), "cpu_worker_own_median": med(own),
           "cpu_worker_own_range": spread(own), "cold_segment": cold, "runs": res}

    rows = [["warm segment (job: worker + engine)", *median_range(column(warm, "wall")),
             *median_range(column(warm, "job_cpu"))],
            ["  the worker's own CPU", "", "", *median_range(column(warm, "own_cpu"))],
            ["  the engine's CPU", "", "", *median_range(column(warm, "engine_cpu"))],
            ["engine alone", *median_range(column(alone, "wall")),
             *median_range(column(alone, "cpu"))],
            ["warm / engine alone (paired)", *median_range(ratios), "", ""],
            ["CPU job - engine alone (paired)", "", "", *median_range(beyond)]]
    text = table(rows, ["", "wall s (median)", "range", "CPU s (median)", "range"])
    r, b, o = med(ratios), med(beyond), med(own)
    out["result"] = {"warm_over_alone": r, "cpu_job_minus_alone": b,
                     "cpu_worker_own": o,
                     "verdict": f"warm/alone {verdict(r, TARGET_RATIO, '<=')}; CPU "
                                f"beyond the engine: worker's own "
                                f"{verdict(o, TARGET_CPU, '<=')}, job - engine alone "
                                f"{verdict(b, TARGET_CPU, '<=')}"}
    text += (f"\n\nwarm / engine alone per pair: {', '.join(f'{x:.3f}' for x in ratios)}."
             f"\nCPU beyond the engine per segment: the worker's own (RUSAGE_SELF) "
             f"{o:.3f} s, job - engine alone {b:.3f} s (medians).")
    cw = cold["warm"][0]
    if "wall" in cw:
        text += (f"\nThe worker's first (cold) segment, not counted: wall {cw['wall']:.2f} "
                 f"s, the worker's own CPU {cw['own_cpu']:.2f} s.")
    text += f"\n{load_note(res)}\n{out['result']['verdict']}"
    out["failures"] = failures(res)
    text += failure_note(res)
    return out, text


if __name__ == "__main__":
    if sys.argv[1:2] != ["worker"]:
        sys.exit(f"usage: {sys.argv[0]} worker SPEC (run it as benchmarks/run.py warm)")
    worker(json.loads(sys.argv[2]))
