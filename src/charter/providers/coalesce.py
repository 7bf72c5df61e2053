"""Coalescing: single calls made concurrently become one batched backend call.

Stages are written per item (one prompt, one pair) with many items in flight. A remote API wants
exactly that; a local model wants batches. A `Coalescer` sits in between for batch-capable
backends: callers `submit` their items and the first flush takes everything queued so far.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any


class Coalescer:
    """Queue items from concurrent callers; run them through `run_batch` up to `max_batch` at a time."""

    def __init__(self, run_batch: Callable[[list[Any]], Awaitable[Sequence[Any]]], max_batch: int) -> None:
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
                try:
                    results = await self.run_batch([item for item, _ in live])
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
