#!/usr/bin/env python
"""streamrun benchmarks: one command each.

    python benchmarks/run.py overhead     # 1. streaming overhead vs the engine alone
    python benchmarks/run.py overlap      # 2. engine/pcoord overlap vs runseg.sh way
    python benchmarks/run.py throughput   # 3. consumer frames/s and GB/s vs raw imdclient
    python benchmarks/run.py fixed        # 4. fixed overhead per segment, bytes written
    python benchmarks/run.py westpa       # 5. WESTPA segments/minute, 2 workers
    python benchmarks/run.py warm         # 6. warm-path segment in a worker vs the
                                          #    engine alone
    python benchmarks/run.py openmm_westpa  # 7. OpenMM under WESTPA: streamrun vs an
                                            #    in-process peer and a tutorial runseg.sh
    python benchmarks/run.py all          # all seven, one after the other
    python benchmarks/run.py backpressure # extra: 100k-atom stream, pcoord slower
                                          # than the engine (imdclient pauses)
    python benchmarks/run.py pcoords      # per-frame cost of each built-in coordinate
                                          # (25k, 100k atoms); rmsd+rg+distance vs raw
    python benchmarks/run.py large        # 1M-atom LAMMPS system: a simulation's 2nd
                                          # segment's start-up (topology cache), RSS

Options: --quick (shorter, fewer repeats), --repeats N, --json FILE, --keep
(keep the temporary folder), --workdir DIR. See benchmarks/README.md.
Each prints a description of the machine, a table and the results as JSON.
"""

from __future__ import annotations

import argparse
import importlib
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
from common import emit, machine_info, machine_line  # noqa: E402

BENCHMARKS = {
    "overhead": "bench_overhead",
    "overlap": "bench_overlap",
    "throughput": "bench_throughput",
    "fixed": "bench_fixed",
    "westpa": "bench_westpa",
    "warm": "bench_warm",
    "openmm_westpa": "bench_openmm_westpa",
    "backpressure": "bench_backpressure",   # extras: not among the five targets
    "pcoords": "bench_pcoords",             # per-coordinate cost; issue 9's target
    "large": "bench_large",                 # 1M atoms: issue 22's topology cache
}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("benchmark", choices=[*BENCHMARKS, "all"])
    p.add_argument("--quick", action="store_true",
                   help="shorter segments and fewer repeats (a smoke test)")
    p.add_argument("--repeats", type=int, help="repeats of each variant (warm: pairs)")
    p.add_argument("--json", metavar="FILE", help="also write the JSON result here")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder")
    p.add_argument("--workdir", help="folder for the runs (default: a new temp folder)")
    p.add_argument("--pycache", help="bytecode cache folder of the measured Python "
                                     "processes [WORKDIR/pycache]")
    # benchmark-specific knobs (each benchmark documents its defaults)
    p.add_argument("--replicate", type=int, default=3,
                   help="overhead: replicate the example box n x n x n [3]")
    p.add_argument("--nsteps", type=int, help="MD steps per segment")
    p.add_argument("--positions-only", action="store_true",
                   help="overhead: also run b_x, streaming positions only")
    p.add_argument("--every", type=int, default=10, help="steps between frames [10]")
    p.add_argument("--atoms", type=int, default=100_000,
                   help="throughput: atoms in the stream [100000]")
    p.add_argument("--frames", type=int, help="throughput, pcoords: frames per stream")
    p.add_argument("--sleep-ms", type=float, default=15.0,
                   help="backpressure: pcoord time per frame [15]")
    p.add_argument("--segments", type=int,
                   help="westpa: iterations to run (segments per iteration ~ bins)")
    p.add_argument("--iterations", type=int,
                   help="openmm_westpa: WESTPA iterations per w_run [6; --quick 2]")
    args = p.parse_args(argv)

    extras = ("backpressure", "pcoords", "large")
    names = ([n for n in BENCHMARKS if n not in extras] if args.benchmark == "all"
             else [args.benchmark])
    machine = machine_info()
    print(f"machine: {machine_line(machine)}", flush=True)
    work = Path(args.workdir) if args.workdir else Path(
        tempfile.mkdtemp(prefix="streamrun-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"work folder: {work}", flush=True)
    # bytecode cache of the benchmarks' Python processes (compiled once, here)
    common.warm_bytecode(Path(args.pycache) if args.pycache else work / "pycache")
    results, texts = {}, {}
    try:
        for name in names:
            module = importlib.import_module(BENCHMARKS[name])
            print(f"\n== {name}: {module.__doc__.strip().splitlines()[0]}", flush=True)
            sub = work / name
            sub.mkdir(exist_ok=True)
            t0 = time.perf_counter()
            out, text = module.run(args, sub, lambda msg: print(msg, flush=True))
            out["benchmark_seconds"] = round(time.perf_counter() - t0, 1)
            out["load_average_at_end"] = [round(x, 2) for x in __import__("os")
                                          .getloadavg()]
            results[name], texts[name] = out, text
            print(f"\n{text}\n(benchmark took {out['benchmark_seconds']:.0f} s)",
                  flush=True)
    finally:
        if not args.keep and not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
        elif args.keep:
            print(f"kept {work}")
    payload = {"machine": machine, "command": " ".join(sys.argv), "results": results}
    if len(names) > 1:
        print("\n== summary")
        for name in names:
            print(f"{name}: {results[name].get('result', {}).get('verdict', '')}")
    emit(payload, args.json)


if __name__ == "__main__":
    main()
