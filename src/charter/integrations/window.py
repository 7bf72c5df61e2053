"""`Window`: calls that arrive together, handed on as one batch (the adapters' judge calls, a reward model's)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Window(Generic[T]):
    """Items gathered from any thread and sent on in batches: a batch goes when `max_batch` items have come, or
    `window_s` seconds after its first one, or at `flush()`.

    Args:
        window_s: How long a lone item waits for others (seconds).
        max_batch: The most items in one batch.
        send: Takes each batch (called outside the window's lock, from the thread that filled or timed it).
    """

    def __init__(self, window_s: float, max_batch: int, send: Callable[[list[T]], None]) -> None:
        self.window_s, self.max_batch, self.send = window_s, max_batch, send
        self._lock = threading.Lock()
        self._items: list[T] = []
        self._timer: threading.Timer | None = None

    def add(self, item: T) -> None:
        """Gather `item`; send the batch now if it is full."""
        with self._lock:
            self._items.append(item)
            full = len(self._items) >= self.max_batch
            if not full and self._timer is None:
                self._timer = threading.Timer(self.window_s, self.flush)
                self._timer.daemon = True
                self._timer.start()
        if full:
            self.flush()

    def flush(self) -> None:
        """Send what is gathered (nothing when empty)."""
        with self._lock:
            batch, self._items = self._items, []
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        if batch:
            self.send(batch)
