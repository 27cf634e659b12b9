"""One runner per workspace: an advisory lock the kernel drops when its holder dies."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ralph.errors import RalphError

LOCK_FILE = Path(".ralph") / "lock"


@contextmanager
def workspace_lock(root: Path) -> Iterator[None]:
    """Hold the workspace for one run; refuse if another live run holds it.

    A lock left by a killed run is no obstacle: the kernel released it when
    that process died, so the next run simply takes it.
    """
    path = root / LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 100, 0).decode(errors="replace").strip()
            raise RalphError(
                f"another ralph run (pid {holder or 'unknown'}) is working in "
                f"{root}; wait for it to finish or stop it, then run again"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


def lock_holder(root: Path) -> str | None:
    """The pid of the live run holding the workspace, or None if none does."""
    path = root / LOCK_FILE
    if not path.exists():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return os.pread(fd, 100, 0).decode(errors="replace").strip() or "unknown"
    finally:
        os.close(fd)
    return None
