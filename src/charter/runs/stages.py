"""The stages table of the run store: each stage's status, start and end times and counts. The one reader and
writer of the table.

    stages(stage, status, started_at, finished_at, counts)
"""

from __future__ import annotations

import json
import time
from typing import Any, TypedDict

from charter.runs.store import RunStore


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


def set_stage(store: RunStore, stage: str, status: str, counts: dict | None = None) -> None:
    now = time.time()
    row = store.execute("SELECT started_at FROM stages WHERE stage = ?", (stage,))
    started = row[0][0] if row and row[0][0] else now
    finished = now if status == "done" else None
    store.write(
        "INSERT OR REPLACE INTO stages VALUES (?, ?, ?, ?, ?)",
        [(stage, status, started, finished, json.dumps(counts or {}))],
    )


def stage_states(store: RunStore) -> dict[str, StageState]:
    """Each stage recorded in the store, by name: its status, start and end times and its counts."""
    rows = store.execute("SELECT stage, status, started_at, finished_at, counts FROM stages")
    return {
        s: StageState(status=st, started_at=a, finished_at=b, counts=json.loads(c or "{}")) for s, st, a, b, c in rows
    }
