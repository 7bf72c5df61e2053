"""Bounded concurrent mapping: keep N tasks in flight, yield results as they finish.

Inputs are consumed lazily, so memory stays flat however many items there are.
"""

from __future__ import annotations

import asyncio
from typing import AsyncIterator, Awaitable, Callable, Iterable, TypeVar

T = TypeVar("T")
R = TypeVar("R")


async def bounded_map(fn: Callable[[T], Awaitable[R]], items: Iterable[T], concurrency: int) -> AsyncIterator[R]:
    """Run `fn` over `items` with at most `concurrency` in flight; yield results in completion order.

    If a task raises, the others are cancelled and the error propagates.
    """
    iterator = iter(items)
    pending: set[asyncio.Task] = set()

    def fill() -> None:
        while len(pending) < concurrency:
            try:
                item = next(iterator)
            except StopIteration:
                return
            pending.add(asyncio.ensure_future(fn(item)))

    fill()
    try:
        while pending:
            done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                pending.discard(task)
            fill()
            for task in done:
                yield task.result()
    finally:
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
