"""The item tables of the run store: the prompt set, and what the stages made of it (chains, samples, pairs,
judgments), each keyed by what it is and by the fingerprint of the settings that made it. The one reader and
writer of these tables; every function takes the open store.

    prompts(prompt_id, idx, active, record)             Prompt; the set in use is active (prompts.on_change)
    chains(prompt_id, fingerprint, record)              Chain
    samples(prompt_id, fingerprint, sample_idx, record) Sample
    pairs(pair_id, prompt_id, kind, source_fingerprint, record)   Pair (content-addressed id)
    judgments(pair_id, fingerprint, status, record)     Judgment

Records are written buffered (`BufferedWriter`): they land in small transactions, flushed often and on exit. Folding one
store into another (`merge_items`, `merge_rewards`): a shard's items into its run's store, a training rank's rewards
into the output's reward store. Usage only grows, so each copy takes the usage rows the target has not seen.
"""

from __future__ import annotations

import sqlite3
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from charter.errors import RunStoreError
from charter.records import Chain, Fingerprints, Judgment, Pair, Prompt, Record, Sample
from charter.runs.store import RunStore
from charter.storage import copy_rows

#: SQL: the prompt is in the prompt set in use
ACTIVE = "prompt_id IN (SELECT prompt_id FROM prompts WHERE active = 1)"
#: Prompts read at a time (`iter_prompts`).
PAGE = 500


def put_prompts(store: RunStore, prompts: Iterable[Prompt]) -> None:
    """Add prompts to the prompt set (in use); ids already stored are kept as they are, and put in use."""
    start = store.count("prompts")
    rows = ((p.prompt_id, start + i, p.model_dump_json()) for i, p in enumerate(prompts))  # streamed in

    def work(db: Any) -> None:
        db.executemany(
            "INSERT INTO prompts (prompt_id, idx, active, record) VALUES (?, ?, 1, ?)"
            " ON CONFLICT (prompt_id) DO UPDATE SET active = 1",
            rows,
        )

    store.transaction(work)


def keep_prompts(store: RunStore, prompt_ids: set[str]) -> int:
    """Take every prompt not in `prompt_ids` out of use (its items stay in the store); returns how many."""
    active = {r[0] for r in store.execute("SELECT prompt_id FROM prompts WHERE active = 1")}
    leaving = [(pid,) for pid in active - prompt_ids]
    store.write("UPDATE prompts SET active = 0 WHERE prompt_id = ?", leaving)
    return len(leaving)


def stored_prompts(store: RunStore) -> list[Prompt]:
    """The prompts in use, in the order they were added."""
    return list(iter_prompts(store))


def iter_prompts(store: RunStore, checked_only: bool = False, size: int | None = None) -> Iterator[Prompt]:
    """The prompts in use, in the order they were added, read `size` (`PAGE`) at a time (a million prompts are
    never in memory at once). `checked_only`: those with a reference or a verifier (charter.verify).

    Each page is its own short read: the run reads its prompts while it writes, and a cursor held open that
    long keeps SQLite from ever checkpointing its write-ahead log (a million-prompt run's grew to 9 GB)."""
    for _, record in prompt_records(store, checked_only, size):
        yield Prompt.model_validate_json(record)


def prompt_records(store: RunStore, checked_only: bool = False, size: int | None = None) -> Iterator[tuple[str, str]]:
    """(prompt id, stored JSON record) of each prompt in use, as `iter_prompts` reads them, undecoded."""
    where = (
        " AND (json_extract(record, '$.reference') IS NOT NULL OR json_extract(record, '$.verifier') IS NOT NULL)"
        if checked_only
        else ""
    )
    size = size or PAGE
    last: tuple[int, int] = (-1, -1)
    while page := store.execute(
        f"SELECT idx, rowid, prompt_id, record FROM prompts WHERE active = 1{where}"
        " AND (idx, rowid) > (?, ?) ORDER BY idx, rowid LIMIT ?",
        (*last, size),
    ):
        last = page[-1][:2]
        for _, _, prompt_id, record in page:
            yield prompt_id, record


def count_prompts(store: RunStore) -> int:
    """How many prompts are in use."""
    return store.count("prompts", "active = 1")


def put_chains(store: RunStore, chains: Iterable[Chain]) -> None:
    store.write(
        "INSERT OR REPLACE INTO chains VALUES (?, ?, ?)",
        ((c.prompt_id, c.fingerprint, c.model_dump_json()) for c in chains),
    )


def stored_chain(store: RunStore, prompt_id: str, fingerprint: str) -> Chain | None:
    return next(
        store.records(
            Chain, "SELECT record FROM chains WHERE prompt_id = ? AND fingerprint = ?", (prompt_id, fingerprint)
        ),
        None,
    )


def stored_chains(store: RunStore, fingerprint: str | None) -> Iterator[Chain]:
    """The chains made under `fingerprint`, in prompt order."""
    yield from store.records(
        Chain,
        "SELECT c.record FROM chains c JOIN prompts p USING (prompt_id)"
        " WHERE c.fingerprint = ? AND p.active = 1 ORDER BY p.idx, c.rowid",
        (fingerprint,),
    )


def chain_ids(store: RunStore, fingerprint: str | None) -> set[str]:
    return {r[0] for r in store.execute("SELECT prompt_id FROM chains WHERE fingerprint = ?", (fingerprint,))}


def put_samples(store: RunStore, samples: Iterable[Sample]) -> None:
    store.write(
        "INSERT OR REPLACE INTO samples VALUES (?, ?, ?, ?)",
        ((s.prompt_id, s.fingerprint, s.sample_idx, s.model_dump_json()) for s in samples),
    )


def stored_samples(store: RunStore, prompt_id: str, fingerprint: str) -> list[Sample]:
    return list(
        store.records(
            Sample,
            "SELECT record FROM samples WHERE prompt_id = ? AND fingerprint = ? ORDER BY sample_idx",
            (prompt_id, fingerprint),
        )
    )


def sampled_ids(store: RunStore, fingerprint: str | None, k: int) -> set[str]:
    """Prompts with all k samples made under `fingerprint`."""
    rows = store.execute(
        "SELECT prompt_id FROM samples WHERE fingerprint = ? GROUP BY prompt_id HAVING COUNT(*) >= ?",
        (fingerprint, k),
    )
    return {r[0] for r in rows}


def put_pairs(store: RunStore, pairs: Iterable[Pair]) -> None:
    store.write(
        "INSERT OR REPLACE INTO pairs VALUES (?, ?, ?, ?, ?)",
        ((p.pair_id, p.prompt_id, p.kind, p.source_fingerprint, p.model_dump_json()) for p in pairs),
    )


def stored_pair(store: RunStore, pair_id: str) -> Pair | None:
    return next(store.records(Pair, "SELECT record FROM pairs WHERE pair_id = ?", (pair_id,)), None)


def pair_source(store: RunStore, pair_id: str) -> str | None:
    """The source fingerprint of the pair stored under this id (None: no such pair), without reading the pair."""
    rows = store.execute("SELECT source_fingerprint FROM pairs WHERE pair_id = ?", (pair_id,))
    return rows[0][0] if rows else None


def stored_pairs(store: RunStore, sources: list[str] | None = None) -> Iterator[Pair]:
    """Pairs built from the given chain/sample fingerprints (all pairs when None), in insertion order."""
    if sources is None:
        yield from store.records(Pair, "SELECT record FROM pairs ORDER BY rowid")
        return
    marks = ",".join("?" * len(sources)) or "NULL"
    yield from store.records(
        Pair, f"SELECT record FROM pairs WHERE source_fingerprint IN ({marks}) ORDER BY rowid", sources
    )


def pair_ids(store: RunStore) -> set[str]:
    return {r[0] for r in store.execute("SELECT pair_id FROM pairs")}


def put_judgments(store: RunStore, judgments: Iterable[Judgment]) -> None:
    store.write(
        "INSERT OR REPLACE INTO judgments VALUES (?, ?, ?, ?)",
        ((j.pair_id, j.fingerprint, j.status, j.model_dump_json()) for j in judgments),
    )


def any_judgment(store: RunStore, fingerprint: str, status: str = "ok") -> Judgment | None:
    """One judgment under `fingerprint` with this status (None: there is none), read alone: what all of them
    share (whether their votes name a panel's members) is known from one row, not a pass over every pair."""
    rows = store.execute(
        "SELECT record FROM judgments WHERE fingerprint = ? AND status = ? LIMIT 1", (fingerprint, status)
    )
    return Judgment.model_validate_json(rows[0][0]) if rows else None


def stored_judgments(store: RunStore, fingerprint: str, status: str | None = None) -> Iterator[Judgment]:
    where, params = ("AND status = ?", (fingerprint, status)) if status else ("", (fingerprint,))
    yield from store.records(
        Judgment, f"SELECT record FROM judgments WHERE fingerprint = ? {where} ORDER BY rowid", params
    )


def judged_ids(store: RunStore, fingerprint: str, status: str = "ok") -> set[str]:
    """Pairs judged under `fingerprint` with this status."""
    rows = store.execute("SELECT pair_id FROM judgments WHERE fingerprint = ? AND status = ?", (fingerprint, status))
    return {r[0] for r in rows}


def pairs_with_judgments(store: RunStore, sources: list[str], judge_fp: str) -> Iterator[tuple[Pair, Judgment | None]]:
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
    for pair, judgment in store.stream(cursor_sql, (judge_fp, *sources)):
        yield Pair.model_validate_json(pair), None if judgment is None else Judgment.model_validate_json(judgment)


def _judged_sql(fingerprints: Fingerprints, columns: str) -> tuple[str, tuple]:
    sources = fingerprints.sources()
    marks = ",".join("?" * len(sources)) or "NULL"
    sql = (
        f"SELECT {columns} FROM pairs p JOIN judgments j ON p.pair_id = j.pair_id"
        f" WHERE j.fingerprint = ? AND j.status = 'ok' AND p.source_fingerprint IN ({marks}) AND p.{ACTIVE}"
        " ORDER BY p.pair_id"
    )
    return sql, (fingerprints.judge, *sources)


def judged_pairs(store: RunStore, fingerprints: Fingerprints) -> list[tuple[Pair, Judgment]]:
    """Current pairs with a successful judgment under the current judge settings, in pair order (of ids)."""
    rows = store.execute(*_judged_sql(fingerprints, "p.record, j.record"))
    return [(Pair.model_validate_json(p), Judgment.model_validate_json(j)) for p, j in rows]


def judged_records(store: RunStore, fingerprints: Fingerprints, pairs: bool = True) -> Iterator[tuple[str | None, str]]:
    """The stored JSON of `judged_pairs`, undecoded and streamed in the same order, for passes over any number
    of them; without `pairs`, the pair's JSON is None (not read)."""
    yield from store.stream(*_judged_sql(fingerprints, "p.record, j.record" if pairs else "NULL, j.record"))


class BufferedWriter:
    """Collects chains, samples, pairs and judgments; flushes every `max_rows` records or `max_delay_s` seconds.

    Anything not yet flushed when a process is killed is recomputed on resume from the call cache,
    so no model call is repeated. `before_flush` runs first (the run's usage ledger and call cache): an item's
    last call often finishes in the loop turn that stores the item, and its usage and cache rows, which wait for
    the end of that turn, must not land after the item (a kill between would leave a paid call uncounted).
    """

    def __init__(self, store: RunStore, max_rows: int = 256, max_delay_s: float = 0.25) -> None:
        self.store, self.max_rows, self.max_delay_s = store, max_rows, max_delay_s
        self.buffer: dict[type, list[Record]] = defaultdict(list)
        self.size, self.last = 0, time.monotonic()
        self.before_flush: list[Callable[[], None]] = []

    def add(self, record: Chain | Sample | Pair | Judgment) -> None:
        self.buffer[type(record)].append(record)
        self.size += 1
        if self.size >= self.max_rows or time.monotonic() - self.last > self.max_delay_s:
            self.flush()

    def flush(self) -> None:
        if not self.store.path.exists():  # SQLite would go on writing into the removed file: stop paying for calls
            raise RunStoreError(
                f"{self.store.run_dir}: the run directory was removed (or moved) while the run was "
                "writing it; what it held is gone: start the run again"
            )
        for hook in self.before_flush:
            hook()
        buffered, self.buffer, self.size = self.buffer, defaultdict(list), 0
        self.last = time.monotonic()
        put = {
            Chain: put_chains,
            Sample: put_samples,
            Pair: put_pairs,
            Judgment: put_judgments,
        }
        for kind in (Chain, Sample, Pair, Judgment):  # a judgment never lands before its pair
            if buffered.get(kind):
                put[kind](self.store, buffered[kind])  # type: ignore[operator]


#: The item tables a shard owns outright (each row belongs to one prompt, so to one shard), with their keys.
ITEM_TABLES = {
    "chains": "prompt_id, fingerprint",
    "samples": "prompt_id, fingerprint, sample_idx",
    "pairs": "pair_id",
    "judgments": "pair_id, fingerprint",
    "batches": "batch_id",
    "batch_requests": "key",
}
_FAILURES = "stage, item_id, fingerprint, kind, error, raw, attempts, session, resolved, created_at"
_USAGE = (
    "role, model, calls, cached, prompt_tokens, completion_tokens, cost_usd, estimated, retries, created_at,"
    " cache_read_tokens, cache_write_tokens, cache_saved_usd"
)
_REWARDS = "key, step, rank, scoring, reward, status, record, created_at"


def _copy_usage(db: sqlite3.Connection, after: int = 0) -> int:
    """Copy the other store's usage rows with an id above `after`; the other store's highest id."""
    db.execute(
        f"INSERT INTO main.usage_events ({_USAGE}) SELECT {_USAGE} FROM other.usage_events WHERE id > ?", (after,)
    )
    return db.execute("SELECT COALESCE(MAX(id), 0) FROM other.usage_events").fetchone()[0]


def merge_items(store: RunStore, path: str | Path, usage_after: int) -> int:
    """Copy a shard store's items and failures into `store`, and its usage rows with an id above `usage_after` (the
    highest copied by an earlier merge), in one transaction. Returns the shard's highest usage id."""

    def work(db: sqlite3.Connection) -> int:
        for table, key in ITEM_TABLES.items():
            copy_rows(db, table, key, conflict="REPLACE")
        # a shard's failure rows replace the run's for its items (a shard resolves them when it retries)
        db.execute("DELETE FROM main.failures WHERE item_id IN (SELECT item_id FROM other.failures)")
        db.execute(f"INSERT INTO main.failures ({_FAILURES}) SELECT {_FAILURES} FROM other.failures")
        return _copy_usage(db, usage_after)

    return store.with_attached(path, work)


def merge_rewards(store: RunStore, path: str | Path) -> None:
    """Append another store's rewards and usage to `store`, in one transaction."""

    def work(db: sqlite3.Connection) -> None:
        db.execute(f"INSERT INTO main.rewards ({_REWARDS}) SELECT {_REWARDS} FROM other.rewards")
        _copy_usage(db)

    store.with_attached(path, work)
