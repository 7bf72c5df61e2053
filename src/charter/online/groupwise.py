"""The scorings that judge a prompt's completions together (GRPO's `num_generations` of one prompt in a batch):

- `group`: the completions compared pairwise in both orders; a completion's reward is its mean P(better) against
  the others of its group, its win rate (online AI feedback, Guo et al. 2024); with `group_strategy: circular` each
  is compared only with its neighbours in a random cycle (k pairs instead of k(k-1)/2) and its reward is its expected
  win rate under a Bradley–Terry fit of those comparisons;
- `rank`: the judge orders the group in one call (listwise, as RULER and NeMo Gym's GenRM do), in `rank_orders`
  shuffled presentation orders to cancel its position bias; a Plackett–Luce fit of the orderings gives each its
  expected win rate. A failed or unreadable ordering fails the whole group.
"""

from __future__ import annotations

import asyncio
import itertools
import math
from collections.abc import Awaitable, Callable

import numpy as np

from charter.errors import FatalProviderError, JudgeParseError, ProviderError
from charter.judge.pairwise import judge_failure
from charter.judge_prompt import RANKING_FORMAT, RANKING_SCHEMA, read_ranking, write_ranking
from charter.online.judging import (
    Batch,
    JudgmentFailed,
    ScoreBatch,
    ScoringEntry,
    ScoringOptions,
    comparisons,
    p_better,
)
from charter.online.session import JudgeSession
from charter.providers.base import SamplingParams
from charter.records import Failure, Message, RewardRecord, fingerprint
from charter.records.base import render_conversation
from charter.stats.bradley_terry import Comparison, bt_scores
from charter.stats.ranking import circular_pairs, connected, plackett_luce


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

    def fitted(self, strengths: np.ndarray, rests_on: list[int]) -> list[RewardRecord]:
        """Each completion's expected win rate against the others of its group under fitted strengths (an identical
        completion is a tie), resting on `rests_on[d]` judgments of its distinct text d."""
        index = {text: d for d, text in enumerate(self.distinct)}
        records = []
        for i, text in enumerate(self.texts):
            mine = index[text]
            others = [index[t] for j, t in enumerate(self.texts) if j != i]
            wins = [0.5 if d == mine else 1.0 / (1.0 + math.exp(strengths[d] - strengths[mine])) for d in others]
            records.append(self.record(i, sum(wins) / len(wins), comparisons=rests_on[mine]))
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
    failed: dict[str, Failure] = {}
    for (a, b), outcome in zip(pairs, outcomes):
        if isinstance(outcome, JudgmentFailed):
            failed.setdefault(a, outcome.failure)
            failed.setdefault(b, outcome.failure)
        else:
            p[(a, b)], p[(b, a)] = outcome, 1.0 - outcome
    records = []
    for i, text in enumerate(group.texts):
        if text in failed:
            records.append(group.record(i, None, failure=failed[text]))
            continue
        others = [t for j, t in enumerate(group.texts) if j != i]
        wins = [0.5 if t == text else p[(text, t)] for t in others]  # an identical completion is a tie
        records.append(group.record(i, sum(wins) / len(wins), comparisons=len(distinct) - 1))
    return records


async def _circular(session: JudgeSession, group: Group) -> list[RewardRecord]:
    """`group_strategy: circular`: each distinct completion against its neighbours in a random cycle, then a
    Bradley–Terry fit; a failed comparison is left out, and a group its decided comparisons no longer join has no
    reward (strengths on two islands are not on one scale)."""
    n = len(group.distinct)
    pairs = circular_pairs(n, group.rng())
    work = [p_better(session, group.prompt, group.distinct[a], group.distinct[b], group.ids) for a, b in pairs]
    outcomes = await comparisons(work)
    decided = [(a, b, float(o)) for (a, b), o in zip(pairs, outcomes) if not isinstance(o, JudgmentFailed)]
    failures = [o.failure for o in outcomes if isinstance(o, JudgmentFailed)]
    if n > 1 and not connected(n, [(a, b) for a, b, _ in decided]):
        return group.failed(
            failures[0] if failures else Failure(kind="no_judgment", message="no comparison was decided")
        )
    rests_on = [sum(d in (a, b) for a, b, _ in decided) for d in range(n)]
    return group.fitted(bt_scores(n, [Comparison(0, a, b, p) for a, b, p in decided]), rests_on)


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
    """One ordering call: the indexes (into `shown`) best first."""
    text = write_ranking(render_conversation(prompt), criteria, shown)
    params = SamplingParams(temperature=0.0, max_tokens=32 + 8 * len(shown), seed=0, json_schema=RANKING_SCHEMA)
    [reply] = await session.judge.generate([[Message(role="user", content=text)]], params)
    return read_ranking(reply.text, len(shown))


def _group_fingerprint(options: ScoringOptions) -> dict[str, object]:
    return {"group_strategy": options.group_strategy} if options.group_strategy != "all_pairs" else {}


GROUP = ScoringEntry("group", by_prompt(win_rates), fingerprinted=_group_fingerprint)
RANK = ScoringEntry(
    "rank", by_prompt(ranked), fingerprinted=lambda o: {"rank_orders": o.rank_orders, "ranking_format": RANKING_FORMAT}
)
