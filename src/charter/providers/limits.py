"""The runtime behind `Limits`: concurrency, token buckets, retries and error reporting.

Every remote provider sends each request through one `Limiter.call`. Per attempt it takes a
concurrency slot, then a request from the requests/minute bucket and an estimate of the tokens
from the tokens/minute bucket; the estimate is settled against the usage the reply reports.
Retries are tenacity's: exponential backoff with jitter, or the server's Retry-After when it sends
one. 429, 5xx, timeouts and dropped connections are retried; 400/401/403/404 never are. The SDKs'
own retries are switched off (`max_retries=0`) so that these are the only ones, and counted.

Calls that wait for a slot are served in their run's `CallOrder`: the item started first first, until the run has
started its last item; from then on the items that have made the fewest calls first, so that the items still in
flight finish together rather than the last ones' chains of calls running alone while slots stand idle. Calls made
outside a run's items wait first come, first served, as with a plain semaphore.
"""

from __future__ import annotations

import asyncio
import email.utils
import heapq
import itertools
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from charter.errors import FatalProviderError, ProviderError
from charter.providers.base import Limits, MalformedReply, Messages, count_retry
from charter.redaction import redact

log = logging.getLogger("charter.providers")

T = TypeVar("T")

#: HTTP statuses worth another try: request timeout, conflict (a lock), rate limit, any server error.
RETRYABLE_STATUS = frozenset({408, 409, 429})
#: HTTP statuses every later call would get too: bad key, no permission, no such model (or URL).
FATAL_STATUS = frozenset({401, 403, 404})


def status_of(exc: BaseException) -> int | None:
    """The HTTP status an SDK error carries (both SDKs put it on `status_code`), if any."""
    status = getattr(exc, "status_code", None)
    return status if isinstance(status, int) else None


def retry_after_s(exc: BaseException) -> float | None:
    """Seconds the server asked us to wait: `retry-after-ms`, or `retry-after` as seconds or a date."""
    headers = getattr(getattr(exc, "response", None), "headers", None)
    if headers is None:
        return None
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class TokenBucket:
    """A token bucket refilled continuously; it holds one second's worth (at least one token).

    One second, not one minute, because providers enforce per-minute limits over shorter windows
    (60,000 a minute may mean 1,000 a second). A request bigger than the bucket waits for a full
    one and leaves the rest as debt; `settle` refunds an overestimate or charges an underestimate,
    which aiolimiter cannot do. Waiters are served in order.
    """

    def __init__(self, per_minute: float) -> None:
        self.rate = float(per_minute) / 60.0
        self.capacity = max(1.0, self.rate)
        self.level = self.capacity
        self.updated = time.monotonic()
        self._lock: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _refill(self) -> None:
        now = time.monotonic()
        self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
        self.updated = now

    def _queue(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        if self._lock is None or self._loop is not loop:
            self._loop, self._lock = loop, asyncio.Lock()
        return self._lock

    async def acquire(self, amount: float = 1.0) -> None:
        """Wait until `amount` tokens (at most a full bucket) are there, and take them."""
        amount = min(float(amount), self.capacity)
        async with self._queue():
            self._refill()
            if self.level < amount:
                await asyncio.sleep((amount - self.level) / self.rate)
                self._refill()
            self.level -= amount

    def settle(self, taken: float, actual: float) -> None:
        """Correct a taken estimate by the tokens actually used."""
        self._refill()
        self.level = min(self.capacity, self.level + min(float(taken), self.capacity) - actual)


class CallOrder:
    """The order in which one run's waiting calls get a concurrency slot.

    A run's items are chains of calls (answer, critique, revision, judge), a bounded number in flight. While the
    run still starts items, the calls of the item started first go first: its chain ends sooner and makes room for
    the next item. Once the last item has started (`draining`), the calls of the items with the fewest calls made go
    first (the item started first among equals), so that the items still in flight end together; served in arrival
    order instead, the last items' chains run on alone at the end while most slots stand idle. The order changes
    which waiting call goes next, never what a call asks or answers. Calls made outside an item (no `CallTurn`) go
    first, in arrival order."""

    def __init__(self) -> None:
        self.draining = False
        """Whether the run has started its last item."""

    def turns(self, items: Iterable[T]) -> Iterator[tuple[CallTurn, T]]:
        """Each item with its turn, lazily; `draining` is set as the last item is handed out (one item read ahead)."""
        iterator = iter(items)
        sentinel: Any = object()
        current = next(iterator, sentinel)
        for index in itertools.count():
            if current is sentinel:
                self.draining = True
                return
            following = next(iterator, sentinel)
            if following is sentinel:
                self.draining = True
            yield CallTurn(self, index), current
            current = following


@dataclass(eq=False)
class CallTurn:
    """One item's place in its run's `CallOrder`: the calls made while it is `CALL_TURN` count as its calls."""

    order: CallOrder
    index: int
    """The item's place in the order the run started its items."""
    calls: int = 0
    """The item's calls that have had a slot so far (retries included)."""

    async def run(self, work: Awaitable[T]) -> T:
        """Await `work` with this turn as the `CALL_TURN` of its calls (and of the tasks it starts)."""
        token = CALL_TURN.set(self)
        try:
            return await work
        finally:
            CALL_TURN.reset(token)


#: The turn of the item whose calls are being made (see `CallOrder`); none outside a run's items.
CALL_TURN: ContextVar[CallTurn | None] = ContextVar("charter_call_turn", default=None)


class Slots:
    """`size` concurrency slots; calls that find none free wait, served in their `CallOrder` (see there)."""

    def __init__(self, size: int) -> None:
        self.free = size
        self._waiting: list[tuple[tuple[int, ...], asyncio.Future[None], CallTurn | None]] = []
        self._arrivals = itertools.count()
        self._draining = False

    async def __aenter__(self) -> None:
        turn = CALL_TURN.get()
        if self.free > 0 and not self._waiting:
            self.free -= 1
        else:
            await self._wait(turn)
        if turn is not None:
            turn.calls += 1

    async def __aexit__(self, *exc: object) -> None:
        self.release()

    def release(self) -> None:
        """Give a slot back: to the first waiting call in order, if any."""
        self.free += 1
        while self.free > 0 and self._waiting:
            future = heapq.heappop(self._waiting)[1]
            if not future.done():  # a waiter cancelled while it waited has left
                self.free -= 1
                future.set_result(None)

    async def _wait(self, turn: CallTurn | None) -> None:
        if turn is not None and turn.order.draining and not self._draining:
            self._draining = True  # the calls already waiting take their new places
            self._waiting = [(_rank(t, rank[-1]), f, t) for rank, f, t in self._waiting]
            heapq.heapify(self._waiting)
        future = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (_rank(turn, next(self._arrivals)), future, turn))
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():  # given a slot as it was cancelled: pass it on
                self.release()
            raise


def _rank(turn: CallTurn | None, arrival: int) -> tuple[int, ...]:
    """A waiting call's place (lower first; `arrival` last, so that no two are equal)."""
    if turn is None:
        return (0, 0, 0, arrival)
    return (1, turn.calls if turn.order.draining else 0, turn.index, arrival)


class Limiter:
    """Applies one model's `Limits` to its requests; counts attempts and retries."""

    def __init__(
        self,
        limits: Limits,
        label: str,
        transient: tuple[type[BaseException], ...] = (),
        secrets: Iterable[str] = (),
    ) -> None:
        self.limits, self.label, self.transient = limits, label, transient
        self.secrets = tuple(s for s in secrets if s)
        self.attempts = 0
        self.retries = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_slots: Slots | None = None
        self._requests = TokenBucket(limits.requests_per_minute) if limits.requests_per_minute else None
        self._tokens = TokenBucket(limits.tokens_per_minute) if limits.tokens_per_minute else None
        self._backoff = wait_exponential_jitter(
            initial=limits.backoff_initial_s, max=limits.backoff_max_s, jitter=limits.backoff_initial_s
        )

    def retryable(self, exc: BaseException) -> bool:
        """429, 408/409, 5xx, timeouts, dropped connections and malformed replies; never other 4xx."""
        status = status_of(exc)
        if status is not None:
            return status in RETRYABLE_STATUS or status >= 500
        return isinstance(exc, (*self.transient, TimeoutError, ConnectionError, MalformedReply))

    async def call(
        self, attempt: Callable[[], Awaitable[T]], tokens: int = 0, used: Callable[[T], int] | None = None
    ) -> T:
        """Run `attempt` under the limits, retrying what is worth retrying.

        `tokens` is the estimate taken from the tokens/minute bucket; `used(result)` gives the
        actual count to settle it. A final failure becomes a one-line `ProviderError`. The first
        attempt runs directly: tenacity, which costs more than the rest of this path, only
        steps in once something has failed.
        """
        try:
            return await self._once(attempt, tokens, used)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not self.retryable(exc) or self.limits.max_retries == 0:
                self._raise(exc, 1)
            first = exc
        return await self._retry(first, attempt, tokens, used)

    async def _retry(
        self, first: Exception, attempt: Callable[[], Awaitable[T]], tokens: int, used: Callable[[T], int] | None
    ) -> T:
        """Hand a failed call to tenacity, which counts the failure already seen as attempt 1."""
        seen = [first]

        async def again() -> T:
            if seen:
                raise seen.pop()
            return await self._once(attempt, tokens, used)

        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.limits.max_retries + 1),
            wait=self._wait,
            retry=retry_if_exception(self.retryable),
            before_sleep=self._before_sleep,
            reraise=True,
        )
        try:
            return await retrying(again)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._raise(exc, retrying.statistics.get("attempt_number", 1))

    def _raise(self, exc: Exception, attempts: int) -> NoReturn:
        if status_of(exc) is None and not self.retryable(exc):
            raise exc  # not a provider failure: an internal error keeps its traceback
        raise self.failure(exc, attempts) from None

    async def _once(self, attempt: Callable[[], Awaitable[T]], tokens: int, used: Callable[[T], int] | None) -> T:
        async with self._slots():
            if self._requests is not None:
                await self._requests.acquire()
            if self._tokens is not None and tokens:
                await self._tokens.acquire(tokens)
            self.attempts += 1
            result = await attempt()
        if self._tokens is not None and tokens and used is not None:
            self._tokens.settle(tokens, used(result))
        return result

    def _slots(self) -> Slots:
        """The concurrency slots of the running loop (a new loop, e.g. a new `asyncio.run`, gets its own)."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop or self._loop_slots is None:
            self._loop, self._loop_slots = loop, Slots(self.limits.concurrency)
        return self._loop_slots

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        asked = retry_after_s(exc) if exc is not None else None
        if asked is not None:  # the server knows best; a little jitter keeps waiters from colliding
            return min(asked + random.uniform(0, min(0.1 * asked, 1.0)), self.limits.backoff_max_s)
        return self._backoff(state)

    def _before_sleep(self, state: RetryCallState) -> None:
        self.retries += 1
        count_retry()
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        log.warning(
            "%s: %s; retry %d of %d in %.2f s",
            self.label,
            self.describe(exc),
            state.attempt_number,
            self.limits.max_retries,
            wait,
        )

    def describe(self, exc: BaseException | None) -> str:
        """What went wrong, in a few words, one line, secrets masked."""
        if exc is None:
            return "unknown error"
        status = status_of(exc)
        if status is not None:
            text = f"HTTP {status} {_error_message(exc)}"
        elif isinstance(exc, MalformedReply):
            text = str(exc)
        elif isinstance(exc, (TimeoutError, asyncio.TimeoutError)) or "Timeout" in type(exc).__name__:
            text = f"timed out after {self.limits.timeout_s:g} s"
        else:
            cause = exc.__cause__ or exc.__context__
            text = f"{type(exc).__name__}: {exc}" + (f" ({type(cause).__name__}: {cause})" if cause else "")
        return " ".join(redact(text, self.secrets).split())[:300]

    def failure(self, exc: BaseException, attempts: int) -> ProviderError:
        """The one-line error a caller sees once retries are spent (or pointless): fatal where every later
        call would fail the same way, else the failure of one item, classified by `kind`."""
        tries = f"after {attempts} attempts" if attempts > 1 else "not retried" if not self.retryable(exc) else ""
        message = f"{self.label}: {self.describe(exc)}" + (f" ({tries})" if tries else "")
        status = status_of(exc)
        if status in FATAL_STATUS:
            return FatalProviderError(message, kind="fatal", status=status, attempts=attempts)
        raw = redact(exc.raw, self.secrets) if isinstance(exc, MalformedReply) and exc.raw else None
        return ProviderError(message, kind=failure_kind(exc, status), status=status, attempts=attempts, raw=raw)


def failure_kind(exc: BaseException, status: int | None) -> str:
    """A short class of a final failure, for the failure record."""
    if isinstance(exc, MalformedReply):
        return exc.kind
    if status == 429:
        return "rate_limited"
    if status is not None:
        return "server_error" if status >= 500 else "rejected"
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)) or "Timeout" in type(exc).__name__:
        return "timeout"
    return "connection"


def _error_message(exc: BaseException) -> str:
    """The server's own error message from an SDK status error, else the exception text."""
    body: Any = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return inner["message"]
    return str(getattr(exc, "message", exc))


def estimate_tokens(messages: Messages, max_tokens: int) -> int:
    """A cheap upper-ish estimate for the tokens/minute bucket: ~4 characters a token, plus the reply cap."""
    return sum(len(m.content) for m in messages) // 4 + 4 * len(messages) + max_tokens


async def gather_or_cancel(coroutines: Iterable[Awaitable[T]]) -> list[T]:
    """Run concurrently, results in order; if one fails, cancel the rest rather than leave them running."""
    tasks = [asyncio.ensure_future(c) for c in coroutines]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
