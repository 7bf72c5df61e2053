"""Bounded concurrent mapping: keep N tasks in flight, yield results as they finish (inputs are consumed lazily, so
memory stays flat however many items there are); warm, then fan out: calls that share a prompt prefix; and the one
bridge from synchronous code to coroutines (`run_sync`, `EventLoopThread`).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")


async def bounded_map(
    fn: Callable[[T], Awaitable[R]], items: Iterable[T], concurrency: int, stop: Callable[[], bool] | None = None
) -> AsyncIterator[R]:
    """Run `fn` over `items` with at most `concurrency` in flight; yield results in completion order.

    When a task raises, no new item starts, the tasks already in flight run to their end (their calls are
    paid for: they finish into the call cache and the run store), and then the first error propagates; any
    other error is retrieved, never left unobserved. Cancellation (Ctrl-C) cancels the tasks in flight.
    `stop()`, checked before each new item, ends the map the same quiet way without an error.
    """
    iterator = iter(items)
    pending: set[asyncio.Task] = set()
    failed: BaseException | None = None

    def fill() -> None:
        while failed is None and len(pending) < concurrency and not (stop and stop()):
            try:
                item = next(iterator)
            except StopIteration:
                return
            pending.add(asyncio.ensure_future(fn(item)))

    fill()
    try:
        while pending:
            done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            pending.difference_update(done)
            results = []
            for task in done:
                error = asyncio.CancelledError() if task.cancelled() else task.exception()
                if error is None:
                    results.append(task.result())
                elif failed is None:
                    failed = error
            fill()
            for result in results:
                yield result
        if failed is not None:
            raise failed
    finally:
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)


async def drain(results: AsyncIterator[Any]) -> None:
    """Consume an async iterator to its end (a map run for its effects)."""
    async for _ in results:
        pass


async def warm_then_fan_out(
    calls: Sequence[Callable[[], Awaitable[T]]],
    warm: bool = True,
    dooms: Callable[[BaseException], bool] = lambda error: False,
) -> list[T | BaseException]:
    """Run calls that share a long prompt prefix; their outcomes in order, an exception as its outcome.

    With `warm`, the first call is answered before the others start (a provider serves a prefix from its cache only
    once a first request with it has been answered), then the others run at once; without, all run at once. When
    the first call fails with an error that `dooms` the rest (auth, budget), it is returned alone: the others are
    never sent. Other callers go on concurrently meanwhile: only these calls wait for their first.
    """
    if not warm or len(calls) < 2:
        return list(await asyncio.gather(*(call() for call in calls), return_exceptions=True))
    [first] = await asyncio.gather(calls[0](), return_exceptions=True)
    if isinstance(first, BaseException) and dooms(first):
        return [first]
    rest = await asyncio.gather(*(call() for call in calls[1:]), return_exceptions=True)
    return [first, *rest]


class EventLoopThread:
    """An event loop of its own in a daemon thread, for synchronous code that runs coroutines (`run`) and keeps
    what lives on a loop (HTTP clients, rate limiters) from one call to the next. Every thread may hand it work,
    including one whose own event loop is running (a notebook). `close()` ends it."""

    def __init__(self, name: str = "charter-loop") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        """Run `work` on the loop and wait for its result (its exception is raised here)."""
        return asyncio.run_coroutine_threadsafe(work, self.loop).result()

    def close(self) -> None:
        """Cancel what is left on the loop and wind it down as `asyncio.run` does, then stop it and its thread and
        close it. A second close does nothing."""
        if self.loop.is_closed():
            return
        self.run(self._wind_down())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()

    async def _wind_down(self) -> None:
        me = asyncio.current_task()
        left = [task for task in asyncio.all_tasks() if task is not me]
        for task in left:
            task.cancel()
        await asyncio.gather(*left, return_exceptions=True)
        await self.loop.shutdown_asyncgens()
        await self.loop.shutdown_default_executor()


def run_sync(work: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to its end from synchronous code: with `asyncio.run` where no event loop runs in this thread,
    else (a notebook, an async caller of a sync function) on an `EventLoopThread` of its own for the call."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(work)
    bridge = EventLoopThread()
    try:
        return bridge.run(work)
    finally:
        bridge.close()
