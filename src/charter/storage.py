"""SQLite files opened the one way charter uses them: the run store and the call cache.

WAL mode, so a reader never blocks the writer and a killed process leaves a usable file; `synchronous=NORMAL`,
so a commit does not wait for the disk (a crash can lose the last commits, never the file); one connection used
from many asyncio tasks and threads under its owner's lock.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

#: Pages the write-ahead log gathers before SQLite copies them into the file (its default is 1,000, 4 MB). Keys are
#: hashes, so writes land all over the file; a larger log writes a page once for many commits that touched it:
#: 1.5 million cache rows went in 1.9x faster than at the default, the log peaking at ~270 MB.
WAL_CHECKPOINT_PAGES = 65536


def connect(path: str | Path) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), WAL, waiting up to 30 s for a lock."""
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
    return db
