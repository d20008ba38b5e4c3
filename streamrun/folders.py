"""Noticing, while the segment runs, that a folder it writes to has gone.

The engine and streamrun write into the segment folder and the output folders. If
one is deleted (a user cleaning up, WESTPA's folder re-created under it) or its
file system turns read-only, the segment cannot finish; the sooner it stops, the
less engine time is lost, and the message names the folder rather than whatever
write fails later.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from .errors import FolderError


class FolderWatch:
    """Folders checked every ``interval`` s: still there, the same folder, writable.

    Parameters
    ----------
    folders : dict of str to Path
        What each folder is for (a config key such as ``engine.workdir``) and
        the folder.
    interval : float
        Seconds between checks (each costs a few system calls per folder).
    """

    def __init__(self, folders: dict[str, Path], interval: float = 0.5):
        self.interval = interval
        self._last = 0.0
        self._folders = {}
        for key, folder in folders.items():
            folder = Path(folder)
            if folder in self._folders:
                continue
            info = os.stat(folder)
            self._folders[folder] = (key, info.st_dev, info.st_ino)

    def check(self, force: bool = False) -> None:
        """Raise :class:`FolderError` if a folder was deleted, replaced or became
        read-only (checked at most every ``interval`` s unless ``force``)."""
        now = time.monotonic()
        if not force and now - self._last < self.interval:
            return
        self._last = now
        for folder, (key, dev, ino) in self._folders.items():
            try:
                info = os.stat(folder)
                readonly = os.statvfs(folder).f_flag & os.ST_RDONLY
            except FileNotFoundError:
                info, readonly = None, False
            if info is None or (info.st_dev, info.st_ino) != (dev, ino):
                raise FolderError(f"the folder {folder} ('{key}') was deleted while "
                                  f"the segment ran; stopped the engine. Nothing may "
                                  f"remove a segment's folder before streamrun exits")
            if readonly or not os.access(folder, os.W_OK):
                raise FolderError(f"the folder {folder} ('{key}') became read-only "
                                  f"while the segment ran; stopped the engine")
