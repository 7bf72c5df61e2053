"""The run store: one SQLite file per run directory. Every stage writes item by item, so a run can stop
anywhere (Ctrl-C, kill -9, an exception) and resume without losing or repeating work.

Items are keyed by what they are and by the fingerprint of the settings that made them: a changed
setting makes new items beside the old ones, and `Fingerprints` (store meta) says which are in effect.

`RunStore` owns the connection (the schema and its upgrades, transactions, the read-only rules) and the meta
table. Every other table has one module of functions that take the open store, the one reader and writer of
that table: charter.runs.items (prompts, chains, samples, pairs, judgments), .failures, .counts (stages), .usage
(usage_events), .history (config_history), .batches (batches, batch_requests), .labels (the spot checks),
.rewards, .checklists and .item_labels.

Tables (records as JSON in `record` columns; see charter.records):
  meta(key, value)                                   run id, config, constitution, fingerprints, dataset
  prompts(prompt_id, idx, active, record)            Prompt; the set in use is active (prompts.on_change)
  chains(prompt_id, fingerprint, record)             Chain
  samples(prompt_id, fingerprint, sample_idx, record) Sample
  pairs(pair_id, prompt_id, kind, source_fingerprint, record)   Pair (content-addressed id)
  judgments(pair_id, fingerprint, status, record)    Judgment
  failures(id, stage, item_id, fingerprint, kind, error, raw, attempts, session, resolved, created_at)
                                                     a failed item per run session; resolved when it succeeds
  stages(stage, status, started_at, finished_at, counts)
  usage_events(id, role, model, calls, cached, prompt_tokens, completion_tokens, cost_usd, estimated, created_at,
               retries, cache_read_tokens, cache_write_tokens, cache_saved_usd)
                                                     one row per call (or retry), written as the calls finish
  config_history(id, changed_at, changes, fingerprints)
  spot_sample, human_labels, label_events            the human spot checks (charter.runs.labels)
  rewards(id, key, step, rank, scoring, reward, status, record, created_at)
                                                     online training's judge rewards (charter.runs.rewards)
  checklists(prompt_id, fingerprint, status, source, model, prompt_format, version, checklist_fingerprint, record,
             created_at)                             each prompt's checklist (charter.checklist.store)
  item_labels(pair_id, item_id, side, annotator, verdict, created_at)
                                                     people's verdicts on single checklist items (.item_labels)
  step_labels(pair_id, side, principle_id, annotator, step, created_at)
                                                     the first step of a trajectory people say violates a
                                                     principle, null for none (.item_labels)
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from charter.errors import ConfigError, RunStoreError, StorageError
from charter.records import CalibrationMap, Fingerprints
from charter.storage import (
    Schema,
    connect_read_only,
    open_read_only,
    open_versioned,
    script_statements,
    tables,
    user_version,
)

STORE_FILE = "run.sqlite"
#: The store's schema version (kept in `PRAGMA user_version`, and in meta `schema_version`, where releases before
#: 3 look for it and refuse any other). Each change adds a step to `STORE_SCHEMA.steps`; the test fixture written
#: by an earlier release is opened, upgraded and resumed after every change (tests/runs/test_upgrade.py).
SCHEMA_VERSION = 8
R = TypeVar("R", bound=BaseModel)

#: The tables as schema 2 made them; a new store is made at 2 and brought forward by the steps, like an old one.
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS prompts (prompt_id TEXT PRIMARY KEY, idx INTEGER, active INTEGER DEFAULT 1, record TEXT);
CREATE INDEX IF NOT EXISTS prompts_order ON prompts (idx);
CREATE TABLE IF NOT EXISTS chains (prompt_id TEXT, fingerprint TEXT, record TEXT, PRIMARY KEY (prompt_id, fingerprint));
CREATE TABLE IF NOT EXISTS samples (prompt_id TEXT, fingerprint TEXT, sample_idx INTEGER, record TEXT,
                                    PRIMARY KEY (prompt_id, fingerprint, sample_idx));
CREATE TABLE IF NOT EXISTS pairs (pair_id TEXT PRIMARY KEY, prompt_id TEXT, kind TEXT, source_fingerprint TEXT,
                                  record TEXT);
CREATE TABLE IF NOT EXISTS judgments (pair_id TEXT, fingerprint TEXT, status TEXT, record TEXT,
                                      PRIMARY KEY (pair_id, fingerprint));
CREATE TABLE IF NOT EXISTS failures (id INTEGER PRIMARY KEY AUTOINCREMENT, stage TEXT, item_id TEXT, fingerprint TEXT,
                                     kind TEXT, error TEXT, raw TEXT, attempts INTEGER, session INTEGER,
                                     resolved INTEGER DEFAULT 0, created_at REAL);
CREATE TABLE IF NOT EXISTS stages (stage TEXT PRIMARY KEY, status TEXT, started_at REAL, finished_at REAL, counts TEXT);
CREATE TABLE IF NOT EXISTS usage_events (id INTEGER PRIMARY KEY AUTOINCREMENT, role TEXT, model TEXT, calls INTEGER,
                                         cached INTEGER, prompt_tokens INTEGER, completion_tokens INTEGER,
                                         cost_usd REAL, estimated INTEGER, created_at REAL);
CREATE TABLE IF NOT EXISTS config_history (id INTEGER PRIMARY KEY AUTOINCREMENT, changed_at REAL, changes TEXT,
                                           fingerprints TEXT);
CREATE TABLE IF NOT EXISTS spot_sample (
  pair_id TEXT PRIMARY KEY, principle_id TEXT, confidence_bucket TEXT, shown_order TEXT,
  position INTEGER, seed INTEGER, created_at REAL);
CREATE TABLE IF NOT EXISTS human_labels (
  pair_id TEXT, annotator TEXT, label TEXT CHECK (label IN ('a', 'b', 'tie', 'skip')), shown_order TEXT,
  created_at REAL, replaced_count INTEGER DEFAULT 0, PRIMARY KEY (pair_id, annotator));
CREATE TABLE IF NOT EXISTS batches (batch_id TEXT PRIMARY KEY, model TEXT, state TEXT, requests INTEGER,
                                    submitted_at REAL, updated_at REAL);
CREATE TABLE IF NOT EXISTS batch_requests (key TEXT PRIMARY KEY, batch_id TEXT);
CREATE TABLE IF NOT EXISTS label_events (
  id INTEGER PRIMARY KEY AUTOINCREMENT, pair_id TEXT, annotator TEXT, action TEXT, label TEXT,
  previous TEXT, source TEXT, created_at REAL);
-- the counts of the settings in effect (status, report) from indexes: rows of one setting go in at the end of
-- them, so a run hardly pays for these (indexes keyed by the hashed ids cost a million-prompt run ~2 min)
CREATE INDEX IF NOT EXISTS pairs_by_source ON pairs (source_fingerprint);
CREATE INDEX IF NOT EXISTS judgments_by_settings ON judgments (fingerprint, status);
"""


def _found(db: Any) -> int | None:
    """The schema version of a store file; None for a file with no tables yet."""
    version = user_version(db)
    if version:
        return version
    names = tables(db)
    if not names:
        return None
    row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() if "meta" in names else None
    return int(json.loads(row[0])) if row else 1


def _mark(db: Any, version: int) -> None:
    db.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (json.dumps(version),))


def _to_3(db: Any) -> None:
    """3: retries counted per call in the usage (a store of 2 may predate some of its tables: made here)."""
    for statement in script_statements(SCHEMA):
        db.execute(statement)
    db.execute("ALTER TABLE usage_events ADD COLUMN retries INTEGER DEFAULT 0")
    _mark(db, 3)


#: 4: the reward store of online training (charter.runs.rewards).
REWARDS_SCHEMA = """
CREATE TABLE IF NOT EXISTS rewards (id INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT, step INTEGER, rank INTEGER,
                                    scoring TEXT, reward REAL, status TEXT, record TEXT, created_at REAL);
CREATE INDEX IF NOT EXISTS rewards_by_key ON rewards (key);
CREATE INDEX IF NOT EXISTS rewards_by_step ON rewards (step);
"""


def _to_4(db: Any) -> None:
    """4: the rewards table of online training."""
    for statement in script_statements(REWARDS_SCHEMA):
        db.execute(statement)
    _mark(db, 4)


def _to_5(db: Any) -> None:
    """5: each spot-check pair's inclusion probability (active sampling; null for a stratified sample)."""
    db.execute("ALTER TABLE spot_sample ADD COLUMN inclusion_probability REAL")
    _mark(db, 5)


def _to_6(db: Any) -> None:
    """6: the provider's prompt-cache reads and writes, and what they saved, per call in the usage."""
    for column, kind in (
        ("cache_read_tokens", "INTEGER"),
        ("cache_write_tokens", "INTEGER"),
        ("cache_saved_usd", "REAL"),
    ):
        db.execute(f"ALTER TABLE usage_events ADD COLUMN {column} {kind} DEFAULT 0")
    _mark(db, 6)


#: 7: each prompt's checklist (charter.checklist.store); people's item verdicts (charter.runs.item_labels).
CHECKLISTS_SCHEMA = """
CREATE TABLE IF NOT EXISTS checklists (prompt_id TEXT, fingerprint TEXT, status TEXT, source TEXT, model TEXT,
                                       prompt_format INTEGER, version INTEGER, checklist_fingerprint TEXT,
                                       record TEXT, created_at REAL, PRIMARY KEY (prompt_id, fingerprint));
CREATE TABLE IF NOT EXISTS item_labels (pair_id TEXT, item_id TEXT, side TEXT CHECK (side IN ('a', 'b')),
                                        annotator TEXT, verdict TEXT CHECK (verdict IN ('yes', 'no', 'n/a')),
                                        created_at REAL, PRIMARY KEY (pair_id, item_id, side, annotator));
"""


def _to_7(db: Any) -> None:
    """7: each prompt's checklist, with its provenance (charter.checklist.store), and people's verdicts on single
    checklist items of spot-checked pairs (charter.runs.item_labels)."""
    for statement in script_statements(CHECKLISTS_SCHEMA):
        db.execute(statement)
    _mark(db, 7)


#: 8: the first step of a pair's trajectory that people say violates a principle (charter.runs.item_labels).
STEP_LABELS_SCHEMA = """
CREATE TABLE IF NOT EXISTS step_labels (pair_id TEXT, side TEXT CHECK (side IN ('a', 'b')), principle_id TEXT,
                                        annotator TEXT, step INTEGER, created_at REAL,
                                        PRIMARY KEY (pair_id, side, principle_id, annotator));
"""


def _to_8(db: Any) -> None:
    """8: people's first violating step of a pair's trajectory, per side and principle (charter.runs.item_labels)."""
    for statement in script_statements(STEP_LABELS_SCHEMA):
        db.execute(statement)
    _mark(db, 8)


STORE_SCHEMA = Schema(
    what="run store",
    version=SCHEMA_VERSION,
    base=SCHEMA + "INSERT OR REPLACE INTO meta VALUES ('schema_version', '2');",
    base_version=2,
    steps={2: _to_3, 3: _to_4, 4: _to_5, 5: _to_6, 6: _to_7, 7: _to_8},
    found=_found,
)


class RunStore:
    """Access to a run directory's SQLite store. Safe for many asyncio tasks in one process."""

    def __init__(self, run_dir: str | Path, create: bool = False, read_only: bool = False) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / STORE_FILE
        self.read_only = read_only
        if not self.path.exists() and (not create or read_only):
            raise RunStoreError(f"{self.run_dir}: not a charter run directory (no {STORE_FILE})")
        self._lock = threading.RLock()
        try:  # a store of an older release is upgraded (a copy of it kept beside it); a newer one is refused
            if read_only:
                self.db = open_read_only(self.path, STORE_SCHEMA)
            else:
                self.run_dir.mkdir(parents=True, exist_ok=True)
                if not writable(self.run_dir):
                    raise RunStoreError(self._read_only_error())
                self.db = open_versioned(self.path, STORE_SCHEMA)
        except StorageError as exc:
            raise RunStoreError(str(exc)) from None

    def _read_only_error(self) -> str:
        return (
            f"{self.run_dir}: the run cannot be written here (a read-only mount, or no write permission) and this "
            "command writes to it; run it on a copy that can be written"
        )

    def _written(self, exc: sqlite3.OperationalError) -> RunStoreError | sqlite3.OperationalError:
        """A write refused by a read-only store, in one line; any other error as it is."""
        return RunStoreError(self._read_only_error()) if self.read_only and "readonly" in str(exc) else exc

    # -- generic -------------------------------------------------------------------------------
    def execute(self, sql: str, params: Iterable[Any] | Mapping[str, Any] = ()) -> list[tuple]:
        """Rows of a query; `params` are positional, or named (`:name`) when a mapping."""
        with self._lock:
            bound = params if isinstance(params, Mapping) else tuple(params)
            try:
                return self.db.execute(sql, bound).fetchall()
            except sqlite3.OperationalError as exc:
                raise self._written(exc) from None

    def stream(self, sql: str, params: Iterable[Any] = (), size: int = 500) -> Iterator[tuple]:
        """Rows of a query `size` at a time, so a large table is never in memory at once. The query stays open
        until its last row: while it is, the write-ahead log cannot be checkpointed, so this is for reading
        once the writing is done (reads during a run page by key, as `iter_prompts` does)."""
        with self._lock:
            cursor = self.db.execute(sql, tuple(params))
        while True:
            with self._lock:
                chunk = cursor.fetchmany(size)
            if not chunk:
                return
            yield from chunk

    def write(self, sql: str, rows: Iterable[Iterable[Any]]) -> None:
        """Run `sql` for each row in one transaction: all the rows land, or none."""
        rows = [tuple(r) for r in rows]
        if rows:
            self.transaction(lambda db: db.executemany(sql, rows))

    def transaction(self, work: Any) -> Any:
        """Run `work(connection)` inside one IMMEDIATE transaction; roll back on any exception."""
        with self._lock:
            try:
                self.db.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise self._written(exc) from None
            try:
                result = work(self.db)
            except sqlite3.OperationalError as exc:
                self.db.execute("ROLLBACK")
                raise self._written(exc) from exc
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")
            return result

    def with_attached(self, path: str | Path, work: Any) -> Any:
        """Run `work(connection)` in one transaction with another store attached as `other` (to merge it)."""
        with self._lock:
            self.db.execute("ATTACH DATABASE ? AS other", (str(Path(path).resolve()),))
            try:
                return self.transaction(work)
            finally:
                self.db.execute("DETACH DATABASE other")

    def count(self, table: str, where: str = "", params: Iterable[Any] = ()) -> int:
        return self.execute(f"SELECT COUNT(*) FROM {table} {('WHERE ' + where) if where else ''}", params)[0][0]

    def close(self) -> None:
        with self._lock:
            self.db.close()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def records(self, model: type[R], sql: str, params: Iterable[Any] = ()) -> Iterator[R]:
        """The records of a query that selects one `record` column (stored JSON), decoded one at a time."""
        for (record,) in self.stream(sql, params):
            yield model.model_validate_json(record)

    # -- meta ------------------------------------------------------------------------------------
    def set_meta(self, **values: Any) -> None:
        """Store JSON values by key (a record is stored as its JSON form)."""

        def encode(value: Any) -> str:
            return value.model_dump_json() if isinstance(value, BaseModel) else json.dumps(value, ensure_ascii=False)

        self.write("INSERT OR REPLACE INTO meta VALUES (?, ?)", ((k, encode(v)) for k, v in values.items()))

    def meta(self, key: str, default: Any = None) -> Any:
        rows = self.execute("SELECT value FROM meta WHERE key = ?", (key,))
        return json.loads(rows[0][0]) if rows else default

    def meta_record(self, key: str, model: type[R]) -> R | None:
        """A meta value read back as a record, or None."""
        rows = self.execute("SELECT value FROM meta WHERE key = ?", (key,))
        return model.model_validate_json(rows[0][0]) if rows and rows[0][0] != "null" else None

    def run_config(self) -> dict[str, Any]:
        """The run config in effect, as stored when the run last started (its JSON form)."""
        return self.meta("config") or {}

    def judge_section(self, key: str, model: type[R]) -> R | None:
        """The `judge.<key>` section of the run config in effect as `model`, if any; a section that does not
        validate raises ConfigError naming the run and the key."""
        section = (self.run_config().get("judge") or {}).get(key)
        if section is None:
            return None
        try:
            return model.model_validate(section)
        except ValueError as exc:
            raise ConfigError(
                f"{self.run_dir}: run config judge.{key}: {' '.join(str(exc).splitlines()[:3])}"
            ) from None

    def fingerprints(self) -> Fingerprints | None:
        """The fingerprints of the settings in effect (None before the first start)."""
        return self.meta_record("fingerprints", Fingerprints)

    def calibration(self) -> CalibrationMap | None:
        """The judge calibration fitted by `charter agreement`, if any."""
        return self.meta_record("calibration", CalibrationMap)

    def start_session(self) -> int:
        """Count a new start of the run (a process working on it); returns its number, from 1."""
        session = int(self.meta("sessions") or 0) + 1
        self.set_meta(sessions=session)
        return session


def peek_meta(run_dir: str | Path, *keys: str) -> dict[str, Any]:
    """Meta values of a run's store, read without opening it for writing (nor upgrading it): for checks made before a
    run writes anything. Missing keys are absent; an unreadable store gives {}."""
    path = Path(run_dir) / STORE_FILE
    if not path.is_file():
        return {}
    marks = ",".join("?" * len(keys))
    try:
        db = connect_read_only(path)
        try:
            rows = db.execute(f"SELECT key, value FROM meta WHERE key IN ({marks})", keys).fetchall()
        finally:
            db.close()
    except sqlite3.Error:
        return {}
    return {k: json.loads(v) for k, v in rows}


def open_store(run_dir: str | Path, read_only: bool | None = False) -> RunStore:
    """Open an existing run directory's store (one-line error if it is not one): for writing, read-only (`True`:
    for a command that only reads, so it works on a read-only mount), or `None`: read-only where the run cannot be
    written, when a command writes only sometimes (a write is then refused in one line)."""
    if read_only is None:
        read_only = not writable(run_dir)
    return RunStore(run_dir, create=False, read_only=read_only)


def writable(run_dir: str | Path) -> bool:
    """Whether this process can write the run directory and its store (False on a read-only mount)."""
    path = Path(run_dir) / STORE_FILE
    return os.access(run_dir, os.W_OK) and (not path.exists() or os.access(path, os.W_OK))
