"""Benchmark 7 - OpenMM under WESTPA: segments per minute against the peers (issue 22).

The example WESTPA simulation example_sims/nacl_openmm/westpa (Na-Cl distance in
TIP3P water, OpenMM, its bins, pcoord_len and nsteps as shipped), copied with the
whole example to a temporary folder, run with ``w_run --work-manager processes
--n-workers 2`` for a fixed number of iterations, four ways:

  exe     streamrun as WESTPA's executable (the example's west.cfg with
          ``propagator: executable``, ``executable: streamrun``): a streamrun
          program and a Python OpenMM script per segment;
  warm    the example's west.cfg with ``propagator:
          streamrun.propagator.StreamrunPropagator``: streamrun's warm path, which
          is the resident engine when the example's script loops over
          ``streamrun.openmm.segments()`` (the benchmark says which it measured);
  peer    an in-process WESTPA propagator (openmm_peer/propagator.py, as WESTPA's
          wca-dimer_openmm example and westpa_prop): one OpenMM Simulation per
          worker, reused for every segment, pcoord computed in memory;
  runseg  the tutorial way (openmm_peer/runseg.sh, as tutorial7.1-basic-nacl): a
          Python OpenMM script per segment writes a DCD and seg.xml, then a second
          Python (mdtraj) computes the pcoord from the DCD.

Each repeat is a fresh w_init (not timed) and a timed w_run; the variants are
interleaved. Segments are counted in west.h5 (all must be complete); segments per
minute over the w_run wall time (and over WESTPA's own iteration wall times, without
w_run's start-up). The bins are the example's, so the number of segments differs from
run to run. From the streamrun variants' seg logs: the median of wall / stream time
of the summary lines, over the segments of iterations >= 2 (and over all).

Targets (issue 22): warm (resident) >= 0.9x peer and >= 3x runseg in segments per
minute; a resident segment's wall <= 1.2x its stream time.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

from bench_westpa import edit, init_and_run, read_h5, reset
from common import (HERE, REPO, column, failure_note, failures,
                    interleave, load_note, med, paired_ratios, parse_summary, spread,
                    table, verdict)

EXAMPLE = REPO / "example_sims" / "nacl_openmm"
PEER = HERE / "openmm_peer"

TARGET_PEER = 0.9     # warm / peer, segments per minute
TARGET_RUNSEG = 3.0   # warm / runseg
TARGET_STREAM = 1.2   # warm segment: wall / stream (median)

NAMES = {"exe": "exe (executable: streamrun)", "warm": "warm (StreamrunPropagator)",
         "peer": "peer (in-process Simulation)", "runseg": "runseg (tutorial runseg.sh)"}

PEER_SECTION = """
# the in-process peer (benchmarks/openmm_peer/propagator.py)
openmm_peer:
  example: $WEST_SIM_ROOT/..    # build.py, topology.pdb
  nsteps: {nsteps}
  frame_interval: {every}
"""


def shipped_number(text: str, key: str) -> int:
    m = re.search(rf"^\s+{key}:\s*(\d+)", text, re.M)
    if not m:
        raise RuntimeError(f"west.cfg of {EXAMPLE}: no '{key}:' found")
    return int(m.group(1))


def without_streamrun_section(text: str) -> str:
    """west.cfg without its ``streamrun:`` section (the last top-level key)."""
    return re.sub(r"^streamrun:.*?(?=^\S|\Z)", "", text, count=1, flags=re.M | re.S)


def make_sims(work: Path, iterations: int, names, nsteps=None):
    """Copy the example; one WESTPA simulation folder per variant beside its westpa/,
    so that ``$WEST_SIM_ROOT/..`` is the example (its script, build.py, topology).
    ``nsteps``: steps per segment instead of the example's (pcoord_len follows)."""
    root = work / "nacl_openmm"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns(
        "traj_segs", "seg_logs", "istates", "west.h5", "*.log", "__pycache__"))
    text = (root / "westpa" / "west.cfg").read_text()
    if nsteps:
        every = shipped_number(text, "frame_interval")
        text = edit(text, r"^(\s*nsteps:)\s*\d+", rf"\g<1> {nsteps}")
        text = edit(text, r"^(\s*pcoord_len:)\s*\d+", rf"\g<1> {nsteps // every + 1}")
    shape = {"nsteps": shipped_number(text, "nsteps"),
             "every": shipped_number(text, "frame_interval"),
             "pcoord_len": shipped_number(text, "pcoord_len")}
    text = edit(text, r"^(\s*max_total_iterations:)\s*\d+", rf"\g<1> {iterations}")
    propagators = {"exe": "executable", "warm": "streamrun.propagator.StreamrunPropagator",
                   "peer": "openmm_peer.propagator.OpenMMPeerPropagator",
                   "runseg": "executable"}
    sims = {}
    for name in names:
        sim = root / f"sim_{name}"
        (sim / "bstates").mkdir(parents=True)
        shutil.copy2(root / "westpa" / "bstates" / "bstates.txt", sim / "bstates")
        shutil.copy2(root / "start.xml", sim / "bstates" / "start.xml")
        # west.propagation.propagator (the one with a value on its line; the
        # executable section's propagator: is a mapping)
        c = edit(text, r"^([ \t]+)propagator:[ \t]+\S.*$",
                 rf"\1propagator: {propagators[name]}")
        if name == "peer":
            c = without_streamrun_section(c) + PEER_SECTION.format(**shape)
        elif name == "runseg":
            c = without_streamrun_section(c)
            c = edit(c, r"^([ \t]*)environ:.*$",
                     rf'\1environ: {{NACL_NSTEPS: "{shape["nsteps"]}", '
                     rf'NACL_INTERVAL: "{shape["every"]}"}}')
            c = edit(c, r"^([ \t]*)executable:[ \t]*streamrun\b.*$",
                     rf"\1executable: {PEER / 'runseg.sh'}")
            c = edit(c, r"^([ \t]*)executable:[ \t]*streamrun\b.*$",
                     rf"\1executable: {PEER / 'get_pcoord.sh'}")
        (sim / "west.cfg").write_text(c)
        sims[name] = sim
    resident = "segments(" in (root / "nacl_prod.py").read_text()
    return sims, shape, resident


def stream_ratios(sim: Path) -> dict:
    """wall / stream of each streamrun seg log's summary line, by iteration."""
    out = {}
    for log in sorted((sim / "seg_logs").glob("*.log")):
        m = re.fullmatch(r"(\d+)-\d+\.log", log.name)  # not the resident engines' logs
        s = parse_summary(log.read_text(errors="replace")) if m else {}
        if s.get("stream"):
            out.setdefault(int(m.group(1)), []).append((s["wall"], s["stream"]))
    return out


def pcoords_sane(sim: Path, iterations: int, pcoord_len: int) -> str | None:
    """A message if a pcoord of the iterations run is not a plausible Na-Cl distance
    (the next iteration, prepared but not run, holds zeros)."""
    import h5py
    import numpy as np

    with h5py.File(sim / "west.h5", "r") as f:
        for n in range(1, iterations + 1):
            p = f[f"iterations/iter_{n:08d}/pcoord"][:]
            if p.shape[1] != pcoord_len or not np.all(np.isfinite(p)) \
                    or p.min() < 1.5 or p.max() > 20:
                return f"iteration {n}: pcoords {p.shape}, range {p.min()}..{p.max()}"
    return None


def run(args, work, say):
    iterations = args.iterations or (2 if args.quick else 6)
    repeats = args.repeats or (1 if args.quick else 3)
    names = list(NAMES)
    sims, shape, resident = make_sims(work, iterations, names, args.nsteps)
    bindir = str(Path(sys.executable).parent)
    what = ("loops over segments(): warm = the resident engine" if resident else
            "runs one segment (no segments() loop): warm = the warm path without it")
    say(f"example_sims/nacl_openmm/westpa, its bins; {shape['nsteps']}-step segments, "
        f"{shape['pcoord_len']} pcoord rows; {iterations} iterations per w_run; "
        f"{repeats} repeats; w_run --work-manager processes --n-workers 2. The "
        f"example's script {what}")

    def variant(name):
        sim = sims[name]

        def go(i):
            reset(sim)
            t = init_and_run(
                sim, name, PATH=f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}",
                PYTHONPATH=os.pathsep.join(
                    filter(None, [str(HERE), os.environ.get("PYTHONPATH")])))
            (sim / f"w_run.{i}.log").write_text(t.stdout + t.stderr)
            h = read_h5(sim, iterations)
            if h["complete"] != h["segments"] or h["iterations"] != iterations:
                logs = sorted((sim / "seg_logs").glob("*.log"))
                tail = logs[-1].read_text()[-2000:] if logs else (t.stdout + t.stderr)[-2000:]
                raise RuntimeError(f"WESTPA run ({name}) incomplete: {h}\n{tail}")
            bad = pcoords_sane(sim, iterations, shape["pcoord_len"])
            if bad:
                raise RuntimeError(f"WESTPA run ({name}): implausible pcoords, {bad}")
            r = {"wall": t.wall, "cpu": t.cpu, "segments": float(h["segments"]),
                 "seg_per_min": h["segments"] / t.wall * 60,
                 "seg_per_min_iter": h["segments"] / h["iter_walltime"] * 60,
                 "seg_walltime_mean": h["seg_walltime"] / h["segments"],
                 "cpu_per_segment": t.cpu / h["segments"]}
            by_iter = stream_ratios(sim)
            if by_iter:
                late = [w / s for n, pairs in by_iter.items() if n >= 2 for w, s in pairs]
                every = [w / s for pairs in by_iter.values() for w, s in pairs]
                r["wall_over_stream"] = med(late)
                r["wall_over_stream_all"] = med(every)
                r["stream_median"] = med([s for p in by_iter.values() for _, s in p])
                r["seg_wall_median"] = med([w for p in by_iter.values() for w, _ in p])
            return r
        return go

    res = interleave({name: variant(name) for name in names}, repeats, say)
    return report(res, shape, iterations, repeats, resident)


def report(res: dict, shape: dict, iterations: int, repeats: int, resident: bool):
    """The table, the ratios and the verdicts of the runs ``res`` (variant -> runs)."""
    names = list(res)

    def ratio(a, b, key="seg_per_min"):
        return med(paired_ratios(column(res[a], key), column(res[b], key)))

    out = {"benchmark": "openmm_westpa",
           "target": f"warm/peer >= {TARGET_PEER}, warm/runseg >= {TARGET_RUNSEG} "
                     f"(segments per minute); warm segment wall/stream <= {TARGET_STREAM}",
           "resident_script": resident, "iterations": iterations, "repeats": repeats,
           **shape, "variants": {}}
    rows = []
    for name in names:
        r = res[name]
        e = {k + "_median": med(column(r, k)) for k in
             ("wall", "cpu", "segments", "seg_per_min", "seg_per_min_iter",
              "seg_walltime_mean", "cpu_per_segment", "wall_over_stream",
              "wall_over_stream_all", "stream_median", "seg_wall_median")}
        e["seg_per_min_range"] = spread(column(r, "seg_per_min"))
        e["runs"] = r
        out["variants"][name] = e
        ws = (f"{e['wall_over_stream_median']:.2f} ({e['wall_over_stream_all_median']:.2f})"
              if name in ("exe", "warm") else "")
        rows.append([NAMES[name], f"{e['segments_median']:.0f}", f"{e['wall_median']:.1f}",
                     f"{e['seg_per_min_median']:.1f}", f"{e['seg_per_min_iter_median']:.1f}",
                     f"{e['seg_walltime_mean_median']:.2f}",
                     f"{e['cpu_per_segment_median']:.2f}", ws])
    ratios = {"warm_over_peer": ratio("warm", "peer"),
              "warm_over_runseg": ratio("warm", "runseg"),
              "warm_over_exe": ratio("warm", "exe"),
              "exe_over_runseg": ratio("exe", "runseg"),
              "peer_over_runseg": ratio("peer", "runseg")}
    out.update(ratios)
    # with both cores busy, segments/min ~ 2 cores / CPU per segment: the CPU ratios
    # (b's CPU per segment / a's) are less disturbed by other programs' load
    cpu = {"warm_over_peer": ratio("peer", "warm", "cpu_per_segment"),
           "warm_over_runseg": ratio("runseg", "warm", "cpu_per_segment")}
    out["by_cpu_per_segment"] = cpu
    wall_stream = out["variants"]["warm"]["wall_over_stream_median"]
    out["result"] = {
        "warm_over_peer": ratios["warm_over_peer"],
        "warm_over_runseg": ratios["warm_over_runseg"],
        "warm_wall_over_stream": wall_stream,
        "verdict": f"warm/peer {verdict(ratios['warm_over_peer'], TARGET_PEER, '>=')}; "
                   f"warm/runseg {verdict(ratios['warm_over_runseg'], TARGET_RUNSEG, '>=')}; "
                   f"warm wall/stream {verdict(wall_stream, TARGET_STREAM, '<=')}"}
    text = table(rows, ["variant", "segments", "w_run wall s", "segments/min",
                        "segments/min (iteration walltime)", "s per segment (WESTPA)",
                        "CPU s/segment", "wall/stream iter>=2 (all)"])
    text += (f"\n\n{iterations} iterations per run, the example's bins, "
             f"{shape['nsteps']} steps per segment, 2 workers, {repeats} repeats "
             f"(ratios: medians of the per-repeat ratios of segments/min).\n"
             f"warm/peer {ratios['warm_over_peer']:.3f}, warm/runseg "
             f"{ratios['warm_over_runseg']:.3f}, warm/exe {ratios['warm_over_exe']:.3f}, "
             f"exe/runseg {ratios['exe_over_runseg']:.3f}, peer/runseg "
             f"{ratios['peer_over_runseg']:.3f}\n"
             f"by CPU per segment (the other's / warm's, paired median): warm/peer "
             f"{cpu['warm_over_peer']:.3f}, warm/runseg {cpu['warm_over_runseg']:.3f}\n"
             f"warm = {'the resident engine' if resident else 'the warm path, no resident engine'}"
             f": {out['result']['verdict']}")
    text += f"\n{load_note(res)}"
    out["failures"] = failures(res)
    text += failure_note(res)
    return out, text
