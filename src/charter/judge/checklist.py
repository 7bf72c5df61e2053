"""Judge mode `checklist` as a kind of the mode table: each response checked alone against its prompt's checklist.

The checking itself (one structured-output call a response, verifier items by code, the explicit and implicit
aggregations, P(yes) from token log-probabilities) lives with the checklists, in `charter.checklist.check`; this
kind hands it the `ChecklistCriteria` a caller gives the judge, so that no caller asks which mode it is.
"""

from __future__ import annotations

from collections.abc import Sequence

from charter.checklist.check import judge_checklist_pair, rank_by_checklist
from charter.errors import ConfigError
from charter.judge.judgment import ChecklistCriteria, JudgeOptions, Kind, Scored, VoteOutcome
from charter.providers.base import ChatModel
from charter.records import Judgment, Message, Pair, Sample


async def _judge_pair_by_checklist(
    model: ChatModel, pair: Pair, criteria: ChecklistCriteria, settings: JudgeOptions, ids: list[str], judge_fp: str
) -> Judgment:
    return await judge_checklist_pair(model, pair, criteria.checklist, settings, criteria.aggregation, ids, judge_fp)


async def _rank_samples_by_checklist(
    model: ChatModel,
    prompt: list[Message],
    samples: Sequence[Sample],
    criteria: ChecklistCriteria,
    settings: JudgeOptions,
) -> list[Scored]:
    return await rank_by_checklist(model, prompt, samples, criteria.checklist, settings, criteria.aggregation)


async def _needs_its_checklist(*_: object) -> list[VoteOutcome]:
    """A checklist kind judges a pair against its prompt's checklist (`judge_by_checklist`, which
    `charter.judge.pairwise.judge_pair` calls with the `ChecklistCriteria` it is given); a bare pair carries none."""
    raise ConfigError(
        "judge mode checklist judges a pair against its prompt's checklist: use it in a run with a `checklist:` "
        "section, or `scoring: checklist` for rewards"
    )


#: Each response checked alone against its prompt's checklist (mode `checklist`).
CHECKS_ITEMS = Kind(
    "checklist",
    _needs_its_checklist,
    subject="response",
    criteria="checklist",
    judge_by_checklist=_judge_pair_by_checklist,
    rank_by_checklist=_rank_samples_by_checklist,
)

__all__ = ["CHECKS_ITEMS"]
