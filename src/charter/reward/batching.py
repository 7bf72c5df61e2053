"""`Judging`: one reward function shared by a framework's calls, from any thread or event loop.

Frameworks ask for rewards one completion at a time (verl's reward loop, verifiers' rubric, an OpenEnv step) and
concurrently. `Judging` gathers the calls that arrive together into one batch of the reward function (so the judge's
calls share its concurrency bound, its cache and its store writes), runs the judge work on the event loop of the
reward function's judge session (where its clients and limiters live), and hands each caller its `RewardRecord`: the
reward, or `None` with the failure that explains it.

A group scoring (`ScoringEntry.grouped`) compares a prompt's completions together, so its callers say which group a
completion belongs to and how many completions the group has (`in_group`): the group is judged in one call of the
reward function once its last completion arrives, or after `group_wait_s` with the completions that came (a lone one
fails as `no_group`, never a made-up reward).

`Window` hands on the calls that arrive together as one batch (judge calls, a reward model's); `Groups` hands on the
calls of one group together once the group is whole; `hand_out` gives each caller of a batch its result.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, InvalidStateError, wait
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, Unpack

from charter.errors import ArgumentError
from charter.providers.config import RoleConfig
from charter.records import RewardRecord
from charter.reward.function import SCORE, Columns, RewardFunction, reward_function
from charter.yamlio import from_arguments

T = TypeVar("T")


class Window(Generic[T]):
    """Items gathered from any thread and sent on in batches: a batch goes when `max_batch` items have come, or
    `window_s` seconds after its first one, or at `flush()`.

    Args:
        window_s: How long a lone item waits for others (seconds).
        max_batch: The most items in one batch.
        send: Takes each batch (called outside the window's lock, from the thread that filled or timed it).
    """

    def __init__(self, window_s: float, max_batch: int, send: Callable[[list[T]], None]) -> None:
        self.window_s, self.max_batch, self.send = window_s, max_batch, send
        self._lock = threading.Lock()
        self._items: list[T] = []
        self._timer: threading.Timer | None = None

    def add(self, item: T) -> None:
        """Gather `item`; send the batch now if it is full."""
        with self._lock:
            self._items.append(item)
            full = len(self._items) >= self.max_batch
            if not full and self._timer is None:
                self._timer = threading.Timer(self.window_s, self.flush)
                self._timer.daemon = True
                self._timer.start()
        if full:
            self.flush()

    def flush(self) -> None:
        """Send what is gathered (nothing when empty)."""
        with self._lock:
            batch, self._items = self._items, []
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        if batch:
            self.send(batch)


@dataclass
class _Gathering(Generic[T]):
    size: int
    members: list[T] = field(default_factory=list)
    timer: threading.Timer | None = None


class Groups(Generic[T]):
    """Items gathered by group from any thread: a group is sent on once `size` of its items have come, or `wait_s`
    seconds after its first one with those that came, or at `flush()`. A key whose group was sent starts a new one.

    Args:
        wait_s: How long a group waits for its last item (seconds).
        send: Takes each group's items (called outside the lock, from the thread that completed or timed it).
    """

    def __init__(self, wait_s: float, send: Callable[[list[T]], None]) -> None:
        self.wait_s, self.send = wait_s, send
        self._lock = threading.Lock()
        self._groups: dict[str, _Gathering[T]] = {}

    def add(self, key: str, size: int, item: T) -> None:
        """Gather `item` into the group `key` of `size` items; send the group now if it is whole."""
        with self._lock:
            gathering = self._groups.setdefault(key, _Gathering(size))
            gathering.members.append(item)
            whole = len(gathering.members) >= gathering.size
            if whole:
                del self._groups[key]
                if gathering.timer is not None:
                    gathering.timer.cancel()
            elif gathering.timer is None:
                gathering.timer = threading.Timer(self.wait_s, self._due, (key, gathering))
                gathering.timer.daemon = True
                gathering.timer.start()
        if whole:
            self.send(gathering.members)

    def waiting(self) -> int:
        """Items gathered in groups not sent yet."""
        with self._lock:
            return sum(len(g.members) for g in self._groups.values())

    def _due(self, key: str, gathering: _Gathering[T]) -> None:
        with self._lock:
            if self._groups.get(key) is not gathering:
                return  # sent whole meanwhile
            del self._groups[key]
        self.send(gathering.members)

    def flush(self) -> None:
        """Send every group still waiting, with the items that came."""
        with self._lock:
            partial, self._groups = list(self._groups.values()), {}
        for gathering in partial:
            if gathering.timer is not None:
                gathering.timer.cancel()
            self.send(gathering.members)


def hand_out(waiting: Sequence[Future[T] | asyncio.Future[T]], outcome: Sequence[T] | BaseException) -> None:
    """Each waiting caller's result (`outcome[i]` for `waiting[i]`), or the error that failed the batch: a blocked
    caller's future at once; the futures of the callers awaiting on one event loop in one call onto that loop, so a
    batch costs each loop one thread hop, not one a caller. A caller cancelled meanwhile is passed over; the others
    still get theirs."""
    loops: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[T], int]]] = {}
    for i, done in enumerate(waiting):
        if isinstance(done, asyncio.Future):
            loops.setdefault(done.get_loop(), []).append((done, i))
        else:
            _resolve(done, outcome, i)
    for loop, awaiting in loops.items():
        try:
            loop.call_soon_threadsafe(_settle, awaiting, outcome)
        except RuntimeError:  # the callers' event loop has closed: nobody awaits these results any more
            pass


def _settle(awaiting: list[tuple[asyncio.Future[T], int]], outcome: Sequence[T] | BaseException) -> None:
    for done, i in awaiting:
        _resolve(done, outcome, i)


def _resolve(done: Future[T] | asyncio.Future[T], outcome: Sequence[T] | BaseException, i: int) -> None:
    if done.done():
        return  # cancelled by its caller
    try:
        if isinstance(outcome, BaseException):
            done.set_exception(outcome)
        else:
            done.set_result(outcome[i])
    except InvalidStateError:  # a blocked caller's future, cancelled from its thread since the check
        pass


@dataclass
class _Waiting:
    prompt: Any
    completion: Any
    reference: Any
    checklist: Any
    done: Future[RewardRecord] | asyncio.Future[RewardRecord]
    """A blocked caller's future, or an awaiting caller's own, made on its event loop."""


class Judging:
    """A reward function's judgments for frameworks (build one with `judging(...)` or from a
    `charter.reward_function`).

    Args:
        reward: The reward function whose store, cache, meter, budget and failure limit every call shares.
        window_s: How long a lone call waits for others to join its batch (seconds).
        max_batch: The most completions judged in one batch.
        group_wait_s: Group scorings: how long a group waits for its last completion before it is judged with the
            completions that came (seconds).
    """

    def __init__(
        self, reward: RewardFunction, window_s: float = 0.005, max_batch: int = 512, group_wait_s: float = 300.0
    ) -> None:
        if window_s < 0 or max_batch < 1 or group_wait_s <= 0:
            raise ArgumentError(
                "window_s/max_batch/group_wait_s",
                f"expected window_s >= 0, max_batch >= 1 and group_wait_s > 0, got {window_s}, {max_batch}, "
                f"{group_wait_s}",
            )
        self.reward, self.window_s, self.max_batch, self.group_wait_s = reward, window_s, max_batch, group_wait_s
        self._lock = threading.Lock()
        self._window: Window[_Waiting] = Window(window_s, max_batch, self._judge_together)
        self._groups: Groups[_Waiting] = Groups(group_wait_s, self._judge_together)
        self._in_flight: set[Future[list[RewardRecord]]] = set()
        self.batches = 0
        """Batches the reward function has judged through this object."""

    @property
    def scoring(self) -> str:
        return self.reward.scoring

    # -- whole batches -------------------------------------------------------------------------------------------
    def judge(
        self, prompts: Sequence[Any], completions: Sequence[Any], **columns: Unpack[Columns]
    ) -> list[RewardRecord]:
        """The records of a batch, in order, stored and counted against the failure limit (blocks); `columns` as
        `JudgeReward.score` takes them. A group scoring judges the completions of each prompt in the batch together."""
        return self._submit(prompts, completions, columns).result()

    async def ajudge(
        self, prompts: Sequence[Any], completions: Sequence[Any], **columns: Unpack[Columns]
    ) -> list[RewardRecord]:
        """`judge` for a caller on its own event loop (the judge work runs on the reward function's)."""
        return await asyncio.wrap_future(self._submit(prompts, completions, columns))

    def _submit(
        self, prompts: Sequence[Any], completions: Sequence[Any], columns: Columns
    ) -> Future[list[RewardRecord]]:
        references, checklists, step = columns.get("references"), columns.get("checklists"), columns.get("step")
        refs = None if references is None else list(references)
        lists = None if checklists is None else list(checklists)
        self.batches += 1
        work = self.reward.rewards(list(prompts), list(completions), step, refs, lists)
        job = self.reward.session.submit(work)  # on the session's own event loop, where its clients live
        done: Future[list[RewardRecord]] = Future()

        def finish(f: Future[list[RewardRecord]]) -> None:
            try:
                records = f.result()
                with self._lock:  # one writer at a time: the store, the usage ledger and the tally
                    self.reward.session.finish(records, step)
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
    def one(self, prompt: Any, completion: Any, reference: Any = None, checklist: Any = None) -> RewardRecord:
        """One completion's record, judged in a batch with the calls that arrive with it (blocks). `checklist`: the
        prompt's checklist (`checklist` scoring; None: the constitution's criteria or the writer's)."""
        done: Future[RewardRecord] = Future()
        self._enqueue(_Waiting(prompt, completion, reference, checklist, done))
        return done.result()

    async def aone(self, prompt: Any, completion: Any, reference: Any = None, checklist: Any = None) -> RewardRecord:
        """`one` for a caller on its own event loop."""
        done: asyncio.Future[RewardRecord] = asyncio.get_running_loop().create_future()
        self._enqueue(_Waiting(prompt, completion, reference, checklist, done))
        return await done

    def _enqueue(self, item: _Waiting) -> None:
        if self.reward.entry.grouped:
            raise ArgumentError(
                "scoring", f"{self.scoring!r} compares a prompt's completions together: judge it with in_group"
            )
        self._window.add(item)

    def _judge_together(self, batch: list[_Waiting]) -> None:
        """Judge `batch` in one call of the reward function and hand each waiting caller its record."""
        refs = [w.reference for w in batch] if any(w.reference is not None for w in batch) else None
        lists = [w.checklist for w in batch] if any(w.checklist is not None for w in batch) else None
        try:
            done = self._submit(
                [w.prompt for w in batch], [w.completion for w in batch], Columns(references=refs, checklists=lists)
            )
        except BaseException as exc:  # noqa: BLE001 - a bad item fails the batch it came in
            hand_out([w.done for w in batch], exc)
            return
        done.add_done_callback(lambda f: hand_out([w.done for w in batch], f.exception() or f.result()))

    # -- a group's completions, gathered until the group is whole ----------------------------------------------
    def in_group(
        self, group: str, size: int, prompt: Any, completion: Any, reference: Any = None, checklist: Any = None
    ) -> RewardRecord:
        """One completion's record under a group scoring: it waits for the other `size - 1` completions of `group`
        (the same key from every caller of one group, e.g. the task's or prompt's id), then the group is judged in one
        call (blocks). A pointwise scoring judges it at once, as `one` does."""
        done: Future[RewardRecord] = Future()
        self._gather(group, size, _Waiting(prompt, completion, reference, checklist, done))
        return done.result()

    async def ain_group(
        self, group: str, size: int, prompt: Any, completion: Any, reference: Any = None, checklist: Any = None
    ) -> RewardRecord:
        """`in_group` for a caller on its own event loop."""
        done: asyncio.Future[RewardRecord] = asyncio.get_running_loop().create_future()
        self._gather(group, size, _Waiting(prompt, completion, reference, checklist, done))
        return await done

    def _gather(self, group: str, size: int, item: _Waiting) -> None:
        if not self.reward.entry.grouped:
            self._enqueue(item)
            return
        if size < 2:
            raise ArgumentError("group_size", f"{self.scoring!r} compares a group: expected 2 or more, got {size}")
        self._groups.add(group, size, item)

    def close(self) -> None:
        """Judge what is waiting (groups with the completions that came), then close the reward function: its session
        closes the judge's clients on its own event loop, flushes the call cache and stops the loop."""
        self._window.flush()
        self._groups.flush()
        with self._lock:
            in_flight = list(self._in_flight)
        wait(in_flight)  # the batches judged or failed before their clients close
        self.reward.close()


def judging(
    judge: Any = "local:smollm2-135m-instruct",
    constitution: Any = "harmless",
    scoring: str = SCORE.name,
    group_wait_s: float = 300.0,
    **kwargs: Any,
) -> Judging:
    """A `Judging` over `charter.reward_function(judge, constitution, scoring, **kwargs)` (same arguments; the judge
    may also be a mapping of a role config's fields, as a framework's YAML or TOML gives it: model, limits, options);
    `group_wait_s` as `Judging` takes it."""
    if isinstance(judge, Mapping):
        judge = from_arguments(RoleConfig, **judge)
    reward = reward_function(judge, constitution, scoring, **kwargs)  # type: ignore[arg-type]
    return Judging(reward, group_wait_s=group_wait_s)


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
                settings.get("scoring", SCORE.name),
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
