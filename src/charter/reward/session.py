"""A judge session: one judge at work for online training or a reward server, and everything its judgments share.

The session holds the judge (and a reference model, where a scoring asks one), the constitution and the judge's
settings; the event loop the judge's clients live on; the bound on judge calls in flight; the reward store (a run
store's `rewards` table, one folder per rank in a distributed job) with the usage ledger beside it; the tally of
rewards and failures, and the failure limit. The reward function (`charter.reward_function`), online DPO's pair
judge and the reward server each own one and use it through the methods below; a scoring (`reward.scoring`) reads
the judge through it.

Synchronous callers hand it coroutines with `run` (an event loop of the session's own, in a thread, made on first
use); asynchronous callers (TRL's async reward path, the server) await the same coroutines on their own loop, and no
loop of the session's is made.

What the reward function accepts is checked here too (`check_settings`, `check_batch`): each check raises one
`ConfigError` naming the argument, the variable or the index, so that nothing other than the completion is judged (a
list of strings is not read as an empty text, a string is not read character by character) and nothing fails deep
inside (a semaphore of 0 that never opens, a reference column too short to index).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import math
import numbers
import threading
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from charter.concurrency import EventLoopThread
from charter.constitutions import Constitution
from charter.errors import ConfigError, TooManyFailures
from charter.judge.pairwise import judge_failure, judge_fingerprint, judge_pair, principles_for
from charter.judge.settings import JudgeSettings
from charter.judge_prompt import write_transcript
from charter.preference.dataset import now_iso
from charter.preference.manifest import ConstitutionInfo
from charter.providers import ManagedModel
from charter.records import Failure, Judgment, Message, Pair, RewardRecord, UsageRow, fingerprint
from charter.records.base import ROLES, as_messages
from charter.records.trajectory import read_openai
from charter.runs.rewards import put_rewards, stored_rewards
from charter.runs.store import RunStore
from charter.runs.usage import add_usage
from charter.training.parallel import rank, world_size

#: What a reward store row can rest on: a scoring's name (`reward.function.TABLE`), or `pair` (online DPO's pairwise
#: judgments).
Basis = str
T = TypeVar("T")


def rank_store_dir(store_dir: Path, this_rank: int, ranks: int) -> Path:
    """The run store a rank writes its rewards to: the store itself alone, a folder of its own with several ranks
    (merged into the store by the main process when training ends)."""
    return store_dir if ranks <= 1 else store_dir / "ranks" / f"rank-{this_rank}"


def reward_fingerprint(
    judge: ManagedModel,
    constitution: Constitution,
    settings: JudgeSettings,
    seed: int,
    basis: Basis,
    reference_model: str | None = None,
    **extra: Any,
) -> str:
    """The fingerprint of every reward a session stores: the judge's (model, mode, constitution, seed, ...), the
    basis, the reference model's served id (None without one) and what else a scoring adds (`extra`)."""
    judged = judge_fingerprint(settings, judge.served_id, constitution, seed)
    return fingerprint({"judge": judged, "scoring": basis, "reference_model": reference_model, **extra})


@dataclass
class SessionCounts:
    """What a session has judged so far (for metrics and the failure limit)."""

    rewards: int = 0
    failed: int = 0
    from_store: int = 0


class JudgeSession:
    """One judge at work, shared by every reward it gives: the event loop, the reward store, the usage ledger, the
    tally and the failure limit (see the module's docstring).

    Args:
        judge: The judge model (with its call cache and usage meter), or a panel that stands where one does.
        constitution: The constitution judged against.
        settings: The judge's settings (mode, orders, principles per judgment, ...).
        store_dir: The run directory of the reward store (made when missing; a folder per rank under it when
            several processes train).
        basis: What the rewards rest on, as stored rows name it (`score`, `group`, `reference`, `rank`, `pair`).
        fingerprint: The rewards' fingerprint (`reward_fingerprint`); part of every key.
        run_id: The store's run id when the session makes it (default `rewards-` and the fingerprint's first 8).
        seed: Seed of the principle draws.
        max_failures: Failed judgments allowed: a count (>= 1) or a share (< 1, checked from 20 rewards on).
        concurrency: Judge calls in flight at once.
        reference_model: A model that answers prompts for a reference (its usage and its clients are the session's).
        on_usage: Called with each usage row as the judge's meter counts it (after the session has it).
    """

    def __init__(
        self,
        judge: ManagedModel,
        constitution: Constitution,
        settings: JudgeSettings,
        store_dir: Path,
        *,
        basis: Basis,
        fingerprint: str,
        run_id: str | None = None,
        seed: int = 0,
        max_failures: float = 0.1,
        concurrency: int = 64,
        reference_model: ManagedModel | None = None,
        on_usage: Callable[[UsageRow], None] | None = None,
    ) -> None:
        self.judge, self.constitution, self.settings = judge, constitution, settings
        self.basis: Basis = basis
        self.fingerprint, self.seed = fingerprint, seed
        self.max_failures, self.concurrency = max_failures, concurrency
        self.reference_model = reference_model
        self.rank, self.ranks = rank(), world_size()
        self.store_dir = Path(store_dir)
        self.store = RunStore(rank_store_dir(self.store_dir, self.rank, self.ranks), create=True)
        self._name_store(run_id or f"rewards-{fingerprint[:8]}")
        #: What every record of the session carries.
        self._stamp = {"rank": self.rank, "scoring": basis, "judge_model": judge.model_id, "fingerprint": fingerprint}
        self.tally = SessionCounts()
        self._usage: list[UsageRow] = []
        self._usage_lock = threading.Lock()
        self._on_usage = on_usage
        for model in self.models:
            model.meter.sink = self._count_usage
        self._bridge: EventLoopThread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._semaphore: asyncio.Semaphore | None = None
        #: The records waiting for the next group commit (`afinish`) and the future their callers await.
        self._group: tuple[list[RewardRecord], asyncio.Future[None]] | None = None

    @property
    def models(self) -> list[ManagedModel]:
        """The models the session asks: the judge, and the reference model where there is one (each once)."""
        return list({id(m): m for m in (self.judge, self.reference_model) if m is not None}.values())

    def _name_store(self, run_id: str) -> None:
        if self.store.meta("run_id") is None:  # `charter status` names what made the store
            c = self.constitution
            info = ConstitutionInfo(name=c.name, version=c.version, hash=c.hash, principles=c.principle_ids)
            self.store.set_meta(run_id=run_id, created_at=now_iso(), constitution=info.model_dump())

    # -- running judge work --------------------------------------------------------------------------------
    def run(self, work: Coroutine[Any, Any, T]) -> T:
        """Run judge work from synchronous code, on the session's own event loop (a thread, made on first use), so
        that the judge's clients and limiters live from one call to the next."""
        return self.submit(work).result()

    def submit(self, work: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Start judge work on the session's own event loop without waiting (`run` waits): its future, which any
        thread may wait on. Adapters that gather a framework's calls into batches hand them over here."""
        if self._bridge is None:
            self._bridge = EventLoopThread("charter-reward")
        return self._bridge.submit(work)

    async def limited(self, work: Awaitable[T]) -> T:
        """Await judge work within the session's bound on calls in flight (`concurrency`)."""
        loop = asyncio.get_running_loop()
        if self._semaphore is None or self._loop is not loop:
            self._semaphore, self._loop = asyncio.Semaphore(self.concurrency), loop
        async with self._semaphore:
            return await work

    def check_settings(self) -> None:
        """`max_failures` and `concurrency` as they are now (a caller may have set them): a `ConfigError` if not."""
        check_settings(self.max_failures, self.concurrency)

    # -- judging -------------------------------------------------------------------------------------------
    def principles(self, prompt: list[Message]) -> list[str]:
        """The principles a prompt's completions are judged under: drawn per prompt (the same for all of them)."""
        key = fingerprint(["prompt", [m.model_dump() for m in prompt]])
        return principles_for(self.constitution, self.settings, key, self.seed)

    async def judge_pair(self, prompt: list[Message], first: str, second: str, principle_ids: list[str]) -> Judgment:
        """The judge's pairwise judgment of `first` against `second` under the principles (a failure is a judgment
        with `failure` set), within the bound on calls in flight."""
        pair = Pair(pair_id=fingerprint(["pair", first, second]), prompt=prompt, a=first, b=second)
        return await self.limited(
            judge_pair(self.judge, self.constitution, pair, self.settings, principle_ids, self.fingerprint)
        )

    def key(self, *parts: Any) -> str:
        """A reward's key in the store: the fingerprint and what the reward depends on, hashed."""
        return fingerprint([self.fingerprint, *parts])

    def record(
        self, key: str, step: int | None, prompt: list[Message], text: str, reward: float | None, **fields: Any
    ) -> RewardRecord:
        """A reward record of the judge session (its basis, rank, judge and fingerprint) with `fields` beside. A reward
        that is not a finite number is recorded as none, with a failure saying what it was."""
        if reward is not None and not math.isfinite(reward):
            failure = Failure(kind="non_finite", message=f"the reward was {reward!r}, not a finite number")
            reward, fields = None, {**fields, "failure": failure}
        return RewardRecord(key=key, step=step, prompt=prompt, completion=text, reward=reward, **self._stamp, **fields)

    def failed(
        self, key: str, step: int | None, prompt: list[Message], text: str, ids: list[str], error: BaseException
    ) -> RewardRecord:
        """The record of a failed judgment (reward None, the failure from a `JudgeParseError` or `ProviderError`)."""
        return self.record(key, step, prompt, text, None, principle_ids=ids, failure=judge_failure(error))

    def stored(self, key: str, step: int | None) -> RewardRecord | None:
        """The reward stored under `key` (a successful one), for `step` and this rank, or None."""
        found = stored_rewards(self.store, [key]).get(key)
        if found is None:
            return None
        self.tally.from_store += 1
        return found.model_copy(update={"step": step, "rank": self.rank, "cached": True})

    # -- bookkeeping ---------------------------------------------------------------------------------------
    def _count_usage(self, row: UsageRow) -> None:
        with self._usage_lock:
            self._usage.append(row)
            if self._on_usage is not None:
                self._on_usage(row)

    def finish(self, records: list[RewardRecord], step: int | None) -> None:
        """Store a batch's records (each carries its `step`) and the usage since the last batch, and count them (no
        failure limit: see `check_failures`)."""
        self._commit(records)

    async def afinish(self, records: list[RewardRecord], step: int | None) -> None:
        """`finish` for concurrent callers on one event loop (the reward server's requests), returning once the
        records are committed: the batches that finish in the same turn of the loop are stored in one transaction
        (a group commit), so a store write costs a turn, not a request. A failed write raises in every caller of
        its group."""
        loop = asyncio.get_running_loop()
        if self._group is None:
            self._group = ([], loop.create_future())
            loop.call_soon(self._commit_group)
        waiting, committed = self._group
        waiting.extend(records)
        await asyncio.shield(committed)  # a caller cancelled leaves the group's commit to the others

    def _commit_group(self) -> None:
        assert self._group is not None
        (records, committed), self._group = self._group, None
        try:
            self._commit(records)
        except Exception as exc:  # noqa: BLE001 - each caller of the group raises it
            committed.set_exception(exc)
        else:
            committed.set_result(None)

    def _commit(self, records: list[RewardRecord]) -> None:
        """Store records in one transaction and the usage since the last commit, then count them (counts only: the
        rewards themselves are the store's, so a server that runs for weeks holds no more than at its start)."""
        put_rewards(self.store, records)
        self.write_usage()
        self.tally.rewards += len(records)
        self.tally.failed += sum(r.reward is None for r in records)

    def write_usage(self) -> None:
        """Write the usage counted since the last batch to the store's ledger (one transaction; nothing if none)."""
        with self._usage_lock:
            usage, self._usage = self._usage, []
        if usage:
            add_usage(self.store, usage)

    def check_failures(self) -> None:
        """Raise `TooManyFailures` once the failed judgments are past `max_failures`."""
        if self.past_limit():
            raise TooManyFailures(
                f"{self.tally.failed} of {self.tally.rewards} judge rewards failed, over max_failures "
                f"{self.max_failures:g}; the reward store at {self.store.run_dir} holds each failure"
            )

    def past_limit(self) -> bool:
        """Whether the failed judgments so far are past `max_failures`."""
        if self.max_failures >= 1:
            return self.tally.failed > self.max_failures
        return self.tally.rewards >= 20 and self.tally.failed / self.tally.rewards > self.max_failures

    # -- the end -------------------------------------------------------------------------------------------
    def close(self) -> None:
        """Close the models' clients and flush the call cache, then stop the session's own event loop if it made
        one (the reward store stays readable). The clients are closed on the loop they live on where it still runs
        in another thread (TRL's); where none does, the call cache is flushed. The usage counted since the last
        batch (a call made between batches, as a checklist refresh's proposer) is written to the ledger first: every
        paid call is in the store before the run reports."""
        if self._bridge is not None:
            self._bridge.run(self.aclose())
            self._bridge.close()
            self._bridge = None
        elif self._loop is not None and self._loop.is_running() and not _runs_here(self._loop):
            asyncio.run_coroutine_threadsafe(self.aclose(), self._loop).result()
        elif self.judge.cache is not None:
            self.judge.cache.flush()
        self.write_usage()

    async def aclose(self) -> None:
        """Close the models' clients (flushing the call cache) on the running event loop."""
        for model in self.models:
            await model.aclose()


class SessionView:
    """The parts of a judge session as plain attributes of what owns one as `session` (the reward function, online
    DPO's pair judge): the judge, the constitution, the fingerprint, the store, the ranks, the tally, and `close`;
    `max_failures` and `concurrency` read and set the session's own.

    Attributes:
        session: The judge session.
        judge: The judge model (its `meter` counts the calls and cost).
        constitution: The constitution the judge reads.
        fingerprint: The fingerprint of every reward stored (judge, settings, scoring, what changes it).
        store: The reward store (this rank's, with several processes).
        store_dir: The run directory the reward store was asked for.
        rank: This process's rank.
        ranks: The number of processes.
        tally: Rewards given and failed so far.
    """

    def __init__(self, session: JudgeSession) -> None:
        self.session = session
        self.judge, self.constitution, self.fingerprint = session.judge, session.constitution, session.fingerprint
        self.store, self.store_dir, self.tally = session.store, session.store_dir, session.tally
        self.rank, self.ranks = session.rank, session.ranks

    @property
    def max_failures(self) -> float:
        """The share (below 1) or number of failed judgments that stops training (the session's; settable)."""
        return self.session.max_failures

    @max_failures.setter
    def max_failures(self, value: float) -> None:
        self.session.max_failures = value

    @property
    def concurrency(self) -> int:
        """Judge calls in flight at once (the session's; settable)."""
        return self.session.concurrency

    @concurrency.setter
    def concurrency(self, value: int) -> None:
        self.session.concurrency = value

    def close(self) -> None:
        """Flush the call cache and close the judge's clients (the reward store stays readable)."""
        self.session.close()

    async def aclose(self) -> None:
        """`close`, awaited on the caller's running event loop."""
        await self.session.aclose()


def _runs_here(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


WHO = "reward function"


def check_settings(max_failures: Any, concurrency: Any) -> None:
    """`max_failures` a finite number >= 0 (a count from 1, a share below it); `concurrency` a whole number >= 1."""
    if isinstance(concurrency, bool) or not isinstance(concurrency, numbers.Integral) or concurrency < 1:
        raise ConfigError(f"{WHO}: concurrency must be a whole number of at least 1 (judge calls at once), "
                          f"not {concurrency!r}")  # fmt: skip
    number = isinstance(max_failures, numbers.Real) and not isinstance(max_failures, bool)
    if not number or not math.isfinite(max_failures) or max_failures < 0:
        raise ConfigError(
            f"{WHO}: max_failures must be a finite number of at least 0 (a count from 1, a share below 1), "
            f"not {max_failures!r}"
        )


def check_batch(prompts: Any, completions: Any, references: Any = None, reference_column: str = "reference") -> Any:
    """Check a batch as TRL passes it: `prompts` and `completions` lists of one length, each item a string or a
    list of messages; `references` (the reference column, where the scoring reads it) None or a list of that length
    of strings, messages or None. Returns the references as texts (None where a row has none)."""
    _check_list("prompts", prompts)
    _check_list("completions", completions)
    if len(prompts) != len(completions):
        raise ConfigError(f"{WHO}: {len(prompts)} prompts but {len(completions)} completions")
    for i, prompt in enumerate(prompts):
        _check_conversation(f"prompts[{i}]", prompt)
    for i, completion in enumerate(completions):
        _check_conversation(f"completions[{i}]", completion)
    if references is None:
        return None
    _check_list(reference_column, references)
    if len(references) != len(prompts):
        raise ConfigError(f"{WHO}: {len(prompts)} prompts but {len(references)} values in '{reference_column}'")
    for i, reference in enumerate(references):
        if reference is not None:
            _check_conversation(f"{reference_column}[{i}]", reference)
    return [None if r is None else text_of(r) for r in references]


def prompt_messages(prompts: Sequence[Any]) -> list[list[Message]]:
    """Checked prompts as messages: a string is one user message, a list of messages is taken as it is."""
    return [as_messages(p if isinstance(p, str) else list(p), f"prompts[{i}]") for i, p in enumerate(prompts)]


def conversation_of(prompt: Any, completion: Any) -> list[Any]:
    """A checked prompt and completion as one conversation of OpenAI-format messages, as given (a string is one
    user or assistant message; messages keep their tool calls and tool results)."""
    asked = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else [_as_dict(m) for m in prompt]
    said = [{"role": "assistant", "content": completion}] if isinstance(completion, str) else list(completion)
    return [*asked, *(_as_dict(m) for m in said)]


def _as_dict(message: Any) -> Any:
    return message.model_dump() if hasattr(message, "model_dump") else dict(message)


def text_of(conversation: str | list[Mapping[str, Any]]) -> str:
    """The text of a checked completion: the string, or its messages' contents joined; a completion that calls
    tools as the judge's transcript of it (its roles, its tool calls as actions, its tool results fenced as
    untrusted), not its contents with the actions dropped."""
    if isinstance(conversation, str):
        return conversation
    if any(_uses_tools(m) for m in conversation):
        return write_transcript(read_openai(list(conversation), "completion", ConfigError).messages)
    return "".join(str(m.get("content") or "") for m in conversation)


def _uses_tools(message: Any) -> bool:
    return isinstance(message, Mapping) and (bool(message.get("tool_calls")) or message.get("role") == "tool")


def _check_list(name: str, value: Any) -> None:
    if not isinstance(value, list | tuple):
        raise ConfigError(f"{WHO}: {name} must be a list (one item a row), not {_describe(value)}")


def _check_conversation(where: str, value: Any) -> None:
    """A string, or a non-empty list of messages: mappings with a string `role` and a string `content` (which a
    message with `tool_calls` may leave out)."""
    if isinstance(value, str):
        return
    if not isinstance(value, list | tuple):
        hint = " (decode it to a string)" if isinstance(value, bytes | bytearray) else ""
        raise ConfigError(
            f"{WHO}: {where} must be a string or a list of {{role, content}} messages, not {_describe(value)}{hint}"
        )
    if not value:
        raise ConfigError(f"{WHO}: {where} is an empty list of messages")
    if any(_uses_tools(m) for m in value):  # a trajectory: its calls, results and roles checked as one
        read_openai(list(value), f"{WHO}: {where}", ConfigError)
        return
    for j, message in enumerate(value):
        content = message.get("content") if isinstance(message, Mapping) else None
        tool_call = isinstance(message, Mapping) and content is None and bool(message.get("tool_calls"))
        if not isinstance(message, Mapping) or not isinstance(message.get("role"), str):
            problem = "has no string 'role'" if isinstance(message, Mapping) else f"is {_describe(message)}"
        elif message["role"] not in ROLES:
            problem = f"has unknown role {message['role']!r:.40} (use {', '.join(ROLES)})"
        elif not isinstance(content, str) and not tool_call:
            problem = f"has 'content' {_describe(content)}, not a string"
        else:
            continue
        raise ConfigError(f"{WHO}: {where}[{j}] {problem}; a message is {{role, content}} with string values")


def _describe(value: Any) -> str:
    return f"{type(value).__name__} {value!r:.40}"
