"""Checking responses against a checklist: one response (`check_response`, the one function that does it, for the
judge mode `checklist`, checklist rewards, evaluations and the lab), a pair as one judgment (`judge_checklist_pair`,
what judge mode `checklist` calls), and a group ranked by score (`rank_by_checklist`, RLCF's best-against-worst).

One response is checked in one structured judge call a reason before each item's verdict (yes, no or n/a); the items
that name a verifier are checked by code (`charter.verify`), never by the judge. A reply whose items cannot all be
read may be asked again with other sampling (`reasks`; the verdicts read so far are kept); an item still unread is a
recorded failure of that item, left out of the score with the share left out recorded. A failed call fails every
judged item (each recorded with the error, the error kept in `call_error`); a fatal provider error (auth, unknown
model, budget) is raised. A response whose applicable items all failed has no score: `None`, never 0.

Two aggregations, the choice recorded with the result: `explicit` (the items' weights and gates,
`charter.checklist.aggregate`) and `implicit` (the judge's own overall score of the response given the checklist,
asked in the same call). The overall score is asked in one of two wordings, each part of its calls' cache keys:
from 0 to 10 in a sentence after the answer instruction (`overall_from=0`: rewards, evaluations), or from 1 to 10
within it (`overall_from=1`: judge mode `checklist`, which asks it even when every item has a verifier).

P(yes) per item is read from the reply's token log-probabilities where the provider gives them
(`charter.checklist.prompt`); where it gives none, the verdicts stand, each says so (`p_yes_missing`), and the
explicit `expected` score is left unset unless every counted item was checked by a verifier.

A pair's two responses are checked each in its own call; the preference is the aggregation's: `explicit` compares
the two scores (`charter.checklist.preference`: the expected scores where every item has P(yes)), `implicit` the
two overall scores as judge mode `score` compares two ratings. A response without a score makes the pair's judgment
failed: the pair is masked, never scored 0. Each principle the items spell out gets a vote from its own items' scores
(the checklist's preference where its items decide nothing), so per-principle tables read as in the other modes.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from charter.checklist.aggregate import (
    AGGREGATIONS,
    Aggregation,
    ChecklistScore,
    ItemVerdict,
    preference,
    score_checklist,
    verifier_verdicts,
)
from charter.checklist.items import Checklist
from charter.checklist.prompt import (
    CHECKLIST_FORMAT,
    checklist_request,
    checklist_schema,
    logprobs_asked,
    overall_score,
    read_checklist_reply,
    with_probabilities,
)
from charter.constitutions.schema import OVERALL_KEY
from charter.errors import FatalProviderError, ProviderError
from charter.judge_prompt import render_conversation, with_actions
from charter.providers.base import ChatModel, SamplingParams
from charter.records import ChecklistJudgment, ChecklistSide, Failure, Judgment, Message, Pair, Sample, Vote

#: The key of the judge's overall score in an implicit checklist reply (no item may take it), and its top.
OVERALL, OVERALL_TOP = OVERALL_KEY, 10
#: The top of the overall score judge mode `checklist` compares.
OVERALL_SCALE = OVERALL_TOP
#: The overall-score question of rewards and evaluations (`overall_from=0`), after the answer instruction.
IMPLICIT_INSTRUCTION = (
    f'Then add the key "{OVERALL}": your overall score of the response from 0 to {OVERALL_TOP}, a whole number, '
    "given the checklist and your verdicts."
)
#: The reply budget of a checklist call unless the judge's `params` set one.
CHECKLIST_MAX_TOKENS = 1024
#: The lowest overall score, which says how it is asked (see the module's docstring).
OverallFrom = Literal[0, 1]


@dataclass(frozen=True)
class CheckedResponse:
    """A response checked against a checklist: each item's verdict, the explicit score, and the reward the
    aggregation gives (None when the response has no score)."""

    checklist: Checklist
    verdicts: dict[str, ItemVerdict]
    score: ChecklistScore
    aggregation: Aggregation
    reward: float | None
    """The explicit score, or the judge's overall score over 10 (implicit); None: no score (see `failure`)."""
    failure: str | None = None
    """Why there is no reward: every item failed, none applies, or the overall score is missing."""
    calls: int = 0
    """Judge calls made (0 when every item has a verifier)."""
    cached: bool = False
    """Every judge call was answered from the call cache."""
    overall: int | None = None
    """The judge's overall score as it gave it (implicit), None where it gave none."""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    call_error: ProviderError | None = None
    """The error of a judge call that failed (its judged items failed with it)."""

    def scored(self) -> ChecklistScore:
        """The score as a preference reads it (`charter.checklist.preference`): the reward the aggregation gave, and
        the expected score from the items' P(yes) only where the aggregation is explicit."""
        expected = self.score.expected if self.aggregation == "explicit" else None
        return self.score.model_copy(update={"score": self.reward, "expected": expected})

    def side(self) -> ChecklistSide:
        """The response's side of a checklist judgment: its verdicts in the checklist's order, score and overall."""
        ordered = [self.verdicts[item.id] for item in self.checklist.items]
        return ChecklistSide(verdicts=ordered, score=self.score, overall=self.overall)


def checklist_params(
    base: SamplingParams | None,
    item_ids: list[str],
    aggregation: Aggregation,
    model: ChatModel | None = None,
    overall_from: OverallFrom = 0,
) -> SamplingParams:
    """The sampling of a checklist call: greedy (or the judge's `params`), with the reply's JSON schema, and the
    tokens' log-probabilities asked where `model` gives them (each item's P(yes))."""
    params = base or SamplingParams(temperature=0.0, max_tokens=CHECKLIST_MAX_TOKENS, seed=0)
    implicit = aggregation == "implicit"
    schema = checklist_schema(item_ids, overall=implicit and overall_from == 1)
    if implicit and overall_from == 0:
        properties = {**schema["properties"], OVERALL: {"type": "integer"}}  # type: ignore[dict-item]
        schema = {**schema, "properties": properties, "required": [*item_ids, OVERALL]}
    return params.model_copy(update={"json_schema": schema, **logprobs_asked(model)})


def checklist_messages(
    prompt: list[Message], text: str, checklist: Checklist, aggregation: Aggregation, overall_from: OverallFrom = 0
) -> list[Message]:
    """The one request of a checklist judgment (with the overall-score question for `implicit`)."""
    implicit = aggregation == "implicit"
    request = checklist_request(prompt, text, checklist, overall=implicit and overall_from == 1)
    if implicit and overall_from == 0:
        last = request[-1]
        request[-1] = last.model_copy(update={"content": f"{last.content}\n{IMPLICIT_INSTRUCTION}"})
    return request


async def check_response(
    model: ChatModel,
    prompt: list[Message],
    text: str,
    checklist: Checklist,
    aggregation: Aggregation = "explicit",
    params: SamplingParams | None = None,
    *,
    reasks: Sequence[SamplingParams] = (),
    overall_from: OverallFrom = 0,
    verifier_prompt: str | None = None,
    token_probabilities: bool = True,
) -> CheckedResponse:
    """Check `text` against `checklist`: verifier items by code (given `verifier_prompt`, by default the rendered
    conversation), the others in one judge call, asked again with each of `reasks`' sampling in turn while an item (or
    the implicit overall score) is unread. `overall_from` picks the overall score's wording (see the module);
    `token_probabilities=False` leaves the tokens' log-probabilities unasked. A fatal provider error is raised; any
    other failed call fails the judged items (`call_error`)."""
    shown = render_conversation(prompt) if verifier_prompt is None else verifier_prompt
    verdicts = verifier_verdicts(checklist, text, shown)
    judged = [item.id for item in checklist.judged]
    implicit = aggregation == "implicit"
    overall: int | str = f"the judge gave no overall score {overall_from}..{OVERALL_TOP} (implicit aggregation)"
    calls = prompt_tokens = completion_tokens = 0
    cached, call_error = True, None
    if judged or (implicit and overall_from == 1):
        request = checklist_messages(prompt, text, checklist, aggregation, overall_from)
        read: dict[str, ItemVerdict] = {}
        for sampling in (params, *reasks):
            asked = checklist_params(
                sampling, judged, aggregation, model if token_probabilities else None, overall_from
            )
            calls += 1
            try:
                [reply] = await model.generate([request], asked)
            except FatalProviderError:
                raise
            except ProviderError as exc:
                call_error, error = exc, f"judge call failed: {exc}"
                read |= {i: ItemVerdict(item_id=i, verdict="failed", error=error) for i in judged}
                break
            cached = cached and reply.cached
            prompt_tokens += reply.prompt_tokens
            completion_tokens += reply.completion_tokens
            replied = with_probabilities(read_checklist_reply(reply.text, judged), reply.text, reply.token_logprobs)
            read |= {i: v for i, v in replied.items() if read.get(i) is None or read[i].verdict == "failed"}
            overall = overall if isinstance(overall, int) else overall_score(reply.text, judged, overall_from)
            if all(v.verdict != "failed" for v in read.values()) and (isinstance(overall, int) or not implicit):
                break
        verdicts |= read
    score = score_checklist(checklist, verdicts)
    reward, failure = _reward(score, verdicts, aggregation, overall)
    return CheckedResponse(
        checklist,
        verdicts,
        score,
        aggregation,
        reward,
        failure,
        calls,
        cached and calls > 0 and call_error is None,
        overall if isinstance(overall, int) else None,
        prompt_tokens,
        completion_tokens,
        call_error,
    )


def _reward(
    score: ChecklistScore, verdicts: dict[str, ItemVerdict], aggregation: Aggregation, overall: int | str
) -> tuple[float | None, str | None]:
    if score.score is None:
        if score.status == "not_applicable":
            return None, "no item of the checklist applies to the response"
        first = next((v.error for v in verdicts.values() if v.error), "no verdict")
        return None, f"every item of the checklist failed ({len(score.failed)}): {first}"
    if aggregation == "implicit":
        return (None, overall) if isinstance(overall, str) else (overall / OVERALL_TOP, None)
    return score.score, None


class JudgeAsking(Protocol):
    """What a judge's settings (`JudgeSettings`) give a checklist judgment: the mode it names, and the sampling of
    each try at a readable reply."""

    @property
    def mode(self) -> str: ...
    @property
    def max_reasks(self) -> int: ...
    def attempt(self, number: int) -> SamplingParams: ...


def checklist_fingerprint_fields(aggregation: Aggregation, checklists: str | None) -> dict[str, object]:
    """What a checklist judgment's fingerprint adds to the judge's: the aggregation, the checklist prompt's format
    and the fingerprint of the checklists' settings."""
    return {"aggregation": aggregation, "checklist_format": CHECKLIST_FORMAT, "checklists": checklists}


def last_user(prompt: list[Message]) -> str:
    """The conversation's last user turn (what a verifier checks a response against in a checklist judgment)."""
    return next((m.content for m in reversed(prompt) if m.role == "user"), "")


async def _judged(
    model: ChatModel,
    prompt: list[Message],
    text: str,
    checklist: Checklist,
    settings: JudgeAsking,
    aggregation: Aggregation,
) -> CheckedResponse:
    """One response checked as judge mode `checklist` checks it; a call that failed for good is raised."""
    checked = await check_response(
        model,
        prompt,
        text,
        checklist,
        aggregation,
        settings.attempt(0),
        reasks=[settings.attempt(n) for n in range(1, settings.max_reasks + 1)],
        overall_from=1,
        verifier_prompt=last_user(prompt),
    )
    if checked.call_error is not None:
        raise checked.call_error
    return checked


def side_score(side: ChecklistSide, aggregation: Aggregation) -> float | None:
    """A response's score under the aggregation: the explicit 0..1 score, or the overall score 1..10."""
    return side.score.score if aggregation == "explicit" else side.overall


def _p_a(a: ChecklistSide, b: ChecklistSide, aggregation: Aggregation) -> tuple[float | None, bool]:
    """P(a better) and whether the items' probabilities gave it; None when either side has no score."""
    if aggregation == "implicit":
        if a.overall is None or b.overall is None:
            return None, False
        return 0.5 + (a.overall - b.overall) / (2 * (OVERALL_SCALE - 1)), False  # as mode `score` reads two ratings
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
    settings: JudgeAsking,
    aggregation: Aggregation,
    principle_ids: list[str],
    judge_fp: str,
) -> Judgment:
    """Judge one pair by its prompt's checklist: each response checked in its own call; the preference by the
    aggregation. A call that failed for good, or a response without a score, is a failed judgment (recorded, the
    pair masked); an error that dooms the run is raised once both calls ran to their end."""
    outcomes = await asyncio.gather(
        _judged(model, pair.prompt, pair.a, checklist, settings, aggregation),
        _judged(model, pair.prompt, pair.b, checklist, settings, aggregation),
        return_exceptions=True,
    )
    judged = functools.partial(
        Judgment,
        pair_id=pair.pair_id,
        fingerprint=judge_fp,
        mode=settings.mode,
        orders="one",
        judge_model=model.model_id,
    )
    errors = [o for o in outcomes if isinstance(o, BaseException)]
    doomed = [e for e in errors if not isinstance(e, ProviderError) or isinstance(e, FatalProviderError)]
    if doomed:
        raise doomed[0]
    if errors:
        error = errors[0]
        assert isinstance(error, ProviderError)
        failure = Failure(kind=error.kind, message=str(error), raw=error.raw, attempts=error.attempts)
        return judged(principle_ids=principle_ids, status="failed", failure=failure)
    checked_a, checked_b = (o for o in outcomes if isinstance(o, CheckedResponse))
    a, b = checked_a.side(), checked_b.side()
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
    settings: JudgeAsking,
    aggregation: Aggregation,
) -> list[tuple[Sample, float]]:
    """Each sample with a score under the aggregation, best first (ties in sample order), one call a distinct response
    (its text, then the tools it calls as proposed actions), for RLCF's best-against-worst selection; samples without
    a score are left out. Raises the first failure of a call once every call has run to its end."""
    shown = {s.sample_idx: with_actions(s.text, s.tool_calls) for s in samples}  # its calls as actions
    texts = list(dict.fromkeys(shown.values()))
    checked = await asyncio.gather(
        *(_judged(model, prompt, text, checklist, settings, aggregation) for text in texts),
        return_exceptions=True,
    )
    errors = [c for c in checked if isinstance(c, BaseException)]
    if errors:
        raise errors[0]
    scores = {
        text: side_score(c.side(), aggregation) for text, c in zip(texts, checked) if isinstance(c, CheckedResponse)
    }
    kept = [s for s in samples if scores[shown[s.sample_idx]] is not None]
    ranked = sorted(kept, key=lambda s: (-(scores[shown[s.sample_idx]] or 0.0), s.sample_idx))
    return [(s, float(scores[shown[s.sample_idx]] or 0.0)) for s in ranked]


__all__ = [
    "AGGREGATIONS",
    "CHECKLIST_FORMAT",
    "OVERALL_SCALE",
    "Aggregation",
    "CheckedResponse",
    "JudgeAsking",
    "check_response",
    "checklist_fingerprint_fields",
    "checklist_messages",
    "checklist_params",
    "judge_checklist_pair",
    "last_user",
    "rank_by_checklist",
    "side_score",
]
