"""The provider batches a run submitted, as the run store keeps them: each batch with its state, and the batch
of each request (by its call-cache key), so that a resumed run polls a batch it already paid for instead of
submitting its requests again. The one reader and writer of the tables; `StoredJournal` is the
`charter.providers.batch.BatchJournal` over them.

    batches(batch_id, model, state, requests, submitted_at, updated_at)
    batch_requests(key, batch_id)
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, TypedDict

from charter.runs.store import RunStore


class BatchState(TypedDict):
    """A provider batch the run submitted."""

    batch_id: str
    model: str
    state: str
    """The provider's state, as last seen (submitted, in_progress, ended, ...)."""
    requests: int
    submitted_at: float
    updated_at: float


def record_batch(store: RunStore, batch_id: str, model_id: str, keys: Sequence[str]) -> None:
    """A batch the provider accepted and the custom ids (call-cache keys) of its requests, in one commit."""
    now = time.time()

    def work(db: Any) -> None:
        db.execute(
            "INSERT OR REPLACE INTO batches VALUES (?, ?, 'submitted', ?, ?, ?)",
            (batch_id, model_id, len(keys), now, now),
        )
        db.executemany("INSERT OR REPLACE INTO batch_requests VALUES (?, ?)", [(k, batch_id) for k in keys])

    store.transaction(work)


def set_batch_state(store: RunStore, batch_id: str, state: str) -> None:
    store.execute("UPDATE batches SET state = ?, updated_at = ? WHERE batch_id = ?", (state, time.time(), batch_id))


def batch_of(store: RunStore, key: str) -> str | None:
    row = store.execute("SELECT batch_id FROM batch_requests WHERE key = ?", (key,))
    return row[0][0] if row else None


def stored_batches(store: RunStore, open_only: bool = False) -> list[BatchState]:
    """The provider batches this run submitted (open: not yet ended), oldest first."""
    from charter.providers.batch import ENDED

    rows = store.execute(
        "SELECT batch_id, model, state, requests, submitted_at, updated_at FROM batches ORDER BY submitted_at"
    )
    found = [
        BatchState(batch_id=b, model=m, state=st, requests=n, submitted_at=sub, updated_at=up)
        for b, m, st, n, sub, up in rows
    ]
    return [b for b in found if b["state"] not in ENDED] if open_only else found


class StoredJournal:
    """The batch journal of a run (`charter.providers.batch.BatchJournal`): its batches kept in the run store."""

    def __init__(self, store: RunStore) -> None:
        self.store = store

    def record_batch(self, batch_id: str, model_id: str, keys: Sequence[str]) -> None:
        record_batch(self.store, batch_id, model_id, keys)

    def set_batch_state(self, batch_id: str, state: str) -> None:
        set_batch_state(self.store, batch_id, state)

    def batch_of(self, key: str) -> str | None:
        return batch_of(self.store, key)
