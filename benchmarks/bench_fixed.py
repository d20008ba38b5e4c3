"""Benchmark 4 - fixed overhead per segment and bytes written to disk.

The bundled example segment (example_sims/nacl_lammps: 917 atoms, 500 steps, 50
frames) run with the real ``streamrun run`` command. Time stamps (wall clock):

  start        just before the benchmark starts ``streamrun run``
  launch       the engine program starts (a bash wrapper around lmp stamps it)
  row0         streamrun has computed pcoord row 0 (a plugin column stamps it)
  first/last   streamrun computes the first / last streamed frame's row (plugin)
  engine_exit  lmp has exited (the wrapper stamps it)
  exit         ``streamrun run`` has exited (the benchmark sees it)

Targets: start -> launch <= 0.5 s; last frame -> exit <= 0.5 s (split into the
engine's wind-down, last -> engine_exit, and streamrun's, engine_exit -> exit).
Import time: ``python -X importtime -c 'import streamrun.cli'`` and the imports
of a real run (``python -X importtime -m streamrun run ...``).

Bytes: a plain run (distance pcoord only) under ``bash -c 'streamrun ...; cat
/proc/$$/io'``: the kernel adds a reaped child's I/O counters to its parent, so
the shell's write_bytes is that of streamrun and its whole engine tree. Files
created in the segment folder are listed with their sizes; the engine log is one
of them (streamrun writes it on purpose).
"""

from __future__ import annotations

import os
import re
import stat
import sys
import time
from pathlib import Path

import yaml

from common import (EXAMPLE, bench_env, check, column, failure_note, failures,
                    interleave, lmp, load_note, med, spread, streamrun_cmd, table,
                    timed_run, verdict)

TARGET = 0.5

WRAPPER = """#!/bin/bash
# engine wrapper of the benchmark: stamps the engine's start and exit
echo "$EPOCHREALTIME launch" >> "$STREAMRUN_BENCH_STAMPS"
{lmp} "$@"
rc=$?
echo "$EPOCHREALTIME engine_exit" >> "$STREAMRUN_BENCH_STAMPS"
exit $rc
"""

STAMP_PLUGIN = '''\
"""pcoord column that records when streamrun computes each row (benchmark only).
Writes each stamp at once (not at exit: a process may skip its exit handlers)."""
import os
import time

_F = open(os.environ["STREAMRUN_BENCH_STAMPS"] + ".rows", "a", buffering=1)


def stamp(u):
    _F.write(f"{time.time()!r}\\n")
    return 0.0
'''


def config(folder: Path, name: str, executable: str | None, plugin: bool) -> Path:
    ex = yaml.safe_load((EXAMPLE / "streamrun.yaml").read_text())
    ex["engine"]["input"] = str(EXAMPLE / ex["engine"]["input"])
    ex["engine"]["variables"]["start"] = str(EXAMPLE / "start.data")
    ex["topology"] = str(EXAMPLE / ex["topology"])
    if executable:
        ex["engine"]["executable"] = executable
    if plugin:
        ex["pcoord"].append({"type": "plugin", "name": "stamp",
                             "function": str(folder / "stamp_plugin.py") + ":stamp"})
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(ex))
    return path


def parse_io(text: str) -> dict:
    return {k: int(v) for k, v in re.findall(r"^(\w+): (\d+)$", text, re.M)}


def files_in(folder: Path) -> dict:
    out = {}
    for p in sorted(folder.rglob("*")):
        st = p.lstat()
        if stat.S_ISREG(st.st_mode):
            out[str(p.relative_to(folder))] = st.st_size
        elif stat.S_ISLNK(st.st_mode):
            out[str(p.relative_to(folder)) + " (symlink)"] = 0
    return out


def importtime(stderr: str) -> dict:
    """Cumulative import time (s) of the top-level packages in -X importtime."""
    tops, total = {}, 0
    for line in stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)", line)
        if not m:
            continue
        self_us, cum_us, indent, name = int(m[1]), int(m[2]), len(m[3]), m[4]
        total += self_us
        if indent == 1:
            top = name.split(".")[0]
            tops[top] = tops.get(top, 0) + cum_us
    return {"total": total / 1e6,
            "top": {k: round(v / 1e6, 3) for k, v in
                    sorted(tops.items(), key=lambda kv: -kv[1])[:12]}}


def run(args, work, say):
    repeats = args.repeats or (3 if args.quick else 7)
    wrapper = work / "lmp_stamped"
    wrapper.write_text(WRAPPER.format(lmp=lmp()))
    wrapper.chmod(0o755)
    (work / "stamp_plugin.py").write_text(STAMP_PLUGIN)
    timed_cfg = config(work, "timed", str(wrapper), plugin=True)
    plain_cfg = config(work, "plain", None, plugin=False)
    lock_dir = Path(os.environ.get("STREAMRUN_LOCK_DIR") or
                    Path(os.environ.get("TMPDIR", "/tmp")) / f"streamrun-ports-{os.getuid()}")
    runs = work / "runs"
    runs.mkdir()

    def timed(i, tag=""):
        seg = runs / f"timed{tag}_{i}"
        stamps = runs / f"stamps{tag}_{i}.txt"
        env = bench_env(STREAMRUN_BENCH_STAMPS=stamps)
        t_start = time.time()
        t = check(timed_run([*streamrun_cmd(), "run", "-c", str(timed_cfg), "-w",
                             str(seg)], runs, env=env), f"streamrun (timed{tag})",
                  seg / "streamrun-engine.log")
        t_exit = time.time()
        s = {name: float(v) for v, name in
             (line.split() for line in stamps.read_text().splitlines())}
        rows = [float(x) for x in Path(str(stamps) + ".rows").read_text().split()]
        s.update(row0=rows[0], first=rows[1], last=rows[-1])
        return {"start_to_launch": s["launch"] - t_start,
                "launch_to_row0": s["row0"] - s["launch"],
                "start_to_row0": s["row0"] - t_start,
                "launch_to_first_frame": s["first"] - s["launch"],
                "start_to_first_frame": s["first"] - t_start,
                "last_frame_to_engine_exit": s["engine_exit"] - s["last"],
                "engine_exit_to_exit": t_exit - s["engine_exit"],
                "last_frame_to_exit": t_exit - s["last"],
                "wall": t.wall}

    def plain(i, tag=""):
        seg = runs / f"plain{tag}_{i}"
        seg.mkdir()
        locks_before = set(os.listdir(lock_dir)) if lock_dir.is_dir() else set()
        # bench_env: bytecode is cached outside the source tree, as on a user's
        # machine (run.py compiled it before the first run)
        env = bench_env()
        cmd = " ".join([*streamrun_cmd(), "run", "-c", str(plain_cfg), "-w", str(seg),
                        "-q"])
        t = check(timed_run(["bash", "-c", f"{cmd}; rc=$?; cat /proc/$$/io; exit $rc"],
                            seg, env=env), "streamrun (plain)", seg / "streamrun-engine.log")
        io = parse_io(t.stdout)
        files = files_in(seg)
        locks_after = set(os.listdir(lock_dir)) if lock_dir.is_dir() else set()
        return {"write_bytes": float(io.get("write_bytes", -1)),
                "cancelled_write_bytes": float(io.get("cancelled_write_bytes", -1)),
                "wchar": float(io.get("wchar", -1)),
                "files_bytes": float(sum(files.values())),
                "log_bytes": float(files.get("streamrun-engine.log", 0)),
                "files": files, "new_lock_files": len(locks_after - locks_before),
                "wall": t.wall}

    say("warm-up (not counted)")
    timed(0, tag="warm")
    plain(0, tag="warm")
    res = interleave({"timed": timed, "plain": plain}, repeats, say)

    # import time: the cli module alone, then everything a real run imports
    say("import time: python -X importtime -c 'import streamrun.cli' (5x), "
        "and one real run under -X importtime")
    imp = []
    for _ in range(5):
        t = timed_run([sys.executable, "-X", "importtime", "-c", "import streamrun.cli"],
                      work)
        imp.append(importtime(t.stderr))
    bare = [timed_run([sys.executable, "-c", "pass"], work).wall for _ in range(5)]
    cli_wall = [timed_run([sys.executable, "-c", "import streamrun.cli"], work).wall
                for _ in range(5)]
    seg = runs / "importtime"
    t = check(timed_run([sys.executable, "-X", "importtime", "-m", "streamrun", "run",
                         "-c", str(plain_cfg), "-w", str(seg), "-q"], runs),
              "streamrun -X importtime")
    real = importtime(t.stderr)

    timings = res["timed"]
    keys = ["start_to_launch", "start_to_first_frame", "start_to_row0", "launch_to_row0",
            "launch_to_first_frame", "last_frame_to_engine_exit", "engine_exit_to_exit",
            "last_frame_to_exit"]
    summary = {k: {"median": med(column(timings, k)), "range": spread(column(timings, k))}
               for k in keys}
    plain_runs = res["plain"]
    files = next((r["files"] for r in reversed(plain_runs) if "files" in r), {})
    out = {"benchmark": "fixed", "segment": "example_sims/nacl_lammps (917 atoms, "
           "500 steps, 50 frames)", "repeats": repeats,
           "target": f"start->launch <= {TARGET} s, last frame->exit <= {TARGET} s, "
                     f"no bytes beyond the asked-for files",
           "timings_s": summary, "runs_timed": timings,
           "import_s": {"python_bare_wall": med(bare),
                        "import_streamrun_cli_wall": med(cli_wall),
                        "import_streamrun_cli_importtime": med([x["total"] for x in imp]),
                        "import_streamrun_cli_top": imp[-1]["top"],
                        "real_run_importtime_total": real["total"],
                        "real_run_top": real["top"]},
           "disk": {"write_bytes_median": med(column(plain_runs, "write_bytes")),
                    "cancelled_write_bytes_median": med(column(plain_runs,
                                                               "cancelled_write_bytes")),
                    "wchar_median": med(column(plain_runs, "wchar")),
                    "files_bytes_median": med(column(plain_runs, "files_bytes")),
                    "engine_log_bytes_median": med(column(plain_runs, "log_bytes")),
                    "files_in_segment_folder": files,
                    "new_port_lock_files_per_segment": med(column(plain_runs,
                                                                  "new_lock_files")),
                    "port_lock_dir": str(lock_dir),
                    "port_lock_files_now": len(os.listdir(lock_dir))
                    if lock_dir.is_dir() else 0}}
    s2l = summary["start_to_launch"]["median"]
    l2e = summary["last_frame_to_exit"]["median"]
    # write_bytes counts 4 KiB pages as they are dirtied; pages of files deleted
    # before they reach the disk (tempfile's writability probes) are "cancelled"
    net = out["disk"]["write_bytes_median"] - out["disk"]["cancelled_write_bytes_median"]
    pages = sum(-(-v // 4096) * 4096 for v in files.values())
    extra = net - pages
    out["disk"]["net_write_bytes_median"] = net
    out["disk"]["files_bytes_in_4k_pages"] = pages
    out["result"] = {"start_to_launch": s2l, "last_frame_to_exit": l2e,
                     "write_bytes_beyond_files": extra,
                     "verdict": f"start->launch {verdict(s2l, TARGET, '<=')}; "
                                f"last frame->exit {verdict(l2e, TARGET, '<=')}"}
    rows = [[k, f"{summary[k]['median']:.3f}",
             f"{summary[k]['range'][0]:.3f}-{summary[k]['range'][1]:.3f}"] for k in keys]
    text = table(rows, ["phase", "median s", "range s"])
    i = out["import_s"]
    text += (f"\n\nimport: python -c pass {i['python_bare_wall']:.3f} s; python -c "
             f"'import streamrun.cli' {i['import_streamrun_cli_wall']:.3f} s wall "
             f"(-X importtime sum {i['import_streamrun_cli_importtime']:.3f} s); a real "
             f"run imports for {i['real_run_importtime_total']:.3f} s: "
             + ", ".join(f"{k} {v:.2f}" for k, v in list(i["real_run_top"].items())[:8]))
    d = out["disk"]
    text += (f"\n\ndisk per segment: write_bytes {d['write_bytes_median']:.0f} B of the "
             f"streamrun+engine tree, of which {d['cancelled_write_bytes_median']:.0f} B "
             f"cancelled (deleted before writeback) = {net:.0f} B net; files in the "
             f"segment folder {d['files_bytes_median']:.0f} B ({pages} B in 4 KiB pages) = "
             + ", ".join(f"{k} {v} B" for k, v in files.items())
             + f" (the engine log is written on purpose); net bytes beyond these "
             f"files: {extra:.0f} B. New port lock files per segment: "
             f"{d['new_port_lock_files_per_segment']:.0f} (empty; {d['port_lock_files_now']} "
             f"now in {lock_dir}).")
    text += f"\n{load_note(res)}\n{out['result']['verdict']}"
    out["failures"] = failures(res)
    text += failure_note(res)
    return out, text
