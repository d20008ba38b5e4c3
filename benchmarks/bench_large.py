"""Benchmark - a 1M-atom LAMMPS system: the topology read once per simulation.

System (built in the work folder at each run, never committed): tests/tiny_lj.py's
fcc argon box scaled to 63 x 63 x 63 cells, 1,000,188 atoms (issue 22's system),
LJ 8.5 A, atom_style atomic, velocities at 120 K (the data file has a Velocities
section, as a segment's write_data has). Positions only are streamed (``fix imd
... velocities off forces off``), a frame every step, --nsteps steps (default 24:
enough frames to fill imdclient's whole buffer, which streamrun sizes at 8 frames
of x, v and f, i.e. 24 frames of positions). Atom IDs are numbered in random
order: LAMMPS' fix imd sorts the IDs after its client connected with a
first-element-pivot quicksort (fix_imd.cpp, id_sort), quadratic on IDs in spatial
order, which is what create_atoms makes: 74-152 s at 1M atoms here, an engine
cost that would hide streamrun's.

Each repeat is one simulation of two segments, each a ``streamrun run`` command as
WESTPA's executable path starts it: segment 1 from the built data file, the
simulation's first (it parses the topology and writes the topology cache, in a
cache folder of its own), and segment 2 from segment 1's ``write_data``, with the
same topology. Interleaved, per repeat:

  seg1      segment 1 (no cache entry yet: parses and stores the topology)
  seg2      segment 2 (the topology from the cache) -- the target's
  seg2_off  segment 2 with STREAMRUN_CACHE_DIR=off (as every segment was before)
  alone     the engine alone: ``lmp -in`` the same input minus its fix imd line,
            from the same start file, same steps

Measured, per run:

  first step    from starting the command to the engine's first MD step, i.e. the
                moment LAMMPS prints its step-0 thermo line: it does so at the end
                of the run's set-up, right before step 1; with fix imd, after its
                client connected (fix imd waits in its set-up) and after fix
                imd's own set-up (the ID sort). Seen by reading the engine's output
                file every 10 ms: streamrun's engine log (written unbuffered) and,
                for the engine alone, its stdout sent to a file.
  engine waited from the engine's "Waiting for IMD connection" line to its step 0:
                how long the engine waited for streamrun (issue 22 saw 10.1 s).
  peak RSS      VmHWM of the streamrun process (not the engine's), read every
                10 ms until it exits.

Targets (issue 22), for segment 2: first step <= the engine alone's first step +
1 s (the paired difference; the ratio is printed too); streamrun's peak RSS <=
1 GiB + 4 frames (a frame: 12 bytes x atoms).

Also, each in a fresh Python process (``bench_large.py measure``): MDAnalysis'
parse of the topology against the cache's first segment (parse and store) and its
later ones (load), and the start structure read by MDAnalysis' DATA reader against
streamrun's (streamrun.lammpsdata); the same for a 1M-atom water box with bonds
and angles (the example's Na+/Cl- box replicated 10 x 10 x 11, 1,008,700 atoms),
whose parse costs more (not with --quick).

    python bench_large.py measure SPEC   # one in-process measurement (run() starts it)
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from common import (EXAMPLE, WATER_HEAD, bench_env, column, failure_note, failures,
                    interleave, lmp, load_note, med, parse_summary, run_lmp, spread,
                    streamrun_cmd, table, verdict)

CELLS = 63                 # fcc cells per side: 4 x 63^3 = 1,000,188 atoms
TARGET_SECONDS = 1.0       # segment 2's first step after the engine alone's
TARGET_RSS_BYTES = 2**30   # + 4 frames

BUILD = f"""\
units real
atom_style atomic
lattice fcc 5.26
region box block 0 {CELLS} 0 {CELLS} 0 {CELLS}
create_box 1 box
create_atoms 1 box
mass 1 39.948
velocity all create 120.0 4928459 dist gaussian
write_data ordered.data
"""

SEGMENT = """\
variable start index start.data
units real
atom_style atomic
pair_style lj/cut 8.5
read_data ${{start}}
pair_coeff 1 1 0.238 3.405
fix nve all nve
timestep 5.0
thermo ${{streamrun_nsteps}}
{imd}
run ${{streamrun_nsteps}}
write_data end.data nocoeff
"""

IMD = ("fix stream all imd ${streamrun_port} version 3 trate ${streamrun_every} "
       "unwrap on velocities off forces off")

REPLICATE = WATER_HEAD + """\
read_data       {start}
replicate       10 10 11
kspace_style    pppm 1.0e-4
write_data      water.data
"""

WAITING = re.compile(r"Waiting for IMD connection")
STEP0 = re.compile(r"^\s*0\s")


# --------------------------------------------------------------------- the system

def build_lj(folder: Path) -> Path:
    """The 1,000,188-atom argon box with its atom IDs in random order (cached)."""
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / "argon.data"
    if not data.exists():
        (folder / "build.in").write_text(BUILD)
        run_lmp(["-in", "build.in"], cwd=folder)
        renumber(folder / "ordered.data", data)
        (folder / "ordered.data").unlink()
    return data


def renumber(source: Path, target: Path, seed: int = 22) -> None:
    """Copy a LAMMPS data file with its atom IDs permuted (Atoms and Velocities
    rows; the file has no bonds), line by line (the benchmark process stays small:
    its children inherit its peak RSS in ru_maxrss)."""
    import random

    with open(source, "rb") as f:
        n = int(next(line.split()[0] for line in f if line.strip().endswith(b"atoms")))
    new = list(range(1, n + 1))
    random.Random(seed).shuffle(new)
    tmp = target.with_suffix(".tmp")
    with open(source, "rb") as f, open(tmp, "wb") as out:
        section = False
        for line in f:
            word = line.partition(b"#")[0].strip()
            if word in (b"Atoms", b"Velocities"):
                section = True
            elif word and not word[:1].isdigit() and word[:1] != b"-":
                section = False
            elif section and word:
                old, _, rest = line.partition(b" ")
                line = b"%d %s" % (new[int(old) - 1], rest)
            out.write(line)
    tmp.replace(target)


def build_water(folder: Path) -> Path:
    """The example's water box replicated 10 x 10 x 11 (1,008,700 atoms, cached)."""
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / "water.data"
    if not data.exists():
        (folder / "replicate.in").write_text(REPLICATE.format(
            start=EXAMPLE / "start.data"))
        run_lmp(["-in", "replicate.in"], cwd=folder)
    return data


def atoms_of(data: Path) -> int:
    with open(data) as f:
        for line in f:
            if line.strip().endswith("atoms"):
                return int(line.split()[0])
    raise RuntimeError(f"{data}: no atoms line")


# -------------------------------------------------------------------- one command

def watch(cmd, cwd, log: Path, env, stdout: Path, rss=False) -> dict:
    """Run ``cmd``; read the engine's output file ``log`` every 10 ms for its IMD
    wait and its step 0, and the process's VmHWM (``rss``). Times in s from the
    start of the command."""
    t0 = time.perf_counter()
    with open(stdout, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    seen = {"waiting": None, "step0": None}
    peak, offset, pending, header = 0, 0, b"", False

    def read_log():
        nonlocal offset, pending, header
        try:
            with open(log, "rb") as f:
                f.seek(offset)
                data = f.read()
        except FileNotFoundError:
            return
        offset += len(data)
        now = time.perf_counter() - t0
        *lines, pending = (pending + data).split(b"\n")
        for raw in lines:
            line = raw.decode(errors="replace")
            if seen["waiting"] is None and WAITING.search(line):
                seen["waiting"] = now
            if header and seen["step0"] is None and STEP0.match(line):
                seen["step0"] = now
            header = header or line.split()[:1] == ["Step"]

    while proc.poll() is None:
        read_log()
        if rss:
            peak = max(peak, vm_hwm(proc.pid))
        time.sleep(0.01)
    wall = time.perf_counter() - t0
    read_log()
    result = {"wall": wall, "rc": proc.returncode, "first_step": seen["step0"]}
    if seen["waiting"] is not None and seen["step0"] is not None:
        result["engine_waited"] = seen["step0"] - seen["waiting"]
        result["engine_listening"] = seen["waiting"]
    if rss:
        result["peak_rss_mib"] = peak / 2**20
    return result


def vm_hwm(pid: int) -> int:
    """Peak resident memory of a process so far, bytes (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


# ------------------------------------------------------------- in-process numbers

def measure(spec: dict) -> None:
    """One in-process measurement in this (fresh) process; prints JSON."""
    import warnings

    warnings.simplefilter("ignore")
    os.environ["STREAMRUN_CACHE_DIR"] = spec["cache"]
    import MDAnalysis as mda
    from MDAnalysis.core._get_readers import get_parser_for

    from streamrun import lammpsdata
    from streamrun.pcoords import calculator

    topology, options = Path(spec["topology"]), spec["options"]
    # VmHWM, not ru_maxrss: a child's ru_maxrss starts at its parent's peak
    before = vm_hwm(os.getpid())
    t, c = time.perf_counter(), time.process_time()
    what = spec["what"]
    if what == "parse":  # MDAnalysis alone
        with get_parser_for(str(topology), format="DATA")(str(topology)) as parser:
            parser.parse(**options)
        outcome = "MDAnalysis"
    elif what in ("store", "load"):  # a segment's topology, cache empty / filled
        _, outcome = calculator.load_topology(topology, "DATA", options)
    else:  # the start structure, read onto the (cached) topology
        top, outcome = calculator.load_topology(topology, "DATA", options)
        before = vm_hwm(os.getpid())
        t, c = time.perf_counter(), time.process_time()
        fmt = "DATA" if what == "read_mdanalysis" else lammpsdata.register()
        universe = mda.Universe(top, spec["start"], format=fmt, **options)
        universe.atoms.positions  # noqa: B018 - read
    out = {"wall": time.perf_counter() - t, "cpu": time.process_time() - c,
           "rss_growth_mib": (vm_hwm(os.getpid()) - before) / 2**20,
           "cache": str(outcome)}
    print(json.dumps(out))


def in_process(work: Path, name: str, topology: Path, options: dict, start: Path,
               say) -> dict:
    """The in-process numbers of one system, each in a fresh Python process."""
    cache = work / f"measure-cache-{name}"
    shutil.rmtree(cache, ignore_errors=True)
    found = {}
    for what in ("parse", "store", "load", "read_mdanalysis", "read_streamrun"):
        spec = {"what": what, "topology": str(topology), "options": options,
                "start": str(start), "cache": str(cache)}
        proc = subprocess.run([sys.executable, __file__, "measure", json.dumps(spec)],
                              cwd=work, env=bench_env(), capture_output=True,
                              text=True, timeout=1200)
        if proc.returncode != 0:
            raise RuntimeError(f"measure {what} ({name}) failed:\n{proc.stderr[-2000:]}")
        found[what] = json.loads(proc.stdout.strip().splitlines()[-1])
        say(f"  {name}: {what}: wall {found[what]['wall']:.2f} s, CPU "
            f"{found[what]['cpu']:.2f} s, peak RSS +{found[what]['rss_growth_mib']:.0f}"
            f" MiB ({found[what]['cache']})")
    entries = list((cache / "topologies").glob("*.pickle"))
    found["entry_mib"] = entries[0].stat().st_size / 2**20 if entries else None
    return found


# --------------------------------------------------------------------------- run

def run(args, work, say):
    nsteps = args.nsteps or (8 if args.quick else 24)
    repeats = args.repeats or (1 if args.quick else 3)
    system = build_lj(work / "systems")
    natoms = atoms_of(system)
    frame = 12 * natoms
    target_rss = (TARGET_RSS_BYTES + 4 * frame) / 2**20
    segment_in = work / "segment.in"
    segment_in.write_text(SEGMENT.format(imd=IMD))
    alone_in = work / "alone.in"
    alone_in.write_text(SEGMENT.format(imd=""))
    config = work / "streamrun.yaml"
    config.write_text(yaml.safe_dump({
        "engine": {"name": "lammps", "input": str(segment_in), "nsteps": nsteps,
                   "frame_interval": 1, "variables": {"start": str(system)}},
        "topology": str(system), "topology_options": {"atom_style": "id type x y z"},
        "start": str(system),
        "pcoord": [{"type": "distance", "name": "d12", "a": "index 0",
                    "b": "index 1"}]}))
    runs = work / "runs"
    runs.mkdir(exist_ok=True)
    say(f"system: {natoms:,} atoms (fcc argon, atom IDs in random order), positions "
        f"only, a frame every step, {nsteps} steps; {repeats} repeat(s) of "
        f"seg1, seg2, seg2_off, alone")

    def streamed(folder: Path, start: Path, cache) -> dict:
        env = bench_env(STREAMRUN_CACHE_DIR=cache)
        r = watch([*streamrun_cmd(), "run", "-c", str(config), "-w", str(folder),
                   "--set", f"start={start}", "--set", f"engine.variables.start={start}"],
                  runs, folder / "streamrun-engine.log", env,
                  folder.parent / f"{folder.name}.out", rss=True)
        out = (folder.parent / f"{folder.name}.out").read_text(errors="replace")
        if r["rc"] != 0 or r["first_step"] is None:
            tail = "\n".join(out.strip().splitlines()[-5:])
            raise RuntimeError(f"streamrun in {folder} failed (exit {r['rc']}): {tail}")
        launched = parse_summary(out).get("launch")
        if launched is not None:
            r["engine_launched"] = launched
        return r

    def seg1(i):
        return streamed(runs / f"seg1_{i}", system, work / f"cache_{i}")

    def seg2(i):
        return streamed(runs / f"seg2_{i}", runs / f"seg1_{i}" / "end.data",
                        work / f"cache_{i}")

    def seg2_off(i):
        return streamed(runs / f"seg2off_{i}", runs / f"seg1_{i}" / "end.data", "off")

    def alone(i):
        folder = runs / f"alone_{i}"
        folder.mkdir()
        cmd = [lmp(), "-in", str(alone_in), "-log", "none", "-nocite", "-var",
               "streamrun_nsteps", str(nsteps), "-var", "start",
               str(runs / f"seg1_{i}" / "end.data")]
        r = watch(cmd, folder, folder / "engine.log", bench_env(), folder / "engine.log")
        if r["rc"] != 0 or r["first_step"] is None:
            raise RuntimeError(f"the engine alone failed in {folder} (exit {r['rc']})")
        return r

    res = interleave({"seg1": seg1, "seg2": seg2, "seg2_off": seg2_off,
                      "alone": alone}, repeats, say)

    say("in-process, each in a fresh Python (topology; start structure = segment "
        "1's end.data):")
    start = runs / "seg1_0" / "end.data"
    numbers = {"argon": in_process(work, "argon", system,
                                   {"atom_style": "id type x y z"}, start, say)}
    if not args.quick:
        water = build_water(work / "systems")
        numbers["water"] = in_process(work, "water", water, {}, water, say)

    first = {name: column(rs, "first_step") for name, rs in res.items()}
    diffs = [s - a for s, a in zip(first["seg2"], first["alone"])
             if None not in (s, a)]
    ratios = [s / a for s, a in zip(first["seg2"], first["alone"])
              if None not in (s, a)]
    rss = [x for x in column(res["seg2"], "peak_rss_mib") if x is not None]
    d, r, peak = med(diffs), med(ratios), max(rss) if rss else float("nan")
    out = {"benchmark": "large", "target": f"segment 2: first step <= engine alone + "
           f"{TARGET_SECONDS:g} s; peak RSS <= 1 GiB + 4 frames ({target_rss:.0f} MiB)",
           "atoms": natoms, "nsteps": nsteps, "frame_interval": 1, "repeats": repeats,
           "frame_bytes": frame, "runs": res, "in_process": numbers,
           "seg2_minus_alone_first_step": diffs, "seg2_over_alone_first_step": ratios}

    def cell(values, fmt="{:.2f}"):
        values = [v for v in values if v is not None]
        if not values:
            return "-"
        low, high = spread(values)
        return f"{fmt.format(med(values))} ({fmt.format(low)}-{fmt.format(high)})"

    rows = [[name, cell(first[name]), cell(column(rs, "engine_listening")),
             cell(column(rs, "engine_waited")), cell(column(rs, "engine_launched")),
             cell(column(rs, "peak_rss_mib"), "{:.0f}"), cell(column(rs, "wall"))]
            for name, rs in res.items()]
    text = table(rows, ["run", "first step s", "engine listens s", "engine waited s",
                        "engine launched s", "peak RSS MiB", "wall s"])
    lines = ["", "medians (range) over the repeats; seconds from the start of the "
             "command; 'engine waited': its IMD wait to its step 0 (fix imd's own "
             "set-up included)."]
    for name, found in numbers.items():
        p, s, lo = found["parse"], found["store"], found["load"]
        rm, rf = found["read_mdanalysis"], found["read_streamrun"]
        lines.append(
            f"{name} (in-process, wall/CPU s): MDAnalysis parse {p['wall']:.2f}/"
            f"{p['cpu']:.2f} (+{p['rss_growth_mib']:.0f} MiB); first segment "
            f"(parse + store) {s['wall']:.2f}/{s['cpu']:.2f}; cache load "
            f"{lo['wall']:.2f}/{lo['cpu']:.2f} (entry {found['entry_mib']:.0f} MiB); "
            f"start structure: MDAnalysis' DATA reader {rm['wall']:.2f}/{rm['cpu']:.2f}"
            f", streamrun's {rf['wall']:.2f}/{rf['cpu']:.2f}.")
    ok_time = verdict(d, TARGET_SECONDS, "<=")
    ok_rss = verdict(peak, round(target_rss), "<=")
    lines += [
        f"segment 2, first step: {med(first['seg2']):.2f} s; engine alone "
        f"{med(first['alone']):.2f} s; difference (paired median) {d:+.2f} s, ratio "
        f"{r:.3f}; target: difference <= {TARGET_SECONDS:g} s: {ok_time}.",
        f"segment 2, streamrun's peak RSS {peak:.0f} MiB (largest of the repeats); "
        f"target 1 GiB + 4 frames of {frame / 2**20:.1f} MiB = {target_rss:.0f} MiB: "
        f"{ok_rss}.",
        f"without the cache (seg2_off) segment 2's first step came at "
        f"{med(first['seg2_off']):.2f} s, the simulation's first segment's at "
        f"{med(first['seg1']):.2f} s.",
        load_note(res)]
    out["result"] = {"seg2_minus_alone_s": d, "seg2_over_alone": r,
                     "seg2_peak_rss_mib": peak, "target_rss_mib": target_rss,
                     "verdict": f"first step - engine alone {ok_time}; peak RSS "
                                f"{ok_rss}"}
    out["failures"] = failures(res)
    text += "\n".join(lines) + failure_note(res)
    return out, text


if __name__ == "__main__":
    if sys.argv[1:2] != ["measure"]:
        sys.exit(f"usage: {sys.argv[0]} measure SPEC (run it as benchmarks/run.py large)")
    measure(json.loads(sys.argv[2]))
