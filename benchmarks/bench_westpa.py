"""Benchmark 5 - WESTPA throughput (segments per minute, 2 workers).

The example WESTPA simulation (example_sims/nacl_lammps/westpa: Na-Cl distance,
LAMMPS, 100-step segments, 11 pcoord rows), copied to a temporary folder, run with
``w_run --work-manager processes --n-workers 2`` two ways:

  s  streamrun is the propagator (the example's west.cfg as shipped: ``executable:
     streamrun``, settings in its ``streamrun:`` section);
  w  the warm path: the same, with ``propagator:
     streamrun.propagator.StreamrunPropagator`` (segments run inside the workers);
  c  a classic runseg.sh: links the parent's end.data, runs ``lmp`` with the same
     input minus the fix imd line plus a DCD dump (every 10 steps, step 0
     included), then ``python posthoc.py`` (a new process, MDAnalysis) writes the
     11-row pcoord from the DCD; get_pcoord.sh likewise.

So that both runs do the same amount of work whatever the random pcoords, the bins
are replaced by one bin holding ``--segments`` walkers (default 4), so every
iteration has exactly that many segments. Each repeat is a fresh w_init (not timed)
and a timed w_run of N iterations; s and c are interleaved. Reported: segments per
minute over the w_run wall time, and over WESTPA's own per-iteration wall times
(without w_run's start-up). Targets (issue 14): s/c >= 1.1, w/c >= 1.5.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import sys
from pathlib import Path

import yaml

from common import (EXAMPLE, HERE, bench_env, check, column, failure_note, failures,
                    interleave, load_note, med, paired_ratios, spread, table,
                    timed_run, venv_bin, verdict)

TARGET = 1.1       # s/c
TARGET_WARM = 1.5  # w/c

RUNSEG = """#!/bin/bash
# classic runseg.sh: engine writes a trajectory, then a new python process
# computes the pcoord from it (as WESTPA's tutorials do)
set -euo pipefail
cd "$WEST_CURRENT_SEG_DATA_REF"
case "$WEST_CURRENT_SEG_INITPOINT_TYPE" in
  SEG_INITPOINT_CONTINUES) ln -s "$WEST_PARENT_DATA_REF/end.data" parent.data ;;
  SEG_INITPOINT_NEWTRAJ)   ln -s "$WEST_PARENT_DATA_REF" parent.data ;;
esac
{lmp} -in "$WEST_SIM_ROOT/../classic.in" -log none -nocite -var start parent.data \\
  -var seed "1$WEST_RAND16" -var streamrun_every {every} -var streamrun_nsteps {nsteps} \\
  > seg.log 2>&1
{python} {posthoc} "$WEST_SIM_ROOT/../start.data" seg.dcd "$WEST_PCOORD_RETURN" \\
  --distance "type 3" "type 4"
"""

GET_PCOORD = """#!/bin/bash
set -euo pipefail
{python} {posthoc} "$WEST_SIM_ROOT/../start.data" "$WEST_STRUCT_DATA_REF" \\
  "$WEST_PCOORD_RETURN" --format DATA --distance "type 3" "type 4"
"""

#: used only if example_sims/nacl_lammps/westpa is missing
MINIMAL_WEST_CFG = {
    "west": {
        "system": {"driver": "westpa.core.systems.WESTSystem",
                   "system_options": {"pcoord_ndim": 1, "pcoord_len": 11,
                                      "pcoord_dtype": "float32",
                                      "bins": {"type": "RectilinearBinMapper",
                                               "boundaries": [[0.0, "inf"]]},
                                      "bin_target_counts": 4}},
        "propagation": {"max_total_iterations": 3, "max_run_wallclock": "1:00:00",
                        "propagator": "executable", "gen_istates": False},
        "data": {"west_data_file": "west.h5", "data_refs": {
            "segment": "$WEST_SIM_ROOT/traj_segs/{segment.n_iter:06d}/{segment.seg_id:06d}",
            "basis_state": "$WEST_SIM_ROOT/bstates/{basis_state.auxref}",
            "initial_state": "$WEST_SIM_ROOT/istates/{initial_state.iter_created}/"
                             "{initial_state.state_id}"}},
        "executable": {"environ": {}, "propagator": {
            "executable": "streamrun",
            "stdout": "$WEST_SIM_ROOT/seg_logs/{segment.n_iter:06d}-{segment.seg_id:06d}.log",
            "stderr": "stdout"}, "get_pcoord": {"executable": "streamrun"}}},
    "streamrun": {
        "engine": {"name": "lammps", "input": "../nacl.in", "nsteps": 100,
                   "frame_interval": 10,
                   "variables": {"start": "parent.data", "seed": "1{rand16}"}},
        "files": {"parent.data": {"continues": "{parent}/end.data",
                                  "newtraj": "{parent}"}},
        "topology": "../start.data", "start": "{workdir}/parent.data",
        "pcoord": [{"type": "distance", "name": "na_cl", "a": "type 3", "b": "type 4"}]},
}


def engine_input(nacl_in: str, output: str = "") -> str:
    """nacl.in with its fix imd line replaced by ``output`` (nothing: the engine
    alone)."""
    text, n = re.subn(r"^fix\s+\S+\s+all\s+imd\s.*$", output, nacl_in, count=1,
                      flags=re.M)
    if n != 1:
        raise RuntimeError("no fix imd line found in nacl.in")
    return text


def classic_input(nacl_in: str) -> str:
    """nacl.in without its fix imd line, with a DCD dump of unwrapped coordinates."""
    return engine_input(nacl_in, "dump traj all dcd ${streamrun_every} seg.dcd\n"
                                 "dump_modify traj unwrap yes")


def init_and_run(sim, name, **extra):
    """``w_init`` (serial, not timed), then a timed ``w_run`` with 2 workers of the
    processes work manager, in ``sim`` with ``extra`` in the environment and no
    WEST_* variable or STREAMRUN_CONFIG from outside; returns w_run's timed run."""
    env = bench_env(WEST_SIM_ROOT=sim, MPLBACKEND="Agg", **extra)
    for k in [k for k in env if k.startswith("WEST_") and k != "WEST_SIM_ROOT"]:
        del env[k]
    env.pop("STREAMRUN_CONFIG", None)
    check(timed_run([venv_bin("w_init"), "--bstate-file", "bstates/bstates.txt",
                     "--work-manager", "serial"], sim, env=env), f"w_init ({name})")
    return check(timed_run([venv_bin("w_run"), "--work-manager", "processes",
                            "--n-workers", "2"], sim, env=env), f"w_run ({name})")


def edit(text: str, pattern: str, replacement: str) -> str:
    out, n = re.subn(pattern, replacement, text, count=1, flags=re.M)
    if n != 1:
        raise RuntimeError(f"west.cfg: {pattern!r} not found")
    return out


def make_sims(work: Path, walkers: int, iterations: int, nsteps: int, every: int,
              names=("s", "c", "w")):
    root = work / "nacl_lammps"
    root.mkdir()
    shutil.copy2(EXAMPLE / "nacl.in", root / "nacl.in")
    shutil.copy2(EXAMPLE / "start.data", root / "start.data")
    (root / "classic.in").write_text(classic_input((EXAMPLE / "nacl.in").read_text()))
    shipped = EXAMPLE / "westpa" / "west.cfg"
    if shipped.exists():
        text = shipped.read_text()
        source = str(shipped.relative_to(EXAMPLE.parents[1]))
    else:
        text = yaml.safe_dump(MINIMAL_WEST_CFG, sort_keys=False)
        source = "built-in minimal west.cfg (example westpa/ folder missing)"
    # text edits, so that the file stays as shipped otherwise (tags, comments)
    text = edit(text, r"^(\s*)boundaries:\s*\n(?:\s*#.*\n)*\s*- \[.*\]",
                r"\1boundaries:\n\1  - [0.0, 'inf']")
    text = edit(text, r"^(\s*bin_target_counts:)\s*\d+", rf"\g<1> {walkers}")
    text = edit(text, r"^(\s*pcoord_len:)\s*\d+", rf"\g<1> {nsteps // every + 1}")
    text = edit(text, r"^(\s*max_total_iterations:)\s*\d+", rf"\g<1> {iterations}")
    text = edit(text, r"^(\s+nsteps:)\s*\d+", rf"\g<1> {nsteps}")
    text = edit(text, r"^(\s+frame_interval:)\s*\d+", rf"\g<1> {every}")

    sims = {}
    for name in names:
        sim = root / f"sim_{name}"
        (sim / "bstates").mkdir(parents=True)
        shutil.copy2(EXAMPLE / "start.data", sim / "bstates" / "start.data")
        (sim / "bstates" / "bstates.txt").write_text("nacl 1.0 start.data\n")
        c = text
        if name == "c":
            # no streamrun: section (the last top-level key); WESTPA runs the scripts
            c = re.sub(r"^streamrun:.*?(?=^\S|\Z)", "", c, count=1, flags=re.M | re.S)
            scripts = sim / "westpa_scripts"
            scripts.mkdir()
            fmt = dict(lmp=shlex.quote(venv_bin("lmp")), python=shlex.quote(sys.executable),
                       posthoc=shlex.quote(str(HERE / "posthoc.py")), every=every,
                       nsteps=nsteps)
            (scripts / "runseg.sh").write_text(RUNSEG.format(**fmt))
            (scripts / "get_pcoord.sh").write_text(GET_PCOORD.format(**fmt))
            for f in scripts.iterdir():
                f.chmod(0o755)
            c = edit(c, r"^(\s*)executable:\s*streamrun\b.*$",
                     r"\1executable: $WEST_SIM_ROOT/westpa_scripts/runseg.sh")
            c = edit(c, r"^(\s*)executable:\s*streamrun\b.*$",
                     r"\1executable: $WEST_SIM_ROOT/westpa_scripts/get_pcoord.sh")
        if name == "w":
            c = edit(c, r"^(\s*)propagator:\s*executable\b.*$",
                     r"\1propagator: streamrun.propagator.StreamrunPropagator")
        (sim / "west.cfg").write_text(c)
        sims[name] = sim
    return sims, source


def reset(sim: Path):
    for name in ("traj_segs", "seg_logs", "istates", "west.h5"):
        p = sim / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
    for name in ("traj_segs", "seg_logs", "istates"):
        (sim / name).mkdir()


def read_h5(sim: Path, iterations: int) -> dict:
    import h5py

    with h5py.File(sim / "west.h5", "r") as f:
        done = int(f.attrs["west_current_iteration"]) - 1
        summary = f["summary"][:iterations]
        segs, complete, seg_wall = 0, 0, 0.0
        for n in range(1, done + 1):
            idx = f[f"iterations/iter_{n:08d}/seg_index"][:]
            segs += len(idx)
            complete += int((idx["status"] == 2).sum())
            seg_wall += float(idx["walltime"].sum())
    return {"iterations": done, "segments": segs, "complete": complete,
            "iter_walltime": float(summary["walltime"].sum()), "seg_walltime": seg_wall}


def du(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()
               and not p.is_symlink())


def run(args, work, say):
    walkers = args.segments or (2 if args.quick else 4)
    iterations = 2 if args.quick else 5
    nsteps = args.nsteps or 100
    every = args.every
    repeats = args.repeats or (1 if args.quick else 3)
    sims, source = make_sims(work, walkers, iterations, nsteps, every)
    bindir = str(Path(sys.executable).parent)
    say(f"west.cfg from {source}; one bin of {walkers} walkers, {iterations} "
        f"iterations = {walkers * iterations} segments of {nsteps} steps per w_run; "
        f"{repeats} repeats; w_run --work-manager processes --n-workers 2")

    def variant(name):
        sim = sims[name]

        def go(i):
            reset(sim)
            t = init_and_run(sim, name, PATH=f"{bindir}{os.pathsep}"
                             f"{os.environ.get('PATH', '')}")
            h = read_h5(sim, iterations)
            if h["complete"] != walkers * iterations or h["iterations"] != iterations:
                logs = sorted((sim / "seg_logs").glob("*.log"))
                tail = logs[-1].read_text()[-2000:] if logs else t.stdout[-2000:]
                raise RuntimeError(f"WESTPA run ({name}) incomplete: {h}\n{tail}")
            return {"wall": t.wall, "cpu": t.cpu,
                    "seg_per_min": h["segments"] / t.wall * 60,
                    "seg_per_min_iter": h["segments"] / h["iter_walltime"] * 60,
                    "seg_walltime_mean": h["seg_walltime"] / h["segments"],
                    "segments": float(h["segments"]),
                    "bytes_per_segment": du(sim / "traj_segs") / h["segments"]}
        return go

    variants = {"s": variant("s"), "c": variant("c"), "w": variant("w")}
    res = interleave(variants, repeats, say)
    ratios = paired_ratios(column(res["s"], "seg_per_min"), column(res["c"], "seg_per_min"))
    ratios_iter = paired_ratios(column(res["s"], "seg_per_min_iter"),
                                column(res["c"], "seg_per_min_iter"))
    out = {"benchmark": "westpa", "target": f"s/c >= {TARGET}, w/c >= {TARGET_WARM} "
           f"(segments per minute)",
           "west_cfg": source, "walkers_per_iteration": walkers,
           "iterations": iterations, "nsteps": nsteps, "repeats": repeats,
           "s_over_c_median": med(ratios), "s_over_c_each": [round(r, 4) for r in ratios],
           "s_over_c_iter_walltime_median": med(ratios_iter), "variants": {}}
    rows = []
    for name in res:
        r = res[name]
        e = {k + "_median": med(column(r, k)) for k in
             ("wall", "cpu", "seg_per_min", "seg_per_min_iter", "seg_walltime_mean",
              "bytes_per_segment")}
        e["wall_range"] = spread(column(r, "wall"))
        e["runs"] = r
        out["variants"][name] = e
        if name == "w":
            e["w_over_c_median"] = med(paired_ratios(column(r, "seg_per_min"),
                                                     column(res["c"], "seg_per_min")))
            e["w_over_s_median"] = med(paired_ratios(column(r, "seg_per_min"),
                                                     column(res["s"], "seg_per_min")))
        rows.append([{"s": "s (executable: streamrun)", "c": "c (runseg.sh)",
                      "w": "w (warm path)"}[name],
                     f"{e['wall_median']:.1f}", f"{e['seg_per_min_median']:.1f}",
                     f"{e['seg_per_min_iter_median']:.1f}",
                     f"{e['seg_walltime_mean_median']:.2f}", f"{e['cpu_median']:.1f}",
                     f"{e['bytes_per_segment_median'] / 1e3:.0f}"])
    w = out["variants"]["w"]
    out["result"] = {"s_over_c": out["s_over_c_median"],
                     "w_over_c": w["w_over_c_median"],
                     "verdict": f"s/c {verdict(out['s_over_c_median'], TARGET, '>=')}; "
                                f"w/c {verdict(w['w_over_c_median'], TARGET_WARM, '>=')}"}
    text = table(rows, ["variant", "w_run wall s", "segments/min", "segments/min "
                        "(iteration walltime)", "s per segment", "CPU s", "kB on disk/seg"])
    text += (f"\n\n{walkers * iterations} segments per run ({iterations} iterations x "
             f"{walkers}), {nsteps} steps each, 2 workers, {repeats} repeats.\n"
             f"s/c = {out['s_over_c_median']:.3f} (paired median; by iteration "
             f"walltime {out['s_over_c_iter_walltime_median']:.3f}): "
             f"{out['result']['verdict']}")
    text += (f"\nw = the warm path: w/c = {w['w_over_c_median']:.3f}, "
             f"w/s = {w['w_over_s_median']:.3f}")
    text += f"\n{load_note(res)}"
    out["failures"] = failures(res)
    text += failure_note(res)
    return out, text
