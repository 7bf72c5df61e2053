"""One response checked against a checklist: the items with a verifier by code, the others in one structured judge
call (a short reason before each verdict), and the verdicts aggregated into a score.

Two aggregations, the choice recorded with the result: `explicit` (the items' weights and gates,
`charter.checklist.aggregate`) and `implicit` (the judge's own overall score of the response given the checklist,
asked in the same call, 0 to 10, read as 0..1). A call that fails fails every judged item (each recorded with the
error); a reply that names an item without a readable verdict fails that item alone. A response whose applicable
items all failed has no score: `None`, never 0.

P(yes) per item is read from the reply's token log-probabilities where the provider gives them
(`charter.checklist.probability`); where it gives none, the verdicts stand, each says so (`p_yes_missing`), and the
explicit `expected` score is left unset unless every counted item was checked by a verifier.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from charter.checklist.aggregate import ChecklistScore, ItemVerdict, score_checklist, verifier_verdicts
from charter.checklist.items import Checklist
from charter.checklist.probability import logprobs_asked, with_probabilities
from charter.checklist.prompt import CHECKLIST_FORMAT, checklist_request, checklist_schema, read_checklist_reply
from charter.constitutions.schema import OVERALL_KEY
from charter.errors import FatalProviderError, ProviderError
from charter.judge_prompt import agreed, reply_readings, whole_number
from charter.providers.base import ChatModel, SamplingParams
from charter.providers.managed import ManagedModel
from charter.records import Message
from charter.records.base import render_conversation

Aggregation = Literal["explicit", "implicit"]
AGGREGATIONS: tuple[Aggregation, ...] = ("explicit", "implicit")
#: The key of the judge's overall score in an implicit checklist reply (no item may take it), and its top.
OVERALL, OVERALL_TOP = OVERALL_KEY, 10
IMPLICIT_INSTRUCTION = (
    f'Then add the key "{OVERALL}": your overall score of the response from 0 to {OVERALL_TOP}, a whole number, '
    "given the checklist and your verdicts."
)
#: The reply budget of a checklist call unless the judge's `params` set one.
CHECKLIST_MAX_TOKENS = 1024


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
    """The judge's call was answered from the call cache."""

    def scored(self) -> ChecklistScore:
        """The score as a preference reads it (`charter.checklist.preference`): the reward the aggregation gave, and
        the expected score from the items' P(yes) only where the aggregation is explicit."""
        expected = self.score.expected if self.aggregation == "explicit" else None
        return self.score.model_copy(update={"score": self.reward, "expected": expected})


def checklist_params(
    base: SamplingParams | None, item_ids: list[str], aggregation: Aggregation, model: ChatModel | None = None
) -> SamplingParams:
    """The sampling of a checklist call: greedy (or the judge's `params`), with the reply's JSON schema, and the
    tokens' log-probabilities asked where `model` gives them (each item's P(yes))."""
    params = base or SamplingParams(temperature=0.0, max_tokens=CHECKLIST_MAX_TOKENS, seed=0)
    schema = checklist_schema(item_ids)
    if aggregation == "implicit":
        properties = {**schema["properties"], OVERALL: {"type": "integer"}}  # type: ignore[dict-item]
        schema = {**schema, "properties": properties, "required": [*item_ids, OVERALL]}
    return params.model_copy(update={"json_schema": schema, **logprobs_asked(model)})


def checklist_messages(prompt: list[Message], text: str, checklist: Checklist, aggregation: Aggregation) -> list:
    """The one request of a checklist judgment (with the overall-score instruction for `implicit`)."""
    request = checklist_request(prompt, text, checklist)
    if aggregation == "implicit":
        last = request[-1]
        request[-1] = last.model_copy(update={"content": f"{last.content}\n{IMPLICIT_INSTRUCTION}"})
    return request


async def check_response(
    model: ManagedModel,
    prompt: list[Message],
    text: str,
    checklist: Checklist,
    aggregation: Aggregation = "explicit",
    params: SamplingParams | None = None,
) -> CheckedResponse:
    """Check `text` against `checklist`: verifier items by code, the others in one judge call. A fatal provider
    error (auth, unknown model, budget) is raised; any other failed call fails the judged items."""
    verdicts = verifier_verdicts(checklist, text, render_conversation(prompt))
    judged = [item.id for item in checklist.judged]
    overall: float | str = f"the judge gave no overall score 0..{OVERALL_TOP} (implicit aggregation)"
    calls, cached = 0, False
    if judged:
        request = checklist_messages(prompt, text, checklist, aggregation)
        calls = 1
        try:
            [reply] = await model.generate([request], checklist_params(params, judged, aggregation, model))
        except FatalProviderError:
            raise
        except ProviderError as exc:
            error = f"judge call failed: {exc}"
            verdicts |= {i: ItemVerdict(item_id=i, verdict="failed", error=error) for i in judged}
        else:
            cached = reply.cached
            verdicts |= with_probabilities(read_checklist_reply(reply.text, judged), reply.text, reply.token_logprobs)
            overall = _overall(reply.text, judged)
    score = score_checklist(checklist, verdicts)
    reward, failure = _reward(score, verdicts, aggregation, overall)
    return CheckedResponse(checklist, verdicts, score, aggregation, reward, failure, calls, cached)


def _overall(text: str, item_ids: list[str]) -> float | str:
    """The implicit overall score over 10, or why there is none (missing, off 0..10, or given twice, differently)."""
    readings = reply_readings(text, [*item_ids, OVERALL]) or {}
    value, disagreement = agreed([whole_number(v) for v in readings.get(OVERALL, [])], repr(OVERALL))
    if disagreement is not None:
        return f"{disagreement} (implicit aggregation)"
    if value is None or not 0 <= value <= OVERALL_TOP:
        return f"the judge gave no overall score 0..{OVERALL_TOP} (implicit aggregation)"
    return value / OVERALL_TOP


def _reward(
    score: ChecklistScore, verdicts: dict[str, ItemVerdict], aggregation: Aggregation, overall: float | str
) -> tuple[float | None, str | None]:
    if score.score is None:
        if score.status == "not_applicable":
            return None, "no item of the checklist applies to the response"
        first = next((v.error for v in verdicts.values() if v.error), "no verdict")
        return None, f"every item of the checklist failed ({len(score.failed)}): {first}"
    if aggregation == "implicit":
        return (None, overall) if isinstance(overall, str) else (overall, None)
    return score.score, None


__all__ = [
    "AGGREGATIONS",
    "CHECKLIST_FORMAT",
    "Aggregation",
    "CheckedResponse",
    "check_response",
    "checklist_messages",
    "checklist_params",
]
