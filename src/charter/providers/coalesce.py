"""Coalescing: single calls made concurrently become one batched backend call.

Stages are written per item (one prompt, one pair) with many items in flight. A remote API wants
exactly that; a local model wants batches. A `Coalescer` sits in between for batch-capable
backends: callers `submit` their items and the first flush takes everything queued so far.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

#: Hands one item's result over as soon as it is ready (`deliver(position in the batch, result)`; any thread).
Deliver = Callable[[int, Any], None]


class Coalescer:
    """Queue items from concurrent callers; run them through `run_batch` up to `max_batch` at a time.

    `run_batch(items, deliver)` may hand results over as they are ready, before it returns (a local model's call
    runs several batches): their callers go on at once, so a stop keeps what finished and progress counts it."""

    def __init__(self, run_batch: Callable[[list[Any], Deliver], Awaitable[Sequence[Any]]], max_batch: int) -> None:
        self.run_batch, self.max_batch = run_batch, max_batch
        self.queue: list[tuple[Any, asyncio.Future]] = []
        self.draining = False

    async def submit(self, items: Sequence[Any]) -> list[Any]:
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in items]
        self.queue.extend(zip(items, futures))
        if not self.draining:
            self.draining = True
            asyncio.ensure_future(self._drain())
        return list(await asyncio.gather(*futures))

    async def _drain(self) -> None:
        try:
            await asyncio.sleep(0)  # let callers started in the same tick enqueue first
            while self.queue:
                batch, self.queue = self.queue[: self.max_batch], self.queue[self.max_batch :]
                live = [(item, fut) for item, fut in batch if not fut.cancelled()]
                if not live:
                    continue
                deliver = _deliverer(asyncio.get_running_loop(), [fut for _, fut in live])

                try:
                    results = await self.run_batch([item for item, _ in live], deliver)
                except BaseException as exc:  # noqa: BLE001 - handed to every waiting caller
                    for _, fut in live:
                        if not fut.done():
                            fut.set_exception(exc)
                    continue
                for (_, fut), result in zip(live, results):
                    if not fut.done():
                        fut.set_result(result)
        finally:
            self.draining = False


def _deliverer(loop: asyncio.AbstractEventLoop, futures: list[asyncio.Future]) -> Deliver:
    """`deliver` for one batch: the result of the item at a position settles its caller's future, on the loop."""

    def deliver(position: int, result: Any) -> None:
        loop.call_soon_threadsafe(_settle, futures[position], result)

    return deliver


def _settle(future: asyncio.Future, result: Any) -> None:
    if not future.done():
        future.set_result(result)
