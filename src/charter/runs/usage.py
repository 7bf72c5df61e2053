"""The run's usage, durable call by call: what `charter status`, the budget and the report count.

Each answered (or cache-answered) call is handed to the ledger as it is counted; the calls that finish in
one event-loop turn land in one transaction at the end of that turn. The call cache flushes the ledger
before each of its own commits, so no call is ever in the cache without being in the run's usage: a
`kill -9` loses at most the calls of the turn it interrupted, whose answers are lost with them (and asked
again on resume, which counts them again, as the provider bills them again).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterable

from charter.records import UsageRow
from charter.runs.store import RunStore


class UsageLedger:
    """Buffers one-call usage rows and writes them to the run store in small transactions."""

    def __init__(self, store: RunStore) -> None:
        self.store = store
        self._pending: list[UsageRow] = []
        self._scheduled = False
        self._lock = threading.Lock()

    def record(self, row: UsageRow) -> None:
        """Keep a call's usage; written at the end of this event-loop turn (at once outside a loop)."""
        with self._lock:
            self._pending.append(row)
            if self._scheduled:
                return
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                loop = None
            self._scheduled = loop is not None
        if loop is None:
            self.flush()
        else:
            loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write what is pending, in one transaction."""
        with self._lock:
            rows, self._pending, self._scheduled = self._pending, [], False
        if rows:
            add_usage(self.store, rows)


def add_usage(store: RunStore, rows: Iterable[UsageRow]) -> None:
    """Append usage (one row per call, or a tally of many) in one transaction."""
    now = time.time()
    store.write(
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


def stored_usage(store: RunStore) -> list[UsageRow]:
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
    rows = store.execute(
        f"SELECT role, model, {', '.join(f'SUM({c})' for c in sums)} FROM usage_events"
        " GROUP BY role, model ORDER BY role, model"
    )
    return [UsageRow(role=r[0], model=r[1], **dict(zip(sums, r[2:]))) for r in rows]
