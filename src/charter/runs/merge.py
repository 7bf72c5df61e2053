"""Folding one store into another: a shard's items into its run's store, a training rank's rewards into the
output's reward store. Usage only grows, so each copy takes the usage rows the target has not seen."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from charter.runs.store import RunStore
from charter.storage import copy_rows

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
