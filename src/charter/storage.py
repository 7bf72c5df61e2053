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


def copy_rows(db: sqlite3.Connection, table: str, key: str, conflict: str = "IGNORE") -> None:
    """INSERT OR `conflict` every row of `other.table` (an attached file) into `main.table`.

    Into an empty table in the other file's order, which reads it straight through (a shard's 1.75M cache rows:
    9 s, against 34 s in key order); into rows already there in `key` order, so the new keys, which are hashes, land
    in the key index in one sweep rather than all over it (the second shard: 25 s, against 55 s in file order)."""
    empty = db.execute(f"SELECT 1 FROM main.{table} LIMIT 1").fetchone() is None
    db.execute(f"INSERT OR {conflict} INTO main.{table} SELECT * FROM other.{table}"
               + ("" if empty else f" ORDER BY {key}"))
