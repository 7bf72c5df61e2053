"""Calls gathered for the adapters: `Window` hands on the calls that arrive together as one batch (judge calls, a
reward model's); `Groups` hands on the calls of one group together once the group is whole (group scorings);
`hand_out` gives each caller of a batch its result."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
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


@dataclass
class _Gathering(Generic[T]):
    size: int
    members: list[T] = field(default_factory=list)
    timer: threading.Timer | None = None


class Groups(Generic[T]):
    """Items gathered by group from any thread: a group is sent on once `size` of its items have come, or `wait_s`
    seconds after its first one with those that came, or at `flush()`. A key whose group was sent starts a new one.

    Args:
        wait_s: How long a group waits for its last item (seconds).
        send: Takes each group's items (called outside the lock, from the thread that completed or timed it).
    """

    def __init__(self, wait_s: float, send: Callable[[list[T]], None]) -> None:
        self.wait_s, self.send = wait_s, send
        self._lock = threading.Lock()
        self._groups: dict[str, _Gathering[T]] = {}

    def add(self, key: str, size: int, item: T) -> None:
        """Gather `item` into the group `key` of `size` items; send the group now if it is whole."""
        with self._lock:
            gathering = self._groups.setdefault(key, _Gathering(size))
            gathering.members.append(item)
            whole = len(gathering.members) >= gathering.size
            if whole:
                del self._groups[key]
                if gathering.timer is not None:
                    gathering.timer.cancel()
            elif gathering.timer is None:
                gathering.timer = threading.Timer(self.wait_s, self._due, (key, gathering))
                gathering.timer.daemon = True
                gathering.timer.start()
        if whole:
            self.send(gathering.members)

    def waiting(self) -> int:
        """Items gathered in groups not sent yet."""
        with self._lock:
            return sum(len(g.members) for g in self._groups.values())

    def _due(self, key: str, gathering: _Gathering[T]) -> None:
        with self._lock:
            if self._groups.get(key) is not gathering:
                return  # sent whole meanwhile
            del self._groups[key]
        self.send(gathering.members)

    def flush(self) -> None:
        """Send every group still waiting, with the items that came."""
        with self._lock:
            partial, self._groups = list(self._groups.values()), {}
        for gathering in partial:
            if gathering.timer is not None:
                gathering.timer.cancel()
            self.send(gathering.members)


def hand_out(waiting: Sequence[Future[T] | asyncio.Future[T]], outcome: Sequence[T] | BaseException) -> None:
    """Each waiting caller's result (`outcome[i]` for `waiting[i]`), or the error that failed the batch: a blocked
    caller's future at once; the futures of the callers awaiting on one event loop in one call onto that loop, so a
    batch costs each loop one thread hop, not one a caller. A caller cancelled meanwhile is passed over; the others
    still get theirs."""
    loops: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[T], int]]] = {}
    for i, done in enumerate(waiting):
        if isinstance(done, asyncio.Future):
            loops.setdefault(done.get_loop(), []).append((done, i))
        else:
            _resolve(done, outcome, i)
    for loop, awaiting in loops.items():
        try:
            loop.call_soon_threadsafe(_settle, awaiting, outcome)
        except RuntimeError:  # the callers' event loop has closed: nobody awaits these results any more
            pass


def _settle(awaiting: list[tuple[asyncio.Future[T], int]], outcome: Sequence[T] | BaseException) -> None:
    for done, i in awaiting:
        _resolve(done, outcome, i)


def _resolve(done: Future[T] | asyncio.Future[T], outcome: Sequence[T] | BaseException, i: int) -> None:
    if done.done():
        return  # cancelled by its caller
    try:
        if isinstance(outcome, BaseException):
            done.set_exception(outcome)
        else:
            done.set_result(outcome[i])
    except InvalidStateError:  # a blocked caller's future, cancelled from its thread since the check
        pass
