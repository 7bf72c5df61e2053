"""The scorings that judge each completion on its own: `score` (its rubric score, direct RLAIF, Lee et al. 2023) and
`reference` (P(it is better than a reference answer), both orders)."""

from __future__ import annotations

import asyncio
from typing import Any

from charter.errors import ConfigError, FatalProviderError, JudgeParseError, ProviderError
from charter.judge.score import ToRate, mean_score, rates_of, score_on_unit_scale
from charter.online.judging import Batch, JudgmentFailed, ScoringEntry, ScoringOptions, p_better
from charter.online.session import JudgeSession
from charter.records import Message, RewardRecord


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
        p = await p_better(session, prompt, text, reference, ids)
    except JudgmentFailed as failed:
        failure = failed.failure
        return session.record(key, step, prompt, text, None, principle_ids=ids, reference=reference, failure=failure)
    return session.record(key, step, prompt, text, p, principle_ids=ids, comparisons=1, reference=reference)


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


SCORE = ScoringEntry("score", score_each)
REFERENCE = ScoringEntry("reference", against_reference, reads_references=True)
