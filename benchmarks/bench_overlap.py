"""Benchmark 2 - overlap of the engine and the pcoord (alpha = pcoord time / engine time).

The example box replicated 2x2x2 (7336 atoms, PPPM + SHAKE, 1 MPI rank, a frame
every 10 steps), with two pcoords:

  alpha ~ 1: ``contacts_plugin.py:contacts`` (pairs closer than 3.5 Å between the
             first K atoms and all atoms, MDAnalysis distance_array); K is
             calibrated here so that one frame's pcoord costs one frame of MD;
  alpha ~ 0: the Na-Cl distance.

Each as
  (c) the runseg.sh way: ``lmp`` writes a DCD (unwrapped, every 10 steps, step 0
      included), then ``python posthoc.py`` (a new process) reads it with
      MDAnalysis and writes the same pcoord; one ``bash -c 'lmp ... && python ...'``;
  (b) ``streamrun run`` with the same pcoord function as a plugin.

Wall time of each whole command; interleaved c1, b1, c0, b0, ... Target c/b >= 1.8
at alpha ~ 1 (ideal (1+alpha)/max(1,alpha) = 2). Every process runs with
OMP_NUM_THREADS=1 (and the BLAS equivalents): the engine and the analysis each get
one of the two cores. The two variants' pcoords are compared (max |difference|).
"""

from __future__ import annotations

import json
import shlex
import sys

import numpy as np
import yaml

from common import (HERE, build_water, check, column, failure_note, failures,
                    interleave, lmp_segment_cmd, load_note, loop_time, med, paired_ratios,
                    parse_summary, spread, streamrun_cmd, table, timed_run, verdict,
                    water_segment)

TARGET = 1.8
PLUGIN = HERE / "contacts_plugin.py"
POSTHOC = HERE / "posthoc.py"

CALIBRATE = """
import sys, time, warnings, numpy as np
warnings.simplefilter("ignore")
import MDAnalysis as mda
sys.path.insert(0, {here!r})
from contacts_plugin import contacts
u = mda.Universe({data!r})
a = u.atoms[:{k}]
times = []
for _ in range(7):
    t = time.perf_counter(); contacts(u, a, u.atoms); times.append(time.perf_counter() - t)
print(min(times) / ({k} * len(u.atoms)))
"""


def run(args, work, say):
    every = args.every
    n = 2
    nsteps = args.nsteps or (60 if args.quick else 200)
    repeats = args.repeats or (1 if args.quick else 3)
    data = build_water(work / "systems", n)
    natoms = int(next(line.split()[0] for line in data.read_text().splitlines()
                      if line.strip().endswith("atoms")))
    inp = {name: water_segment(work, data, name) for name in ("none", "imd", "dcd")}
    runs = work / "runs"
    runs.mkdir()

    # -- calibration: MD seconds per frame, pcoord seconds per pair -> K
    say("calibrating: engine alone (50 steps) and the contacts pcoord per atom pair")
    cal = runs / "calibrate"
    cal.mkdir()
    log = cal / "engine.log"
    check(timed_run(lmp_segment_cmd(inp["none"], every, 50), cal, stdout_path=log),
          "calibration engine run", log)
    md_per_frame = loop_time(log.read_text()) / 50 * every
    t = check(timed_run([sys.executable, "-c", CALIBRATE.format(
        here=str(HERE), data=str(data), k=1024)], cal), "pcoord calibration")
    per_pair = float(t.stdout.split()[-1])
    k = int(min(natoms, max(1, round(md_per_frame / (per_pair * natoms)))))
    say(f"  MD {md_per_frame * 1e3:.0f} ms/frame, contacts {per_pair * 1e9:.1f} ns/pair "
        f"-> group a = first {k} atoms x {natoms} atoms")

    sel_a = f"index 0:{k - 1}"
    pcoords = {
        "alpha1": {"type": "plugin", "name": "contacts",
                   "function": f"{PLUGIN}:contacts", "selections": [sel_a, "all"],
                   "whole": False},
        "alpha0": {"type": "distance", "name": "d12", "a": "id 1", "b": "id 2"},
    }
    posthoc_args = {
        "alpha1": ["--plugin", f"{PLUGIN}:contacts", sel_a, "all"],
        "alpha0": ["--distance", "id 1", "id 2"],
    }
    configs = {}
    for name, pc in pcoords.items():
        cfg = {"engine": {"input": str(inp["imd"]), "nsteps": nsteps,
                          "frame_interval": every},
               "topology": str(data), "pcoord": [pc]}
        configs[name] = runs / f"streamrun_{name}.yaml"
        configs[name].write_text(yaml.safe_dump(cfg))

    def classic(name):
        def go(i):
            folder = runs / f"c_{name}_{i}"
            folder.mkdir()
            engine = shlex.join(lmp_segment_cmd(inp["dcd"], every, nsteps))
            post = shlex.join([sys.executable, str(POSTHOC), str(data), "traj.dcd",
                               "pcoord.dat", *posthoc_args[name]])
            script = folder / "runseg.sh"
            script.write_text(f"#!/bin/bash\nset -e\n{engine} > engine.log\n{post}\n")
            t = check(timed_run(["bash", str(script)], folder), f"runseg.sh ({name})",
                      folder / "engine.log")
            ph = json.loads(t.stdout.strip().splitlines()[-1])
            return {"wall": t.wall, "cpu": t.cpu,
                    "loop": loop_time((folder / "engine.log").read_text()),
                    "posthoc_compute": ph["compute"],
                    "posthoc_total": ph["import"] + ph["load"] + ph["compute"]
                    + ph["write"],
                    "traj_bytes": float((folder / "traj.dcd").stat().st_size)}
        return go

    def streamed(name):
        def go(i):
            folder = runs / f"b_{name}_{i}"
            t = check(timed_run([*streamrun_cmd(), "run", "-c", str(configs[name]),
                                 "-w", str(folder)], runs), f"streamrun ({name})",
                      folder / "streamrun-engine.log")
            s = parse_summary(t.stderr)
            return {"wall": t.wall, "cpu": t.cpu,
                    "loop": loop_time((folder / "streamrun-engine.log").read_text()),
                    "stream": s.get("stream"), "compute": s.get("compute"),
                    "paused": s.get("paused")}
        return go

    variants = {"c_alpha1": classic("alpha1"), "b_alpha1": streamed("alpha1"),
                "c_alpha0": classic("alpha0"), "b_alpha0": streamed("alpha0")}
    res = interleave(variants, repeats, say)

    # the two ways must give the same pcoords
    diffs = {}
    for name in pcoords:
        if not ((runs / f"c_{name}_0" / "pcoord.dat").exists()
                and (runs / f"b_{name}_0" / "pcoord.dat").exists()):
            diffs[name] = "not compared (a run failed)"
            continue
        a = np.loadtxt(runs / f"c_{name}_0" / "pcoord.dat", ndmin=2)
        b = np.loadtxt(runs / f"b_{name}_0" / "pcoord.dat", ndmin=2)
        diffs[name] = float(np.max(np.abs(a - b))) if a.shape == b.shape else \
            f"shapes differ {a.shape} {b.shape}"

    out = {"benchmark": "overlap", "target": f"c/b >= {TARGET} at alpha ~ 1",
           "atoms": natoms, "nsteps": nsteps, "frame_interval": every,
           "frames": nsteps // every, "repeats": repeats,
           "calibration": {"md_s_per_frame": md_per_frame, "pcoord_s_per_pair": per_pair,
                           "group_a_atoms": k, "pairs_per_frame": k * natoms},
           "max_abs_pcoord_difference_c_vs_b": diffs, "alphas": {}}
    rows = []
    for name in pcoords:
        c, b = res[f"c_{name}"], res[f"b_{name}"]
        ratios = paired_ratios(column(c, "wall"), column(b, "wall"))
        # alpha as measured in the runseg.sh variant: analysis compute / MD loop
        alpha = med([p / l for p, l in zip(column(c, "posthoc_compute"),
                                           column(c, "loop")) if None not in (p, l)])
        ideal = (1 + alpha) / max(1.0, alpha)
        entry = {"alpha_measured": alpha, "ideal_ratio": ideal,
                 "c_wall_median": med(column(c, "wall")),
                 "b_wall_median": med(column(b, "wall")),
                 "c_wall_range": spread(column(c, "wall")),
                 "b_wall_range": spread(column(b, "wall")),
                 "c_over_b_median": med(ratios),
                 "c_over_b_each": [round(r, 4) for r in ratios],
                 "c_md_loop_median": med(column(c, "loop")),
                 "b_md_loop_median": med(column(b, "loop")),
                 "c_posthoc_median": med(column(c, "posthoc_total")),
                 "b_compute_median": med(column(b, "compute")),
                 "b_paused_median": med(column(b, "paused")),
                 "runs": {"c": c, "b": b}}
        out["alphas"][name] = entry
        rows.append([name.replace("alpha", "alpha~"), f"{alpha:.2f}",
                     f"{entry['c_wall_median']:.2f}", f"{entry['b_wall_median']:.2f}",
                     f"{entry['c_md_loop_median']:.2f}/{entry['b_md_loop_median']:.2f}",
                     f"{entry['c_posthoc_median']:.2f}",
                     f"{entry['b_compute_median']:.2f}",
                     f"{entry['c_over_b_median']:.3f}", f"{ideal:.2f}"])
    r1 = out["alphas"]["alpha1"]["c_over_b_median"]
    out["result"] = {"c_over_b_alpha1": r1,
                     "c_over_b_alpha0": out["alphas"]["alpha0"]["c_over_b_median"],
                     "verdict": verdict(r1, TARGET, ">=")}
    text = table(rows, ["pcoord", "alpha", "c wall s", "b wall s", "MD loop s c/b",
                        "c post-hoc s", "b pcoord s", "c/b (paired median)", "ideal"])
    text += (f"\n\n{natoms} atoms, {nsteps} steps, {nsteps // every} frames, {repeats} "
             f"repeats; group a = {k} atoms. c = runseg.sh way (DCD + post-hoc python), "
             f"b = streamrun. Max |c - b| pcoord difference: {diffs}.\n"
             f"{load_note(res)}\n"
             f"c/b at alpha~1 = {r1:.3f}: {out['result']['verdict']}")
    out["failures"] = failures(res)
    text += failure_note(res)
    return out, text
