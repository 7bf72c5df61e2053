"""A `Coalescer` serves callers on one event loop after another: a synchronous wrapper that closes its loop as soon as
its answers came, while the batch that gave them is still returning, leaves the next loop's callers served."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from charter.providers.managed import Coalescer


async def _doubles(items: list[int], deliver: Callable[[int, int], None]) -> list[int]:
    """A batch that hands each answer over at once and returns a moment later, as a local model's batch does."""
    for position, item in enumerate(items):
        deliver(position, item * 2)
    await asyncio.sleep(0.05)
    return [item * 2 for item in items]


def test_a_loop_closed_while_its_batch_returns_leaves_the_next_loop_served() -> None:
    coalescer = Coalescer(_doubles, max_batch=4)
    first = asyncio.new_event_loop()
    try:
        assert first.run_until_complete(coalescer.submit([1, 2])) == [2, 4]
    finally:
        first.close()

    async def next_caller() -> list[int]:
        return await asyncio.wait_for(coalescer.submit([3]), timeout=5)

    assert asyncio.run(next_caller()) == [6]


async def test_callers_of_one_loop_share_one_batch() -> None:
    seen: list[list[int]] = []

    async def batch(items: list[int], deliver: Callable[[int, int], None]) -> list[int]:
        seen.append(list(items))
        return [item + 1 for item in items]

    coalescer = Coalescer(batch, max_batch=4)
    got = await asyncio.gather(coalescer.submit([1]), coalescer.submit([2, 3]))
    assert got == [[2], [3, 4]] and seen == [[1, 2, 3]]
