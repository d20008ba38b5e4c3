"""Segment set-up that a runseg.sh does by hand: the parent's files linked or copied
into the segment folder, then optional prepare commands (e.g. ``gmx grompp``)."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

from .errors import StreamrunError


class SetupError(StreamrunError):
    """A file could not be set up or a prepare command failed."""


def set_up(config, log_path: Path, env=None) -> None:
    """Make ``config.files`` available in the segment folder and run ``prepare``.

    Prepare commands run with ``sh -c`` in the segment folder, with ``env`` (the
    engine's environment: a ``gmx grompp`` gets the same ``GMX_*`` settings as
    mdrun); their output is appended to the engine log.
    """
    workdir = config.engine.workdir
    for spec in config.files:
        target = workdir / spec.name
        try:
            if target.is_symlink() or target.exists():
                target.unlink()
            if spec.mode == "copy":
                shutil.copy2(spec.source, target)
            else:
                os.symlink(spec.source, target)
        except OSError as e:
            raise SetupError(f"could not {spec.mode} '{spec.source}' to '{target}' "
                             f"(config key 'files.{spec.name}'): {e.strerror or e}") \
                from None
    for i, command in enumerate(config.prepare):
        try:
            with open(log_path, "ab") as log:
                log.write(f"$ {command}\n".encode())
                log.flush()
                rc = subprocess.run(["sh", "-c", command], cwd=workdir, stdout=log,
                                    stderr=subprocess.STDOUT, env=env,
                                    stdin=subprocess.DEVNULL).returncode
        except OSError as e:
            raise SetupError(f"cannot write the engine log {log_path} "
                             f"({e.strerror or e}) for prepare command {i + 1}; free "
                             f"space on that disk or set 'log' to another path") \
                from None
        if rc != 0:
            raise SetupError(f"prepare command {i + 1} ({shlex.quote(command)}, config "
                             f"key 'prepare[{i}]') exited with code {rc}; its output is "
                             f"in {log_path}")
