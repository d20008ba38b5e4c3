"""Starting a streamrun process and waiting until its engine streams, for tests that
interrupt a running segment."""

import subprocess
import sys
import time

STREAMRUN = [sys.executable, "-m", "streamrun"]


def start_streaming(config, workdir, *args, stderr=subprocess.PIPE, settle=0.5):
    """Start ``streamrun run`` and return once its engine accepted IMD (plus
    ``settle`` s of streaming)."""
    proc = subprocess.Popen([*STREAMRUN, "run", "-c", str(config), "-w", str(workdir),
                             *args], stderr=stderr, text=True)
    log = workdir / "streamrun-engine.log"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (
            log.exists() and "Waiting for IMD" in log.read_text()):
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    time.sleep(settle)
    return proc
