"""Files and folders a process works in until it is done, held under ``flock``: a killed process's are
found and removed by the next one.

A process that is killed (SIGKILL, a lost host) cannot delete what it was working in: the hidden reject
file of an import waiting for its commit, the temporary artifact folder of a training. Each is held
under an exclusive ``flock`` from its creation until its owner has moved or deleted it; the kernel drops
the lock with the process. So whatever :func:`remove_if_stale` can lock belongs to no live process and
is removed, and what it cannot lock (the same work running at the same time) is left alone.
"""

from __future__ import annotations

import fcntl
import glob
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["Held", "held_temp_folder", "hold_new", "remove_if_stale"]


class Held:
    """A path and the descriptor that holds its lock; :meth:`release` once it is moved or deleted."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path, self.fd = path, fd

    def release(self) -> None:
        """Close the descriptor, which drops the lock; once."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def hold_new(create: Callable[[], Path]) -> Held:
    """Create a new file or folder with ``create`` and hold it."""
    while True:
        path = create()
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:  # another process's remove_if_stale removed it before we opened it
            continue
        fcntl.flock(fd, fcntl.LOCK_EX)
        if os.fstat(fd).st_nlink:
            return Held(path, fd)
        # Another process's remove_if_stale locked it between its creation and our lock and removed it.
        os.close(fd)


def remove_if_stale(path: Path) -> bool:
    """Remove ``path`` (a file, or a folder with its content) unless a live process holds it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:  # moved or deleted by its owner meanwhile
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # a live process holds it
        if not os.fstat(fd).st_nlink:
            return False
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        return True
    finally:
        os.close(fd)


@contextmanager
def held_temp_folder(prefix: str) -> Iterator[Path]:
    """A new folder in the system's temporary folder, held while the block runs and deleted after it.
    The folders of the same ``prefix`` that no live process holds (a killed one's) are removed first."""
    root = Path(tempfile.gettempdir())
    for name in glob.glob(f"{glob.escape(prefix)}*", root_dir=root):
        remove_if_stale(root / name)
    held = hold_new(lambda: Path(tempfile.mkdtemp(prefix=prefix, dir=root)))
    try:
        yield held.path
    finally:
        shutil.rmtree(held.path, ignore_errors=True)
        held.release()
