"""The constitutional judge as the reward of TRL's online trainers (GRPO, RLOO, online DPO).

`reward_function(...)` returns a callable with TRL's reward-function signature, `(prompts, completions, **kwargs) ->
list[float | None]`. Three scorings:

- `score`: each completion's rubric score (judge mode `score`), normalised to 0..1 and averaged over the principles,
  which are drawn per prompt so that the completions of one prompt are rated alike (direct RLAIF, Lee et al. 2023);
- `group`: the completions of one prompt (GRPO's `num_generations`) compared pairwise in both orders; a completion's
  reward is its mean P(better) against the others of its group, its win rate (online AI feedback, Guo et al. 2024);
  with `group_strategy: circular` each completion is compared only with its neighbours in a random cycle (k pairs
  instead of k(k-1)/2) and its reward is its expected win rate under a Bradley–Terry fit of those comparisons;
- `reference`: P(the completion is better than a reference answer), both orders: the prompt's `reference` column,
  or the answer of a `reference_model` (asked once per prompt, then from the call cache);
- `rank`: the judge orders a prompt's completions in one call (listwise, as RULER and NeMo Gym's GenRM do), in
  `rank_orders` shuffled presentation orders to cancel its position bias; a Plackett–Luce fit of the orderings
  gives each completion its expected win rate in the group. A failed or unreadable ordering fails the whole group.

Every judge call goes through charter's call cache, limits, usage meter and budget; every reward is written to the
reward store (a run store's `rewards` table) with what it rests on. A failed judgment gives `None` for that completion
(TRL then gives it no reward), never a default; past `max_failures` the function raises `TooManyFailures`, and a
reached budget raises `BudgetExceeded` (`charter train grpo` then saves a checkpoint and exits with code 4).
"""

from __future__ import annotations

import asyncio
import itertools
import math
import threading
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np

from charter.api_args import Range, from_arguments, public
from charter.constitutions import Constitution, load_constitution
from charter.errors import ConfigError, FatalProviderError, JudgeParseError, ProviderError, TooManyFailures
from charter.judge.pairwise import judge_failure, judge_fingerprint, judge_pair, principles_for
from charter.judge.score import mean_score, normalised, score_response
from charter.judge.settings import JudgeConfig, JudgeSettings
from charter.judge_prompt import RANKING_FORMAT, RANKING_SCHEMA, read_ranking, write_ranking
from charter.messages import as_messages, render_conversation
from charter.online.config import default_mode, scoring_misfit
from charter.online.inputs import check_batch, check_settings, env_int, ranks, text_of
from charter.preference.dataset import now_iso
from charter.preference.manifest import ConstitutionInfo
from charter.providers import ManagedModel, get_model
from charter.providers.base import SamplingParams
from charter.providers.cache import CallCache
from charter.providers.config import RoleConfig
from charter.providers.usage import Budget, Price, UsageMeter
from charter.records import Failure, Message, Pair, RewardRecord, UsageRow, fingerprint
from charter.runs.rewards import put_rewards, stored_rewards
from charter.runs.store import RunStore
from charter.runs.usage import add_usage
from charter.stats.bradley_terry import Comparison, bt_scores
from charter.stats.ranking import circular_pairs, connected, plackett_luce

Scoring = Literal["score", "group", "reference", "rank"]
SCORINGS: tuple[Scoring, ...] = ("score", "group", "reference", "rank")
GroupStrategy = Literal["all_pairs", "circular"]
#: What a reward store row can rest on: a scoring, or `pair` (online DPO's pairwise judgments).
Basis = Literal["score", "group", "reference", "rank", "pair"]
#: Where the call cache lives unless told otherwise (the runs' default).
DEFAULT_CACHE = "~/.cache/charter/calls.sqlite"
T = TypeVar("T")


def rank() -> int:
    """This process's rank under torchrun or accelerate (0 otherwise); a `RANK` that is no rank is a `ConfigError`."""
    return env_int("RANK", 0, 0)


def world_size() -> int:
    """Processes in the distributed job (1 otherwise); a `WORLD_SIZE` below 1 or no number is a `ConfigError`."""
    return env_int("WORLD_SIZE", 1, 1)


def rank_store_dir(store_dir: Path, this_rank: int, ranks: int) -> Path:
    """The run store a rank writes its rewards to: the store itself alone, a folder of its own with several ranks
    (merged into the store by the main process when training ends)."""
    return store_dir if ranks <= 1 else store_dir / "ranks" / f"rank-{this_rank}"


def _hash(*parts: Any) -> str:
    return fingerprint(list(parts))


def _prompt_messages(prompt: Any, index: int) -> list[Message]:
    return as_messages(prompt if isinstance(prompt, str) else list(prompt), f"prompts[{index}]")


@dataclass
class Tally:
    """What the reward function has done so far (for metrics and the failure limit)."""

    rewards: int = 0
    failed: int = 0
    from_store: int = 0
    by_step: dict[int | None, list[float | None]] = field(default_factory=dict)


class _Loop:
    """An event loop of its own in a daemon thread: the judge's clients and limiters live across calls, and the
    function works the same from TRL's synchronous and asynchronous reward paths."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="charter-reward", daemon=True)
        self.thread.start()

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(work, self.loop).result()


class RewardFunction:
    """A TRL reward function backed by charter's judge. Build it with `charter.reward_function`."""

    def __init__(
        self,
        judge: ManagedModel,
        constitution: Constitution,
        settings: JudgeSettings,
        scoring: Basis,
        store_dir: Path,
        *,
        seed: int = 0,
        max_failures: float = 0.1,
        reference_column: str = "reference",
        reference_model: ManagedModel | None = None,
        reference_params: SamplingParams | None = None,
        concurrency: int = 64,
        group_strategy: GroupStrategy = "all_pairs",
        rank_orders: int = 3,
    ) -> None:
        misfit = scoring_misfit(scoring, settings)
        if misfit:
            raise ConfigError(misfit)
        self.judge, self.constitution, self.settings = judge, constitution, settings
        self.scoring: Basis = scoring
        self.seed, self.max_failures, self.concurrency = seed, max_failures, concurrency
        self.reference_column, self.reference_model = reference_column, reference_model
        self.reference_params = reference_params or SamplingParams(temperature=0.0, max_tokens=256, seed=0)
        self.group_strategy, self.rank_orders = group_strategy, rank_orders
        self.__name__ = f"charter_{scoring}"
        self.rank, self.ranks = rank(), world_size()
        self.store_dir = Path(store_dir)
        self.store = RunStore(rank_store_dir(self.store_dir, self.rank, self.ranks), create=True)
        self.fingerprint = fingerprint(
            {
                "judge": judge_fingerprint(settings, judge.served_id, constitution, seed),
                "scoring": scoring,
                "reference_model": reference_model.served_id if reference_model else None,
                # only where they change the reward, so that the stores of the settings before them stay valid
                **({"group_strategy": group_strategy} if scoring == "group" and group_strategy != "all_pairs" else {}),
                **({"rank_orders": rank_orders, "ranking_format": RANKING_FORMAT} if scoring == "rank" else {}),
            }
        )
        if self.store.meta("run_id") is None:  # `charter status` names what made the store
            self.store.set_meta(
                run_id=f"rewards-{self.fingerprint[:8]}",
                created_at=now_iso(),
                constitution=ConstitutionInfo(
                    name=constitution.name,
                    version=constitution.version,
                    hash=constitution.hash,
                    principles=constitution.principle_ids,
                ).model_dump(),
            )
        self.tally = Tally()
        self._usage: list[UsageRow] = []
        self._usage_lock = threading.Lock()
        for model in {id(m): m for m in (judge, reference_model) if m is not None}.values():
            model.meter.sink = self._count_usage
        self._loop: _Loop | None = None
        self._semaphore: asyncio.Semaphore | None = None

    # -- TRL's interface -------------------------------------------------------------------------------------
    def __call__(
        self, prompts: Sequence[Any], completions: Sequence[Any], completion_ids: Any = None, **kwargs: Any
    ) -> list[float | None]:
        """One reward per completion, in order (None where the judgment failed).

        Each completion is a string or a list of `{role, content}` messages, as TRL gives them; anything else, lists
        of different lengths or a reference column of another length is a `ConfigError` naming the index."""
        check_settings(self.max_failures, self.concurrency)
        column = kwargs.get(self.reference_column) if self.scoring == "reference" else None
        references = check_batch(prompts, completions, column, self.reference_column)
        state = kwargs.get("trainer_state")
        # The step the completions train, counted as TRL's log counts (1 for the first): the trainer asks for rewards
        # before the step that uses them ends, while global_step still counts the steps before it.
        step = int(state.global_step) + 1 if state is not None else None
        if self._loop is None:
            self._loop = _Loop()
        records = self._loop.run(self.rewards(list(prompts), list(completions), step, references))
        self._finish_call(records, step, kwargs.get("log_metric"))
        return [r.reward for r in records]

    # -- the rewards ---------------------------------------------------------------------------------------
    async def rewards(
        self, prompts: list[Any], completions: list[Any], step: int | None, references: Sequence[Any] | None = None
    ) -> list[RewardRecord]:
        """The reward records of a batch, in order."""
        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(self.concurrency)
        messages = [_prompt_messages(p, i) for i, p in enumerate(prompts)]
        texts = [text_of(c) for c in completions]
        if self.scoring == "score":
            jobs = [self._scored(m, t, step) for m, t in zip(messages, texts)]
        elif self.scoring == "reference":
            refs = [None if references is None else references[i] for i in range(len(texts))]
            jobs = [self._against_reference(m, t, r, step) for m, t, r in zip(messages, texts, refs)]
        else:  # `group` and `rank` score each prompt's completions together
            return await self._grouped(messages, texts, step)
        return list(await asyncio.gather(*jobs))

    def _principles(self, prompt: list[Message]) -> list[str]:
        key = _hash("prompt", [m.model_dump() for m in prompt])
        return principles_for(self.constitution, self.settings, key, self.seed)

    def _record(
        self, key: str, step: int | None, prompt: list[Message], text: str, reward: float | None, **fields: Any
    ) -> RewardRecord:
        return RewardRecord(
            key=key,
            step=step,
            rank=self.rank,
            scoring=self.scoring,
            prompt=prompt,
            completion=text,
            reward=reward,
            judge_model=self.judge.model_id,
            fingerprint=self.fingerprint,
            **fields,
        )

    def _failed(
        self, key: str, step: int | None, prompt: list[Message], text: str, ids: list[str], error: BaseException
    ) -> RewardRecord:
        return self._record(key, step, prompt, text, None, principle_ids=ids, failure=judge_failure(error))

    def _reuse(self, key: str, step: int | None) -> RewardRecord | None:
        found = stored_rewards(self.store, [key]).get(key)
        if found is None:
            return None
        self.tally.from_store += 1
        return found.model_copy(update={"step": step, "rank": self.rank, "cached": True})

    async def _guarded(self, work: Coroutine[Any, Any, T]) -> T:
        assert self._semaphore is not None
        async with self._semaphore:
            return await work

    async def _scored(self, prompt: list[Message], text: str, step: int | None) -> RewardRecord:
        ids = self._principles(prompt)
        key = _hash(self.fingerprint, [m.model_dump() for m in prompt], text)
        reused = self._reuse(key, step)
        if reused is not None:
            return reused
        try:
            scores = await self._guarded(
                score_response(self.judge, self.constitution, prompt, text, ids, self.settings)
            )
        except FatalProviderError:
            raise
        except (JudgeParseError, ProviderError) as exc:
            return self._failed(key, step, prompt, text, ids, exc)
        reward = normalised(mean_score(scores), self.settings.scale)
        return self._record(
            key,
            step,
            prompt,
            text,
            reward,
            principle_ids=ids,
            scores={s.principle_id: s.score for s in scores},
            scale=self.settings.scale,
            cached=all(s.cached for s in scores),
        )

    async def _p_better(self, prompt: list[Message], first: str, second: str, ids: list[str]) -> float:
        """P(first better than second) under the principles, in both orders where the settings ask for both."""
        pair = Pair(pair_id=_hash("pair", first, second), prompt=prompt, a=first, b=second)
        judgment = await self._guarded(
            judge_pair(self.judge, self.constitution, pair, self.settings, ids, self.fingerprint)
        )
        if judgment.failure is not None or judgment.p_a is None:
            raise _JudgmentFailed(judgment.failure or Failure(kind="no_judgment", message="the judgment gave no p"))
        return judgment.p_a

    async def _reference_text(self, prompt: list[Message], given: Any) -> str:
        if given is not None and str(given).strip():
            return str(given)
        if self.reference_model is None:
            raise ConfigError(
                f"scoring reference: the prompt has no '{self.reference_column}' column value and no reference_model "
                "is set to answer it"
            )
        [answer] = await self.reference_model.generate([prompt], self.reference_params)
        return answer.text.strip()

    async def _against_reference(self, prompt: list[Message], text: str, given: Any, step: int | None) -> RewardRecord:
        ids = self._principles(prompt)
        try:
            reference = await self._reference_text(prompt, given)
        except FatalProviderError:
            raise
        except ProviderError as exc:
            key = _hash(self.fingerprint, [m.model_dump() for m in prompt], text, None)
            return self._failed(key, step, prompt, text, ids, exc)
        key = _hash(self.fingerprint, [m.model_dump() for m in prompt], text, reference)
        reused = self._reuse(key, step)
        if reused is not None:
            return reused
        if text.strip() == reference.strip():
            return self._record(key, step, prompt, text, 0.5, principle_ids=ids, comparisons=0, reference=reference)
        try:
            p = await self._p_better(prompt, text, reference, ids)
        except _JudgmentFailed as failed:
            failure = failed.failure
            return self._record(key, step, prompt, text, None, principle_ids=ids, reference=reference, failure=failure)
        return self._record(key, step, prompt, text, p, principle_ids=ids, comparisons=1, reference=reference)

    async def _grouped(self, prompts: list[list[Message]], texts: list[str], step: int | None) -> list[RewardRecord]:
        """Each completion's win rate within the completions of the same prompt in this batch."""
        groups: dict[str, list[int]] = {}
        for i, prompt in enumerate(prompts):
            groups.setdefault(_hash([m.model_dump() for m in prompt]), []).append(i)
        out: list[RewardRecord | None] = [None] * len(texts)
        scorer = self._ranked if self.scoring == "rank" else self._group
        results = await asyncio.gather(
            *(scorer(prompts[idx[0]], [texts[i] for i in idx], step) for idx in groups.values())
        )
        for idx, records in zip(groups.values(), results):
            for i, record in zip(idx, records):
                out[i] = record
        return [r for r in out if r is not None]

    async def _group(self, prompt: list[Message], texts: list[str], step: int | None) -> list[RewardRecord]:
        ids = self._principles(prompt)
        group_key = sorted(texts)
        keys = [_hash(self.fingerprint, [m.model_dump() for m in prompt], group_key, t) for t in texts]
        if len(texts) < 2:
            lone = Failure(kind="no_group", message="a group of one completion has nothing to be compared with")
            return [self._record(keys[0], step, prompt, texts[0], None, principle_ids=ids, failure=lone)]
        distinct = list(dict.fromkeys(texts))
        if self.group_strategy == "circular":
            return await self._circular(prompt, texts, distinct, keys, ids, step)
        pairs = list(itertools.combinations(distinct, 2))
        outcomes = await asyncio.gather(*(self._p_better(prompt, a, b, ids) for a, b in pairs), return_exceptions=True)
        fatal = [o for o in outcomes if isinstance(o, BaseException) and not isinstance(o, _JudgmentFailed)]
        if fatal:
            raise fatal[0]
        p: dict[tuple[str, str], float] = {}
        failed: dict[str, Failure] = {}
        for (a, b), outcome in zip(pairs, outcomes):
            if isinstance(outcome, _JudgmentFailed):
                failed.setdefault(a, outcome.failure)
                failed.setdefault(b, outcome.failure)
            elif not isinstance(outcome, BaseException):
                p[(a, b)], p[(b, a)] = outcome, 1.0 - outcome
        records = []
        for i, (key, text) in enumerate(zip(keys, texts)):
            if text in failed:
                records.append(self._record(key, step, prompt, text, None, principle_ids=ids, failure=failed[text]))
                continue
            others = [t for j, t in enumerate(texts) if j != i]
            wins = [0.5 if t == text else p[(text, t)] for t in others]  # an identical completion is a tie
            records.append(
                self._record(
                    key, step, prompt, text, sum(wins) / len(wins), principle_ids=ids, comparisons=len(distinct) - 1
                )
            )
        return records

    def _group_rng(self, distinct: list[str]) -> np.random.Generator:
        """The same draws for the same group under the same seed (a re-run asks the same calls, from the cache)."""
        return np.random.default_rng(int(_hash(self.seed, sorted(distinct))[:12], 16))

    def _fitted(
        self,
        prompt: list[Message],
        texts: list[str],
        distinct: list[str],
        keys: list[str],
        ids: list[str],
        step: int | None,
        strengths: np.ndarray,
        rests_on: list[int],
    ) -> list[RewardRecord]:
        """Each completion's expected win rate against the others of its group under fitted strengths (an identical
        completion is a tie), resting on `rests_on[d]` judgments of its distinct text d."""
        index = {text: d for d, text in enumerate(distinct)}
        records = []
        for i, (key, text) in enumerate(zip(keys, texts)):
            others = [index[t] for j, t in enumerate(texts) if j != i]
            mine = strengths[index[text]]
            wins = [0.5 if d == index[text] else 1.0 / (1.0 + math.exp(strengths[d] - mine)) for d in others]
            reward = sum(wins) / len(wins)
            records.append(
                self._record(key, step, prompt, text, reward, principle_ids=ids, comparisons=rests_on[index[text]])
            )
        return records

    def _whole_group_failed(
        self,
        prompt: list[Message],
        texts: list[str],
        keys: list[str],
        ids: list[str],
        step: int | None,
        failure: Failure,
    ) -> list[RewardRecord]:
        return [
            self._record(key, step, prompt, text, None, principle_ids=ids, failure=failure)
            for key, text in zip(keys, texts)
        ]

    async def _circular(
        self,
        prompt: list[Message],
        texts: list[str],
        distinct: list[str],
        keys: list[str],
        ids: list[str],
        step: int | None,
    ) -> list[RewardRecord]:
        """`group_strategy: circular`: each distinct completion against its neighbours in a random cycle, then a
        Bradley–Terry fit; a failed comparison is left out, and a group its decided comparisons no longer join has
        no reward (strengths on two islands are not on one scale)."""
        pairs = circular_pairs(len(distinct), self._group_rng(distinct))
        outcomes = await asyncio.gather(
            *(self._p_better(prompt, distinct[a], distinct[b], ids) for a, b in pairs), return_exceptions=True
        )
        fatal = [o for o in outcomes if isinstance(o, BaseException) and not isinstance(o, _JudgmentFailed)]
        if fatal:
            raise fatal[0]
        decided = [(a, b, float(o)) for (a, b), o in zip(pairs, outcomes) if not isinstance(o, BaseException)]
        failures = [o.failure for o in outcomes if isinstance(o, _JudgmentFailed)]
        if len(distinct) > 1 and not connected(len(distinct), [(a, b) for a, b, _ in decided]):
            failure = failures[0] if failures else Failure(kind="no_judgment", message="no comparison was decided")
            return self._whole_group_failed(prompt, texts, keys, ids, step, failure)
        rests_on = [sum(d in (a, b) for a, b, _ in decided) for d in range(len(distinct))]
        strengths = bt_scores(len(distinct), [Comparison(0, a, b, p) for a, b, p in decided])
        return self._fitted(prompt, texts, distinct, keys, ids, step, strengths, rests_on)

    async def _ranked(self, prompt: list[Message], texts: list[str], step: int | None) -> list[RewardRecord]:
        """`rank` scoring: the judge orders the group's distinct completions in `rank_orders` shuffled presentation
        orders; a Plackett–Luce fit of the orderings gives each its expected win rate. Any ordering that fails (a
        provider error, a reply that is no ordering of them all) fails the whole group: never a made-up rank."""
        ids = self._principles(prompt)
        keys = [_hash(self.fingerprint, [m.model_dump() for m in prompt], sorted(texts), t) for t in texts]
        distinct = list(dict.fromkeys(texts))
        if len(texts) < 2:
            lone = Failure(kind="no_group", message="a group of one completion has nothing to be compared with")
            return self._whole_group_failed(prompt, texts, keys, ids, step, lone)
        if len(distinct) == 1:
            return self._fitted(prompt, texts, distinct, keys, ids, step, np.zeros(1), [0])
        rng = self._group_rng(distinct)
        shown = [[int(x) for x in rng.permutation(len(distinct))] for _ in range(self.rank_orders)]
        criteria = [self.constitution.principle(p).description for p in ids]
        outcomes = await asyncio.gather(
            *(self._guarded(self._ordering(prompt, [distinct[d] for d in order], criteria)) for order in shown),
            return_exceptions=True,
        )
        for outcome in outcomes:
            if isinstance(outcome, FatalProviderError) or (
                isinstance(outcome, BaseException) and not isinstance(outcome, JudgeParseError | ProviderError)
            ):
                raise outcome
        failed = [o for o in outcomes if isinstance(o, BaseException)]
        if failed:
            return self._whole_group_failed(prompt, texts, keys, ids, step, judge_failure(failed[0]))
        orderings = [[order[n] for n in ranking] for order, ranking in zip(shown, outcomes)]  # type: ignore[union-attr]
        strengths = plackett_luce(len(distinct), orderings)
        return self._fitted(prompt, texts, distinct, keys, ids, step, strengths, [len(orderings)] * len(distinct))

    async def _ordering(self, prompt: list[Message], shown: list[str], criteria: list[str]) -> list[int]:
        """One ordering call: the indexes (into `shown`) best first."""
        text = write_ranking(render_conversation(prompt), criteria, shown)
        params = SamplingParams(temperature=0.0, max_tokens=32 + 8 * len(shown), seed=0, json_schema=RANKING_SCHEMA)
        [reply] = await self.judge.generate([[Message(role="user", content=text)]], params)
        return read_ranking(reply.text, len(shown))

    # -- bookkeeping ---------------------------------------------------------------------------------------
    def _count_usage(self, row: UsageRow) -> None:
        with self._usage_lock:
            self._usage.append(row)

    def _finish_call(self, records: list[RewardRecord], step: int | None, log_metric: Any) -> None:
        put_rewards(self.store, records)
        with self._usage_lock:
            usage, self._usage = self._usage, []
        add_usage(self.store, usage)
        failed = sum(r.reward is None for r in records)
        self.tally.rewards += len(records)
        self.tally.failed += failed
        self.tally.by_step.setdefault(step, []).extend(r.reward for r in records)
        if callable(log_metric):
            log_metric("charter/judge_failures", float(failed))
        if self._past_limit():
            raise TooManyFailures(
                f"{self.tally.failed} of {self.tally.rewards} judge rewards failed, over max_failures "
                f"{self.max_failures:g}; the reward store at {self.store.run_dir} holds each failure"
            )

    def _past_limit(self) -> bool:
        if self.max_failures >= 1:
            return self.tally.failed > self.max_failures
        return self.tally.rewards >= 20 and self.tally.failed / self.tally.rewards > self.max_failures

    def close(self) -> None:
        """Flush the call cache and stop the judge's event loop (the reward store stays readable)."""
        if self._loop is not None:
            models = {id(m): m for m in (self.judge, self.reference_model) if m is not None}.values()
            for model in models:
                self._loop.run(model.aclose())
            self._loop.loop.call_soon_threadsafe(self._loop.loop.stop)
            self._loop = None
        elif self.judge.cache is not None:
            self.judge.cache.flush()


class _JudgmentFailed(Exception):
    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.message)
        self.failure = failure


def _role(judge: str | RoleConfig) -> RoleConfig:
    return judge if isinstance(judge, RoleConfig) else RoleConfig(model=judge)


@public(max_failures=Range(ge=0), concurrency=Range(ge=1), rank_orders=Range(ge=1))
def reward_function(
    judge: str | RoleConfig = "local:smollm2-135m-instruct",
    constitution: str | Constitution = "harmless",
    scoring: Scoring = "score",
    *,
    store: str | Path = "charter-rewards",
    cache: str | Path | None = DEFAULT_CACHE,
    budget: Budget | None = None,
    prices: Mapping[str, Price] | None = None,
    max_failures: float = 0.1,
    reference_column: str = "reference",
    reference_model: str | RoleConfig | None = None,
    seed: int = 0,
    concurrency: int = 64,
    group_strategy: GroupStrategy = "all_pairs",
    rank_orders: int = 3,
    **judge_settings: Any,
) -> RewardFunction:
    """A TRL reward function that asks charter's judge, for `GRPOTrainer`, `RLOOTrainer` or online DPO.

    Args:
        judge: The judge: a model string, a role config (model, key variable, limits, options) or a `JudgeConfig`,
            whose mode and ensemble settings are then used.
        constitution: A bundled constitution's name, a YAML path or a `Constitution`.
        scoring: `score` (rubric score of each completion), `group` (win rate within its prompt's group of
            completions, both orders), `reference` (P(better than the reference answer), both orders) or `rank`
            (the judge orders the group in one call per presentation order; a Plackett–Luce fit).
        store: The run directory that keeps the reward store (made when missing).
        cache: The call cache file shared with runs; None for no cache.
        budget: Caps on cost or tokens; reaching one raises `BudgetExceeded`.
        prices: USD per million tokens by model id, for the cost and the budget.
        max_failures: Failed judgments allowed before `TooManyFailures`: a count (>= 1) or a share (< 1, checked
            from 20 rewards on).
        reference_column: The dataset column with the reference answer (`reference` scoring).
        reference_model: A model that answers prompts without a reference (`reference` scoring), greedily.
        seed: Seed of the principle draws.
        concurrency: Judge calls in flight at once.
        group_strategy: `group` scoring: `all_pairs` (every two completions) or `circular` (each against its
            neighbours in a random cycle, k pairs, with a Bradley–Terry fit).
        rank_orders: `rank` scoring: shuffled presentation orders per group, one call each.
        **judge_settings: `JudgeSettings` fields: mode, scale, rating, orders, principles_per_pair, principles, ...
            (mode defaults to `score` for `score` scoring and to `logprobs` otherwise).

    Returns:
        The reward function: call it as TRL does, `fn(prompts=..., completions=..., **columns)`; it returns one
        reward in 0..1 per completion, None where the judgment failed.

    Raises:
        ConfigError: An unknown scoring, a judge mode that does not fit it, `max_failures` negative or not finite,
            `concurrency` below 1, or a `RANK`/`WORLD_SIZE` that is no number. Called, the function raises it for a
            completion that is neither a string nor a list of `{role, content}` messages (naming its index), and for
            prompts, completions and the reference column of different lengths.
        ConstitutionError: The constitution cannot be loaded.
    """
    if scoring not in SCORINGS:
        raise ConfigError(f"scoring: expected one of {', '.join(SCORINGS)}, got {scoring!r}")
    check_settings(max_failures, concurrency)
    ranks()  # RANK and WORLD_SIZE read as numbers, the rank below the size
    role = _role(judge)
    if isinstance(role, JudgeConfig) and role.models is not None:
        raise ConfigError("judge.models: online training takes one judge model (set judge.model)")
    if isinstance(role, JudgeConfig) and not judge_settings:
        settings = role.settings()
    else:
        judge_settings.setdefault("mode", default_mode(scoring))
        settings = from_arguments(JudgeSettings, **judge_settings)
    const = load_constitution(constitution)
    call_cache = CallCache(Path(cache).expanduser()) if cache is not None else None
    meter = UsageMeter(dict(prices or {}), budget)
    model = get_model(role.backend(), cache=call_cache, meter=meter, role="judge")
    reference = None
    if reference_model is not None:
        ref_role = _role(reference_model)
        reference = get_model(ref_role.backend(), cache=call_cache, meter=meter, role="reference")
    return RewardFunction(
        model,
        const,
        settings,
        scoring,
        Path(store),
        seed=seed,
        max_failures=max_failures,
        reference_column=reference_column,
        reference_model=reference,
        concurrency=concurrency,
        group_strategy=group_strategy,
        rank_orders=rank_orders,
    )


def reward_for(config: Any, store: str | Path, **extra: Any) -> RewardFunction:
    """The reward function a `charter train grpo` config describes (judge, constitution, scoring, costs, group
    settings), as training and the reward server build it; `extra` adds `reward_function` arguments (a budget, a
    concurrency)."""
    return reward_function(
        config.judge,
        config.constitution,
        config.scoring,
        store=store,
        cache=config.cache,
        prices=config.prices,
        max_failures=config.max_failures,
        reference_model=config.reference_model,
        seed=config.seed,
        group_strategy=config.group_strategy,
        rank_orders=config.rank_orders,
        **extra,
    )
