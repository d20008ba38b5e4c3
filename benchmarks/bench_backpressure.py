"""Extra - back-pressure: a big stream whose pcoord is slower than the engine.

A 100,800-atom LAMMPS box with no interactions (``pair_style zero``, ``fix nve``)
streams a frame every step (x, v, f: 3.6 MB a frame); the pcoord is a plugin that
takes ``--sleep-ms`` (default 15 ms) per frame without holding the GIL (like a
compiled analysis), so the pcoord, not the engine, sets the pace and imdclient's
buffer fills: imdclient pauses the engine and resumes it when half the buffer is
free. streamrun sizes that buffer for at least 8 frames. Variants, interleaved:

  b0   streamrun, distance pcoord only (how fast the engine streams by itself)
  b    streamrun with the slow plugin

Ideal stream time for b: max(b0's stream time, b's pcoord compute time).
"""

from __future__ import annotations

import yaml

from common import (check, column, failure_note, failures, interleave, load_note, med,
                    parse_summary, run_lmp, streamrun_cmd, table, timed_run)

BUILD = """\
units real
atom_style atomic
lattice fcc 5.26
region box block 0 30 0 30 0 28
create_box 1 box
create_atoms 1 box
mass 1 39.948
write_data big.data
"""

SEGMENT = """\
units real
atom_style atomic
read_data {data}
pair_style zero 5.0
pair_coeff * *
velocity all create 100.0 1 dist gaussian
fix nve all nve
timestep 1.0
thermo 100
fix stream all imd ${{streamrun_port}} version 3 trate ${{streamrun_every}} unwrap on
run ${{streamrun_nsteps}}
"""

PLUGIN = """\
import time


def slow(u):
    time.sleep({seconds!r})  # stands for a compiled analysis that releases the GIL
    return 0.0
"""


def run(args, work, say):
    nsteps = args.nsteps or (100 if args.quick else 300)
    every = 1
    sleep_ms = args.sleep_ms
    repeats = args.repeats or (2 if args.quick else 4)
    (work / "build.in").write_text(BUILD)
    run_lmp(["-in", "build.in"], cwd=work)
    data = work / "big.data"
    (work / "segment.in").write_text(SEGMENT.format(data=data))
    (work / "slow_plugin.py").write_text(PLUGIN.format(seconds=sleep_ms / 1e3))
    base = {"engine": {"input": "segment.in", "nsteps": nsteps, "frame_interval": every},
            "topology": "big.data", "topology_options": {"atom_style": "id type x y z"},
            "pcoord": [{"type": "distance", "name": "d12", "a": "index 0",
                        "b": "index 1"}]}
    configs = {"fast": dict(base), "slow": dict(base)}
    configs["slow"]["pcoord"] = base["pcoord"] + [
        {"type": "plugin", "name": "slow", "function": "slow_plugin.py:slow"}]
    paths = {}
    for name, cfg in configs.items():
        paths[name] = work / f"streamrun_{name}.yaml"
        paths[name].write_text(yaml.safe_dump(cfg))
    runs = work / "runs"
    runs.mkdir()

    def streamed(cfg):
        def go(i):
            folder = runs / f"{cfg}_{i}"
            t = check(timed_run([*streamrun_cmd(), "run", "-c", str(paths[cfg]), "-w",
                                 str(folder)], work), f"streamrun ({cfg})",
                      folder / "streamrun-engine.log")
            s = parse_summary(t.stderr)
            return {"wall": t.wall, "stream": s.get("stream"), "compute": s.get("compute"),
                    "paused": s.get("paused"), "pauses": s.get("pauses")}
        return go

    say(f"100800 atoms, {nsteps} frames (one per step, x+v+f 3.6 MB each), pcoord "
        f"plugin {sleep_ms:g} ms/frame, {repeats} repeats")
    res = interleave({"b0": streamed("fast"), "b": streamed("slow")}, repeats, say)
    ideal = [max(e, c) for e, c in zip(column(res["b0"], "stream"),
                                       column(res["b"], "compute"))
             if None not in (e, c)]
    out = {"benchmark": "backpressure", "atoms": 100800, "frames": nsteps,
           "sleep_ms": sleep_ms, "repeats": repeats, "ideal_stream_s_median": med(ideal),
           "variants": {}}
    rows = []
    for name, r in res.items():
        e = {k + "_median": med(column(r, k)) for k in
             ("wall", "stream", "compute", "paused", "pauses")}
        e["runs"] = r
        out["variants"][name] = e
        rows.append([name, f"{e['wall_median']:.2f}", f"{e['stream_median']:.2f}",
                     f"{e['compute_median']:.2f}", f"{e['paused_median']:.2f}",
                     f"{e['pauses_median']:.0f}"])
    efficiency = med(ideal) / out["variants"]["b"]["stream_median"]
    out["result"] = {"b_efficiency": efficiency,
                     "verdict": f"b reaches {efficiency:.0%} of the ideal stream time"}
    text = table(rows, ["variant", "wall s", "stream s", "pcoord s", "engine paused s",
                        "pauses"])
    text += (f"\n\nideal stream time (max of b0's stream and b's pcoord): {med(ideal):.2f} s;"
             f" b reaches {efficiency:.0%} of it.\n{load_note(res)}")
    out["failures"] = failures(res)
    text += failure_note(res)
    return out, text
