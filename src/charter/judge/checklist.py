"""Judge mode `checklist`: one structured-output call a response, answering every judged item of the prompt's checklist
with a short reason before its verdict (yes, no or n/a); items that name a verifier are checked by code
(`charter.verify`), never by the judge.

A reply whose items cannot all be read is asked again with a new seed (the verdicts read so far are kept); an item
still unread is a recorded failure of that item (left out of the score, the share left out recorded). Two
aggregations turn a pair's two sides into a preference, the choice recorded in the judgment and the judge's
fingerprint:

- `explicit`: each response's weighted, gated score (`charter.checklist.score_checklist`), and the preference of
  `charter.checklist.preference` (0.5 + half the score gap; the expected scores where every item has P(yes));
- `implicit`: the judge's overall score 1..10 given the checklist, asked in the same call, compared as mode `score`
  compares two ratings.

Where the judge's provider gives token log-probabilities (`ChatModel.gives_token_logprobs`), the call asks for them and
each item answered yes or no gets P(yes) from its verdict token's alternatives (`charter.checklist.probability`); the
explicit preference then compares the expected scores where every counted item of both sides has one. Where the
provider gives none, the verdicts stand and each says why it has no P(yes).

A response without a score (every applicable item failed, or no overall score) makes the pair's judgment failed: the
pair is masked, never scored 0. Each principle the items spell out gets a vote from its own items' scores (the
checklist's preference where its items decide nothing), so per-principle tables read as in the other modes.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence
from dataclasses import dataclass

from charter.checklist import Checklist, preference, score_checklist, verifier_verdicts
from charter.checklist.config import Aggregation
from charter.checklist.probability import logprobs_asked, with_probabilities
from charter.checklist.prompt import (
    CHECKLIST_FORMAT,
    checklist_request,
    checklist_schema,
    read_checklist_reply,
    read_overall,
)
from charter.errors import ConfigError, ProviderError
from charter.judge.judgment import ChecklistCriteria, JudgeOptions, Kind, Scored, VoteOutcome
from charter.judge.score import dooms_run, p_first_from_scores
from charter.providers.base import ChatModel
from charter.records import (
    ChecklistJudgment,
    ChecklistSide,
    Failure,
    ItemVerdict,
    Judgment,
    Message,
    Pair,
    Sample,
    Vote,
)

#: The top of the implicit aggregation's overall score.
OVERALL_SCALE = 10


def checklist_fingerprint_fields(aggregation: Aggregation, checklists: str | None) -> dict[str, object]:
    """What a checklist judgment's fingerprint adds to the judge's: the aggregation, the checklist prompt's format
    and the fingerprint of the checklists' settings."""
    return {"aggregation": aggregation, "checklist_format": CHECKLIST_FORMAT, "checklists": checklists}


@dataclass(frozen=True)
class Checked:
    """One response checked against a checklist, with what its call cost."""

    side: ChecklistSide
    prompt_tokens: int
    completion_tokens: int


async def check_response(
    model: ChatModel,
    prompt: list[Message],
    response: str,
    checklist: Checklist,
    settings: JudgeOptions,
    aggregation: Aggregation,
) -> Checked:
    """Check one response: verifier items by code, the others in one call (asked again while an item or the
    overall score is unread). Raises ProviderError for a call that failed for good."""
    implicit = aggregation == "implicit"
    verdicts: dict[str, ItemVerdict] = dict(verifier_verdicts(checklist, response, last_user(prompt)))
    ids = [item.id for item in checklist.judged]
    overall: int | None = None
    prompt_tokens = completion_tokens = 0
    if ids or implicit:
        request = checklist_request(prompt, response, checklist, overall=implicit)
        read: dict[str, ItemVerdict] = {}
        for attempt in range(settings.max_reasks + 1):
            params = settings.attempt(attempt).model_copy(
                update={"json_schema": checklist_schema(ids, implicit), **logprobs_asked(model)}
            )
            [completion] = await model.generate([request], params)
            prompt_tokens += completion.prompt_tokens
            completion_tokens += completion.completion_tokens
            replied = read_checklist_reply(completion.text, ids)
            for item_id, verdict in with_probabilities(replied, completion.text, completion.token_logprobs).items():
                if read.get(item_id) is None or read[item_id].verdict == "failed":
                    read[item_id] = verdict
            overall = overall if overall is not None else read_overall(completion.text, ids)
            if all(v.verdict != "failed" for v in read.values()) and (overall is not None or not implicit):
                break
        verdicts.update(read)
    ordered = [verdicts[item.id] for item in checklist.items]
    side = ChecklistSide(verdicts=ordered, score=score_checklist(checklist, ordered), overall=overall)
    return Checked(side, prompt_tokens, completion_tokens)


def last_user(prompt: list[Message]) -> str:
    """The conversation's last user turn (what a verifier checks a response against)."""
    return next((m.content for m in reversed(prompt) if m.role == "user"), "")


def side_score(side: ChecklistSide, aggregation: Aggregation) -> float | None:
    """A response's score under the aggregation: the explicit 0..1 score, or the overall score 1..10."""
    return side.score.score if aggregation == "explicit" else side.overall


def _p_a(a: ChecklistSide, b: ChecklistSide, aggregation: Aggregation) -> tuple[float | None, bool]:
    """P(a better) and whether the items' probabilities gave it; None when either side has no score."""
    if aggregation == "implicit":
        if a.overall is None or b.overall is None:
            return None, False
        return p_first_from_scores(a.overall, b.overall, OVERALL_SCALE), False
    found = preference(a.score, b.score)
    return found.p_a, found.from_probabilities


def _votes(checklist: Checklist, a: ChecklistSide, b: ChecklistSide, p_a: float, fallback: list[str]) -> list[Vote]:
    """A vote for each principle the items spell out, from its own items' explicit scores (the checklist's P(a)
    where they decide nothing); a checklist whose items name no principle votes under the pair's principles."""
    principles = list(dict.fromkeys(i.principle_id for i in checklist.items if i.principle_id is not None))
    votes = []
    for pid in principles:
        items = [item for item in checklist.items if item.principle_id == pid]
        sub = Checklist(items=items, source=checklist.source, version=checklist.version)
        score_a = score_checklist(sub, [v for v in a.verdicts if v.item_id in {i.id for i in items}])
        score_b = score_checklist(sub, [v for v in b.verdicts if v.item_id in {i.id for i in items}])
        found = preference(score_a, score_b).p_a
        p = p_a if found is None else found
        votes.append(Vote(principle_id=pid, p_a=p, p_a_ab=p, score_a=score_a.score, score_b=score_b.score))
    return votes or [Vote(principle_id=pid, p_a=p_a, p_a_ab=p_a) for pid in fallback]


async def judge_checklist_pair(
    model: ChatModel,
    pair: Pair,
    checklist: Checklist,
    settings: JudgeOptions,
    aggregation: Aggregation,
    principle_ids: list[str],
    judge_fp: str,
) -> Judgment:
    """Judge one pair by its prompt's checklist: each response checked in its own call; the preference by the
    aggregation. A call that failed for good, or a response without a score, is a failed judgment (recorded, the
    pair masked); an error that dooms the run is raised once both calls ran to their end."""
    outcomes = await asyncio.gather(
        check_response(model, pair.prompt, pair.a, checklist, settings, aggregation),
        check_response(model, pair.prompt, pair.b, checklist, settings, aggregation),
        return_exceptions=True,
    )
    judged = functools.partial(
        Judgment,
        pair_id=pair.pair_id,
        fingerprint=judge_fp,
        mode=settings.mode_entry.name,
        orders="one",
        judge_model=model.model_id,
    )
    errors = [o for o in outcomes if isinstance(o, BaseException)]
    if errors:
        if any(dooms_run(e) for e in errors):
            raise next(e for e in errors if dooms_run(e))
        error = errors[0]
        assert isinstance(error, ProviderError)
        failure = Failure(kind=error.kind, message=str(error), raw=error.raw, attempts=error.attempts)
        return judged(principle_ids=principle_ids, status="failed", failure=failure)
    checked_a, checked_b = (o for o in outcomes if isinstance(o, Checked))
    a, b = checked_a.side, checked_b.side
    p_a, soft = _p_a(a, b, aggregation)
    record = ChecklistJudgment(
        checklist_fingerprint=checklist.fingerprint,
        checklist_version=checklist.version,
        source=checklist.source,
        aggregation=aggregation,
        a=a,
        b=b,
        from_probabilities=soft,
    )
    judged = functools.partial(
        judged,
        checklist=record,
        prompt_tokens=checked_a.prompt_tokens + checked_b.prompt_tokens,
        completion_tokens=checked_a.completion_tokens + checked_b.completion_tokens,
    )
    if p_a is None:
        unscored = [name for name, side in (("a", a), ("b", b)) if side_score(side, aggregation) is None]
        failure = Failure(kind="checklist_failed", message=_unscored(unscored, aggregation), attempts=1)
        return judged(principle_ids=principle_ids, status="failed", failure=failure)
    votes = _votes(checklist, a, b, p_a, principle_ids)
    return judged(principle_ids=[v.principle_id for v in votes], status="ok", p_a=p_a, p_a_ab=p_a, principles=votes)


def _unscored(sides: Sequence[str], aggregation: Aggregation) -> str:
    what = "no overall score in the judge's reply" if aggregation == "implicit" else "every applicable item failed"
    return f"response {' and '.join(sides)}: {what}; the pair is masked"


async def rank_by_checklist(
    model: ChatModel,
    prompt: list[Message],
    samples: Sequence[Sample],
    checklist: Checklist,
    settings: JudgeOptions,
    aggregation: Aggregation,
) -> list[tuple[Sample, float]]:
    """Each sample with a score under the aggregation, best first (ties in sample order), one call a distinct text
    (RLCF's best-against-worst selection); samples without a score are left out. Raises the first failure of a call
    once every call has run to its end."""
    texts = list(dict.fromkeys(s.text for s in samples))
    checked = await asyncio.gather(
        *(check_response(model, prompt, text, checklist, settings, aggregation) for text in texts),
        return_exceptions=True,
    )
    errors = [c for c in checked if isinstance(c, BaseException)]
    if errors:
        raise errors[0]
    scores = {text: side_score(c.side, aggregation) for text, c in zip(texts, checked) if isinstance(c, Checked)}
    kept = [s for s in samples if scores[s.text] is not None]
    ranked = sorted(kept, key=lambda s: (-(scores[s.text] or 0.0), s.sample_idx))
    return [(s, float(scores[s.text] or 0.0)) for s in ranked]


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


__all__ = [
    "CHECKS_ITEMS",
    "OVERALL_SCALE",
    "Checked",
    "check_response",
    "checklist_fingerprint_fields",
    "judge_checklist_pair",
    "rank_by_checklist",
    "side_score",
]
