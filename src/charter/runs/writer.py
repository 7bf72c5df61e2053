"""Buffered writes to the run store: records land in small transactions, flushed often and on exit."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable

from charter.errors import RunStoreError
from charter.records import Chain, Judgment, Pair, Record, Sample
from charter.runs.items import put_chains, put_judgments, put_pairs, put_samples
from charter.runs.store import RunStore


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
