"""The call cache: SQLite in WAL mode, keyed by a hash of the kind of call, the model, where it is served, the
request and the sampling parameters.

Identical requests to the same model at the same endpoint are answered from here, so nothing paid for is asked
twice, and a model served elsewhere (another vLLM box, a new checkpoint at another URL) is asked anew. One
connection per cache, guarded by a lock, is safe for many asyncio tasks; WAL keeps the file usable after a kill.
Inside an event loop, `put_soon` groups the rows of calls that finish together into one commit.

Rows written before the cache recorded endpoints (schema 0) have none. Such a row answers only for the endpoint
that made it: for `openai:` and `anthropic:` models their official API, unless a claim says otherwise; for other
endpoints only once claimed (`claim`: a run made by an earlier release claims its models' endpoints when it resumes,
and `charter cache claim MODEL_STRING` does it by hand). A model claimed for two endpoints is answered by neither.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from charter.errors import StorageError
from charter.providers.endpoints import OFFICIAL
from charter.storage import Schema, copy_rows, open_versioned, tables, user_version

if TYPE_CHECKING:
    from charter.providers.base import ChatModel

#: The call cache every command and function uses unless told otherwise (`cache=None` or `--cache ''`: none).
DEFAULT_CACHE = "~/.cache/charter/calls.sqlite"
#: (key, kind, model id, value[, endpoint]): a row as callers hand it over; the endpoint defaults to none ('').
Row = tuple
#: The value of `legacy_owners.endpoint` for a model claimed for two endpoints: its old rows answer for neither.
CONFLICT = "!claimed for more than one endpoint"

SCHEMA_VERSION = 1
_BASE = """
CREATE TABLE IF NOT EXISTS calls (key TEXT PRIMARY KEY, kind TEXT, model TEXT, value TEXT,
                                  created_at REAL DEFAULT (unixepoch('subsec')));
"""


def _found(db: sqlite3.Connection) -> int | None:
    return user_version(db) or (0 if "calls" in tables(db) else None)


def _to_1(db: sqlite3.Connection) -> None:
    """1: the endpoint that answered each call ('' for a model in this process; NULL on rows from before)."""
    legacy = db.execute("SELECT EXISTS (SELECT 1 FROM calls)").fetchone()[0]
    db.execute("ALTER TABLE calls ADD COLUMN endpoint TEXT")
    db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
    db.execute(
        "CREATE TABLE IF NOT EXISTS legacy_owners (model TEXT PRIMARY KEY, endpoint TEXT NOT NULL, source TEXT,"
        " claimed_at REAL)"
    )
    db.execute("INSERT OR REPLACE INTO meta VALUES ('legacy_rows', ?)", (json.dumps(bool(legacy)),))


CACHE_SCHEMA = Schema(
    what="call cache", version=SCHEMA_VERSION, base=_BASE, base_version=0, steps={0: _to_1}, found=_found
)


def cache_key(kind: str, model_id: str, payload: Any) -> str:
    """A stable key: sha256 over canonical JSON of what determines the answer (`model_id` is a model's `served_id`:
    its id and, for a model not at its provider's own API, the URL)."""
    return hashlib.sha256(canonical_json([kind, model_id, payload]).encode()).hexdigest()


_encode = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode
#: `json.dumps(value, ensure_ascii=False)`, the same text, from one encoder (`json.dumps` with an argument makes an
#: encoder for every call): a cached value as it is stored
_value_json = json.JSONEncoder(ensure_ascii=False).encode
#: a string as `_encode` writes it (what `JSONEncoder.encode` calls for a str when `ensure_ascii` is false)
_string = json.encoder.encode_basestring


def canonical_json(value: Any) -> str:
    """`json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)`, the same text, with each
    `{role, content}` message encoded once: the messages that many requests repeat (a constitution's worked
    examples, a conversation judged under several principles) are not serialized again for every call. Lists and
    strings are written here, without an encoder's set-up for each (a key is computed for every call)."""
    kind = type(value)
    if kind is str:
        return _string(value)
    if kind is list or kind is tuple:
        return "[" + ",".join([canonical_json(item) for item in value]) + "]"
    if kind is dict and len(value) == 2 and type(value.get("role")) is str and type(value.get("content")) is str:
        return _message_json(value["role"], value["content"])
    return _encode(value)


@lru_cache(maxsize=4096)
def _message_json(role: str, content: str) -> str:
    """`_encode({"role": role, "content": content})`: its keys in sorted order."""
    return '{"content":' + _string(content) + ',"role":' + _string(role) + "}"


def endpoint_url(model: ChatModel) -> str:
    """The URL a model's calls go to, as the cache records it ('' for a model run in this process)."""
    return model.endpoint.url if model.endpoint is not None else ""


class CallCache:
    """A persistent map from `cache_key` to a JSON value, with the endpoint that answered."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"{self.path.parent}: cannot create the call cache's folder: {exc.strerror}") from None
        self._lock = threading.Lock()
        self._pending: dict[str, Row] = {}
        self._flush_scheduled = False
        self.before_commit: list[Callable[[], None]] = []
        """Called before each commit: a run's usage ledger, so no cached call is one the run has not counted."""
        self._db = open_versioned(self.path, CACHE_SCHEMA)
        row = self._db.execute("SELECT value FROM meta WHERE key = 'legacy_rows'").fetchone()
        self.legacy_rows = bool(row and json.loads(row[0]))
        """Whether the file holds rows from before endpoints were recorded."""
        self._owners = dict(self._db.execute("SELECT model, endpoint FROM legacy_owners").fetchall())

    # -- calls of a model ---------------------------------------------------------------------------------
    def lookup(self, kind: str, model: ChatModel, payloads: Sequence[Any]) -> tuple[list[str], list[Any]]:
        """The keys of these calls of `model` and their cached values (None where not cached, or where the row was
        answered by another endpoint)."""
        url, served = endpoint_url(model), model.served_id
        keys = [cache_key(kind, served, p) for p in payloads]
        rows = self.get_rows(keys)
        values = [None] * len(keys)
        for i, key in enumerate(keys):
            row = rows.get(key)
            if row is not None and (row[0] == url or row[0] is None and self._legacy_answers(model, url)):
                values[i] = row[1]
        if self.legacy_rows and url and served != model.model_id and self.legacy_owner(model) == url:
            missing = {i: cache_key(kind, model.model_id, payloads[i]) for i, v in enumerate(values) if v is None}
            old = self.get_rows(list(missing.values()))
            for i, legacy in missing.items():
                if legacy in old and old[legacy][0] is None:  # read where it is: a later conflicting claim still holds
                    values[i] = old[legacy][1]
        return keys, values

    def _legacy_answers(self, model: ChatModel, url: str) -> bool:
        """Whether a row from before endpoints were recorded answers a call of `model` at `url`."""
        return not url or self.legacy_owner(model) == url

    def legacy_owner(self, model: ChatModel) -> str | None:
        """The endpoint this model's rows from before endpoints were recorded answer for (None: no endpoint)."""
        claimed = self._owners.get(model.model_id)
        if claimed is not None:
            return None if claimed == CONFLICT else claimed
        return OFFICIAL.get(model.provider)

    def claim(self, model_id: str, endpoint: str, source: str) -> str | None:
        """Say which endpoint answered this model's rows from before endpoints were recorded. Returns a one-line
        warning when another endpoint claimed them first: they then answer for neither."""
        with self._lock:
            current = self._owners.get(model_id)
            if current == endpoint or current == CONFLICT:
                return None if current == endpoint else f"{model_id}: its old cache rows answer for no endpoint"
            value = endpoint if current is None else CONFLICT
            self._db.execute(
                "INSERT OR REPLACE INTO legacy_owners VALUES (?, ?, ?, ?)", (model_id, value, source, time.time())
            )
            self._owners[model_id] = value
        if value == CONFLICT:
            return (
                f"{model_id}: the call cache's rows from before endpoints were recorded were claimed for {current} "
                f"and now for {endpoint} ({source}); they cannot be told apart, so they answer for neither"
            )
        return None

    def owners(self) -> dict[str, str]:
        """The claims made: model id -> endpoint (or `CONFLICT`)."""
        return dict(self._owners)

    # -- rows ---------------------------------------------------------------------------------------------
    def get_rows(self, keys: list[str]) -> dict[str, tuple[str | None, Any]]:
        """(endpoint, value) for those keys that are present (endpoint None: a row from before endpoints)."""
        if not keys:
            return {}
        found: dict[str, tuple[str | None, Any]] = {}
        with self._lock:
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows = self._db.execute(f"SELECT key, endpoint, value FROM calls WHERE key IN ({marks})", chunk)
                found.update((k, (e, json.loads(v))) for k, e, v in rows)
            for k in keys:
                if k in self._pending:
                    found[k] = (self._pending[k][4], json.loads(self._pending[k][3]))
        return found

    def get_many(self, keys: list[str]) -> dict[str, Any]:
        """The cached values for those keys that are present, whichever endpoint answered them."""
        return {k: value for k, (_, value) in self.get_rows(keys).items()}

    @staticmethod
    def _encoded(items: Iterable[Row]) -> list[tuple[str, str, str, str, str]]:
        return [(r[0], r[1], r[2], _value_json(r[3]), r[4] if len(r) > 4 else "") for r in items]

    def put_many(self, items: Iterable[Row]) -> None:
        """Store (key, kind, model id, value[, endpoint]) rows in one transaction."""
        rows = self._encoded(items)
        if not rows:
            return
        for hook in self.before_commit:
            hook()
        with self._lock:
            self._write(rows)

    def _write(self, rows: list[tuple[str, str, str, str, str]]) -> None:
        self._db.execute("BEGIN")
        self._db.executemany(
            "INSERT OR REPLACE INTO calls (key, kind, model, value, endpoint) VALUES (?,?,?,?,?)", rows
        )
        self._db.execute("COMMIT")

    def put_soon(self, items: Iterable[Row]) -> None:
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
        rows = self._encoded(items)
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
                self._write(rows)

    def merge_from(self, path: str | Path) -> None:
        """Add another cache file's rows (a shard's); rows already here stay as they are."""
        self.flush()
        CallCache(path).close()  # brought to this schema first: the columns line up
        with self._lock:
            self._db.execute("ATTACH DATABASE ? AS other", (str(Path(path).resolve()),))
            try:
                self._db.execute("BEGIN")
                copy_rows(self._db, "calls", "key")  # rows already here stay as they are
                if self._db.execute("SELECT EXISTS (SELECT 1 FROM other.calls WHERE endpoint IS NULL)").fetchone()[0]:
                    self._db.execute("INSERT OR REPLACE INTO meta VALUES ('legacy_rows', 'true')")
                    self.legacy_rows = True
                self._db.execute("COMMIT")
            finally:
                self._db.execute("DETACH DATABASE other")

    def __len__(self) -> int:
        self.flush()
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM calls").fetchone()[0]

    def count_legacy_rows(self) -> int:
        """Rows from before endpoints were recorded (they answer for the endpoint their model id claims)."""
        self.flush()
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM calls WHERE endpoint IS NULL").fetchone()[0]

    def close(self) -> None:
        self.flush()
        with self._lock:
            self._db.close()
