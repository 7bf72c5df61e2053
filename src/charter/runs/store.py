"""The run store: one SQLite file per run directory. Every stage writes item by item, so a run can stop
anywhere (Ctrl-C, kill -9, an exception) and resume without losing or repeating work.

Items are keyed by what they are and by the fingerprint of the settings that made them: a changed
setting makes new items beside the old ones, and `Fingerprints` (store meta) says which are in effect.

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
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypedDict, TypeVar

from pydantic import BaseModel

from charter.errors import RunStoreError, StorageError
from charter.records import (
    CalibrationMap,
    Chain,
    Failure,
    Fingerprints,
    Judgment,
    Pair,
    Prompt,
    Record,
    Sample,
    UsageRow,
)
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
#: SQL: the prompt is in the prompt set in use
ACTIVE = "prompt_id IN (SELECT prompt_id FROM prompts WHERE active = 1)"
#: The store's schema version (kept in `PRAGMA user_version`, and in meta `schema_version`, where releases before
#: 3 look for it and refuse any other). Each change adds a step to `STORE_SCHEMA.steps`; the test fixture written
#: by an earlier release is opened, upgraded and resumed after every change (tests/runs/test_upgrade.py).
SCHEMA_VERSION = 6
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


STORE_SCHEMA = Schema(
    what="run store",
    version=SCHEMA_VERSION,
    base=SCHEMA + "INSERT OR REPLACE INTO meta VALUES ('schema_version', '2');",
    base_version=2,
    steps={2: _to_3, 3: _to_4, 4: _to_5, 5: _to_6},
    found=_found,
)


class StoredFailure(Record):
    """A failure as the store keeps it: which stage and item, under which settings, in which run session."""

    stage: str
    item_id: str
    fingerprint: str | None = None
    failure: Failure
    session: int | None = None
    resolved: bool = False


#: The columns of the failures table `stored_failure` reads, in its order.
FAILURE_COLUMNS = "stage, item_id, fingerprint, kind, error, raw, attempts, session, resolved"


def stored_failure(row: Sequence[Any]) -> StoredFailure:
    """A failure from a row of FAILURE_COLUMNS."""
    stage, item_id, fingerprint, kind, error, raw, attempts, session, resolved = row
    return StoredFailure(
        stage=stage,
        item_id=item_id,
        fingerprint=fingerprint,
        session=session,
        resolved=bool(resolved),
        failure=Failure(kind=kind or "error", message=error or "", raw=raw, attempts=attempts or 1),
    )


class ConfigChange(Record):
    """One change of a run's config between two starts."""

    changed_at: float
    """When the run started with the new config (seconds since the epoch)."""
    changes: list[dict[str, Any]]
    """`{key, old, new}` per changed setting (dotted keys)."""
    fingerprints: Fingerprints
    """The fingerprints in effect from then on."""


class StageState(TypedDict):
    """A stage as the store records it."""

    status: str
    """running, done, failed or stopped."""
    started_at: float | None
    """Seconds since the epoch."""
    finished_at: float | None
    """Seconds since the epoch; None while it runs (or if its process ended without finishing it)."""
    counts: dict[str, Any]
    """What the stage counted (done, total, its own counts; `reason` when it stopped early)."""


class BatchState(TypedDict):
    """A provider batch the run submitted."""

    batch_id: str
    model: str
    state: str
    """The provider's state, as last seen (submitted, in_progress, ended, ...)."""
    requests: int
    submitted_at: float
    updated_at: float


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

    def _records(self, model: type[R], sql: str, params: Iterable[Any] = ()) -> Iterator[R]:
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

    def fingerprints(self) -> Fingerprints | None:
        """The fingerprints of the settings in effect (None before the first start)."""
        return self.meta_record("fingerprints", Fingerprints)

    def calibration(self) -> CalibrationMap | None:
        """The judge calibration fitted by `charter agreement`, if any."""
        return self.meta_record("calibration", CalibrationMap)

    # -- config history --------------------------------------------------------------------------
    def record_config(self, config: dict[str, Any], fingerprints: Fingerprints) -> list[dict[str, Any]]:
        """Store the config a run starts with; returns (and keeps in the history) what changed since the last start."""
        previous = self.meta("config")
        changes = diff_settings(previous, config) if previous is not None else []
        if changes:
            self.write(
                "INSERT INTO config_history (changed_at, changes, fingerprints) VALUES (?, ?, ?)",
                [(time.time(), json.dumps(changes, ensure_ascii=False), fingerprints.model_dump_json())],
            )
        self.set_meta(config=config, fingerprints=fingerprints)
        return changes

    def config_history(self) -> list[ConfigChange]:
        rows = self.execute("SELECT changed_at, changes, fingerprints FROM config_history ORDER BY id")
        return [
            ConfigChange(changed_at=at, changes=json.loads(changes), fingerprints=Fingerprints.model_validate_json(fp))
            for at, changes, fp in rows
        ]

    def rename_fingerprints(self, renamed: Mapping[str, str]) -> dict[str, int]:
        """Move the items stored under each old fingerprint to its new one, in one transaction (a run made by an
        earlier release whose fingerprints name its settings differently). Returns the rows moved per table."""
        moves = (
            ("chains", "fingerprint", "$.fingerprint"),
            ("samples", "fingerprint", "$.fingerprint"),
            ("judgments", "fingerprint", "$.fingerprint"),
            ("pairs", "source_fingerprint", "$.source_fingerprint"),
            ("failures", "fingerprint", None),
        )

        def work(db: Any) -> dict[str, int]:
            moved: dict[str, int] = {}
            for old, new in renamed.items():
                for table, column, path in moves:
                    record = f", record = json_set(record, '{path}', :new)" if path else ""
                    cursor = db.execute(
                        f"UPDATE {table} SET {column} = :new{record} WHERE {column} = :old", {"old": old, "new": new}
                    )
                    moved[table] = moved.get(table, 0) + cursor.rowcount
            return moved

        return self.transaction(work)

    def older_items(self, fingerprints: Fingerprints) -> dict[str, int]:
        """How many chains, samples and judgments were made under settings no longer in effect."""
        return {
            "chains": self.count("chains", "fingerprint IS NOT ?", (fingerprints.critique,)),
            "samples": self.execute(
                "SELECT COUNT(DISTINCT prompt_id || fingerprint) FROM samples WHERE fingerprint IS NOT ?",
                (fingerprints.samples,),
            )[0][0],
            "judgments": self.count("judgments", "fingerprint != ?", (fingerprints.judge,)),
        }

    # -- prompts ---------------------------------------------------------------------------------
    def put_prompts(self, prompts: Iterable[Prompt]) -> None:
        """Add prompts to the prompt set (in use); ids already stored are kept as they are, and put in use."""
        start = self.count("prompts")
        rows = ((p.prompt_id, start + i, p.model_dump_json()) for i, p in enumerate(prompts))  # streamed in

        def work(db: Any) -> None:
            db.executemany(
                "INSERT INTO prompts (prompt_id, idx, active, record) VALUES (?, ?, 1, ?)"
                " ON CONFLICT (prompt_id) DO UPDATE SET active = 1",
                rows,
            )

        self.transaction(work)

    def keep_prompts(self, prompt_ids: set[str]) -> int:
        """Take every prompt not in `prompt_ids` out of use (its items stay in the store); returns how many."""
        active = {r[0] for r in self.execute("SELECT prompt_id FROM prompts WHERE active = 1")}
        leaving = [(pid,) for pid in active - prompt_ids]
        self.write("UPDATE prompts SET active = 0 WHERE prompt_id = ?", leaving)
        return len(leaving)

    def prompts(self) -> list[Prompt]:
        """The prompts in use, in the order they were added."""
        return list(self.iter_prompts())

    def iter_prompts(self, checked_only: bool = False, size: int = 500) -> Iterator[Prompt]:
        """The prompts in use, in the order they were added, read `size` at a time (a million prompts are never
        in memory at once). `checked_only`: those with a reference or a verifier (charter.verify).

        Each page is its own short read: the run reads its prompts while it writes, and a cursor held open that
        long keeps SQLite from ever checkpointing its write-ahead log (a million-prompt run's grew to 9 GB)."""
        for _, record in self.prompt_records(checked_only, size):
            yield Prompt.model_validate_json(record)

    def prompt_records(self, checked_only: bool = False, size: int = 500) -> Iterator[tuple[str, str]]:
        """(prompt id, stored JSON record) of each prompt in use, as `iter_prompts` reads them, undecoded."""
        where = (
            " AND (json_extract(record, '$.reference') IS NOT NULL OR json_extract(record, '$.verifier') IS NOT NULL)"
            if checked_only
            else ""
        )
        last: tuple[int, int] = (-1, -1)
        while page := self.execute(
            f"SELECT idx, rowid, prompt_id, record FROM prompts WHERE active = 1{where}"
            " AND (idx, rowid) > (?, ?) ORDER BY idx, rowid LIMIT ?",
            (*last, size),
        ):
            last = page[-1][:2]
            for _, _, prompt_id, record in page:
                yield prompt_id, record

    def count_prompts(self) -> int:
        """How many prompts are in use."""
        return self.count("prompts", "active = 1")

    def start_session(self) -> int:
        """Count a new start of the run (a process working on it); returns its number, from 1."""
        session = int(self.meta("sessions") or 0) + 1
        self.set_meta(sessions=session)
        return session

    # -- chains and samples ------------------------------------------------------------------------
    def put_chains(self, chains: Iterable[Chain]) -> None:
        self.write(
            "INSERT OR REPLACE INTO chains VALUES (?, ?, ?)",
            ((c.prompt_id, c.fingerprint, c.model_dump_json()) for c in chains),
        )

    def chain(self, prompt_id: str, fingerprint: str) -> Chain | None:
        return next(
            self._records(
                Chain, "SELECT record FROM chains WHERE prompt_id = ? AND fingerprint = ?", (prompt_id, fingerprint)
            ),
            None,
        )

    def chains(self, fingerprint: str | None) -> Iterator[Chain]:
        """The chains made under `fingerprint`, in prompt order."""
        yield from self._records(
            Chain,
            "SELECT c.record FROM chains c JOIN prompts p USING (prompt_id)"
            " WHERE c.fingerprint = ? AND p.active = 1 ORDER BY p.idx, c.rowid",
            (fingerprint,),
        )

    def chain_ids(self, fingerprint: str | None) -> set[str]:
        return {r[0] for r in self.execute("SELECT prompt_id FROM chains WHERE fingerprint = ?", (fingerprint,))}

    def put_samples(self, samples: Iterable[Sample]) -> None:
        self.write(
            "INSERT OR REPLACE INTO samples VALUES (?, ?, ?, ?)",
            ((s.prompt_id, s.fingerprint, s.sample_idx, s.model_dump_json()) for s in samples),
        )

    def samples(self, prompt_id: str, fingerprint: str) -> list[Sample]:
        return list(
            self._records(
                Sample,
                "SELECT record FROM samples WHERE prompt_id = ? AND fingerprint = ? ORDER BY sample_idx",
                (prompt_id, fingerprint),
            )
        )

    def sampled_ids(self, fingerprint: str | None, k: int) -> set[str]:
        """Prompts with all k samples made under `fingerprint`."""
        rows = self.execute(
            "SELECT prompt_id FROM samples WHERE fingerprint = ? GROUP BY prompt_id HAVING COUNT(*) >= ?",
            (fingerprint, k),
        )
        return {r[0] for r in rows}

    # -- pairs and judgments -------------------------------------------------------------------------
    def put_pairs(self, pairs: Iterable[Pair]) -> None:
        self.write(
            "INSERT OR REPLACE INTO pairs VALUES (?, ?, ?, ?, ?)",
            ((p.pair_id, p.prompt_id, p.kind, p.source_fingerprint, p.model_dump_json()) for p in pairs),
        )

    def pair(self, pair_id: str) -> Pair | None:
        return next(self._records(Pair, "SELECT record FROM pairs WHERE pair_id = ?", (pair_id,)), None)

    def pair_source(self, pair_id: str) -> str | None:
        """The source fingerprint of the pair stored under this id (None: no such pair), without reading the pair."""
        rows = self.execute("SELECT source_fingerprint FROM pairs WHERE pair_id = ?", (pair_id,))
        return rows[0][0] if rows else None

    def pairs(self, sources: list[str] | None = None) -> Iterator[Pair]:
        """Pairs built from the given chain/sample fingerprints (all pairs when None), in insertion order."""
        if sources is None:
            yield from self._records(Pair, "SELECT record FROM pairs ORDER BY rowid")
            return
        marks = ",".join("?" * len(sources)) or "NULL"
        yield from self._records(
            Pair, f"SELECT record FROM pairs WHERE source_fingerprint IN ({marks}) ORDER BY rowid", sources
        )

    def pair_ids(self) -> set[str]:
        return {r[0] for r in self.execute("SELECT pair_id FROM pairs")}

    def put_judgments(self, judgments: Iterable[Judgment]) -> None:
        self.write(
            "INSERT OR REPLACE INTO judgments VALUES (?, ?, ?, ?)",
            ((j.pair_id, j.fingerprint, j.status, j.model_dump_json()) for j in judgments),
        )

    def judgment(self, pair_id: str, fingerprint: str) -> Judgment | None:
        return next(
            self._records(
                Judgment, "SELECT record FROM judgments WHERE pair_id = ? AND fingerprint = ?", (pair_id, fingerprint)
            ),
            None,
        )

    def any_judgment(self, fingerprint: str, status: str = "ok") -> Judgment | None:
        """One judgment under `fingerprint` with this status (None: there is none), read alone: what all of them
        share (whether their votes name a panel's members) is known from one row, not a pass over every pair."""
        rows = self.execute(
            "SELECT record FROM judgments WHERE fingerprint = ? AND status = ? LIMIT 1", (fingerprint, status)
        )
        return Judgment.model_validate_json(rows[0][0]) if rows else None

    def judgments(self, fingerprint: str, status: str | None = None) -> Iterator[Judgment]:
        where, params = ("AND status = ?", (fingerprint, status)) if status else ("", (fingerprint,))
        yield from self._records(
            Judgment, f"SELECT record FROM judgments WHERE fingerprint = ? {where} ORDER BY rowid", params
        )

    def judged_ids(self, fingerprint: str, status: str = "ok") -> set[str]:
        """Pairs judged under `fingerprint` with this status."""
        rows = self.execute("SELECT pair_id FROM judgments WHERE fingerprint = ? AND status = ?", (fingerprint, status))
        return {r[0] for r in rows}

    def pairs_with_judgments(self, sources: list[str], judge_fp: str) -> Iterator[tuple[Pair, Judgment | None]]:
        """Each pair built from `sources` with its judgment under `judge_fp` (None when not judged), in pair
        order, one at a time: a dataset of any size is built without holding every record at once.

        Pair order is the order of pair ids (hashes of the pair's content and settings), not the order pairs were
        stored in, which depends on which call finished first and on sharding: filters that keep the first rows
        (dedupe, per-principle caps) then keep the same rows in every run of the same items."""
        marks = ",".join("?" * len(sources)) or "NULL"
        cursor_sql = (
            "SELECT p.record, j.record FROM pairs p LEFT JOIN judgments j ON j.pair_id = p.pair_id"
            f" AND j.fingerprint = ? WHERE p.source_fingerprint IN ({marks}) AND p.{ACTIVE}"
            " ORDER BY p.pair_id"
        )
        for pair, judgment in self.stream(cursor_sql, (judge_fp, *sources)):
            yield Pair.model_validate_json(pair), None if judgment is None else Judgment.model_validate_json(judgment)

    def _judged_sql(self, fingerprints: Fingerprints, columns: str) -> tuple[str, tuple]:
        sources = fingerprints.sources()
        marks = ",".join("?" * len(sources)) or "NULL"
        sql = (
            f"SELECT {columns} FROM pairs p JOIN judgments j ON p.pair_id = j.pair_id"
            f" WHERE j.fingerprint = ? AND j.status = 'ok' AND p.source_fingerprint IN ({marks}) AND p.{ACTIVE}"
            " ORDER BY p.pair_id"
        )
        return sql, (fingerprints.judge, *sources)

    def judged_pairs(self, fingerprints: Fingerprints) -> list[tuple[Pair, Judgment]]:
        """Current pairs with a successful judgment under the current judge settings, in pair order (of ids)."""
        rows = self.execute(*self._judged_sql(fingerprints, "p.record, j.record"))
        return [(Pair.model_validate_json(p), Judgment.model_validate_json(j)) for p, j in rows]

    def judged_records(self, fingerprints: Fingerprints, pairs: bool = True) -> Iterator[tuple[str | None, str]]:
        """The stored JSON of `judged_pairs`, undecoded and streamed in the same order, for passes over any number
        of them; without `pairs`, the pair's JSON is None (not read)."""
        yield from self.stream(*self._judged_sql(fingerprints, "p.record, j.record" if pairs else "NULL, j.record"))

    # -- failures, stages, usage -------------------------------------------------------------------
    def add_failure(
        self, stage: str, item_id: str, failure: Failure, fingerprint: str | None = None, session: int | None = None
    ) -> None:
        self.write(
            "INSERT INTO failures (stage, item_id, fingerprint, kind, error, raw, attempts, session, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    stage,
                    item_id,
                    fingerprint,
                    failure.kind,
                    failure.message,
                    failure.raw,
                    failure.attempts,
                    session,
                    time.time(),
                )
            ],
        )

    def resolve_failures(self, stage: str, item_ids: Iterable[str], fingerprint: str | None) -> None:
        """Mark earlier failures of these items as resolved: a later attempt succeeded."""
        self.write(
            "UPDATE failures SET resolved = 1 WHERE stage = ? AND item_id = ? AND fingerprint IS ?",
            ((stage, item_id, fingerprint) for item_id in item_ids),
        )

    def failures(self, stage: str | None = None, open_only: bool = False) -> list[StoredFailure]:
        conditions = [c for c in ("stage = ?" if stage else "", "resolved = 0" if open_only else "") if c]
        where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
        rows = self.execute(f"SELECT {FAILURE_COLUMNS} FROM failures {where} ORDER BY id", (stage,) if stage else ())
        return [stored_failure(row) for row in rows]

    def failing_items(self, stage: str, fingerprint: str | None) -> dict[str, int]:
        """item_id -> in how many run sessions it failed, for items still failing under `fingerprint`."""
        rows = self.execute(
            "SELECT item_id, COUNT(DISTINCT session) FROM failures WHERE stage = ? AND fingerprint IS ?"
            " AND resolved = 0 GROUP BY item_id",
            (stage, fingerprint),
        )
        return {item: n for item, n in rows}

    def set_stage(self, stage: str, status: str, counts: dict | None = None) -> None:
        now = time.time()
        row = self.execute("SELECT started_at FROM stages WHERE stage = ?", (stage,))
        started = row[0][0] if row and row[0][0] else now
        finished = now if status == "done" else None
        self.write(
            "INSERT OR REPLACE INTO stages VALUES (?, ?, ?, ?, ?)",
            [(stage, status, started, finished, json.dumps(counts or {}))],
        )

    def stages(self) -> dict[str, StageState]:
        """Each stage recorded in the store, by name: its status, start and end times and its counts."""
        rows = self.execute("SELECT stage, status, started_at, finished_at, counts FROM stages")
        return {
            s: StageState(status=st, started_at=a, finished_at=b, counts=json.loads(c or "{}"))
            for s, st, a, b, c in rows
        }

    def add_usage(self, rows: Iterable[UsageRow]) -> None:
        """Append usage (one row per call, or a tally of many) in one transaction."""
        now = time.time()
        self.write(
            "INSERT INTO usage_events (role, model, calls, cached, prompt_tokens, completion_tokens, cost_usd,"
            " estimated, retries, cache_read_tokens, cache_write_tokens, cache_saved_usd, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                (
                    r.role,
                    r.model,
                    r.calls,
                    r.cached,
                    r.prompt_tokens,
                    r.completion_tokens,
                    r.cost_usd,
                    r.estimated,
                    r.retries,
                    r.cache_read_tokens,
                    r.cache_write_tokens,
                    r.cache_saved_usd,
                    now,
                )
                for r in rows
            ),
        )

    def usage(self) -> list[UsageRow]:
        """Usage per (role, model), summed over every call every process of the run recorded."""
        sums = (
            "calls",
            "cached",
            "prompt_tokens",
            "completion_tokens",
            "cost_usd",
            "estimated",
            "retries",
            "cache_read_tokens",
            "cache_write_tokens",
            "cache_saved_usd",
        )
        rows = self.execute(
            f"SELECT role, model, {', '.join(f'SUM({c})' for c in sums)} FROM usage_events"
            " GROUP BY role, model ORDER BY role, model"
        )
        return [UsageRow(role=r[0], model=r[1], **dict(zip(sums, r[2:]))) for r in rows]

    # -- provider batches (charter.providers.batch.BatchJournal) -----------------------------------
    def record_batch(self, batch_id: str, model_id: str, keys: Sequence[str]) -> None:
        """A batch the provider accepted and the custom ids (call-cache keys) of its requests, in one commit."""
        now = time.time()

        def work(db: Any) -> None:
            db.execute(
                "INSERT OR REPLACE INTO batches VALUES (?, ?, 'submitted', ?, ?, ?)",
                (batch_id, model_id, len(keys), now, now),
            )
            db.executemany("INSERT OR REPLACE INTO batch_requests VALUES (?, ?)", [(k, batch_id) for k in keys])

        self.transaction(work)

    def set_batch_state(self, batch_id: str, state: str) -> None:
        self.execute("UPDATE batches SET state = ?, updated_at = ? WHERE batch_id = ?", (state, time.time(), batch_id))

    def batch_of(self, key: str) -> str | None:
        row = self.execute("SELECT batch_id FROM batch_requests WHERE key = ?", (key,))
        return row[0][0] if row else None

    def batches(self, open_only: bool = False) -> list[BatchState]:
        """The provider batches this run submitted (open: not yet ended), oldest first."""
        from charter.providers.batch import ENDED

        rows = self.execute(
            "SELECT batch_id, model, state, requests, submitted_at, updated_at FROM batches ORDER BY submitted_at"
        )
        found = [
            BatchState(batch_id=b, model=m, state=st, requests=n, submitted_at=sub, updated_at=up)
            for b, m, st, n, sub, up in rows
        ]
        return [b for b in found if b["state"] not in ENDED] if open_only else found


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


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out or ({prefix: {}} if prefix else {})
    return {prefix: value}


def diff_settings(old: dict[str, Any], new: dict[str, Any]) -> list[dict[str, Any]]:
    """`{key, old, new}` for every dotted key whose value differs between two config dicts."""
    before, after = _flatten(old), _flatten(new)
    return [
        {"key": key, "old": before.get(key), "new": after.get(key)}
        for key in sorted(set(before) | set(after))
        if before.get(key) != after.get(key)
    ]
