"""The run store: one SQLite file per run directory. Every stage writes row by row, so a run can
stop anywhere (Ctrl-C, kill -9, an exception) and resume without losing or repeating work.

Tables (JSON in TEXT columns where a row is a record):
  meta(key, value)                          run id, config, constitution name/hash/yaml, created_at
  prompts(prompt_id, idx, messages, source) the prompt set, fixed at the first start
  chains(prompt_id, record)                 SL-CAI chain: initial, rounds, final, models, tokens
  samples(prompt_id, sample_idx, record)    k policy samples for sample pairs
  pairs(pair_id, prompt_id, kind, record)   two responses to compare: {"a": text, "b": text, ...}
  judgments(pair_id, status, record)        judge output per pair (see charter.preference.judge)
  failures(id, stage, item_id, error, raw)  anything that failed, with the raw text
  stages(stage, status, started_at, finished_at, counts)
  usage(role, model, calls, cached, prompt_tokens, completion_tokens, cost_usd)
Other packages add their own tables with `ensure(schema_sql)` (agreement: spot checks, labels).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Iterable, Iterator

from charter.errors import RunStoreError

STORE_FILE = "run.sqlite"

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS prompts (prompt_id TEXT PRIMARY KEY, idx INTEGER, messages TEXT, source TEXT);
CREATE TABLE IF NOT EXISTS chains (prompt_id TEXT PRIMARY KEY, record TEXT);
CREATE TABLE IF NOT EXISTS samples (prompt_id TEXT, sample_idx INTEGER, record TEXT, PRIMARY KEY (prompt_id, sample_idx));
CREATE TABLE IF NOT EXISTS pairs (pair_id TEXT PRIMARY KEY, prompt_id TEXT, kind TEXT, record TEXT);
CREATE TABLE IF NOT EXISTS judgments (pair_id TEXT PRIMARY KEY, status TEXT, record TEXT);
CREATE TABLE IF NOT EXISTS failures (id INTEGER PRIMARY KEY AUTOINCREMENT, stage TEXT, item_id TEXT, error TEXT,
                                     raw TEXT, created_at REAL);
CREATE TABLE IF NOT EXISTS stages (stage TEXT PRIMARY KEY, status TEXT, started_at REAL, finished_at REAL, counts TEXT);
CREATE TABLE IF NOT EXISTS usage (role TEXT, model TEXT, calls INTEGER, cached INTEGER, prompt_tokens INTEGER,
                                  completion_tokens INTEGER, cost_usd REAL, PRIMARY KEY (role, model));
"""


class RunStore:
    """Access to a run directory's SQLite store. Safe for many asyncio tasks in one process."""

    def __init__(self, run_dir: str | Path, create: bool = False) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / STORE_FILE
        if not self.path.exists() and not create:
            raise RunStoreError(f"{self.run_dir}: not a charter run directory (no {STORE_FILE})")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self.db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.ensure(SCHEMA)

    # -- generic -------------------------------------------------------------------------------
    def ensure(self, schema_sql: str) -> None:
        """Create tables (idempotent)."""
        with self._lock:
            self.db.executescript(schema_sql)

    def execute(self, sql: str, params: Iterable[Any] = ()) -> list[tuple]:
        with self._lock:
            return self.db.execute(sql, tuple(params)).fetchall()

    def write(self, sql: str, rows: Iterable[Iterable[Any]]) -> None:
        """Run `sql` for each row in one transaction: all the rows land, or none."""
        rows = [tuple(r) for r in rows]
        if not rows:
            return
        with self._lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                self.db.executemany(sql, rows)
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self.db.close()

    def __enter__(self) -> "RunStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- meta ------------------------------------------------------------------------------------
    def set_meta(self, **values: Any) -> None:
        self.write("INSERT OR REPLACE INTO meta VALUES (?, ?)", ((k, json.dumps(v)) for k, v in values.items()))

    def meta(self, key: str, default: Any = None) -> Any:
        rows = self.execute("SELECT value FROM meta WHERE key = ?", (key,))
        return json.loads(rows[0][0]) if rows else default

    def all_meta(self) -> dict[str, Any]:
        return {k: json.loads(v) for k, v in self.execute("SELECT key, value FROM meta")}

    # -- records ---------------------------------------------------------------------------------
    def put_records(self, table: str, key_columns: tuple[str, ...], rows: Iterable[tuple[tuple, dict]]) -> None:
        """Upsert (key values, record) rows into a table whose last column is `record`."""
        columns = ", ".join((*key_columns, "record"))
        marks = ", ".join("?" * (len(key_columns) + 1))
        sql = f"INSERT OR REPLACE INTO {table} ({columns}) VALUES ({marks})"
        self.write(sql, ((*keys, json.dumps(record, ensure_ascii=False)) for keys, record in rows))

    def records(self, table: str, where: str = "", params: Iterable[Any] = ()) -> Iterator[dict]:
        """Decoded `record` values of a table, in insertion order."""
        sql = f"SELECT record FROM {table} {('WHERE ' + where) if where else ''} ORDER BY rowid"
        for (record,) in self.execute(sql, params):
            yield json.loads(record)

    def keys(self, table: str, column: str) -> set:
        return {row[0] for row in self.execute(f"SELECT {column} FROM {table}")}

    def count(self, table: str, where: str = "", params: Iterable[Any] = ()) -> int:
        return self.execute(f"SELECT COUNT(*) FROM {table} {('WHERE ' + where) if where else ''}", params)[0][0]

    # -- prompts ---------------------------------------------------------------------------------
    def put_prompts(self, rows: Iterable[tuple[str, int, list[dict], str]]) -> None:
        """(prompt_id, index, messages, source) rows; existing ids are kept as they are."""
        self.write(
            "INSERT OR IGNORE INTO prompts VALUES (?, ?, ?, ?)",
            ((pid, idx, json.dumps(msgs, ensure_ascii=False), src) for pid, idx, msgs, src in rows),
        )

    def prompts(self) -> list[tuple[str, list[dict]]]:
        rows = self.execute("SELECT prompt_id, messages FROM prompts ORDER BY idx")
        return [(pid, json.loads(msgs)) for pid, msgs in rows]

    # -- failures, stages, usage -------------------------------------------------------------------
    def add_failure(self, stage: str, item_id: str, error: str, raw: str | None = None) -> None:
        self.write(
            "INSERT INTO failures (stage, item_id, error, raw, created_at) VALUES (?, ?, ?, ?, ?)",
            [(stage, item_id, error, raw, time.time())],
        )

    def failures(self, stage: str | None = None) -> list[dict]:
        where, params = ("WHERE stage = ?", (stage,)) if stage else ("", ())
        rows = self.execute(f"SELECT stage, item_id, error, raw FROM failures {where} ORDER BY id", params)
        return [dict(zip(("stage", "item_id", "error", "raw"), r)) for r in rows]

    def set_stage(self, stage: str, status: str, counts: dict | None = None) -> None:
        now = time.time()
        with self._lock:
            row = self.db.execute("SELECT started_at FROM stages WHERE stage = ?", (stage,)).fetchone()
        started = row[0] if row and row[0] else now
        finished = now if status == "done" else None
        self.write(
            "INSERT OR REPLACE INTO stages VALUES (?, ?, ?, ?, ?)",
            [(stage, status, started, finished, json.dumps(counts or {}))],
        )

    def stages(self) -> dict[str, dict]:
        rows = self.execute("SELECT stage, status, started_at, finished_at, counts FROM stages")
        return {
            s: {"status": st, "started_at": a, "finished_at": b, "counts": json.loads(c or "{}")}
            for s, st, a, b, c in rows
        }

    def add_usage(self, rows: Iterable[dict]) -> None:
        """Add a meter's tallies to the stored totals (called once per process per run)."""
        self.write(
            "INSERT INTO usage VALUES (?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (role, model) DO UPDATE SET calls = calls + excluded.calls,"
            " cached = cached + excluded.cached, prompt_tokens = prompt_tokens + excluded.prompt_tokens,"
            " completion_tokens = completion_tokens + excluded.completion_tokens,"
            " cost_usd = cost_usd + excluded.cost_usd",
            ((r["role"], r["model"], r["calls"], r["cached"], r["prompt_tokens"], r["completion_tokens"], r["cost_usd"])
             for r in rows),
        )

    def usage(self) -> list[dict]:
        cols = ("role", "model", "calls", "cached", "prompt_tokens", "completion_tokens", "cost_usd")
        return [dict(zip(cols, r)) for r in self.execute(f"SELECT {', '.join(cols)} FROM usage ORDER BY role")]


def open_store(run_dir: str | Path) -> RunStore:
    """Open an existing run directory's store (one-line error if it is not one)."""
    return RunStore(run_dir, create=False)
