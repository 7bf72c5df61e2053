"""Bounded concurrent mapping: keep N tasks in flight, yield results as they finish (inputs are consumed lazily, so
memory stays flat however many items there are); and warm, then fan out: calls that share a prompt prefix.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
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
