"""Pcoords - per-frame cost of each built-in coordinate; RMSD + Rg + distance on a stream.

The system (one per size, written as a LAMMPS data file, ``atom_style full``, units
real): the positions are those ``fake_engine.py`` streams (uniform random in a cubic
box, 100 Å at 100,000 atoms; the 25,000-atom box has the same density, 63 Å). The
2,000 atoms nearest the box centre are the "protein": one bonded chain through them
in nearest-neighbour order (median bond 1.6 Å), 100 residues of 20 atoms (molecule
IDs 1-100), the first 10 of each residue type 1 (the 1,000-atom "backbone"), the
others type 2. Every other atom is solvent: type 3, no bonds (a one-atom fragment
each), three per molecule ID like water. Same group sizes at both system sizes.

1. In-process (a process of its own, ``python bench_pcoords.py measure ...``): one
   ``PcoordCalculator`` per coordinate (``COORDINATES``: groups and sizes there),
   row 0, then ``frame_row`` on frames that move a little (each atom oscillates
   around its start, 0.5 Å s.d. per axis, wrapped into the box as LAMMPS without
   ``unwrap on`` sends it), float32 positions and a 3x3 box as imdclient hands them
   over, and this core's cache evicted as if another thread had written the frame;
   median ms per frame, and the start-up (calculator + row 0). Also
   ``WholeTracker.follow`` alone for 1,000 and 2,000 tracked atoms (it should not
   depend on the system size). Next to them, bare imdclient's per-frame receive
   time at the same atom counts: ``consume.py raw`` on a ``fake_engine.py`` stream,
   as the throughput benchmark's ``raw`` variant (as many bytes at 25k as at 100k).
2. Target: with the pcoord RMSD (backbone, 1,000 atoms) + Rg (backbone) + the
   distance between two 20-atom residues, ``streamrun run`` (``fake_engine.py`` as
   engine.executable, the 100,000-atom topology above, whose coordinates are the
   streamed ones) keeps >= 0.8 of bare imdclient's frames/s: ``cli`` vs ``raw``,
   x+v+f (LAMMPS' default, 3.6 MB a frame) and ``_x`` positions only (1.2 MB).

Variants interleaved; ratios are medians of per-repeat ratios. On a machine with two
or more cores the stand-in engine is pinned to one core and every consumer (raw, cli:
all their threads) to another (``taskset``), as the engine and the analysis each get
a core in the other benchmarks; the scheduler otherwise often puts both on one core.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import yaml

from bench_throughput import DUMMY_INPUT, fmt
from common import (HERE, check, column, failure_note, failures, interleave,
                    load_note, med, paired_ratios, parse_summary, spread, streamrun_cmd,
                    table, timed_run, verdict)

TARGET = 0.8
SIZES = (25_000, 100_000)
PROTEIN, RESIDUE, BACKBONE = 2_000, 20, 10   # atoms; atoms per residue; of them type 1

#: name -> pcoord entry; every group is the same size at 25k and 100k atoms
COORDINATES = {
    # 20-atom residues, mass-weighted centres
    "distance": {"a": "resid 10", "b": "resid 60"},
    # 100 x 100 atom pairs
    "min_distance": {"a": "resid 1:5", "b": "resid 51:55"},
    "position": {"select": "resid 50", "axis": "z"},
    # solvent atoms (all of type 3: ~23k / ~98k) within 3.5 Å of a 20-atom residue
    "count": {"a": "resid 50", "b": "type 3", "cutoff": 3.5},
    # the 1,000-atom backbone, superposed onto the topology's coordinates
    "rmsd": {"select": "type 1"},
    "rg": {"select": "type 1"},
    "angle": {"a": "resid 10", "b": "resid 30", "c": "resid 50"},
    "dihedral": {"a": "resid 10", "b": "resid 30", "c": "resid 50", "d": "resid 70"},
    # native pairs closer than 4.5 Å between two neighbouring 100-atom stretches
    "contacts": {"a": "resid 1:5", "b": "resid 6:10", "radius": 4.5},
}
TARGET_PCOORD = [{"type": "rmsd", "name": "rmsd", **COORDINATES["rmsd"]},
                 {"type": "rg", "name": "rg", **COORDINATES["rg"]},
                 {"type": "distance", "name": "d", **COORDINATES["distance"]}]
#: WholeTracker.follow alone on these groups (1,000 and 2,000 atoms)
FOLLOW = {"backbone": "type 1", "protein": "resid 1:100"}
EVICT_BYTES = 8 * 2**20


def box_length(natoms):
    """Cubic box with fake_engine.py's density (100 Å for 100,000 atoms)."""
    return round(100.0 * (natoms / 100_000) ** (1 / 3), 3)


def stream_positions(natoms, length):
    """The frame fake_engine.py streams (same generator, seed and dtype)."""
    rng = np.random.default_rng(1)
    return rng.random((natoms, 3), dtype=np.float32) * length


def write_system(path, natoms):
    """The LAMMPS data file described in the module docstring."""
    length = box_length(natoms)
    pos = stream_positions(natoms, length).astype(np.float64)
    near = np.argsort(np.linalg.norm(pos - length / 2, axis=1))[:PROTEIN]
    chain, rest = [near[0]], near[1:]
    while rest.size:  # nearest-neighbour path: short bonds
        k = np.argmin(((pos[rest] - pos[chain[-1]]) ** 2).sum(axis=1))
        chain.append(rest[k])
        rest = np.delete(rest, k)
    chain = np.array(chain)
    mol = 101 + np.arange(natoms) // 3                       # solvent
    kind = np.full(natoms, 3)
    mol[chain] = 1 + np.arange(PROTEIN) // RESIDUE
    kind[chain] = np.where(np.arange(PROTEIN) % RESIDUE < BACKBONE, 1, 2)
    with open(path, "w") as f:
        f.write(f"pcoords benchmark system\n\n{natoms} atoms\n{PROTEIN - 1} bonds\n"
                f"3 atom types\n1 bond types\n\n0 {length} xlo xhi\n0 {length} ylo yhi\n"
                f"0 {length} zlo zhi\n\nMasses\n\n1 12.011\n2 14.007\n3 15.999\n\n"
                f"Atoms # full\n\n")
        np.savetxt(f, np.column_stack([np.arange(1, natoms + 1), mol, kind,
                                       np.zeros(natoms), pos]),
                   fmt=["%d", "%d", "%d", "%.1f", "%.5f", "%.5f", "%.5f"])
        f.write("\nBonds\n\n")
        np.savetxt(f, np.column_stack([np.arange(1, PROTEIN), np.ones(PROTEIN - 1),
                                       chain[:-1] + 1, chain[1:] + 1]), fmt="%d")


def write_config(path, topology, natoms, pcoord, frames=10, every=10, fields="xvf"):
    cfg = {"engine": {"input": "fake.in", "executable": str(Path(path).parent / "fake_lmp"),
                      "nsteps": frames * every, "frame_interval": every,
                      "variables": {"natoms": natoms, "fields": fields,
                                    "box": box_length(natoms)}},
           "topology": Path(topology).name,
           "topology_options": {"atom_style": "id resid type charge x y z"},
           "pcoord": pcoord}
    Path(path).write_text(yaml.safe_dump(cfg, sort_keys=False))


# ------------------------------------------------------------ in-process worker

def measure(work, natoms, frames):
    """Time frame_row of each coordinate and WholeTracker.follow (this process)."""
    import MDAnalysis  # noqa: F401 - imported once, not in the first start-up time

    from streamrun.config import load
    from streamrun.segment import calculator_for
    from streamrun.pcoords.pbc import WholeTracker

    length = box_length(natoms)
    start = stream_positions(natoms, length)
    wiggle = np.random.default_rng(2).normal(0, 0.5, start.shape).astype(np.float32)
    box = np.diag([length] * 3).astype(np.float32)       # as imdclient's frame.box
    frame = np.empty_like(start)                          # reused, as imdclient's
    # A streamed frame is written by imdclient's reader thread, usually on the other
    # core: it is not in this core's cache. Writing this much memory (4x the 2 MiB L2
    # per core of the benchmark machine) after making a frame evicts it at every size.
    evict = np.zeros(EVICT_BYTES // 8)

    def next_frame(k):
        np.multiply(wiggle, np.float32(np.sin(0.3 * k)), out=frame)
        np.add(frame, start, out=frame)
        np.mod(frame, np.float32(length), out=frame)      # wrapped into the box
        evict.fill(k)
        return frame

    warm = 5
    out = {"coordinates": {}, "follow": {}}
    for name in [*COORDINATES, "target"]:
        t0 = time.perf_counter()
        calc = calculator_for(load(work / f"pc{natoms}_{name}.yaml"))
        calc.start_row()
        setup = time.perf_counter() - t0
        times = []
        for k in range(1, warm + frames + 1):
            f = next_frame(k)
            t0 = time.perf_counter()
            calc.frame_row(f, box, index=k)
            times.append(time.perf_counter() - t0)
        c = calc.coordinates[0]
        out["coordinates"][name] = {
            "ms": float(np.median(times[warm:])) * 1e3,
            "tracked_atoms": int(calc.tracker.ix.size), "setup_s": setup,
            "native_contacts": int(c.ia.size) if name == "contacts" else None}
    u = calc.universe
    for name, sel in FOLLOW.items():
        group = u.select_atoms(sel)
        tracker = WholeTracker(u, [(group, name, sel)], "bench")
        tracker.start(start, u.dimensions)
        times = []
        for k in range(1, warm + frames + 1):
            f = next_frame(k)
            t0 = time.perf_counter()
            tracker.follow(f, u.dimensions)
            times.append(time.perf_counter() - t0)
        out["follow"][name] = {"atoms": len(group),
                               "ms": float(np.median(times[warm:])) * 1e3}
    print(json.dumps(out))


# ---------------------------------------------------------------------- runner

def run(args, work, say):
    frames = args.frames or (500 if args.quick else 2000)
    in_process = 40 if args.quick else 200
    repeats = args.repeats or (2 if args.quick else 5)
    every = args.every
    # The engine on one core, the consumer (all its threads) on the other: left to
    # the scheduler, both often share one core and raw imdclient runs at half speed
    # (480 instead of 1,000-1,230 frames/s at 100k atoms, x+v+f, seen here).
    cpus, taskset = sorted(os.sched_getaffinity(0)), shutil.which("taskset")
    pin = len(cpus) >= 2 and taskset is not None
    engine_pin = f"{taskset} -c {cpus[0]} " if pin else ""
    consumer = [taskset, "-c", str(cpus[1])] if pin else []
    (work / "fake.in").write_text(DUMMY_INPUT)
    engine = work / "fake_lmp"
    engine.write_text(f"#!/bin/sh\nexec {engine_pin}{sys.executable} "
                      f"{HERE / 'fake_engine.py'} \"$@\"\n")
    engine.chmod(0o755)
    for natoms in SIZES:
        topo = work / f"system{natoms}.data"
        write_system(topo, natoms)
        for name, entry in COORDINATES.items():
            write_config(work / f"pc{natoms}_{name}.yaml", topo, natoms,
                         [{"type": name, **entry}])
        write_config(work / f"pc{natoms}_target.yaml", topo, natoms, TARGET_PCOORD)
        for fields in ("xvf", "x"):  # as many bytes per stream at both sizes
            write_config(work / f"stream{natoms}_{fields}.yaml", topo, natoms,
                         TARGET_PCOORD, frames * SIZES[-1] // natoms, every, fields)
    runs = work / "runs"
    runs.mkdir()

    def pcoords(natoms):
        def go(i):
            t = check(timed_run([sys.executable, str(HERE / "bench_pcoords.py"),
                                 "measure", str(work), str(natoms), str(in_process)],
                                work), f"pcoords in-process {natoms}")
            r = json.loads(t.stdout.strip().splitlines()[-1])
            flat = {f"{name}_ms": v["ms"] for name, v in r["coordinates"].items()}
            flat.update({f"{name}_setup_s": v["setup_s"]
                         for name, v in r["coordinates"].items()})
            flat.update({f"follow_{name}_ms": v["ms"] for name, v in r["follow"].items()})
            return {**flat, "detail": r}
        return go

    def raw(natoms, fields):
        def go(i):
            t = check(timed_run([*consumer, sys.executable, str(HERE / "consume.py"), "raw",
                                 str(work / f"stream{natoms}_{fields}.yaml")], work),
                      "consumer raw")
            r = json.loads(t.stdout.strip().splitlines()[-1])
            if r["error"]:
                raise RuntimeError(f"consumer raw: {r['error']}")
            return {"fps": r["frames"] / r["seconds"],
                    "ms_per_frame": r["seconds"] / r["frames"] * 1e3,
                    "cpu_ms_per_frame": r["consumer_cpu"] / r["frames"] * 1e3}
        return go

    def cli(fields):
        def go(i):
            folder = runs / f"cli_{fields}_{i}"
            t = check(timed_run([*consumer, *streamrun_cmd(), "run", "-c",
                                 str(work / f"stream{SIZES[-1]}_{fields}.yaml"),
                                 "-w", str(folder)], work),
                      "streamrun (fake engine)", folder / "streamrun-engine.log")
            s = parse_summary(t.stderr)
            rows = np.loadtxt(folder / "pcoord.dat")
            if rows.shape != (frames + 1, 3) or np.ptp(rows, axis=0).max() > 1e-3:
                raise RuntimeError(f"unexpected pcoord rows {rows.shape} (the stream "
                                   f"repeats the topology's coordinates)")
            return {"fps": s["rate"], "ms_per_frame": 1e3 / s["rate"],
                    "pcoord_ms_per_frame": s["compute"] / frames * 1e3}
        return go

    say(f"in-process: {in_process} frames per coordinate at {SIZES[0]} and {SIZES[1]} "
        f"atoms; streams: {frames} frames of {SIZES[-1]} atoms; {repeats} repeats; "
        + (f"engine pinned to CPU {cpus[0]}, consumer to CPU {cpus[1]}" if pin
           else "not pinned"))
    variants = {"pcoords_25k": pcoords(SIZES[0]), "pcoords_100k": pcoords(SIZES[1]),
                "raw_25k": raw(SIZES[0], "xvf"), "raw_x_25k": raw(SIZES[0], "x"),
                "raw": raw(SIZES[1], "xvf"), "cli": cli("xvf"),
                "raw_x": raw(SIZES[1], "x"), "cli_x": cli("x")}
    res = interleave(variants, repeats, say)

    # table 1: per-frame cost of each coordinate, and of receiving a frame
    small, big = res["pcoords_25k"], res["pcoords_100k"]
    detail = next((r["detail"] for r in big if "detail" in r), None)
    cost_rows = []

    def row(label, groups, atoms, key, runs_small, runs_big, setup=None):
        a, b = med(column(runs_small, key)), med(column(runs_big, key))
        startup = [fmt(med(column(runs, setup)) if setup else None, ".2f")
                   for runs in (runs_small, runs_big)]
        cost_rows.append([label, groups, atoms, fmt(a, ".3f"), fmt(b, ".3f"),
                          fmt(b / a, ".2f"), *startup])

    for name in [*COORDINATES, "target"]:
        info = detail["coordinates"][name] if detail else {}
        groups = ("rmsd + rg + distance, as below" if name == "target" else
                  "; ".join(f"{k} {v}" for k, v in COORDINATES[name].items()))
        if name == "contacts" and info:
            groups += f" ({info['native_contacts']} native pairs)"
        row(name, groups, info.get("tracked_atoms", "-"), f"{name}_ms", small, big,
            f"{name}_setup_s")
    for name, sel in FOLLOW.items():
        row("WholeTracker.follow", sel, detail["follow"][name]["atoms"] if detail
            else "-", f"follow_{name}_ms", small, big)
    row("imdclient receive x+v+f", "bare IMDClient + get_imdframe loop", "-",
        "ms_per_frame", res["raw_25k"], res["raw"])
    row("imdclient receive x only", "bare IMDClient + get_imdframe loop", "-",
        "ms_per_frame", res["raw_x_25k"], res["raw_x"])
    text = table(cost_rows, ["per frame", "groups", "whole atoms", "ms 25k", "ms 100k",
                             "100k/25k", "start-up s 25k", "start-up s 100k"])
    text += (f"\n\nms: median over {in_process} frames (in-process) or a stream, "
             f"median of {repeats} repeats. whole atoms: atoms WholeTracker follows "
             f"for it. start-up: calculator_for(config) + start_row(), once per "
             f"segment.\n\n")

    # table 2: the target
    rows, ratios = [], {}
    for name, raw_name in (("raw", "raw"), ("cli", "raw"), ("raw_x", "raw_x"),
                           ("cli_x", "raw_x")):
        fps = column(res[name], "fps")
        ratios[name] = med(paired_ratios(fps, column(res[raw_name], "fps")))
        rows.append([name, fmt(med(fps), ".1f"),
                     "-".join(fmt(x, ".1f") for x in spread(fps)) or "-",
                     fmt(ratios[name], ".3f"),
                     fmt(med(column(res[name], "cpu_ms_per_frame")), ".3f"),
                     fmt(med(column(res[name], "pcoord_ms_per_frame")), ".3f")])
    text += table(rows, ["variant", "frames/s (median)", "range", "/ raw (paired median)",
                         "consumer CPU ms/frame", "pcoord ms/frame"])
    verdicts = (f"x+v+f {verdict(ratios['cli'], TARGET, '>=')}; "
                f"positions only {verdict(ratios['cli_x'], TARGET, '>=')}")
    text += (f"\n\n{SIZES[-1]} atoms, {frames} frames per stream, pcoord rmsd + rg + "
             f"distance; raw = bare imdclient loop, cli = streamrun run (pcoord ms/frame "
             f"from its summary); _x = positions only.\n{load_note(res)}\n{verdicts}")
    text += failure_note(res)
    out = {"benchmark": "pcoords", "target": f"cli/raw >= {TARGET} (frames/s, "
           f"{SIZES[-1]} atoms, pcoord rmsd + rg + distance)", "sizes": SIZES,
           "frames": frames, "in_process_frames": in_process, "repeats": repeats,
           "pinned": pin, "coordinates": COORDINATES, "target_pcoord": TARGET_PCOORD,
           "per_frame_ms": {f"{r[0]} {r[1]}" if r[0] == "WholeTracker.follow" else r[0]:
                            {"25k": r[3], "100k": r[4]} for r in cost_rows},
           "runs": res, "failures": failures(res),
           "result": {"cli_over_raw": ratios["cli"], "cli_x_over_raw_x": ratios["cli_x"],
                      "verdict": verdicts}}
    return out, text

if __name__ == "__main__":
    if sys.argv[1:2] == ["measure"]:
        measure(Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
    else:
        sys.exit("usage: python benchmarks/run.py pcoords [--quick] "
                 "(this file runs itself as: bench_pcoords.py measure WORK NATOMS FRAMES)")
