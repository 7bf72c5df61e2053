"""What a scoring is: the batch it scores, the options it reads, the entry that names it in the table of scorings
(`online.scorings`), and the pairwise comparison several of them rest on."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from charter.checklist.aggregate import Aggregation
from charter.checklist.items import ChecklistBook
from charter.online.session import JudgeSession
from charter.providers import ManagedModel
from charter.providers.base import SamplingParams
from charter.records import Failure, Message, RewardRecord

GroupStrategy = Literal["all_pairs", "circular"]


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


ScoreBatch = Callable[[JudgeSession, ScoringOptions, Batch], Awaitable[list[RewardRecord]]]


@dataclass(frozen=True)
class ScoringEntry:
    """One scoring: its name and how it scores a batch (a record per completion, in order; a failed judgment is a
    record with reward None and its failure, never a default)."""

    name: str
    score: ScoreBatch
    reads_references: bool = False
    """Whether it reads the batch's reference column (`ScoringOptions.reference_column`)."""
    reads_checklists: bool = False
    """Whether it reads the batch's checklist column (`ScoringOptions.checklist_column`)."""
    fingerprinted: Callable[[ScoringOptions], dict[str, Any]] = lambda options: {}
    """What of the options changes its rewards, for the fingerprint (only where it differs from the default, so that
    stores made before an option existed stay valid)."""


class JudgmentFailed(Exception):
    """A pairwise judgment that failed or gave no probability; its failure is recorded on the rewards it touches."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.message)
        self.failure = failure


async def p_better(session: JudgeSession, prompt: list[Message], first: str, second: str, ids: list[str]) -> float:
    """P(first better than second) under the principles, in both orders where the settings ask for both; a failed
    judgment raises `JudgmentFailed`."""
    judgment = await session.judge_pair(prompt, first, second, ids)
    if judgment.failure is not None or judgment.p_a is None:
        raise JudgmentFailed(judgment.failure or Failure(kind="no_judgment", message="the judgment gave no p"))
    return judgment.p_a


async def comparisons(work: Sequence[Coroutine[Any, Any, float]]) -> list[float | JudgmentFailed]:
    """The outcomes of several `p_better` at once, in order: a probability or the `JudgmentFailed`; any other error
    (a fatal provider error, the budget) is raised once they have all ended."""
    outcomes = await asyncio.gather(*work, return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException) and not isinstance(outcome, JudgmentFailed):
            raise outcome
    return outcomes  # type: ignore[return-value] - only floats and JudgmentFailed are left
