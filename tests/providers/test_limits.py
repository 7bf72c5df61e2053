"""The limits runtime on its own: classification, Retry-After, backoff, buckets, concurrency."""

from __future__ import annotations

import asyncio
import email.utils
import time
from types import SimpleNamespace

import pytest

from charter.concurrency import bounded_map, drain
from charter.errors import ProviderError
from charter.providers.base import Limits
from charter.providers.limits import (
    CallOrder,
    CallTurn,
    Limiter,
    TokenBucket,
    estimate_tokens,
    gather_or_cancel,
    redact,
    retry_after_s,
)
from charter.records import Message

QUICK = Limits(concurrency=4, max_retries=3, timeout_s=1.0, backoff_initial_s=0.01, backoff_max_s=0.2)


class StatusError(Exception):
    """Shaped like the SDKs' status errors: `status_code`, `response.headers`, `body`."""

    def __init__(self, code: int, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"status {code}")
        self.status_code = code
        self.response = SimpleNamespace(headers=headers or {})
        self.body = {"error": {"message": f"server says {code}"}}


class Flaky:
    """An attempt that fails with the given exceptions, in order, then returns "ok"; records call times."""

    def __init__(self, *failures: BaseException) -> None:
        self.failures = list(failures)
        self.times: list[float] = []

    async def __call__(self) -> str:
        self.times.append(time.monotonic())
        if self.failures:
            raise self.failures.pop(0)
        return "ok"


def test_retry_after_forms():
    assert retry_after_s(StatusError(429, {"retry-after-ms": "250"})) == 0.25
    assert retry_after_s(StatusError(429, {"retry-after": "3"})) == 3.0
    assert retry_after_s(StatusError(429, {"retry-after": "1.5", "retry-after-ms": "40"})) == 0.04
    date = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 <= retry_after_s(StatusError(429, {"retry-after": date})) <= 31
    assert retry_after_s(StatusError(429, {"retry-after": "soon"})) is None
    assert retry_after_s(StatusError(429)) is None
    assert retry_after_s(ValueError("no response")) is None


@pytest.mark.parametrize(
    "exc, retry",
    [
        (StatusError(429), True),
        (StatusError(500), True),
        (StatusError(503), True),
        (StatusError(529), True),
        (StatusError(408), True),
        (StatusError(400), False),
        (StatusError(401), False),
        (StatusError(403), False),
        (StatusError(404), False),
        (StatusError(422), False),
        (ConnectionResetError(), True),
        (TimeoutError(), True),
        (ValueError("bug"), False),
    ],
)
def test_what_is_retried(exc, retry):
    assert Limiter(QUICK, "m").retryable(exc) is retry


def test_redact():
    key = "sk-proj-Abc123Def456Ghi789"
    assert key not in redact(f"bad key {key}!", [key])
    assert "sk-live-9f8e7d6c5b4a" not in redact("got sk-live-9f8e7d6c5b4a here")
    assert redact("nothing secret here") == "nothing secret here"


async def test_transient_then_success_counts_retries():
    limiter = Limiter(QUICK, "m")
    attempt = Flaky(StatusError(500), ConnectionResetError(), StatusError(429, {"retry-after-ms": "50"}))
    assert await limiter.call(attempt) == "ok"
    assert limiter.retries == 3 and limiter.attempts == 4
    assert attempt.times[3] - attempt.times[2] >= 0.05


async def test_backoff_doubles():
    limiter = Limiter(QUICK.model_copy(update={"backoff_initial_s": 0.05, "backoff_max_s": 5}), "m")
    attempt = Flaky(StatusError(500), StatusError(500), StatusError(500))
    await limiter.call(attempt)
    gaps = [b - a for a, b in zip(attempt.times, attempt.times[1:])]
    assert gaps[0] >= 0.05 and gaps[1] >= 0.1 and gaps[2] >= 0.2


async def test_retry_after_is_capped_by_backoff_max():
    limiter = Limiter(QUICK.model_copy(update={"backoff_max_s": 0.1}), "m")
    start = time.monotonic()
    await limiter.call(Flaky(StatusError(429, {"retry-after": "30"})))
    assert time.monotonic() - start < 10  # not the 30 s the server asked for


async def test_exhausted_retries_become_one_line_provider_error():
    limiter = Limiter(QUICK.model_copy(update={"max_retries": 2}), "openai:m", secrets=["sk-SECRETVALUE123"])
    error = StatusError(503)
    error.body = {"error": {"message": "overloaded\nfor key sk-SECRETVALUE123"}}
    with pytest.raises(ProviderError) as err:
        await limiter.call(Flaky(error, error, error))
    message = str(err.value)
    assert message.startswith("openai:m: HTTP 503 overloaded") and "after 3 attempts" in message
    assert "\n" not in message and "SECRETVALUE" not in message
    assert err.value.attempts == 3 and err.value.status == 503 and limiter.retries == 2


async def test_no_retries_when_max_retries_is_zero():
    limiter = Limiter(QUICK.model_copy(update={"max_retries": 0}), "m")
    with pytest.raises(ProviderError):
        await limiter.call(Flaky(StatusError(500)))
    assert limiter.attempts == 1 and limiter.retries == 0


async def test_internal_errors_pass_through_untouched():
    limiter = Limiter(QUICK, "m")
    with pytest.raises(KeyError):
        await limiter.call(Flaky(KeyError("a bug of ours")))
    assert limiter.attempts == 1 and limiter.retries == 0


async def test_sdk_transient_types_are_retried():
    class APIConnectionError(Exception):
        pass

    limiter = Limiter(QUICK, "m", transient=(APIConnectionError,))
    assert await limiter.call(Flaky(APIConnectionError("dropped"))) == "ok" and limiter.retries == 1


async def test_concurrency_cap():
    limiter = Limiter(QUICK.model_copy(update={"concurrency": 3}), "m")
    active, peak = 0, 0

    async def attempt() -> None:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.01)
        active -= 1

    await asyncio.gather(*(limiter.call(attempt) for _ in range(20)))
    assert peak == 3 and limiter.attempts == 20


async def test_requests_per_minute_bucket_throttles():
    limiter = Limiter(QUICK.model_copy(update={"concurrency": 100, "requests_per_minute": 1200}), "m")  # 20/s

    async def attempt() -> float:
        return time.monotonic()

    start = time.monotonic()
    stamps = await asyncio.gather(*(limiter.call(attempt) for _ in range(30)))
    # a burst of one second's worth (20), then 20 a second: the 30th waits ~0.5 s
    assert max(stamps) - start >= 0.45
    assert sum(1 for s in stamps if s - start < 0.1) <= 21


async def test_token_bucket_waits_and_settles():
    bucket = TokenBucket(per_minute=600)  # 10 a second, holds 10
    await bucket.acquire(10)
    start = time.monotonic()
    await bucket.acquire(5)
    assert time.monotonic() - start >= 0.45
    bucket.settle(taken=5, actual=1)  # overestimated by 4: refunded
    assert 4 <= bucket.level <= 5
    bucket.settle(taken=1, actual=30)  # underestimated: debt
    assert bucket.level < 0


async def test_tokens_per_minute_settles_on_actual_usage():
    limiter = Limiter(QUICK.model_copy(update={"tokens_per_minute": 6000}), "m")  # 100 a second

    async def attempt() -> dict:
        return {"used": 10}

    await limiter.call(attempt, tokens=100, used=lambda r: r["used"])
    assert 89 <= limiter._tokens.level <= 100  # took 100, gave back 90


def test_a_limiter_survives_new_event_loops():
    limiter = Limiter(QUICK, "m")
    for _ in range(3):
        assert asyncio.run(limiter.call(Flaky(StatusError(500)))) == "ok"
    assert limiter.retries == 3


async def test_gather_all_cancels_siblings_on_failure():
    finished = []

    async def slow(i: int) -> int:
        await asyncio.sleep(0.2)
        finished.append(i)
        return i

    async def boom() -> int:
        raise ValueError("boom")

    with pytest.raises(ValueError):
        await gather_or_cancel([slow(1), boom(), slow(2)])
    await asyncio.sleep(0.3)
    assert finished == []
    assert await gather_or_cancel([slow(3), slow(4)]) == [3, 4]


async def settle() -> None:
    """Let every task that can run, run (a few loop passes: no time passes)."""
    for _ in range(50):
        await asyncio.sleep(0)


class Held:
    """Attempts that wait until answered, each recording its name as it starts: the order slots were given in."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.answering: list[asyncio.Future] = []

    def attempt(self, name: str):
        async def attempt() -> str:
            self.started.append(name)
            answer = asyncio.get_running_loop().create_future()
            self.answering.append(answer)
            await answer
            return name

        return attempt

    def answer(self) -> int:
        """Answer every attempt in flight; how many there were."""
        now, self.answering = self.answering, []
        for answer in now:
            answer.set_result(None)
        return len(now)


async def queued(limiter: Limiter, held: Held, calls: list[tuple[str, CallTurn | None]]) -> list[asyncio.Task]:
    """One slot held by "first", then `calls` queued behind it in the given order."""
    tasks = [asyncio.ensure_future(limiter.call(held.attempt("first")))]
    await settle()
    for name, turn in calls:
        work = limiter.call(held.attempt(name))
        tasks.append(asyncio.ensure_future(turn.run(work) if turn is not None else work))
        await settle()
    return tasks


async def answer_all(held: Held, tasks: list[asyncio.Task]) -> None:
    while not all(task.done() for task in tasks):
        held.answer()
        await settle()


async def test_calls_outside_items_wait_first_come_first_served():
    limiter, held = Limiter(QUICK.model_copy(update={"concurrency": 1}), "m"), Held()
    tasks = await queued(limiter, held, [(name, None) for name in ("b", "c", "a")])
    await answer_all(held, tasks)
    assert held.started == ["first", "b", "c", "a"]


async def test_while_items_start_the_item_started_first_goes_first():
    limiter, held = Limiter(QUICK.model_copy(update={"concurrency": 1}), "m"), Held()
    order = CallOrder()
    turns = order.turns(["a", "b", "c", "d"])
    (old, _), (young, _) = next(turns), next(turns)
    old.calls = 4  # calls made do not count yet
    assert not order.draining  # items are still to start
    waiting = [("young", young), ("old", old), ("plain", None), ("young again", young), ("old again", old)]
    tasks = await queued(limiter, held, waiting)
    await answer_all(held, tasks)
    assert held.started == ["first", "plain", "old", "old again", "young", "young again"]


async def test_once_the_last_item_started_the_items_with_fewest_calls_go_first():
    limiter, held = Limiter(QUICK.model_copy(update={"concurrency": 1}), "m"), Held()
    order = CallOrder()
    (a, _), (b, _), (c, _) = order.turns(["a", "b", "c"])
    assert order.draining
    a.calls, b.calls, c.calls = 4, 0, 2
    waiting = [("a", a), ("c", c), ("b", b), ("plain", None), ("b again", b)]
    tasks = await queued(limiter, held, waiting)
    await answer_all(held, tasks)
    # outside an item first; then by calls made (b: 0, then 1 once its first call had a slot; c: 2; a: 4)
    assert held.started == ["first", "plain", "b", "b again", "c", "a"]
    assert (a.calls, b.calls, c.calls) == (5, 2, 3)


async def test_calls_waiting_when_the_last_item_starts_take_their_new_places():
    limiter, held = Limiter(QUICK.model_copy(update={"concurrency": 1}), "m"), Held()
    order = CallOrder()
    turns = order.turns(["a", "b", "c"])
    (a, _), (b, _) = next(turns), next(turns)
    a.calls = 3
    tasks = await queued(limiter, held, [("a", a), ("b", b)])  # a, the item started first, is next so far
    (c, _) = next(turns)  # the last item starts: b (fewer calls than a, started before c), c, then a
    assert order.draining
    tasks.append(asyncio.ensure_future(c.run(limiter.call(held.attempt("c")))))
    await settle()
    await answer_all(held, tasks)
    assert held.started == ["first", "b", "c", "a"]


def test_turns_say_draining_as_the_last_item_is_handed_out():
    order = CallOrder()
    seen = []
    for turn, item in order.turns(iter("xyz")):
        seen.append((turn.index, item, order.draining))
    assert seen == [(0, "x", False), (1, "y", False), (2, "z", True)]
    empty = CallOrder()
    assert list(empty.turns([])) == [] and empty.draining


async def test_a_cancelled_waiter_leaves_its_place_and_a_granted_one_passes_its_slot_on():
    limiter, held = Limiter(QUICK.model_copy(update={"concurrency": 1}), "m"), Held()
    tasks = await queued(limiter, held, [("gone", None), ("granted then cancelled", None), ("last", None)])
    tasks[1].cancel()  # cancelled while it waits
    await settle()
    held.answer()  # "first" answered: the slot goes to the next waiter still there
    tasks[2].cancel()  # ...which is cancelled before it could start: it passes the slot on
    await settle()
    await answer_all(held, [tasks[0], tasks[3]])
    assert held.started == ["first", "last"]
    assert tasks[1].cancelled() and tasks[2].cancelled() and tasks[3].result() == "last"
    assert limiter._loop_slots is not None and limiter._loop_slots.free == 1


async def chained_rounds(ordered: bool, items: int = 25, calls: int = 5, slots: int = 4, in_flight: int = 8) -> int:
    """Items that are chains of `calls` calls (answer, critique, revision, judge...), `in_flight` at once, through
    one limiter of `slots` slots; every call in flight is answered at once, a round at a time: how many rounds the
    run takes, its items in a `CallOrder` or not."""
    limiter, held = Limiter(QUICK.model_copy(update={"concurrency": slots}), "m"), Held()

    async def chain(item: int) -> None:
        for step in range(calls):
            await limiter.call(held.attempt(f"{item}.{step}"))

    async def in_turn(turned: tuple[CallTurn, int]) -> None:
        await turned[0].run(chain(turned[1]))

    if ordered:
        run = asyncio.ensure_future(drain(bounded_map(in_turn, CallOrder().turns(range(items)), in_flight)))
    else:
        run = asyncio.ensure_future(drain(bounded_map(chain, range(items), in_flight)))
    rounds = 0
    await settle()
    while not run.done():
        assert 0 < held.answer() <= slots
        rounds += 1
        await settle()
    assert len(held.started) == items * calls
    return rounds


async def test_chained_items_in_call_order_leave_no_idle_tail():
    # 125 calls on 4 slots need 32 rounds at best; first come, first served, the last items' chains run on alone
    assert await chained_rounds(ordered=False) == 35
    assert await chained_rounds(ordered=True) == 32


def test_estimate_tokens():
    messages = [Message(role="user", content="x" * 400)]
    assert estimate_tokens(messages, 50) == 100 + 4 + 50
