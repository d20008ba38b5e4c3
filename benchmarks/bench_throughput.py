"""Benchmark 3 - consumer throughput on a 100k-atom IMD v3 stream.

The stream comes from ``fake_engine.py``: a process that takes LAMMPS' command line,
does the IMD v3 handshake and sends a fixed 100,000-atom frame (time, box,
positions, velocities, forces, as LAMMPS sends by default: 3.6 MB a frame) as fast
as the client takes it, honouring pause/resume. The consumer limits the rate.
Variants, each a fresh process and a fresh stream, interleaved:

  raw     bare imdclient: IMDClient(...) then get_imdframe() until EOF
  reader  streamrun's connect + FrameReader + PcoordCalculator (distance pcoord),
          the main thread joining the reader as streamrun's does
  cli     the real ``streamrun run`` with fake_engine.py as engine.executable;
          rate = frames / stream seconds from its summary line

Same imdclient buffer size for all (streamrun's rule). Target: reader/raw >= 0.8
(and cli/raw). ``x`` variants (positions only, 1.2 MB a frame) are run too.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import yaml

from common import (HERE, check, column, failure_note, failures, interleave,
                    load_note, med, paired_ratios, parse_summary, spread,
                    streamrun_cmd, table, timed_run, verdict)

TARGET = 0.8

DUMMY_INPUT = """\
# input for fake_engine.py: never executed; it satisfies streamrun's LAMMPS checks
fix stream all imd ${streamrun_port} version 3 trate ${streamrun_every} unwrap on
run ${streamrun_nsteps}
"""


def fmt(value, spec):
    """A number for the table, or '-' if not measured."""
    return "-" if value is None or value != value else format(value, spec)


def write_topology(path, natoms, length=100.0):
    """A LAMMPS data file of natoms atoms (atom_style atomic)."""
    rng = np.random.default_rng(1)
    xyz = rng.random((natoms, 3)) * length
    with open(path, "w") as f:
        f.write(f"fake box\n\n{natoms} atoms\n1 atom types\n\n0 {length} xlo xhi\n"
                f"0 {length} ylo yhi\n0 {length} zlo zhi\n\nMasses\n\n1 39.948\n\n"
                f"Atoms # atomic\n\n")
        np.savetxt(f, np.column_stack([np.arange(1, natoms + 1), np.ones(natoms), xyz]),
                   fmt=["%d", "%d", "%.4f", "%.4f", "%.4f"])


def run(args, work, say):
    natoms = args.atoms
    frames = args.frames or (500 if args.quick else 2000)
    repeats = args.repeats or (2 if args.quick else 5)
    every = args.every
    topo = work / f"fake{natoms}.data"
    write_topology(topo, natoms)
    (work / "fake.in").write_text(DUMMY_INPUT)
    engine = work / "fake_lmp"
    engine.write_text(f"#!/bin/sh\nexec {sys.executable} {HERE / 'fake_engine.py'} "
                      f"\"$@\"\n")
    engine.chmod(0o755)
    configs = {}
    for fields in ("xvf", "x"):
        cfg = {"engine": {"input": "fake.in", "executable": str(engine),
                          "nsteps": frames * every, "frame_interval": every,
                          "variables": {"natoms": natoms, "fields": fields}},
               "topology": topo.name, "topology_options": {"atom_style": "id type x y z"},
               "pcoord": [{"type": "distance", "name": "d12", "a": "index 0",
                           "b": "index 1"}]}
        configs[fields] = work / f"streamrun_{fields}.yaml"
        configs[fields].write_text(yaml.safe_dump(cfg))
    bytes_per_frame = {"xvf": 32 + 44 + 3 * (8 + 12 * natoms),
                       "x": 32 + 44 + 8 + 12 * natoms}
    runs = work / "runs"
    runs.mkdir()

    def consumer(mode, fields):
        def go(i):
            t = check(timed_run([sys.executable, str(HERE / "consume.py"), mode,
                                 str(configs[fields])], work), f"consumer {mode}")
            r = json.loads(t.stdout.strip().splitlines()[-1])
            if r["error"]:
                raise RuntimeError(f"consumer {mode}: {r['error']}")
            rate = r["frames"] / r["seconds"]
            return {"fps": rate, "gbps": rate * bytes_per_frame[fields] / 1e9,
                    "seconds": r["seconds"], "compute": r["compute"],
                    # consumer CPU per frame: what the consumer costs, whatever
                    # else runs on the machine
                    "cpu_ms_per_frame": r["consumer_cpu"] / r["frames"] * 1e3,
                    "engine_cpu_ms_per_frame": r["engine_cpu"] / r["frames"] * 1e3}
        return go

    def cli(fields):
        def go(i):
            folder = runs / f"cli_{fields}_{i}"
            t = check(timed_run([*streamrun_cmd(), "run", "-c", str(configs[fields]),
                                 "-w", str(folder)], work),
                      "streamrun (fake engine)", folder / "streamrun-engine.log")
            s = parse_summary(t.stderr)
            rate = frames / s["stream"]
            return {"fps": rate, "gbps": rate * bytes_per_frame[fields] / 1e9,
                    "seconds": s["stream"], "compute": s["compute"], "wall": t.wall}
        return go

    say(f"{natoms} atoms, {frames} frames per stream ({bytes_per_frame['xvf'] / 1e6:.2f} "
        f"MB/frame x+v+f, {bytes_per_frame['x'] / 1e6:.2f} MB x only), {repeats} repeats")
    variants = {"raw": consumer("raw", "xvf"), "reader": consumer("reader", "xvf"),
                "cli": cli("xvf")}
    if not args.quick:
        variants.update({"raw_x": consumer("raw", "x"), "reader_x": consumer("reader", "x"),
                         "cli_x": cli("x")})
    res = interleave(variants, repeats, say)

    out = {"benchmark": "throughput", "target": f"streamrun/raw >= {TARGET} (frames/s)",
           "atoms": natoms, "frames": frames, "repeats": repeats,
           "bytes_per_frame": bytes_per_frame, "variants": {}}
    rows = []
    for name, results in res.items():
        raw = "raw_x" if name.endswith("_x") else "raw"
        fps = column(results, "fps")
        ratios = paired_ratios(fps, column(res[raw], "fps"))
        cpf = column(results, "cpu_ms_per_frame")
        entry = {"fps_median": med(fps), "fps_range": spread(fps),
                 "consumer_cpu_ms_per_frame_median": med(cpf),
                 "cpu_ratio_to_raw_median": med(paired_ratios(
                     column(res[raw], "cpu_ms_per_frame"), cpf))
                 if any(x is not None for x in cpf) else None,
                 "gbps_median": med(column(results, "gbps")),
                 "ratio_to_raw_median": med(ratios),
                 "ratio_to_raw_each": [round(r, 4) for r in ratios],
                 "pcoord_compute_s_median": med(column(results, "compute")),
                 "runs": results}
        out["variants"][name] = entry
        rows.append([name, f"{entry['fps_median']:.1f}",
                     f"{entry['fps_range'][0]:.1f}-{entry['fps_range'][1]:.1f}",
                     f"{entry['gbps_median']:.3f}", f"{entry['ratio_to_raw_median']:.3f}",
                     fmt(entry["consumer_cpu_ms_per_frame_median"], ".2f"),
                     fmt(entry["cpu_ratio_to_raw_median"], ".3f")])
    r_reader = out["variants"]["reader"]["ratio_to_raw_median"]
    r_cli = out["variants"]["cli"]["ratio_to_raw_median"]
    out["result"] = {"reader_over_raw": r_reader, "cli_over_raw": r_cli,
                     "verdict": f"reader {verdict(r_reader, TARGET, '>=')}; "
                                f"cli {verdict(r_cli, TARGET, '>=')}"}
    text = table(rows, ["variant", "frames/s (median)", "range", "GB/s",
                        "/ raw (paired median)", "consumer CPU ms/frame",
                        "raw CPU / this CPU"])
    text += (f"\n\n{natoms} atoms, {frames} frames per stream, {repeats} repeats; "
             f"raw = bare imdclient loop, reader = streamrun FrameReader + "
             f"PcoordCalculator (distance), cli = streamrun run; _x = positions only.\n"
             f"Consumer CPU ms/frame: CPU of the consuming process (all its threads) "
             f"while streaming, per frame (not measured for cli).\n"
             f"{load_note(res)}\n{out['result']['verdict']}")
    out["failures"] = failures(res)
    text += failure_note(res)
    return out, text
