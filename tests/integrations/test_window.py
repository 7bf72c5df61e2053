"""`hand_out` gives each caller of a batch its result from the thread that finished the batch: blocked callers at
once, the callers awaiting on one event loop in one call onto it, never a cancelled caller, and the batch's error to
every caller."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future
from typing import Any

import pytest

from charter.reward.batching import hand_out


def _from_another_thread(*args: Any) -> None:
    thread = threading.Thread(target=hand_out, args=args)
    thread.start()
    thread.join()


def test_each_caller_gets_its_result_and_a_cancelled_one_is_passed_over() -> None:
    blocked: Future[str] = Future()

    async def awaiting() -> list[Any]:
        futures = [asyncio.get_running_loop().create_future() for _ in range(3)]
        futures[1].cancel()
        _from_another_thread([futures[0], blocked, futures[1], futures[2]], ["a", "b", "c", "d"])
        return await asyncio.gather(*futures, return_exceptions=True)

    got = asyncio.run(awaiting())
    assert blocked.result(timeout=1) == "b"
    assert got[0] == "a" and isinstance(got[1], asyncio.CancelledError) and got[2] == "d"


def test_the_batchs_error_reaches_every_caller() -> None:
    blocked: Future[str] = Future()

    async def awaiting() -> list[Any]:
        futures = [asyncio.get_running_loop().create_future() for _ in range(2)]
        _from_another_thread([blocked, *futures], RuntimeError("the batch failed"))
        return await asyncio.gather(*futures, return_exceptions=True)

    got = asyncio.run(awaiting())
    with pytest.raises(RuntimeError, match="the batch failed"):
        blocked.result(timeout=1)
    assert all(isinstance(e, RuntimeError) for e in got)


def test_a_closed_loop_keeps_no_one_else_from_their_result() -> None:
    gone = asyncio.new_event_loop()
    orphan = gone.create_future()
    gone.close()  # its caller has gone away
    blocked: Future[str] = Future()
    hand_out([orphan, blocked], ["a", "b"])
    assert blocked.result(timeout=1) == "b" and not orphan.done()
