"""Stopping a run cleanly on Ctrl-C or SIGTERM (what Slurm preemption, Kubernetes, systemd and `timeout` send).

The first signal is a request: no new item and no new call starts, the calls in flight get a grace period to finish
into the call cache and the run store, what is still waiting then is cancelled, the stages are marked `interrupted`,
the partial dataset and the report are written, and the run ends with `Interrupted` (exit 130 for Ctrl-C, 143 for
SIGTERM). The same command resumes it. A second signal stops at once, with the same exit code (a second SIGTERM
raises `Terminated`, a second Ctrl-C `KeyboardInterrupt`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
import time
from collections.abc import Awaitable, Iterator
from typing import Any, TypeVar

from charter.errors import Interrupted

log = logging.getLogger("charter.run")

T = TypeVar("T")

#: How each signal stops a run: the word for it and the exit code (128 + the signal's number, as shells report).
SIGNALS = {signal.SIGINT: ("interrupted", 130), signal.SIGTERM: ("terminated", 143)}


class Terminated(KeyboardInterrupt):
    """A second SIGTERM: stop at once, as a second Ctrl-C does; out of `signals()` it becomes `Interrupted` with
    exit 143 (what a scheduler that sent it expects), where a second Ctrl-C stays a KeyboardInterrupt (130)."""

    how = "terminated"
    exit_code = 143


class StopRequest:
    """Whether a stop was asked for, and how; `guard` gives running work its grace period."""

    def __init__(self, grace_s: float = 10.0) -> None:
        self.grace_s = grace_s
        self.how: str | None = None
        self.exit_code = 0
        self.requested_at: float | None = None
        """When the stop was asked for (`time.monotonic()`)."""
        self.at_once = False
        """A second signal came: no more grace."""
        self._events: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []
        self._lock = threading.Lock()

    @property
    def requested(self) -> bool:
        return self.how is not None

    def request(self, how: str = "interrupted", exit_code: int = 130) -> None:
        """Ask the run to stop (from the event loop's thread, or any other)."""
        with self._lock:
            if self.how is not None:
                return
            self.how, self.exit_code, self.requested_at = how, exit_code, time.monotonic()
            events = list(self._events)
        log.warning(
            "%s: no new call starts; the calls in flight have %g s to finish into the cache "
            "(the same signal again stops at once)",
            how,
            self.grace_s,
        )
        for loop, event in events:
            loop.call_soon_threadsafe(event.set)

    @property
    def overdue(self) -> bool:
        """Whether a stop was asked for more than `grace_s` ago: work still running now is past its grace period,
        and computation in this process (a local model's batch) ends at its next step."""
        if self.requested_at is None:
            return False
        return self.at_once or time.monotonic() - self.requested_at >= self.grace_s

    def check(self, starting: bool) -> None:
        """For computation in this process, between its steps: raise `Interrupted` when a stop was asked for and
        the next step `starting` new work (a new batch), or the grace period is over."""
        if self.requested and (starting or self.overdue):
            raise self.error()

    def error(self) -> Interrupted:
        return Interrupted(self.how or "interrupted", self.exit_code or 130)

    async def wait(self) -> None:
        """Return once a stop is requested."""
        event = asyncio.Event()
        with self._lock:
            if self.how is None:
                self._events.append((asyncio.get_running_loop(), event))
            else:
                event.set()
        try:
            await event.wait()
        finally:
            with self._lock:
                self._events = [(lp, ev) for lp, ev in self._events if ev is not event]

    async def guard(self, work: Awaitable[T]) -> T:
        """Run `work`; once a stop is requested, give it `grace_s` to end on its own (the stages stop starting new
        items), then cancel it. Returns its result, or raises `Interrupted` if it had to be cancelled."""
        task = asyncio.ensure_future(work)
        stopped = asyncio.ensure_future(self.wait())
        try:
            await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if not task.done():
                await asyncio.wait({task}, timeout=self.grace_s)
            if not task.done():
                log.warning("%s: cancelling the calls still in flight after %g s", self.how, self.grace_s)
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                raise self.error()
            return task.result()
        finally:
            stopped.cancel()
            if not task.done():  # cancelled from outside: a second signal, or the caller's own cancellation
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    @contextlib.contextmanager
    def signals(self) -> Iterator[None]:
        """While inside: SIGINT and SIGTERM request a stop (a second one stops at once: KeyboardInterrupt, or for
        SIGTERM `Terminated`). Only from the main thread, where Python delivers signals; the handlers before are put
        back after."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous: dict[int, Any] = {}

        def handler(signum: int, _frame: Any) -> None:
            if self.requested:
                self.at_once = True
                raise Terminated if signum == signal.SIGTERM else KeyboardInterrupt
            self.request(*SIGNALS[signal.Signals(signum)])

        for signum in SIGNALS:
            previous[signum] = signal.signal(signum, handler)
        try:
            yield
        except Terminated:  # out of everything it ran: an exit a scheduler reads as terminated (143), not 130
            raise Interrupted(Terminated.how, Terminated.exit_code) from None
        finally:
            for signum, old in previous.items():
                signal.signal(signum, old)
