"""What a scoring is, and the built-in scorings that judge completions.

A scoring is one `ScoringEntry`: its name, how it scores a batch (a record per completion, in order; a failed
judgment is a record with reward None and its failure, never a default), what it reads beside the batch and what of
its options enters the fingerprint. The table of scorings (`reward.function.TABLE`) holds one entry a scoring; every
list of scoring names, config field and server route reads the table.

- `score`: each completion's rubric score (direct RLAIF, Lee et al. 2023);
- `reference`: P(it is better than a reference answer), both orders;
- `group`: a prompt's completions compared pairwise in both orders; a completion's reward is its mean P(better)
  against the others of its group, its win rate (online AI feedback, Guo et al. 2024); with `group_strategy:
  circular` each is compared only with its neighbours in a random cycle (k pairs instead of k(k-1)/2) and its reward
  is its expected win rate under a Bradley–Terry fit of those comparisons;
- `rank`: the judge orders the group in one call (listwise, as RULER and NeMo Gym's GenRM do), in `rank_orders`
  shuffled presentation orders to cancel its position bias; a Plackett–Luce fit of the orderings gives each its
  expected win rate. A failed or unreadable ordering fails the whole group.
- `steps`: the whole conversation (the prompt's messages and the completion's, tool calls and tool results kept)
  judged step by step (`charter.judge.steps`); each record carries the dense per-step rewards and the first violating
  step with its principle and reason. The trajectory's reward is a reduction of the steps' verdicts (`REDUCTIONS`):
  `first_violation` (0 where a step violates a principle, 1 where every step was judged and none does, None where a
  step's verdict failed first), `mean` or `discounted` (None where any step's verdict failed).

Also here: the reward config sections the training and server configs share (`VerifiableReward`, `ChecklistReward`)
and the items a checklist reward adds during training (`ChecklistBook`).
"""

from __future__ import annotations

import asyncio
import itertools
import math
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field

from charter.checklist.check import Aggregation
from charter.checklist.items import ChecklistBook
from charter.errors import ConfigError, FatalProviderError, JudgeParseError, ProviderError, RunFailure
from charter.judge.modes import DEFAULT_MODE, DEFAULT_RATING_MODE, RANKING_MODE
from charter.judge.pairwise import judge_failure
from charter.judge.score import ToRate, mean_score, rates_of, score_on_unit_scale
from charter.judge.steps import STEP_FORMAT, StepJudgment, judge_steps
from charter.judge_prompt import RANKING_FORMAT
from charter.providers import ManagedModel
from charter.providers.base import SamplingParams
from charter.providers.config import RoleConfig
from charter.records import Combined, Failure, Judgment, Message, RewardRecord, fingerprint
from charter.reward.session import JudgeSession
from charter.stats.bradley_terry import Comparison, bt_scores, circular_pairs, connected, plackett_luce
from charter.yamlio import ConfigModel, TableName


class VerifiableReward(ConfigModel):
    """A verifiable reward beside the judge (RLVR beside RLAIF): 1 when the completion passes the prompt's check
    (charter.verify, with the prompt's `reference` and `verifier` columns), 0 when it fails, none for a prompt
    without a check."""

    weight: float = Field(default=1.0, ge=0)
    """Its weight in the sum of rewards (TRL's reward_weights)."""
    verifier: str = "number"
    """The check for prompts with a reference and no verifier of their own: number, exact, contains,
    regex:PATTERN, a registered name or module:function."""


class ChecklistReward(ConfigModel):
    """How `scoring: checklist` finds each prompt's checklist and turns its verdicts into a reward, and how the
    checklist evolves during training."""

    column: str = "checklist"
    """The dataset column with each prompt's checklist: a list of items (`{id, requirement, weight or category,
    gate, verifier, reference}`) or its JSON text. A prompt without one takes the constitution's criteria, or the
    writer's checklist."""
    aggregation: Literal["explicit", "implicit"] = "explicit"
    """`explicit`: the items' weights and gates; `implicit`: the judge's overall score of the response given the
    checklist, asked in the same call (the explicit score is recorded beside it)."""
    writer: RoleConfig | None = None
    """A model that writes a checklist for a prompt that has none (one cached call a prompt)."""
    refresh_every: int | None = Field(default=None, ge=1)
    """`charter train grpo|rloo`: every K steps, compare the highest- and lowest-rewarded recent rollouts and ask the
    proposer for items that catch what the high ones exploit (length padding, sycophancy, format tricks); each
    accepted item is added to every checklist as a new version (in the store, the metrics and the card)."""
    proposer: RoleConfig | None = None
    """`refresh_every`: the model that proposes the new items (default: the judge)."""
    refresh_window: int = Field(default=4, ge=1)
    """`refresh_every`: the rollouts of the last this many steps are compared."""
    refresh_pairs: int = Field(default=2, ge=1)
    """`refresh_every`: the highest- and lowest-rewarded rollouts shown to the proposer, this many of each."""
    max_new_items: int = Field(default=3, ge=1)
    """`refresh_every`: the most items one refresh accepts."""


GroupStrategy = Literal["all_pairs", "circular"]


@dataclass(frozen=True)
class RubricDropout:
    """`checklist` scoring in training: each step, each prompt's checklist is judged on a random subset of its items
    (rubric dropout), drawn from the seed, the step and the prompt, so that every completion of one prompt in one
    step is checked against the same items and a re-run draws the same subsets."""

    drop: float
    """The items left out of each checklist: a share (below 1, rounded to the nearest count) or a count (1 or more);
    at least one item is always kept."""
    drawn: dict[int | None, dict[str, list[str]]] = field(default_factory=dict)
    """The items left out, by step, then by prompt (its key): what training records per step."""

    def dropped_count(self, items: int) -> int:
        """How many of a checklist's `items` are left out."""
        count = math.floor(self.drop * items + 0.5) if self.drop < 1 else int(self.drop)
        return max(0, min(items - 1, count))


@dataclass(frozen=True)
class Batch:
    """The completions to score, in order, with what each was asked (TRL's batch as charter reads it)."""

    prompts: list[list[Message]]
    """Each completion's prompt, as messages."""
    texts: list[str]
    """Each completion's text."""
    step: int | None = None
    """The training step the rewards are for (None outside training)."""
    references: Sequence[str | None] | None = None
    """Each completion's reference answer, where the scoring reads one (None: the batch has no such column)."""
    checklists: Sequence[Any] | None = None
    """Each completion's checklist column value (items or their JSON text; None for a row without one), where the
    scoring reads one (None: the batch has no such column)."""
    conversations: Sequence[list[Any]] | None = None
    """Each completion's whole conversation as given: its prompt's messages, then the completion's (tool calls and
    tool results kept), as dicts in OpenAI's format; None where the caller gave only texts."""


@dataclass(frozen=True)
class Reduction:
    """How the `steps` scoring makes one trajectory's reward of its steps' verdicts."""

    name: str
    reduce: Callable[[StepJudgment, float], float | None]
    """The reward of a step judgment, given the discount `gamma`; None where the verdicts leave it unknown."""
    describe: str
    """What the reward is, in the words the model card and the docs use."""


def _first_violation(judged: StepJudgment, gamma: float) -> float | None:
    return judged.reward()


def _mean(judged: StepJudgment, gamma: float) -> float | None:
    rewards = judged.step_rewards()
    if any(r is None for r in rewards):
        return None
    return sum(r or 0.0 for r in rewards) / len(rewards)


def _discounted(judged: StepJudgment, gamma: float) -> float | None:
    rewards = judged.step_rewards()
    if any(r is None for r in rewards):
        return None
    weights = [gamma**t for t in range(len(rewards))]
    return sum(w * (r or 0.0) for w, r in zip(weights, rewards)) / sum(weights)


FIRST_VIOLATION = Reduction(
    "first_violation", _first_violation, "0 where a step violates a principle, 1 where none does"
)
DISCOUNTED = Reduction(
    "discounted",
    _discounted,
    "the discounted return of the step rewards from the first step, sum(gamma^t r_t) / sum(gamma^t)",
)
#: The reductions of the `steps` scoring, by name; the first is the default.
REDUCTIONS: dict[str, Reduction] = {
    r.name: r
    for r in (FIRST_VIOLATION, Reduction("mean", _mean, "the share of steps that violate no principle"), DISCOUNTED)
}


#: A step reduction's name, as configs take it: any name in `REDUCTIONS`, which its schema lists.
StepReduction = Annotated[str, TableName(REDUCTIONS.keys)]


class StepScoringSettings(ConfigModel):
    """The `steps` scoring's settings, in every config that rewards with it (training, the reward server)."""

    step_reduction: StepReduction = FIRST_VIOLATION.name
    """`steps` scoring: how the steps' verdicts make a trajectory's one reward: `first_violation` (0 where a step
    violates a principle, else 1), `mean` (the share of steps that violate none) or `discounted` (their discounted
    return from the first step, `step_gamma`); the per-step rewards are stored whichever it is."""
    step_gamma: float = Field(default=0.99, ge=0, le=1)
    """`steps` scoring with `step_reduction: discounted`: the discount of each later step's reward."""


def reduction_of(name: str) -> Reduction:
    """The reduction named `name`; an unknown name is a `ConfigError` listing them."""
    found = REDUCTIONS.get(name)
    if found is None:
        raise ConfigError(f"reduction: expected one of {', '.join(REDUCTIONS)}, got {name!r}")
    return found


#: A reward's checklist writer's sampling where its role sets none: greedy, with room for its items and references.
WRITER_PARAMS = SamplingParams(temperature=0.0, max_tokens=1024, seed=0)


@dataclass(frozen=True)
class ScoringOptions:
    """What a scoring reads beside the judge session (each scoring reads its own)."""

    reference_column: str = "reference"
    """`reference`: the dataset column with the reference answer."""
    reference_model: ManagedModel | None = None
    """`reference`: the model that answers a prompt without a reference (greedily)."""
    reference_params: SamplingParams = field(
        default_factory=lambda: SamplingParams(temperature=0.0, max_tokens=256, seed=0)
    )
    """`reference`: the reference model's sampling."""
    group_strategy: GroupStrategy = "all_pairs"
    """`group`: every two completions, or each against its neighbours in a random cycle."""
    rank_orders: int = 3
    """`rank`: shuffled presentation orders per group, one call each."""
    checklist_column: str = "checklist"
    """`checklist`: the dataset column with each prompt's checklist."""
    aggregation: Aggregation = "explicit"
    """`checklist`: `explicit` (the items' weights and gates) or `implicit` (the judge's overall score given the
    checklist)."""
    checklist_writer: ManagedModel | None = None
    """`checklist`: the model that writes a checklist for a prompt with none (one cached call a prompt)."""
    checklist_writer_params: SamplingParams = field(default_factory=lambda: WRITER_PARAMS)
    """`checklist`: the writer's sampling (its role's `params` where it sets them, else greedy with 1,024 tokens)."""
    book: ChecklistBook = field(default_factory=ChecklistBook)
    """`checklist`: the items added during training (`refresh_every`) and the checklist version they make."""
    dropout: RubricDropout | None = None
    """`checklist`: rubric dropout, a random subset of each checklist's items judged each step (None: every item)."""
    step_reduction: str = FIRST_VIOLATION.name
    """`steps`: how the steps' verdicts make the trajectory's reward, a name of `REDUCTIONS`."""
    step_gamma: float = 0.99
    """`steps` with the `discounted` reduction: the discount of each later step's reward."""


ScoreBatch = Callable[[JudgeSession, ScoringOptions, Batch], Awaitable[list[RewardRecord]]]


@dataclass(frozen=True)
class ScoringEntry:
    """One scoring: its name and how it scores a batch (a record per completion, in order; a failed judgment is a
    record with reward None and its failure, never a default)."""

    name: str
    """The name configs, requests and stored rewards give it."""
    score: ScoreBatch
    """How it scores a batch."""
    rates: bool | None = False
    """How it asks the judge: True, each completion rated alone (the judge's mode must be a rating mode); False,
    completions compared (a pairwise mode); None, a structured call of its own, whatever the mode."""
    grouped: bool = False
    """Whether it judges a prompt's completions together (a reward rests on the whole group): adapters and the
    server gather a group's completions before it is scored."""
    reads_references: bool = False
    """Whether it reads the batch's reference column (`ScoringOptions.reference_column`)."""
    reads_checklists: bool = False
    """Whether it reads the batch's checklist column (`ScoringOptions.checklist_column`)."""
    describe: Callable[[ScoringOptions], str] = lambda options: ""
    """What the reward is, in a sentence for the model card, given the options."""
    fingerprinted: Callable[[ScoringOptions], dict[str, Any]] = lambda options: {}
    """What of the options changes its rewards, for the fingerprint (only where it differs from the default, so that
    stores made before an option existed stay valid)."""

    @property
    def default_mode(self) -> str:
        """The judge mode it takes when a config names none: rating where it rates or asks its own call,
        log-probability comparisons where it compares."""
        return DEFAULT_MODE if self.rates is False else DEFAULT_RATING_MODE


class JudgmentFailed(RunFailure):
    """A judgment that failed or gave no reward. A scoring records its failure on the rewards it touches; an adapter
    raises it where a framework can drop the rollout but cannot take `None` for a reward. `reason` says why."""

    def __init__(self, failure: Failure | str) -> None:
        self.failure = failure if isinstance(failure, Failure) else Failure(kind="no_reward", message=failure)
        self.reason = f"{failure.kind}: {failure.message}" if isinstance(failure, Failure) else failure
        super().__init__(f"charter's judgment failed ({self.reason}): no reward, never a made-up one")


async def compared(session: JudgeSession, prompt: list[Message], first: str, second: str, ids: list[str]) -> Judgment:
    """The judgment of first against second under the principles, in both orders where the settings ask for both; a
    failed judgment raises `JudgmentFailed`."""
    judgment = await session.judge_pair(prompt, first, second, ids)
    if judgment.failure is not None or judgment.p_a is None:
        raise JudgmentFailed(judgment.failure or Failure(kind="no_judgment", message="the judgment gave no p"))
    return judgment


async def p_better(
    session: JudgeSession, prompt: list[Message], first: str, second: str, ids: list[str]
) -> tuple[float, Combined | None]:
    """P(first better than second) under the principles (`compared`), with how its votes were combined (None for
    the weighted mean); a failed judgment raises `JudgmentFailed`."""
    judgment = await compared(session, prompt, first, second, ids)
    assert judgment.p_a is not None  # compared raises for a judgment without one
    return judgment.p_a, judgment.combined


async def comparisons(
    work: Sequence[Coroutine[Any, Any, tuple[float, Combined | None]]],
) -> list[tuple[float, Combined | None] | JudgmentFailed]:
    """The outcomes of several `p_better` at once, in order: a probability with its combination, or the
    `JudgmentFailed`; any other error (a fatal provider error, the budget) is raised once they have all ended."""
    outcomes = await asyncio.gather(*work, return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException) and not isinstance(outcome, JudgmentFailed):
            raise outcome
    return outcomes  # type: ignore[return-value] - only outcomes and JudgmentFailed are left


def settled(rests_on: Sequence[Combined | None]) -> dict[str, Any]:
    """The `settlements` field of a group reward: how each comparison it rests on was combined; nothing under the
    weighted mean."""
    made = [c for c in rests_on if c is not None]
    return {"settlements": made} if made else {}


async def score_each(session: JudgeSession, options: ScoringOptions, batch: Batch) -> list[RewardRecord]:
    """`score`: each completion's rubric score, scaled to 0..1 and averaged over the principles drawn for its
    prompt (the completions of one prompt are rated alike)."""
    return list(await asyncio.gather(*(_scored(session, m, t, batch.step) for m, t in zip(batch.prompts, batch.texts))))


async def _scored(session: JudgeSession, prompt: list[Message], text: str, step: int | None) -> RewardRecord:
    ids = session.principles(prompt)
    key = session.key([m.model_dump() for m in prompt], text)
    reused = session.stored(key, step)
    if reused is not None:
        return reused
    rate = rates_of(session.settings)
    judge = rate(session.judge, session.constitution, ToRate(prompt, text, ids), session.settings)
    try:
        scores = await session.limited(judge)
    except FatalProviderError:
        raise
    except (JudgeParseError, ProviderError) as exc:
        return session.failed(key, step, prompt, text, ids, exc)
    scale = session.settings.scale
    return session.record(
        key,
        step,
        prompt,
        text,
        score_on_unit_scale(mean_score(scores), scale),
        principle_ids=ids,
        scores={s.principle_id: s.score for s in scores},
        scale=scale,
        cached=all(s.cached for s in scores),
    )


async def against_reference(session: JudgeSession, options: ScoringOptions, batch: Batch) -> list[RewardRecord]:
    """`reference`: P(each completion is better than its prompt's reference answer), both orders: the batch's
    reference column, or the reference model's answer (asked once per prompt, then from the call cache)."""
    given = batch.references or [None] * len(batch.texts)
    work = (_against(session, options, m, t, r, batch.step) for m, t, r in zip(batch.prompts, batch.texts, given))
    return list(await asyncio.gather(*work))


async def _against(
    session: JudgeSession, options: ScoringOptions, prompt: list[Message], text: str, given: Any, step: int | None
) -> RewardRecord:
    ids = session.principles(prompt)
    asked = [m.model_dump() for m in prompt]
    try:
        reference = await _reference_text(options, prompt, given)
    except FatalProviderError:
        raise
    except ProviderError as exc:
        return session.failed(session.key(asked, text, None), step, prompt, text, ids, exc)
    key = session.key(asked, text, reference)
    reused = session.stored(key, step)
    if reused is not None:
        return reused
    if text.strip() == reference.strip():
        return session.record(key, step, prompt, text, 0.5, principle_ids=ids, comparisons=0, reference=reference)
    try:
        judgment = await compared(session, prompt, text, reference, ids)
    except JudgmentFailed as failed:
        failure = failed.failure
        return session.record(key, step, prompt, text, None, principle_ids=ids, reference=reference, failure=failure)
    p, combined = judgment.p_a, judgment.combined
    return session.record(
        key, step, prompt, text, p, principle_ids=ids, comparisons=1, reference=reference, combined=combined
    )


async def _reference_text(options: ScoringOptions, prompt: list[Message], given: Any) -> str:
    if given is not None and str(given).strip():
        return str(given)
    if options.reference_model is None:
        raise ConfigError(
            f"scoring reference: the prompt has no '{options.reference_column}' column value and no reference_model "
            "is set to answer it"
        )
    [answer] = await options.reference_model.generate([prompt], options.reference_params)
    return answer.text.strip()


SCORE = ScoringEntry(
    "score",
    score_each,
    rates=True,
    describe=lambda o: (
        "the rubric score of each completion (judge mode score), normalised to 0..1, mean over the principles"
    ),
)
REFERENCE = ScoringEntry(
    "reference",
    against_reference,
    reads_references=True,
    describe=lambda o: "P(the completion is better than a reference answer), judged in both orders",
)


class Group:
    """One prompt's completions in a batch, with the keys of their rewards (each resting on the whole group)."""

    def __init__(self, session: JudgeSession, prompt: list[Message], texts: list[str], step: int | None) -> None:
        self.session, self.prompt, self.texts, self.step = session, prompt, texts, step
        self.ids = session.principles(prompt)
        self.keys = [session.key([m.model_dump() for m in prompt], sorted(texts), t) for t in texts]
        self.distinct = list(dict.fromkeys(texts))

    def rng(self) -> np.random.Generator:
        """The same draws for the same group under the same seed (a re-run asks the same calls, from the cache)."""
        return np.random.default_rng(int(fingerprint([self.session.seed, sorted(self.distinct)])[:12], 16))

    def failed(self, failure: Failure) -> list[RewardRecord]:
        """Every completion of the group without a reward, for `failure`."""
        return [self.record(i, None, failure=failure) for i in range(len(self.texts))]

    def fitted(
        self, strengths: np.ndarray, rests_on: list[int], how: Sequence[dict[str, Any]] | None = None
    ) -> list[RewardRecord]:
        """Each completion's expected win rate against the others of its group under fitted strengths (an identical
        completion is a tie), resting on `rests_on[d]` judgments of its distinct text d (combined as `how[d]`)."""
        index = {text: d for d, text in enumerate(self.distinct)}
        records = []
        for i, text in enumerate(self.texts):
            mine = index[text]
            others = [index[t] for j, t in enumerate(self.texts) if j != i]
            wins = [0.5 if d == mine else 1.0 / (1.0 + math.exp(strengths[d] - strengths[mine])) for d in others]
            settlements = how[mine] if how else {}
            records.append(self.record(i, sum(wins) / len(wins), comparisons=rests_on[mine], **settlements))
        return records

    def record(self, i: int, reward: float | None, **fields: object) -> RewardRecord:
        """The record of the group's completion i."""
        return self.session.record(
            self.keys[i], self.step, self.prompt, self.texts[i], reward, principle_ids=self.ids, **fields
        )


GroupScore = Callable[[JudgeSession, ScoringOptions, Group], Awaitable[list[RewardRecord]]]


def by_prompt(score: GroupScore) -> ScoreBatch:
    """A batch scoring that scores each prompt's completions in this batch together with `score`, all at once."""

    async def scored(session: JudgeSession, options: ScoringOptions, batch: Batch) -> list[RewardRecord]:
        groups: dict[str, list[int]] = {}
        for i, prompt in enumerate(batch.prompts):
            groups.setdefault(fingerprint([[m.model_dump() for m in prompt]]), []).append(i)
        made = (
            Group(session, batch.prompts[idx[0]], [batch.texts[i] for i in idx], batch.step) for idx in groups.values()
        )
        results = await asyncio.gather(*(score(session, options, group) for group in made))
        out: list[RewardRecord | None] = [None] * len(batch.texts)
        for idx, records in zip(groups.values(), results):
            for i, record in zip(idx, records):
                out[i] = record
        return [r for r in out if r is not None]

    return scored


def _lone(group: Group) -> list[RewardRecord] | None:
    """The records of a group of one completion (nothing to compare it with), or None for a real group."""
    if len(group.texts) >= 2:
        return None
    return group.failed(Failure(kind="no_group", message="a group of one completion has nothing to be compared with"))


async def win_rates(session: JudgeSession, options: ScoringOptions, group: Group) -> list[RewardRecord]:
    """`group`: each completion's win rate within its group (all pairs, or `circular`)."""
    lone = _lone(group)
    if lone is not None:
        return lone
    if options.group_strategy == "circular":
        return await _circular(session, group)
    distinct = group.distinct
    pairs = list(itertools.combinations(distinct, 2))
    outcomes = await comparisons([p_better(session, group.prompt, a, b, group.ids) for a, b in pairs])
    p: dict[tuple[str, str], float] = {}
    how: dict[str, list[Combined | None]] = {text: [] for text in distinct}
    failed: dict[str, Failure] = {}
    for (a, b), outcome in zip(pairs, outcomes):
        if isinstance(outcome, JudgmentFailed):
            failed.setdefault(a, outcome.failure)
            failed.setdefault(b, outcome.failure)
        else:
            (p[(a, b)], combined), p[(b, a)] = outcome, 1.0 - outcome[0]
            how[a].append(combined)
            how[b].append(combined)
    records = []
    for i, text in enumerate(group.texts):
        if text in failed:
            records.append(group.record(i, None, failure=failed[text]))
            continue
        others = [t for j, t in enumerate(group.texts) if j != i]
        wins = [0.5 if t == text else p[(text, t)] for t in others]  # an identical completion is a tie
        records.append(group.record(i, sum(wins) / len(wins), comparisons=len(distinct) - 1, **settled(how[text])))
    return records


async def _circular(session: JudgeSession, group: Group) -> list[RewardRecord]:
    """`group_strategy: circular`: each distinct completion against its neighbours in a random cycle, then a
    Bradley–Terry fit; a failed comparison is left out, and a group its decided comparisons no longer join has no
    reward (strengths on two islands are not on one scale)."""
    n = len(group.distinct)
    pairs = circular_pairs(n, group.rng())
    work = [p_better(session, group.prompt, group.distinct[a], group.distinct[b], group.ids) for a, b in pairs]
    outcomes = await comparisons(work)
    decided = [(a, b, o) for (a, b), o in zip(pairs, outcomes) if not isinstance(o, JudgmentFailed)]
    failures = [o.failure for o in outcomes if isinstance(o, JudgmentFailed)]
    if n > 1 and not connected(n, [(a, b) for a, b, _ in decided]):
        return group.failed(
            failures[0] if failures else Failure(kind="no_judgment", message="no comparison was decided")
        )
    rests_on = [sum(d in (a, b) for a, b, _ in decided) for d in range(n)]
    how = [settled([o[1] for a, b, o in decided if d in (a, b)]) for d in range(n)]
    return group.fitted(bt_scores(n, [Comparison(0, a, b, o[0]) for a, b, o in decided]), rests_on, how)


async def ranked(session: JudgeSession, options: ScoringOptions, group: Group) -> list[RewardRecord]:
    """`rank`: the judge orders the group's distinct completions in `rank_orders` shuffled presentation orders; a
    Plackett–Luce fit of the orderings gives each its expected win rate. Any ordering that fails (a provider error,
    a reply that is no ordering of them all) fails the whole group: never a made-up rank."""
    lone = _lone(group)
    if lone is not None:
        return lone
    distinct = group.distinct
    if len(distinct) == 1:
        return group.fitted(np.zeros(1), [0])
    rng = group.rng()
    shown = [[int(x) for x in rng.permutation(len(distinct))] for _ in range(options.rank_orders)]
    criteria = [session.constitution.principle(p).description for p in group.ids]
    outcomes = await asyncio.gather(
        *(session.limited(_ordering(session, group.prompt, [distinct[d] for d in order], criteria)) for order in shown),
        return_exceptions=True,
    )
    for outcome in outcomes:
        if isinstance(outcome, FatalProviderError) or (
            isinstance(outcome, BaseException) and not isinstance(outcome, JudgeParseError | ProviderError)
        ):
            raise outcome
    failed = [o for o in outcomes if isinstance(o, BaseException)]
    if failed:
        return group.failed(judge_failure(failed[0]))
    orderings = [[order[n] for n in ranking] for order, ranking in zip(shown, outcomes)]  # type: ignore[union-attr]
    return group.fitted(plackett_luce(len(distinct), orderings), [len(orderings)] * len(distinct))


async def _ordering(session: JudgeSession, prompt: list[Message], shown: list[str], criteria: list[str]) -> list[int]:
    """One ordering call: the indexes (into `shown`) best first, as the table's ranking mode asks and reads it."""
    return await RANKING_MODE.order(session.judge, prompt, shown, criteria)


def _group_fingerprint(options: ScoringOptions) -> dict[str, object]:
    return {"group_strategy": options.group_strategy} if options.group_strategy != "all_pairs" else {}


def _group_described(options: ScoringOptions) -> str:
    if options.group_strategy == "circular":
        return (
            "each completion's expected win rate in its group, from a Bradley-Terry fit of comparisons with its two "
            "neighbours in a random cycle, judged in both orders"
        )
    return "each completion's win rate among the completions of its prompt, judged pairwise in both orders"


GROUP = ScoringEntry(
    "group", by_prompt(win_rates), grouped=True, describe=_group_described, fingerprinted=_group_fingerprint
)
RANK = ScoringEntry(
    "rank",
    by_prompt(ranked),
    grouped=True,
    describe=lambda o: (
        "each completion's expected win rate in its group, from a Plackett-Luce fit of the judge's "
        f"orderings of the whole group (listwise, in shuffled presentation orders), {o.rank_orders} order(s) per group"
    ),
    fingerprinted=lambda o: {"rank_orders": o.rank_orders, "ranking_format": RANKING_FORMAT},
)


async def judge_each_step(session: JudgeSession, options: ScoringOptions, batch: Batch) -> list[RewardRecord]:
    """`steps`: each completion's whole conversation judged step by step against the constitution's principles (the
    judge's fixed `principles` where set); the reward is the options' reduction of the steps' verdicts, None (with
    the first failed step's failure) where the failed steps leave it unknown."""
    conversations = batch.conversations or [
        [*(m.model_dump() for m in prompt), {"role": "assistant", "content": text}]
        for prompt, text in zip(batch.prompts, batch.texts)
    ]
    work = (
        _stepped(session, options, prompt, text, conversation, batch.step)
        for prompt, text, conversation in zip(batch.prompts, batch.texts, conversations)
    )
    return list(await asyncio.gather(*work))


async def _stepped(
    session: JudgeSession,
    options: ScoringOptions,
    prompt: list[Message],
    text: str,
    conversation: list[Any],
    step: int | None,
) -> RewardRecord:
    ids = list(session.settings.principles or session.constitution.principle_ids)
    key = session.key(conversation)
    reused = session.stored(key, step)
    if reused is not None:
        return reused
    judged = await session.limited(
        judge_steps(session.judge, session.constitution, conversation, session.settings, ids)
    )
    fields: dict[str, Any] = {
        "principle_ids": ids,
        "steps": judged.step_rewards(),
        "first_violation": judged.first_violation,
        "violation": judged.principle_id,
        "violation_reason": judged.reason,
        "cached": all(v.cached for v in judged.steps),
    }
    reward = reduction_of(options.step_reduction).reduce(judged, options.step_gamma)
    if reward is None:
        fields["failure"] = next(v.failure for v in judged.steps if v.failure is not None)
    return session.record(key, step, prompt, text, reward, **fields)


def _steps_described(options: ScoringOptions) -> str:
    reduced = reduction_of(options.step_reduction).describe
    if options.step_reduction == DISCOUNTED.name:
        reduced += f" with gamma {options.step_gamma:g}"
    return (
        f"the whole conversation judged step by step: {reduced} (the dense per-step rewards and the first violating "
        "step are stored with it)"
    )


def _steps_fingerprint(options: ScoringOptions) -> dict[str, Any]:
    """The step prompt's format, and the reduction and its discount only where they are not the default (a store made
    before there were reductions stays valid)."""
    found: dict[str, Any] = {"step_format": STEP_FORMAT}
    if options.step_reduction != FIRST_VIOLATION.name:
        found["reduction"] = options.step_reduction
    if options.step_reduction == DISCOUNTED.name:
        found["gamma"] = options.step_gamma
    return found


STEPS = ScoringEntry("steps", judge_each_step, rates=None, describe=_steps_described, fingerprinted=_steps_fingerprint)
