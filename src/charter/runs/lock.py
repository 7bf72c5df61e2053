"""One process per run directory: an advisory lock (filelock's `SoftFileLock`: RUN_DIR/run.lock, holding the
process id and host) held for a run's life. A second `charter run` on the directory is refused with one line naming
the holder; a lock left by a process that is gone from this host (kill -9, a crash), and a lock file that names no
process (empty or unreadable: a full disk, an edit), are taken over with one line saying so. Read-only
commands (`charter status`, the report) and a run's shard directories, each with its own lock, are not held up.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from pathlib import Path
from typing import NamedTuple

from filelock import SoftFileLock, Timeout

from charter.errors import RunStoreError

LOCK_FILE = "run.lock"
#: A lock file naming no process is taken over once it is this old (younger, it may be one being written).
UNREADABLE_AFTER_S = 2.0

log = logging.getLogger("charter.run")


class Holder(NamedTuple):
    """The process that holds a run's lock, as its lock file names it."""

    pid: int
    host: str

    @property
    def here(self) -> bool:
        return self.host == socket.gethostname()

    @property
    def alive(self) -> bool | None:
        """Whether the process still runs (None: on another host, where it cannot be told)."""
        if not self.here:
            return None
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # another user's process: it exists
            return True
        return True


class RunLocked(RunStoreError):
    """Another process holds the run directory's lock."""


def holder(run_dir: str | Path) -> Holder | None:
    """Who holds the run's lock (None: nobody, or a lock file without a readable record)."""
    try:
        lines = (Path(run_dir) / LOCK_FILE).read_text(encoding="utf-8", errors="replace").splitlines()
        return Holder(int(lines[0]), lines[1].split("?pidns-")[0])  # filelock marks a PID namespace after "?"
    except (OSError, ValueError, IndexError):
        return None


class RunLock:
    """The lock of one run directory, held while a process runs it (`with RunLock(run_dir):`)."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self._lock = SoftFileLock(self.run_dir / LOCK_FILE, timeout=0, thread_local=False)

    @property
    def path(self) -> Path:
        return self.run_dir / LOCK_FILE

    def acquire(self) -> None:
        """Take the lock, or raise `RunLocked` (one line, exit 2) naming the process that holds it. A lock of a
        process gone from this host, or one naming no process, is taken over (a warning says so)."""
        before = holder(self.run_dir)
        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            if before is not None or not self._unreadable():
                raise RunLocked(self._refusal()) from None
            log.warning("%s names no process (empty or unreadable): taken over as stale", self.path)
            self.path.unlink(missing_ok=True)
            try:
                self._lock.acquire(timeout=0)
            except Timeout:  # another process took it over first
                raise RunLocked(self._refusal()) from None
            return
        if before is not None and before.pid != os.getpid() and before.alive is False:
            log.warning("%s: process %d, which held it, is gone: taken over", self.path, before.pid)

    def _unreadable(self) -> bool:
        """The lock file names no process and has been so long enough not to be one being written."""
        try:
            age = time.time() - self.path.stat().st_mtime
        except OSError:
            return False
        return holder(self.run_dir) is None and age >= UNREADABLE_AFTER_S

    def _refusal(self) -> str:
        found = holder(self.run_dir)
        who = f"process {found.pid} on {found.host}" if found else "another process"
        hint = "wait for it to end, or stop it (Ctrl-C or SIGTERM stop it cleanly)"
        if found is None:
            hint += f"; if no run is running on it, remove {self.path}"
        elif found.alive is None:
            hint += f"; if it is gone, remove {self.path}"
        return f"{self.run_dir}: this run is being run by {who}; {hint}"

    def release(self) -> None:
        self._lock.release()

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
