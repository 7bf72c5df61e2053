"""Buffered writes to the run store: rows land in small transactions, flushed often and on exit."""

from __future__ import annotations

import time
from collections import defaultdict

from charter.pipeline.store import RunStore


class BufferedWriter:
    """Collects (table, keys, record) rows; flushes every `max_rows` rows or `max_delay_s` seconds.

    Anything not yet flushed when a process is killed is recomputed on resume from the call cache,
    so no model call is repeated.
    """

    def __init__(self, store: RunStore, max_rows: int = 256, max_delay_s: float = 0.25) -> None:
        self.store, self.max_rows, self.max_delay_s = store, max_rows, max_delay_s
        self.buffer: dict[tuple[str, tuple[str, ...]], list] = defaultdict(list)
        self.size, self.last = 0, time.monotonic()

    def add(self, table: str, key_columns: tuple[str, ...], keys: tuple, record: dict) -> None:
        self.buffer[(table, key_columns)].append((keys, record))
        self.size += 1
        if self.size >= self.max_rows or time.monotonic() - self.last > self.max_delay_s:
            self.flush()

    def flush(self) -> None:
        buffered, self.buffer, self.size = self.buffer, defaultdict(list), 0
        self.last = time.monotonic()
        for (table, key_columns), rows in buffered.items():
            self.store.put_records(table, key_columns, rows)
