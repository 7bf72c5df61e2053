"""The call cache: SQLite in WAL mode, keyed by a hash of provider, model, request and params.

Identical requests are answered from here, so nothing paid for is asked twice. One connection
per cache, guarded by a lock, is safe for many asyncio tasks; WAL keeps the file usable after a kill.
Inside an event loop, `put_soon` groups the rows of calls that finish together into one commit.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
from pathlib import Path
from typing import Any, Callable, Iterable

from charter.storage import connect, copy_rows


def cache_key(kind: str, model_id: str, payload: Any) -> str:
    """A stable key: sha256 over canonical JSON of what determines the answer."""
    blob = json.dumps([kind, model_id, payload], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


class CallCache:
    """A persistent map from `cache_key` to a JSON value."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._pending: dict[str, tuple[str, str, str, str]] = {}
        self._flush_scheduled = False
        self.before_commit: list[Callable[[], None]] = []
        """Called before each commit: a run's usage ledger, so no cached call is one the run has not counted."""
        self._db = connect(self.path)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS calls (key TEXT PRIMARY KEY, kind TEXT, model TEXT, value TEXT,"
            " created_at REAL DEFAULT (unixepoch('subsec')))"
        )

    def get_many(self, keys: list[str]) -> dict[str, Any]:
        """The cached values for those keys that are present."""
        if not keys:
            return {}
        found: dict[str, Any] = {}
        with self._lock:
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows = self._db.execute(f"SELECT key, value FROM calls WHERE key IN ({marks})", chunk)
                found.update((k, json.loads(v)) for k, v in rows)
            found.update((k, json.loads(self._pending[k][3])) for k in keys if k in self._pending)
        return found

    def put_many(self, items: Iterable[tuple[str, str, str, Any]]) -> None:
        """Store (key, kind, model id, value) rows in one transaction."""
        rows = [(k, kind, model, json.dumps(v, ensure_ascii=False)) for k, kind, model, v in items]
        if not rows:
            return
        for hook in self.before_commit:
            hook()
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR REPLACE INTO calls (key, kind, model, value) VALUES (?,?,?,?)", rows)
            self._db.execute("COMMIT")

    def put_soon(self, items: Iterable[tuple[str, str, str, Any]]) -> None:
        """Like `put_many`, but inside a running event loop the rows wait for the end of this loop turn
        and go in one transaction with those of every other call that finished in it.

        A commit blocks the loop for ~0.1 ms and was most of a cache miss; grouped, calls finishing
        together share one. Lookups see waiting rows; `flush` and `close` write them at once. A
        kill can lose only the rows of the current loop turn, never the file.
        """
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.put_many(items)
            return
        rows = [(k, kind, model, json.dumps(v, ensure_ascii=False)) for k, kind, model, v in items]
        with self._lock:
            self._pending.update((row[0], row) for row in rows)
            if self._flush_scheduled or not rows:
                return
            self._flush_scheduled = True
        loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write the rows `put_soon` is holding, in one transaction."""
        if self._pending:
            for hook in self.before_commit:
                hook()
        with self._lock:
            rows, self._pending, self._flush_scheduled = list(self._pending.values()), {}, False
            if rows:
                self._db.execute("BEGIN")
                self._db.executemany("INSERT OR REPLACE INTO calls (key, kind, model, value) VALUES (?,?,?,?)", rows)
                self._db.execute("COMMIT")

    def merge_from(self, path: str | Path) -> None:
        """Add another cache file's rows (a shard's); rows already here stay as they are."""
        self.flush()
        with self._lock:
            self._db.execute("ATTACH DATABASE ? AS other", (str(Path(path).resolve()),))
            try:
                self._db.execute("BEGIN")
                copy_rows(self._db, "calls", "key")  # rows already here stay as they are
                self._db.execute("COMMIT")
            finally:
                self._db.execute("DETACH DATABASE other")

    def __len__(self) -> int:
        self.flush()
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM calls").fetchone()[0]

    def close(self) -> None:
        self.flush()
        with self._lock:
            self._db.close()
