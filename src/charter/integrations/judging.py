"""`Judging`: one reward function shared by a framework's calls, from any thread or event loop.

Frameworks ask for rewards one completion at a time (verl's reward loop, verifiers' rubric, an OpenEnv step) and
concurrently. `Judging` gathers the calls that arrive together into one batch of the reward function (so the judge's
calls share its concurrency bound, its cache and its store writes), runs the judge work on the event loop of the
reward function's judge session (where its clients and limiters live), and hands each caller its `RewardRecord`: the
reward, or `None` with the failure that explains it.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, wait
from dataclasses import dataclass, field
from typing import Any

from charter.api_args import from_arguments
from charter.errors import ArgumentError, RunFailure
from charter.online.reward import RewardFunction, reward_function
from charter.providers.config import RoleConfig
from charter.records import RewardRecord

#: Scorings that give each completion a reward of its own (the group scorings need the whole group in one call).
POINTWISE = ("score", "reference")


@dataclass
class _Waiting:
    prompt: Any
    completion: Any
    reference: Any
    done: Future[RewardRecord] = field(default_factory=Future)


class Judging:
    """A reward function's judgments for frameworks (build one with `judging(...)` or from a
    `charter.reward_function`).

    Args:
        reward: The reward function whose store, cache, meter, budget and failure limit every call shares.
        window_s: How long a lone call waits for others to join its batch (seconds).
        max_batch: The most completions judged in one batch.
    """

    def __init__(self, reward: RewardFunction, window_s: float = 0.005, max_batch: int = 512) -> None:
        if window_s < 0 or max_batch < 1:
            raise ArgumentError(
                "window_s/max_batch", f"expected window_s >= 0 and max_batch >= 1, got {window_s}, {max_batch}"
            )
        self.reward, self.window_s, self.max_batch = reward, window_s, max_batch
        self._lock = threading.Lock()
        self._waiting: list[_Waiting] = []
        self._timer: threading.Timer | None = None
        self._in_flight: set[Future[list[RewardRecord]]] = set()
        self.batches = 0
        """Batches the reward function has judged through this object."""

    @property
    def scoring(self) -> str:
        return self.reward.scoring

    # -- whole batches -------------------------------------------------------------------------------------------
    def judge(
        self, prompts: Sequence[Any], completions: Sequence[Any], references: Sequence[Any] | None = None
    ) -> list[RewardRecord]:
        """The records of a batch, in order, stored and counted against the failure limit (blocks)."""
        return self._submit(list(prompts), list(completions), references).result()

    async def ajudge(
        self, prompts: Sequence[Any], completions: Sequence[Any], references: Sequence[Any] | None = None
    ) -> list[RewardRecord]:
        """`judge` for a caller on its own event loop (the judge work runs on the reward function's)."""
        return await asyncio.wrap_future(self._submit(list(prompts), list(completions), references))

    def _submit(
        self, prompts: list[Any], completions: list[Any], references: Sequence[Any] | None
    ) -> Future[list[RewardRecord]]:
        refs = None if references is None else list(references)
        self.batches += 1
        work = self.reward.rewards(prompts, completions, None, refs)
        job = self.reward.session.submit(work)  # on the session's own event loop, where its clients live
        done: Future[list[RewardRecord]] = Future()

        def finish(f: Future[list[RewardRecord]]) -> None:
            try:
                records = f.result()
                with self._lock:  # one writer at a time: the store, the usage ledger and the tally
                    self.reward.session.finish(records, None)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller, who raises it
                done.set_exception(exc)
                return
            done.set_result(records)

        job.add_done_callback(finish)
        with self._lock:
            self._in_flight.add(done)
        done.add_done_callback(self._landed)
        return done

    def _landed(self, done: Future[list[RewardRecord]]) -> None:
        with self._lock:
            self._in_flight.discard(done)

    # -- one completion at a time, gathered into batches ----------------------------------------------------------
    def one(self, prompt: Any, completion: Any, reference: Any = None) -> RewardRecord:
        """One completion's record, judged in a batch with the calls that arrive with it (blocks)."""
        return self._enqueue(prompt, completion, reference).result()

    async def aone(self, prompt: Any, completion: Any, reference: Any = None) -> RewardRecord:
        """`one` for a caller on its own event loop."""
        return await asyncio.wrap_future(self._enqueue(prompt, completion, reference))

    def _enqueue(self, prompt: Any, completion: Any, reference: Any) -> Future[RewardRecord]:
        if self.scoring not in POINTWISE:
            raise ArgumentError(
                "scoring", f"{self.scoring!r} compares a prompt's completions together: judge the group in one call"
            )
        item = _Waiting(prompt, completion, reference)
        with self._lock:
            self._waiting.append(item)
            full = len(self._waiting) >= self.max_batch
            if not full and self._timer is None:
                self._timer = threading.Timer(self.window_s, self._flush)
                self._timer.daemon = True
                self._timer.start()
        if full:
            self._flush()
        return item.done

    def _flush(self) -> None:
        with self._lock:
            batch, self._waiting = self._waiting, []
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        if not batch:
            return
        refs = [w.reference for w in batch] if any(w.reference is not None for w in batch) else None
        try:
            done = self._submit([w.prompt for w in batch], [w.completion for w in batch], refs)
        except BaseException as exc:  # noqa: BLE001 - a bad item fails the batch it came in
            for w in batch:
                w.done.set_exception(exc)
            return

        def hand_out(f: Future[list[RewardRecord]]) -> None:
            exc = f.exception()
            for i, w in enumerate(batch):
                if exc is not None:
                    w.done.set_exception(exc)
                else:
                    w.done.set_result(f.result()[i])

        done.add_done_callback(hand_out)

    def close(self) -> None:
        """Judge what is waiting, then close the reward function: its session closes the judge's clients on its own
        event loop, flushes the call cache and stops the loop."""
        self._flush()
        with self._lock:
            in_flight = list(self._in_flight)
        wait(in_flight)  # the batches judged or failed before their clients close
        self.reward.close()


class JudgmentFailed(RunFailure):
    """A completion's judgment failed (the judge's reply unreadable, the provider failing after its retries): raised
    where a framework can drop the rollout but cannot take `None` for a reward. `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"charter's judgment failed ({reason}): no reward, never a made-up one")
        self.reason = reason


def judging(
    judge: Any = "local:smollm2-135m-instruct", constitution: Any = "harmless", scoring: str = "score", **kwargs: Any
) -> Judging:
    """A `Judging` over `charter.reward_function(judge, constitution, scoring, **kwargs)` (same arguments; the judge
    may also be a mapping of a role config's fields, as a framework's YAML or TOML gives it: model, limits, options)."""
    if isinstance(judge, Mapping):
        judge = from_arguments(RoleConfig, **judge)
    return Judging(reward_function(judge, constitution, scoring, **kwargs))  # type: ignore[arg-type]


_SHARED: dict[str, Judging] = {}
_SHARED_LOCK = threading.Lock()


def shared(settings: dict[str, Any]) -> Judging:
    """The process's `Judging` for these `judging` arguments, built on first use: a framework that builds its reward
    object per call or per worker still asks one reward function (one store, cache, meter, budget, failure tally)."""
    key = json.dumps(settings, sort_keys=True, default=str)
    with _SHARED_LOCK:
        found = _SHARED.get(key)
        if found is None:
            kwargs = {k: v for k, v in settings.items() if k not in ("judge", "constitution", "scoring")}
            kwargs.setdefault("store", "charter-rewards")
            found = _SHARED[key] = judging(
                settings.get("judge", "local:smollm2-135m-instruct"),
                settings.get("constitution", "harmless"),
                settings.get("scoring", "score"),
                **kwargs,
            )
        return found


def close_shared() -> None:
    """Close every shared `Judging` (flushing their call caches); the next `shared` call builds anew."""
    with _SHARED_LOCK:
        found = list(_SHARED.values())
        _SHARED.clear()
    for item in found:
        item.close()


def failure_text(record: RewardRecord) -> str:
    """One line naming why a record has no reward."""
    if record.failure is None:
        return "the judgment gave no reward"
    return f"{record.failure.kind}: {record.failure.message}"
