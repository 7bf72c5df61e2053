"""SQLite files opened the one way charter uses them: the run store and the call cache, each with a schema
version and the steps that upgrade an older file (`open_versioned`).

WAL mode, so a reader never blocks the writer and a killed process leaves a usable file; `synchronous=NORMAL`,
so a commit does not wait for the disk (a crash can lose the last commits, never the file); one connection used
from many asyncio tasks and threads under its owner's lock.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from charter.errors import StorageError

log = logging.getLogger("charter.storage")

#: Pages the write-ahead log gathers before SQLite copies them into the file (its default is 1,000, 4 MB). Keys are
#: hashes, so writes land all over the file; a larger log writes a page once for many commits that touched it:
#: 1.5 million cache rows went in 1.9x faster than at the default, the log peaking at ~270 MB.
WAL_CHECKPOINT_PAGES = 65536


def connect(path: str | Path) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), WAL, waiting up to 30 s for a lock."""
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
    # SQLite answers a journal-mode change "locked" at once, without its busy wait, while another connection makes
    # the same new file (two ranks opening one call cache): waited for here, within the same 30 s
    deadline = time.monotonic() + 30
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                db.close()
                raise
            time.sleep(0.05)
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
    return db


def copy_rows(db: sqlite3.Connection, table: str, key: str, conflict: str = "IGNORE") -> None:
    """INSERT OR `conflict` every row of `other.table` (an attached file) into `main.table`.

    Into an empty table in the other file's order, which reads it straight through (a shard's 1.75M cache rows:
    9 s, against 34 s in key order); into rows already there in `key` order, so the new keys, which are hashes, land
    in the key index in one sweep rather than all over it (the second shard: 25 s, against 55 s in file order)."""
    empty = db.execute(f"SELECT 1 FROM main.{table} LIMIT 1").fetchone() is None
    db.execute(
        f"INSERT OR {conflict} INTO main.{table} SELECT * FROM other.{table}" + ("" if empty else f" ORDER BY {key}")
    )


#: Steps that bring a file from one schema version to the next: `steps[v]` takes version v to v + 1.
Steps = Mapping[int, Callable[[sqlite3.Connection], None]]


@dataclass(frozen=True)
class Schema:
    """The schema of one kind of file: the version this code writes, how a new file is made and how an older one is
    brought forward. The version is kept in `PRAGMA user_version`; `found` reads it, including from files written
    before it was kept there (None: a file with no tables yet, made new)."""

    what: str
    """What the file is, in error messages (`run store`, `call cache`)."""
    version: int
    base: str
    """SQL that makes a new file at `base_version`; the steps then bring it to `version`, so a new file and an
    upgraded one have the same tables and column order."""
    base_version: int
    steps: Steps
    found: Callable[[sqlite3.Connection], int | None]


def open_versioned(path: Path, schema: Schema) -> sqlite3.Connection:
    """A connection to `path` at `schema.version`: a new file is made, an older one is copied aside
    (`PATH.vN.bak`) and upgraded step by step in one transaction, and a newer one is refused with one line."""
    try:
        db = connect(path)
    except sqlite3.Error as exc:
        raise StorageError(f"{path}: cannot open the {schema.what} for writing: {exc}") from None
    with _closed_on_failure(db, f"{path}: cannot open the {schema.what} to upgrade it"):
        found = schema.found(db)
        _check_readable(path, schema, found)
        if found != schema.version:
            backup = _backup(db, path, found) if found is not None else None
            _bring_forward(db, schema)
            if backup is not None:
                log.info(
                    "upgraded %s from %s schema %d to %d (the file as it was: %s)",
                    path,
                    schema.what,
                    found,
                    schema.version,
                    backup,
                )
    return db


@contextlib.contextmanager
def _closed_on_failure(db: sqlite3.Connection, failure: str) -> Iterator[None]:
    """Close `db` when the block fails; a SQLite error becomes one `StorageError` line, `failure: error`."""
    try:
        yield
    except sqlite3.Error as exc:
        db.close()
        raise StorageError(f"{failure}: {exc}") from None
    except BaseException:
        db.close()
        raise


def open_read_only(path: Path, schema: Schema) -> sqlite3.Connection:
    """A connection to `path` that never writes to it, nor beside it (`connect_read_only`). A file of an older
    release is brought forward first where it can be written (as `open_versioned` does); where it cannot, or at any
    other version, it is refused with one line."""
    db = _read_only(path, schema)
    found = schema.found(db)
    if found is not None and found < schema.version and os.access(path, os.W_OK) and os.access(path.parent, os.W_OK):
        db.close()
        open_versioned(path, schema).close()
        db = _read_only(path, schema)
        found = schema.found(db)
    if found is None:  # made and never written (a process cut off at once, a `touch`): nothing to read or upgrade
        db.close()
        raise StorageError(
            f"{path}: empty ({path.stat().st_size} bytes, no tables): not a {schema.what}, nothing to read; a "
            "command that writes it makes it anew"
        )
    if found != schema.version:
        db.close()
        raise StorageError(
            f"{path}: {schema.what} schema {found} is not "
            f"this charter's ({schema.version}) and the file cannot be written here to bring it forward; open it "
            "once where it can be written"
        )
    return db


def _read_only(path: Path, schema: Schema) -> sqlite3.Connection:
    """A read-only connection to a file this release can read (or bring forward), or one line saying why not."""
    try:
        db = connect_read_only(path)
    except sqlite3.Error as exc:
        raise StorageError(f"{path}: cannot open the {schema.what} to read it: {exc}") from None
    with _closed_on_failure(db, f"{path}: cannot read the {schema.what}"):
        _check_readable(path, schema, schema.found(db))
    return db


def connect_read_only(path: str | Path) -> sqlite3.Connection:
    """A read-only connection in autocommit mode (SQLite URI `mode=ro`). Where a reader of a WAL file cannot make
    its shared-memory file (a read-only mount or folder), the file is opened `immutable=1`: read as it is on disk,
    without locks, as an archived run is; commits still in a write-ahead log left beside it are then not seen. Where
    the folder can be written, SQLite leaves the (empty) log and its shared-memory file beside the file when the
    last connection to close is a read-only one; the next writer to close removes them."""
    uri = Path(path).resolve().as_uri()
    db = sqlite3.connect(f"{uri}?mode=ro", uri=True, check_same_thread=False, isolation_level=None, timeout=30)
    try:
        db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        return db
    except sqlite3.OperationalError as exc:
        db.close()
        if "locked" in str(exc):  # a writer holds it: waited for, never read past
            raise
    wal = Path(f"{path}-wal")
    if wal.is_file() and wal.stat().st_size:
        log.warning("%s: read without its write-ahead log (%s), which cannot be opened here", path, wal.name)
    return sqlite3.connect(f"{uri}?immutable=1", uri=True, check_same_thread=False, isolation_level=None)


def _check_readable(path: Path, schema: Schema, found: int | None) -> None:
    """Refuse, in one line, a file of a newer release or of one too old to bring forward."""
    if found is not None and found > schema.version:
        raise StorageError(
            f"{path}: written by a newer charter ({schema.what} schema {found}; this one reads up to "
            f"{schema.version}); upgrade charter (pip install -U charter)"
        )
    if found is not None and found < schema.base_version:
        raise StorageError(
            f"{path}: written by a charter too old to upgrade from ({schema.what} schema {found}); "
            "start it anew in another place"
        )


def _bring_forward(db: sqlite3.Connection, schema: Schema) -> None:
    """Make or upgrade the file in one IMMEDIATE transaction; another process that got there first is respected."""
    db.execute("BEGIN IMMEDIATE")
    try:
        found = schema.found(db)  # again, under the write lock
        if found is None:
            for statement in script_statements(schema.base):
                db.execute(statement)
            found = schema.base_version
        for version in range(found, schema.version):
            schema.steps[version](db)
        db.execute(f"PRAGMA user_version = {int(schema.version)}")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def script_statements(sql: str) -> list[str]:
    """The statements of a script, for `execute` one at a time (`executescript` would commit the transaction)."""
    out, current = [], ""
    for line in sql.splitlines(keepends=True):
        if line.strip().startswith("--"):
            continue
        current += line
        if sqlite3.complete_statement(current):
            out.append(current.strip())
            current = ""
    return [s for s in out if s]


def _backup(db: sqlite3.Connection, path: Path, version: int) -> Path:
    """A copy of the file as it is, beside it, before its first upgrade (kept if one is already there)."""
    target = path.with_name(f"{path.name}.v{version}.bak")
    if target.exists():
        return target
    scratch = target.with_name(target.name + ".partial")
    copy = sqlite3.connect(scratch)
    try:
        db.backup(copy)
    finally:
        copy.close()
    os.replace(scratch, target)
    return target


def user_version(db: sqlite3.Connection) -> int:
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def tables(db: sqlite3.Connection) -> set[str]:
    return {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
