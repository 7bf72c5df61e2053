"""Rubric scores (judge mode `score`): the judge rates one response alone, per principle, on a 1..K scale.

Pointwise judging, as in Self-Rewarding and Meta-Rewarding language models (Yuan et al. 2024; Wu et al. 2024) and
UltraFeedback: k samples cost k calls per principle rather than k(k-1) comparisons. With `rating: logprobs` the score
is the expected value over the score tokens' probabilities; with `cot` or `verdict` it is the number the judge
writes. A reply without a valid score is re-asked, then recorded as a failure: never a default score.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence
from dataclasses import dataclass

from charter.concurrency import warm_then_fan_out
from charter.constitutions.schema import Constitution
from charter.errors import FatalProviderError, JudgeParseError, ProviderError
from charter.judge.modes import mode
from charter.judge.settings import JudgeSettings
from charter.judge_prompt import DEFAULT_RUBRIC, RATING_FORMAT, read_rubric, rubric_schema, write_rating, write_rubric
from charter.messages import render_conversation, user
from charter.providers.base import ChatModel, Messages
from charter.records import Message, Sample


@dataclass(frozen=True)
class PrincipleScore:
    """A response's score under one principle."""

    principle_id: str
    score: float
    """1..scale: the expected score (logprobs) or the number written (cot, verdict)."""
    probs: dict[str, float] | None
    """The probability of each score token (logprobs); None when read from text."""
    rationale: str | None
    """The judge's text (cot, verdict)."""
    prompt_tokens: int
    completion_tokens: int
    cached: bool


def rating_fingerprint_fields(settings: JudgeSettings) -> dict[str, object]:
    """What a score judgment's fingerprint adds to a comparison's: the scale, how it is read, the prompt format."""
    return {"scale": settings.scale, "rating": settings.reads, "rating_format": RATING_FORMAT}


def score_options(scale: int) -> tuple[str, ...]:
    """The score tokens 1..scale."""
    return tuple(str(i) for i in range(1, scale + 1))


def rating_prompt(
    constitution: Constitution, prompt: list[Message], response: str, principle_id: str, settings: JudgeSettings
) -> Messages:
    """The request that rates `response` under one principle."""
    principle = constitution.principle(principle_id)
    text = write_rating(
        render_conversation(prompt),
        constitution.rating_question(principle_id),
        principle.description,
        response,
        settings.scale,
        constitution.rubric or DEFAULT_RUBRIC,
        settings.reading.rating_instruction,
    )
    return [user(text)]


def parse_score(text: str, reads: str, scale: int) -> int:
    """The score in a judge's reply, read by the reader of the mode named `reads`; raises JudgeParseError when there
    is none in 1..scale."""
    reader = mode(reads).read_score
    assert reader is not None, f"mode {reads} reads scores from probabilities, not text"
    return reader(text, scale)


def expected_score(probs: dict[str, float]) -> float:
    """The mean score under the judge's probabilities of the score tokens (normalised over them)."""
    return sum(int(option) * p for option, p in probs.items())


async def score_one(
    model: ChatModel,
    constitution: Constitution,
    prompt: list[Message],
    response: str,
    principle_id: str,
    settings: JudgeSettings,
) -> PrincipleScore:
    """Rate one response under one principle. Raises JudgeParseError (no score after the retries) or ProviderError;
    never returns a default."""
    request = rating_prompt(constitution, prompt, response, principle_id, settings)
    if settings.reading.logprobs:
        got = await model.choice_logprobs(request, score_options(settings.scale))
        return PrincipleScore(
            principle_id, expected_score(got.probs), dict(got.probs), None, got.prompt_tokens, 1, got.cached
        )
    raws: list[str] = []
    kind = "unparseable"
    for attempt in range(settings.max_retries + 1):
        [completion] = await model.generate([request], settings.attempt(attempt))
        raws.append(completion.text)
        try:
            value = parse_score(completion.text, settings.reads, settings.scale)
        except JudgeParseError as exc:
            kind = exc.kind
            continue
        return PrincipleScore(
            principle_id,
            float(value),
            None,
            completion.text,
            completion.prompt_tokens,
            completion.completion_tokens,
            completion.cached,
        )
    said = "a score outside the scale" if kind == "out_of_scale" else "no score"
    raise JudgeParseError(
        f"{said} in the judge's reply after {len(raws)} tries", raw=raws[-1], attempts=len(raws), kind=kind
    )


def dooms_run(error: BaseException) -> bool:
    """An error that is not one item's failure (auth, budget, a bug): it stops the run."""
    return not isinstance(error, JudgeParseError | ProviderError) or isinstance(error, FatalProviderError)


def rubric_prompt(
    constitution: Constitution,
    prompt: list[Message],
    response: str,
    principle_ids: Sequence[str],
    settings: JudgeSettings,
) -> Messages:
    """The request that rates `response` under every principle of `principle_ids` in one call (mode `rubric`)."""
    listed = [
        (pid, constitution.principle(pid).description, constitution.rating_question(pid)) for pid in principle_ids
    ]
    text = write_rubric(
        render_conversation(prompt), response, listed, settings.scale, constitution.rubric or DEFAULT_RUBRIC
    )
    return [user(text)]


async def score_all(
    model: ChatModel,
    constitution: Constitution,
    prompt: list[Message],
    response: str,
    principle_ids: Sequence[str],
    settings: JudgeSettings,
) -> list[PrincipleScore]:
    """Mode `rubric`: rate one response under every principle in one structured-output call. A reply lacking some
    principle's score is re-asked (the scores read so far are kept); a principle still without one raises
    JudgeParseError naming it, never a default. The call's tokens are counted on the first principle's row."""
    ids = list(principle_ids)
    request = rubric_prompt(constitution, prompt, response, ids, settings)
    found: dict[str, tuple[int, str]] = {}
    missing: dict[str, JudgeParseError] = {}
    prompt_tokens = completion_tokens = tries = 0
    cached = True
    for attempt in range(settings.max_retries + 1):
        params = settings.attempt(attempt).model_copy(update={"json_schema": rubric_schema(ids, settings.scale)})
        [completion] = await model.generate([request], params)
        tries += 1
        prompt_tokens += completion.prompt_tokens
        completion_tokens += completion.completion_tokens
        cached = cached and completion.cached
        for pid, value in read_rubric(completion.text, ids, settings.scale).items():
            if pid in found:
                continue
            if isinstance(value, JudgeParseError):
                missing[pid] = value
            else:
                found[pid] = (value, completion.text)
                missing.pop(pid, None)
        if not missing:
            break
    if missing:
        raise rubric_failure(list(missing.values()), tries)
    return [
        PrincipleScore(
            pid,
            float(found[pid][0]),
            None,
            found[pid][1],
            prompt_tokens if i == 0 else 0,
            completion_tokens if i == 0 else 0,
            cached,
        )
        for i, pid in enumerate(ids)
    ]


def rubric_failure(errors: list[JudgeParseError], tries: int) -> JudgeParseError:
    """One failure for the principles a rubric reply left without a score, each with its reason; `out_of_scale`
    where every one of them was a score outside the scale, else `unparseable`."""
    kinds = {e.kind for e in errors}
    reasons = "; ".join(dict.fromkeys(str(e) for e in errors))
    return JudgeParseError(
        f"{reasons} in the judge's reply after {tries} tries",
        raw=errors[0].raw,
        attempts=tries,
        kind=kinds.pop() if len(kinds) == 1 else "unparseable",
    )


async def score_response(
    model: ChatModel,
    constitution: Constitution,
    prompt: list[Message],
    response: str,
    principle_ids: Sequence[str],
    settings: JudgeSettings,
) -> list[PrincipleScore]:
    """Rate one response under each principle; every call runs to its end (paid for, cached) before the first
    error, if any, is raised."""
    if settings.spec.all_principles:
        return await score_all(model, constitution, prompt, response, principle_ids, settings)
    outcomes = await warm_then_fan_out(
        [functools.partial(score_one, model, constitution, prompt, response, pid, settings) for pid in principle_ids],
        warm=settings.warm_cache,
        dooms=dooms_run,
    )  # the conversation and the response come first in each request: the first call warms the cache for the rest
    errors = [o for o in outcomes if isinstance(o, BaseException)]
    if errors:
        raise errors[0]
    return [o for o in outcomes if not isinstance(o, BaseException)]


def mean_score(scores: Sequence[PrincipleScore]) -> float:
    """The mean score over principles."""
    return sum(s.score for s in scores) / len(scores)


def normalised(score: float, scale: int) -> float:
    """A score on 1..scale mapped onto 0..1."""
    return (score - 1) / (scale - 1)


def p_first_from_scores(score_a: float, score_b: float, scale: int) -> float:
    """The row's p for two scores: 0.5 plus half the normalised gap (0.5 a tie, 1 the widest gap for `a`)."""
    return 0.5 + (score_a - score_b) / (2 * (scale - 1))


async def rank_samples(
    model: ChatModel,
    constitution: Constitution,
    prompt: list[Message],
    samples: Sequence[Sample],
    principle_ids: Sequence[str],
    settings: JudgeSettings,
) -> list[tuple[Sample, float]]:
    """Each sample with its mean score over the principles, best first (ties in sample order): k calls per principle,
    one per distinct text. Raises the first failure once every call has run to its end."""
    texts = list(dict.fromkeys(s.text for s in samples))
    rated = await asyncio.gather(
        *(score_response(model, constitution, prompt, text, principle_ids, settings) for text in texts),
        return_exceptions=True,
    )
    errors = [r for r in rated if isinstance(r, BaseException)]
    if errors:
        raise errors[0]
    means = {text: mean_score(scores) for text, scores in zip(texts, rated) if not isinstance(scores, BaseException)}
    ranked = sorted(samples, key=lambda s: (-means[s.text], s.sample_idx))
    return [(s, means[s.text]) for s in ranked]
