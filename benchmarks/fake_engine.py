#!/usr/bin/env python
"""A stand-in MD engine that streams IMD v3 as fast as the client takes it.

It takes LAMMPS' command line as streamrun builds it (``-in FILE -log none -nocite
-var streamrun_port P -var streamrun_every N -var streamrun_nsteps M``, plus
``-var natoms K`` and ``-var fields xvf|x``), prints LAMMPS' readiness line
(``Waiting for IMD connection on port P``), does the IMD v3 handshake, and sends
nsteps/every frames (steps every, 2*every, ..., nsteps) of a fixed random box of
``natoms`` atoms: time, box, then positions (and velocities and forces with
``fields xvf``, as LAMMPS sends by default). It honours IMD pause/resume (so the
client's back-pressure works as with LAMMPS) and exits 0 after the last frame.

There is no MD: the consumer, not the engine, limits the rate. Used by the
throughput benchmark as the engine of ``streamrun run`` and of the bare imdclient
loop alike.
"""

from __future__ import annotations

import select
import socket
import struct
import sys
import time

import numpy as np

HANDSHAKE, GO, PAUSE, RESUME, DISCONNECT, KILL = 4, 3, 7, 11, 0, 5
SESSIONINFO, TIME, BOX, FCOORDS, VELOCITIES, FORCES = 10, 12, 13, 2, 14, 15


def header(kind, length):
    return struct.pack("!ii", kind, length)


def parse_args(argv):
    vars_, i = {}, 0
    while i < len(argv):
        if argv[i] == "-var":
            vars_[argv[i + 1]] = argv[i + 2]
            i += 3
        else:
            i += 1
    return vars_


def read_exact(conn, n):
    buf = b""
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("client closed")
        buf += chunk
    return buf


def main(argv):
    v = parse_args(argv)
    port = int(v["streamrun_port"])
    every, nsteps = int(v["streamrun_every"]), int(v["streamrun_nsteps"])
    natoms = int(v.get("natoms", 100_000))
    fields = v.get("fields", "xvf")
    length = float(v.get("box", 100.0))
    rng = np.random.default_rng(1)
    block = np.ascontiguousarray(rng.random((natoms, 3), dtype=np.float32) * length)
    box = np.diag([length] * 3).astype("<f4")
    # everything after the time packet is the same every frame: pack it once
    body = header(BOX, 1) + box.tobytes()
    body += header(FCOORDS, natoms) + block.astype("<f4").tobytes()
    if "v" in fields:
        body += header(VELOCITIES, natoms) + block.astype("<f4").tobytes()
    if "f" in fields:
        body += header(FORCES, natoms) + block.astype("<f4").tobytes()

    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        srv.bind(("", port))
    except OSError as e:
        print(f"ERROR: bind to socket failed: {e}", flush=True)
        return 1
    srv.listen(1)
    print(f"fake engine: {natoms} atoms, fields {fields}, {nsteps // every} frames of "
          f"{len(body) + 32} bytes", flush=True)
    print(f"Waiting for IMD connection on port {port}", flush=True)
    conn, _ = srv.accept()
    srv.close()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conn.sendall(struct.pack("!i", HANDSHAKE) + struct.pack("<i", 3))
    conn.sendall(header(SESSIONINFO, 7) + struct.pack(
        "<BBBBBBB", 1, 0, 1, 1, 0, "v" in fields, "f" in fields))
    kind, _ = struct.unpack("!ii", read_exact(conn, 8))
    if kind != GO:
        print(f"ERROR: expected IMD_GO, got {kind}", flush=True)
        return 1
    t0 = time.perf_counter()
    paused = pauses = 0
    sent = 0
    try:
        for step in range(every, nsteps + 1, every):
            # client messages: pause/resume (back-pressure), disconnect
            while select.select([conn], [], [], 0)[0] or paused:
                kind, _ = struct.unpack("!ii", read_exact(conn, 8))
                if kind == PAUSE and not paused:
                    paused, pauses = True, pauses + 1
                elif kind == RESUME:
                    paused = False
                elif kind in (DISCONNECT, KILL):
                    raise ConnectionError("client disconnected")
            conn.sendall(header(TIME, 1) + struct.pack("<ddq", 0.002, step * 0.002, step))
            conn.sendall(body)
            sent += 1
    except ConnectionError as e:
        print(f"fake engine: {e} after {sent} frames", flush=True)
    if v.get("close", "graceful") == "graceful":
        # Read what the client still sends (pause/resume) before closing: closing
        # a socket with unread input makes the kernel send a reset and drop the
        # unsent tail of the stream (try -var close abrupt to see it).
        try:
            conn.shutdown(socket.SHUT_WR)
            conn.settimeout(30)
            while conn.recv(65536):
                pass
        except OSError:
            pass
    conn.close()
    loop = time.perf_counter() - t0
    print(f"Loop time of {loop:.6f} on 1 procs for {nsteps} steps with {natoms} atoms",
          flush=True)
    print(f"fake engine: sent {sent} frames, paused {pauses}x", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
