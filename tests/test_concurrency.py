"""The bridge from synchronous code to coroutines: `run_sync` (inside a running event loop too) and
`EventLoopThread` (one loop across calls, closed as `asyncio.run` closes its own)."""

from __future__ import annotations

import asyncio
import threading

import pytest

from charter.concurrency import EventLoopThread, run_sync


async def _answer(value: int) -> tuple[int, asyncio.AbstractEventLoop, str]:
    await asyncio.sleep(0)
    return value, asyncio.get_running_loop(), threading.current_thread().name


async def _fail() -> None:
    raise LookupError("from the coroutine")


def test_run_sync_runs_a_coroutine_with_or_without_a_running_loop() -> None:
    assert run_sync(_answer(1))[0] == 1

    async def a_notebook_cell() -> int:  # a sync API called where an event loop already runs
        value, loop, _ = run_sync(_answer(2))
        assert loop is not asyncio.get_running_loop()
        return value

    assert asyncio.run(a_notebook_cell()) == 2
    with pytest.raises(LookupError, match="from the coroutine"):
        run_sync(_fail())
    with pytest.raises(LookupError, match="from the coroutine"):
        asyncio.run(_in_loop(_fail))


async def _in_loop(make) -> None:  # noqa: ANN001
    run_sync(make())


def test_an_event_loop_thread_keeps_its_loop_and_closes_what_is_left_on_it() -> None:
    bridge = EventLoopThread("charter-test")
    first, second = bridge.run(_answer(1)), bridge.run(_answer(2))
    assert first[1] is second[1] is bridge.loop and first[2] == "charter-test"
    with pytest.raises(LookupError):
        bridge.run(_fail())
    cancelled = threading.Event()

    async def forever() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    asyncio.run_coroutine_threadsafe(forever(), bridge.loop)
    bridge.run(_answer(0))  # the task has started
    bridge.close()
    assert cancelled.is_set() and bridge.loop.is_closed()
    assert not any(t.name == "charter-test" for t in threading.enumerate())
    bridge.close()  # a second close does nothing
