#!/usr/bin/env python
"""One consumer of the throughput benchmark, in a process of its own.

    python consume.py raw    CONFIG   # bare imdclient: IMDClient + get_imdframe loop
    python consume.py reader CONFIG   # streamrun's connect + FrameReader + PcoordCalculator

Both start the engine of CONFIG (a streamrun config whose engine is
``fake_engine.py``) on a free port, wait for its readiness line, connect with the
same imdclient buffer size streamrun would use, and consume every frame. The clock
runs from the connected client to the end of the stream. Prints one JSON line.
"""

from __future__ import annotations

import json
import resource
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path


def free_port():
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def cpu():
    """CPU seconds of this process (all its threads) so far."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def start_engine(config, port):
    from streamrun.engines import ADAPTERS
    from streamrun.engines.base import resolve_executable

    adapter = ADAPTERS[config.engine.name]
    cmd = adapter.command(config.engine, resolve_executable(adapter, config.engine,
                                                            config.source), port)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, cwd=config.engine.workdir)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if "Waiting for IMD connection" in line:
            break
    # drain the rest in a thread (a full pipe would stall the engine)
    threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()
    return proc, lines


def main(mode, config_path):
    from streamrun.config import load
    from streamrun.segment import _buffer_bytes

    config = load(Path(config_path))
    interval = config.engine.frame_interval
    expected = config.engine.nsteps // interval
    port = free_port()
    if mode == "raw":
        n_atoms = int(config.engine.variables["natoms"])
        buffer_bytes = _buffer_bytes(config, n_atoms, expected)
        from imdclient.IMDClient import IMDClient

        proc, lines = start_engine(config, port)
        client = IMDClient("127.0.0.1", port, n_atoms, buffer_size=buffer_bytes,
                           timeout=config.stream_timeout)
        t0, c0 = time.perf_counter(), cpu()
        frames = 0
        try:
            while True:
                client.get_imdframe()
                frames += 1
        except EOFError:
            pass
        t1, c1 = time.perf_counter(), cpu()
        error = None if frames == expected else f"{frames} of {expected} frames"
    else:
        from streamrun.segment import calculator_for
        from streamrun.stream import FrameReader, connect

        calculator = calculator_for(config)
        calculator.start_row()
        n_atoms = calculator.n_atoms
        buffer_bytes = _buffer_bytes(config, n_atoms, expected)
        proc, lines = start_engine(config, port)
        client = connect(port, n_atoms, buffer_bytes, config.stream_timeout)
        reader = FrameReader(client, calculator, expected, interval)
        t0, c0 = time.perf_counter(), cpu()
        reader.start()
        while reader.is_alive():  # the main thread waits as streamrun's does
            reader.join(0.1)
        t1, c1 = time.perf_counter(), cpu()
        frames = reader.count
        error = repr(reader.error) if reader.error else (
            None if frames == expected else f"{frames} of {expected} frames")
    proc.wait(30)
    child = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(json.dumps({"mode": mode, "frames": frames, "seconds": t1 - t0,
                      "consumer_cpu": c1 - c0, "engine_cpu": child.ru_utime + child.ru_stime,
                      "buffer_bytes": buffer_bytes, "error": error,
                      "compute": getattr(locals().get("reader"), "compute_seconds", None),
                      "engine_rc": proc.returncode,
                      "engine_tail": [l.strip() for l in lines[-2:]]}))
    return 0 if error is None and proc.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
