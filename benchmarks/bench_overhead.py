"""Benchmark 1 - streaming overhead.

The same LAMMPS segment (the example's Na+/Cl- water box replicated n x n x n,
PPPM + SHAKE, 1 MPI rank, a frame every 10 steps) run as

  (a) the engine alone: no fix imd, no dump; ``lmp -in ... -log none -nocite`` with
      its output sent to a log file, as streamrun does;
  (b) ``streamrun run`` with a distance pcoord (the engine input is (a) plus the
      README's ``fix imd`` line).

Wall time of the whole command, interleaved a, b, a, b, ...; target b/a <= 1.03.
Also run: (b_x) the same with ``velocities off forces off`` on the fix imd line
(positions only: a third of the bytes), to show what the stream costs per byte.
"""

from __future__ import annotations

import yaml

from common import (Timed, build_water, check, column, failure_note, failures, interleave,
                    lmp_segment_cmd, load_note, loop_cpu, loop_time, med, paired_ratios,
                    parse_summary, spread, streamrun_cmd, table, timed_run, verdict,
                    water_segment)

TARGET = 1.03


def streamrun_config(folder, data, inp, nsteps, every):
    cfg = {"engine": {"input": str(inp), "nsteps": nsteps, "frame_interval": every},
           "topology": str(data),
           "pcoord": [{"type": "distance", "name": "d12", "a": "id 1", "b": "id 2"}]}
    path = folder / f"streamrun_{inp.stem}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def run(args, work, say):
    n, every = args.replicate, args.every
    nsteps = args.nsteps or (100 if args.quick else 200)
    repeats = args.repeats or (2 if args.quick else 3)
    data = build_water(work / "systems", n)
    natoms = int(next(line.split()[0] for line in data.read_text().splitlines()
                      if line.strip().endswith("atoms")))
    inputs = {name: water_segment(work, data, name) for name in ("none", "imd", "imd_x")}
    configs = {name: streamrun_config(work, data, inputs[name], nsteps, every)
               for name in ("imd", "imd_x")}
    runs = work / "runs"
    runs.mkdir(exist_ok=True)
    say(f"system: {natoms} atoms (example box replicated {n}x{n}x{n}), {nsteps} steps, "
        f"a frame every {every} steps ({nsteps // every} frames), {repeats} repeats")

    def engine_alone(i, steps=nsteps, tag=""):
        folder = runs / f"a{tag}_{i}"
        folder.mkdir()
        log = folder / "engine.log"
        t = check(timed_run(lmp_segment_cmd(inputs["none"], every, steps), folder,
                            stdout_path=log), "engine alone", log)
        text = log.read_text()
        return {"wall": t.wall, "cpu": t.cpu, "loop": loop_time(text),
                "loop_cpu": loop_cpu(text)}

    def streamed(name):
        def go(i, steps=nsteps, tag=""):
            folder = runs / f"{name}{tag}_{i}"
            t: Timed = check(timed_run([*streamrun_cmd(), "run", "-c", str(configs[name]),
                                        "-w", str(folder), "--set",
                                        f"engine.nsteps={steps}"], runs),
                             f"streamrun ({name})", folder / "streamrun-engine.log")
            s = parse_summary(t.stderr)
            text = (folder / "streamrun-engine.log").read_text()
            return {"wall": t.wall, "cpu": t.cpu, "loop": loop_time(text),
                    "loop_cpu": loop_cpu(text),
                    "stream": s.get("stream"), "compute": s.get("compute"),
                    "paused": s.get("paused")}
        return go

    say("warm-up (not counted): one short run of each variant")
    engine_alone(0, steps=2 * every, tag="warm")
    streamed("imd")(0, steps=2 * every, tag="warm")

    variants = {"a": engine_alone, "b": streamed("imd")}
    if args.positions_only:
        variants["b_x"] = streamed("imd_x")
    res = interleave(variants, repeats, say)

    a_wall = column(res["a"], "wall")
    out = {"benchmark": "overhead", "target": f"b/a <= {TARGET} (wall of the command)",
           "atoms": natoms, "nsteps": nsteps, "frame_interval": every,
           "frames": nsteps // every, "repeats": repeats,
           "bytes_per_frame": {"b": 36 * natoms + 100, "b_x": 12 * natoms + 84},
           "variants": {}}
    rows = []
    for name, results in res.items():
        walls = column(results, "wall")
        entry = {"wall_median": med(walls), "wall_range": spread(walls),
                 "cpu_median": med(column(results, "cpu")),
                 "loop_median": med(column(results, "loop")), "runs": results}
        if name != "a":
            ratios = paired_ratios(walls, a_wall)
            entry["ratio_to_a_median"] = med(ratios)
            entry["ratio_to_a_each"] = [round(r, 4) for r in ratios]
            entry["extra_seconds_median"] = med([w - a for w, a in zip(walls, a_wall)
                                                 if None not in (w, a)])
            entry["cpu_ratio_to_a_median"] = med(paired_ratios(
                column(results, "cpu"), column(res["a"], "cpu")))
            # the engine's MD loop with and without the stream: the per-frame cost
            entry["loop_ratio_to_a_median"] = med(paired_ratios(
                column(results, "loop"), column(res["a"], "loop")))
            entry["loop_cpu_ratio_to_a_median"] = med(paired_ratios(
                column(results, "loop_cpu"), column(res["a"], "loop_cpu")))
            # the rest of the difference is paid once per segment
            entry["fixed_seconds_median"] = med([
                (w - aw) - (l - al) for w, aw, l, al in zip(
                    walls, a_wall, column(results, "loop"), column(res["a"], "loop"))
                if None not in (w, aw, l, al)])
        out["variants"][name] = entry
        rows.append([name, f"{entry['wall_median']:.2f}",
                     f"{entry['wall_range'][0]:.2f}-{entry['wall_range'][1]:.2f}",
                     f"{entry['loop_median']:.2f}", f"{entry['cpu_median']:.2f}",
                     f"{entry.get('ratio_to_a_median', 1.0):.3f}",
                     f"{entry.get('loop_ratio_to_a_median', 1.0):.3f}",
                     f"{entry.get('extra_seconds_median', 0.0):+.2f}",
                     f"{entry.get('fixed_seconds_median', 0.0):+.2f}"])
    ratio = out["variants"]["b"]["ratio_to_a_median"]
    b = out["variants"]["b"]
    # segment length at which the fixed part would be 3 % of the engine alone
    a_loop = out["variants"]["a"]["loop_median"]
    slope = max(1.0, b["loop_ratio_to_a_median"])
    break_even = (b["fixed_seconds_median"] / (TARGET - slope)
                  if slope < TARGET else float("inf"))
    out["result"] = {"b_over_a": ratio, "md_loop_b_over_a": b["loop_ratio_to_a_median"],
                     "fixed_seconds": b["fixed_seconds_median"],
                     "engine_seconds_for_target": break_even,
                     "verdict": verdict(ratio, TARGET, "<=")}
    text = table(rows, ["variant", "wall s (median)", "wall range", "MD loop s",
                        "CPU s (tree)", "wall / a", "MD loop / a", "extra s",
                        "of which fixed s"])
    text += (f"\n\na = engine alone, b = streamrun (x, v, f streamed)"
             f"{', b_x = streamrun (positions only)' if 'b_x' in res else ''}. "
             f"{natoms} atoms, {nsteps} steps, {nsteps // every} frames, {repeats} "
             f"repeats; ratios are medians of the per-repeat pairs.\n"
             f"The stream slows the MD loop by x{b['loop_ratio_to_a_median']:.3f}; the "
             f"rest, {b['fixed_seconds_median']:.2f} s, is paid once per segment (start-up"
             f" and exit, see 'fixed'): b/a <= {TARGET} needs an engine time above "
             f"~{break_even:.0f} s (this one: {a_loop:.0f} s of MD loop).\n"
             f"Engine CPU in the MD loop, b/a: x{b['loop_cpu_ratio_to_a_median']:.3f}; "
             f"CPU of the whole tree, b/a: x{b['cpu_ratio_to_a_median']:.3f}.\n"
             f"{load_note(res)}\n"
             f"b/a = {ratio:.3f}: {out['result']['verdict']}")
    out["failures"] = failures(res)
    text += failure_note(res)
    return out, text
