#!/usr/bin/env python
"""streamrun with proposed changes applied at run time (monkeypatches), to measure
them before they are made in streamrun/ itself. Same command line as streamrun:

    STREAMRUN_BENCH_PATCHES=overlap,no_ipython python benchmarks/proposals.py run -c ...

Patches (comma-separated in STREAMRUN_BENCH_PATCHES; "all" = every one):

  no_ipython  imdclient's IMDClient.__init__ runs ``import IPython`` (to detect
              Jupyter) on every connection: ~0.1 s of import in the critical path,
              after the engine was told to go. streamrun is never a Jupyter kernel:
              make that import fail fast while connecting.
  overlap     start the engine first and build the pcoord calculator (MDAnalysis
              import, topology, row 0) while the engine starts up: the engine
              launch runs in a thread started where run_segment builds the
              calculator; _launch then only collects it. A calculator error stops
              the engine before the error is raised (exit code 2 as before).
  fast_exit   after a successful segment (pcoord file written, engine tree
              stopped), flush stdout/stderr and os._exit(0): skips the interpreter's
              teardown of MDAnalysis/scipy/numpy modules.
  lean_frame  PcoordCalculator.frame_row: let the Timestep use imdclient's frame
              array (float32, (n, 3)) instead of copying it (the frame stays valid
              until the next get_imdframe, i.e. while the row is computed), and
              convert the box to MDAnalysis dimensions only when it changed.
  buffer8     size imdclient's buffer for at least 8 frames (streamrun caps it at
              stream.buffer_mb = 10 MiB: 2 frames of a 100k-atom x+v+f stream, so
              the engine is paused and resumed every other frame when the pcoord
              is the slower side). np.empty frames cost no time to allocate.
  lean_watch  EngineProcess.poll (called every 0.1 s while streaming) walks all of
              /proc with psutil to remember the engine tree; do that walk at most
              once a second.

Nothing in streamrun/ is modified; each patch mirrors a change proposed in
benchmarks/README.md.
"""

from __future__ import annotations

import os
import sys
import threading


def _patch_no_ipython(segment):
    original = segment.connect

    def connect(*args, **kwargs):
        if "IPython" in sys.modules:
            return original(*args, **kwargs)
        sys.modules["IPython"] = None  # "import IPython" raises ImportError at once
        try:
            return original(*args, **kwargs)
        finally:
            if sys.modules.get("IPython", 0) is None:
                del sys.modules["IPython"]

    segment.connect = connect


def _patch_overlap(segment):
    from streamrun.engines import ADAPTERS
    from streamrun.engines.base import resolve_executable

    orig_calculator, orig_launch = segment._calculator, segment._launch
    pending = {}

    def calculator(config):
        adapter = ADAPTERS[config.engine.name]
        executable = resolve_executable(adapter, config.engine, config.source)
        box = {}

        def launch():
            try:
                box["result"] = orig_launch(config, adapter, executable,
                                            lambda msg: None)
            except BaseException as e:  # handed to _launch below
                box["error"] = e

        thread = threading.Thread(target=launch, daemon=True, name="streamrun-launch")
        thread.start()
        pending["launch"] = (thread, box)
        try:
            return orig_calculator(config)
        except BaseException:
            pending.pop("launch", None)
            thread.join()
            if "result" in box:
                engine, reservation = box["result"][:2]
                engine.stop()
                reservation.release()
            raise

    def launch(*args, **kwargs):
        item = pending.pop("launch", None)
        if item is None:  # a relaunch after a dropped handshake
            return orig_launch(*args, **kwargs)
        thread, box = item
        thread.join()
        if "error" in box:
            raise box["error"]
        return box["result"]

    segment._calculator, segment._launch = calculator, launch


def _patch_fast_exit(cli):
    original = cli._run

    def run(*args, **kwargs):
        result = original(*args, **kwargs)
        if result is not None:  # a segment finished and its files are written
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)
        return result

    cli._run = run


def _patch_lean_frame(pcoords):
    import numpy as np

    cls = pcoords.PcoordCalculator

    def frame_row(self, positions, box=None, label="a frame"):
        ts = self._ts
        if (isinstance(positions, np.ndarray) and positions.dtype == np.float32
                and positions.flags.c_contiguous and positions.shape == ts._pos.shape):
            ts._pos = positions          # no copy: imdclient keeps it until next frame
            ts.has_positions = True
        else:
            ts.positions = positions
        if box is not None:
            key = np.asarray(box).tobytes()
            if key != getattr(self, "_box_key", None):
                from MDAnalysis.lib.mdamath import triclinic_box

                ts.dimensions = triclinic_box(*np.asarray(box, dtype=np.float64))
                self._box_key = key
        return self._evaluate(label)

    cls.frame_row = frame_row


def _patch_lean_watch(supervise):
    import time

    cls = supervise.EngineProcess
    original = cls._remember_tree

    def poll(self):
        now = time.monotonic()
        if now - getattr(self, "_tree_seen_at", 0.0) >= 1.0:
            self._tree_seen_at = now
            original(self)
        return self.proc.poll()

    cls.poll = poll


def _patch_buffer8(segment):
    original = segment._buffer_bytes

    def buffer_bytes(config, n_atoms, expected):
        return max(original(config, n_atoms, expected),
                   min(8, expected + 1) * (36 * n_atoms + 256))

    segment._buffer_bytes = buffer_bytes


PATCHES = ("no_ipython", "overlap", "fast_exit", "lean_frame", "lean_watch", "buffer8")


def apply(names):
    from streamrun import cli, pcoords, segment, supervise

    for name in names:
        if name == "no_ipython":
            _patch_no_ipython(segment)
        elif name == "overlap":
            _patch_overlap(segment)
        elif name == "fast_exit":
            _patch_fast_exit(cli)
        elif name == "lean_frame":
            _patch_lean_frame(pcoords)
        elif name == "lean_watch":
            _patch_lean_watch(supervise)
        elif name == "buffer8":
            _patch_buffer8(segment)
        elif name:
            sys.exit(f"proposals.py: unknown patch {name!r}; known: {', '.join(PATCHES)}")


def main():
    names = os.environ.get("STREAMRUN_BENCH_PATCHES", "all").split(",")
    apply(PATCHES if names == ["all"] else names)
    from streamrun.cli import main as streamrun_main

    sys.argv[0] = "streamrun"
    streamrun_main()


if __name__ == "__main__":
    main()
