"""The failures table of the run store: every failed item, per run session, with its reason and raw reply; an
item's failures are resolved when a later attempt succeeds. The one reader and writer of the table.

    failures(id, stage, item_id, fingerprint, kind, error, raw, attempts, session, resolved, created_at)
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

from charter.records import Failure, Record
from charter.runs.store import RunStore


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


def add_failure(
    store: RunStore,
    stage: str,
    item_id: str,
    failure: Failure,
    fingerprint: str | None = None,
    session: int | None = None,
) -> None:
    store.write(
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


def resolve_failures(store: RunStore, stage: str, item_ids: Iterable[str], fingerprint: str | None) -> None:
    """Mark earlier failures of these items as resolved: a later attempt succeeded."""
    store.write(
        "UPDATE failures SET resolved = 1 WHERE stage = ? AND item_id = ? AND fingerprint IS ?",
        ((stage, item_id, fingerprint) for item_id in item_ids),
    )


def stored_failures(store: RunStore, stage: str | None = None, open_only: bool = False) -> list[StoredFailure]:
    conditions = [c for c in ("stage = ?" if stage else "", "resolved = 0" if open_only else "") if c]
    where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
    rows = store.execute(f"SELECT {FAILURE_COLUMNS} FROM failures {where} ORDER BY id", (stage,) if stage else ())
    return [stored_failure(row) for row in rows]


def failing_items(store: RunStore, stage: str, fingerprint: str | None) -> dict[str, int]:
    """item_id -> in how many run sessions it failed, for items still failing under `fingerprint`."""
    rows = store.execute(
        "SELECT item_id, COUNT(DISTINCT session) FROM failures WHERE stage = ? AND fingerprint IS ?"
        " AND resolved = 0 GROUP BY item_id",
        (stage, fingerprint),
    )
    return {item: n for item, n in rows}
