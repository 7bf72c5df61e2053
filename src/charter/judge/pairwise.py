"""The AI judge (RL-CAI / RLAIF): each pair judged under an ensemble of principles, the way its mode's entry in
`charter.judge.modes` says (`Mode.kind`): the pairwise kind (`charter.judge.compare`, both responses in one prompt,
in both orders so that position bias cancels) or a rating kind (`charter.judge.score`, each response rated alone).
A reply that cannot be read fails its judgment with the raw text: never a silent default. A
`charter.judge.panel.Panel` is a judge too: `judge_pair` takes one where it takes one judge model.
"""

from __future__ import annotations

import functools
import random
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Sequence

from charter.concurrency import bounded_map
from charter.constitutions.schema import Constitution
from charter.errors import ConfigError, JudgeParseError, ProviderError
from charter.judge.compare import COMPARES, comparison_prompt, p_first, same_winner
from charter.judge.judgment import ChecklistCriteria, dooms_run
from charter.judge.settings import JudgeSettings
from charter.judge_prompt import PROMPT_FORMAT, RATING_FORMAT
from charter.providers.base import ChatModel
from charter.records import Failure, Judgment, Pair, fingerprint

__all__ = [
    "COMPARES",
    "JudgeParseError",
    "comparison_prompt",
    "judge_failure",
    "judge_fingerprint",
    "judge_many",
    "judge_pair",
    "judgments_by_pair",
    "p_first",
    "principle_key",
    "principles_for",
    "sample_principles",
]


def judge_fingerprint(settings: JudgeSettings, model: str, constitution: Constitution, seed: int) -> str:
    """The fingerprint of everything that shapes a judgment: model, mode, orders, ensemble, prompt format,
    and for `cot`/`verdict` the sampling, retries and (cot) clamp."""
    data: dict = {
        "stage": "judge",
        "model": model,
        "constitution": constitution.hash,
        "seed": seed,
        "mode": settings.mode,
        "orders": settings.orders,
        "prompt_format": PROMPT_FORMAT,
        "principles": settings.principles or settings.principles_per_pair,
    }
    if settings.rates_alone:  # the scale, how a score is read, the rating prompt's format
        data.update(scale=settings.scale, rating=settings.reply_name, rating_format=RATING_FORMAT)
    if not settings.asks_logprobs:
        # the key keeps the setting's former name, so that judgments made under it keep their fingerprint
        data.update(params=settings.sampling().model_dump(mode="json"), max_retries=settings.max_reasks)
    if settings.reply.clamped:
        data["clamp"] = list(settings.clamp)
    return fingerprint(data)


def sample_principles(constitution: Constitution, k: int, rng: random.Random) -> list[str]:
    """k distinct principle ids, drawn by weight without replacement."""
    pool = list(constitution.principles)
    chosen: list[str] = []
    for _ in range(min(k, len(pool))):
        pick = rng.choices(pool, weights=[p.weight for p in pool])[0]
        chosen.append(pick.id)
        pool.remove(pick)
    return chosen


def principles_for(constitution: Constitution, settings: JudgeSettings, pair_id: str, seed: int) -> list[str]:
    """The principle ids for a pair: fixed, or sampled with a per-pair seed (stable across resumes; with a
    larger ensemble the first draws stay the same, so their calls come from the cache)."""
    if settings.principles:
        unknown = [p for p in settings.principles if p not in constitution.principle_ids]
        if unknown:
            raise ConfigError(
                f"judge.principles: unknown principle id '{unknown[0]}' (constitution '{constitution.name}')"
            )
        return list(settings.principles)
    return sample_principles(constitution, settings.principles_per_pair, random.Random(f"{seed}:{pair_id}"))


def principle_key(pair: Pair, settings: JudgeSettings) -> str:
    """What a pair's principles are drawn by: its id, or under mode `score` the prompt of a samples pair (every
    sample of a prompt is rated under the same principles, so that their scores compare)."""
    if settings.rates_alone and pair.kind == "samples" and pair.prompt_id:
        return pair.prompt_id
    return pair.pair_id


@functools.singledispatch
async def judge_pair(
    model: ChatModel,
    constitution: Constitution,
    pair: Pair,
    settings: JudgeSettings,
    principle_ids: list[str],
    judge_fp: str,
    criteria: ChecklistCriteria | None = None,
) -> Judgment:
    """Judge one pair as the settings' mode judges (`Mode.kind`): under each principle, or, for a mode that judges by
    checklist, by its prompt's checklist (`criteria`; without one, its kind says what it needs); a failed parse is a
    failed judgment, an error that dooms the run is raised once every call has run to its end. A judge made of judges
    registers its own way (`charter.judge.panel.Panel` asks each member and pools their judgments)."""
    kind = settings.mode_entry.kind
    if kind.judge_by_checklist is not None and criteria is not None:
        return await kind.judge_by_checklist(model, pair, criteria, settings, principle_ids, judge_fp)
    if kind.judge_whole is not None:
        return await kind.judge_whole(model, constitution, pair, settings, principle_ids, judge_fp)
    base = {
        "pair_id": pair.pair_id,
        "fingerprint": judge_fp,
        "mode": settings.mode,
        "orders": settings.orders_asked,
        "judge_model": model.model_id,
        "principle_ids": principle_ids,
    }
    outcomes = await kind.judge(model, constitution, pair, settings, principle_ids)
    errors = [o for o in outcomes if isinstance(o, BaseException)]
    fatal = [e for e in errors if dooms_run(e)]
    if fatal:
        raise fatal[0]
    if errors:
        return Judgment(**base, status="failed", failure=judge_failure(errors[0]))
    per = [o for o in outcomes if not isinstance(o, BaseException)]
    votes = [vote for vote, _, _ in per]
    p_ab = _mean([v.p_a_ab for v in votes])
    p_bas = [v.p_a_ba for v in votes if v.p_a_ba is not None]
    p_ba = _mean(p_bas) if p_bas else None
    return Judgment(
        **base,
        status="ok",
        p_a=_mean([v.p_a for v in votes]),
        p_a_ab=p_ab,
        p_a_ba=p_ba,
        position_consistent=None if p_ba is None else same_winner(p_ab, p_ba),
        principles=votes,
        prompt_tokens=sum(t for _, t, _ in per),
        completion_tokens=sum(t for _, _, t in per),
    )


def judge_failure(error: BaseException) -> Failure:
    """The failure record of a judgment: an unparseable answer, or a call that failed for good."""
    assert isinstance(error, JudgeParseError | ProviderError)
    return Failure(kind=error.kind, message=str(error), raw=error.raw, attempts=error.attempts)


async def judge_many(
    model: ChatModel,
    constitution: Constitution,
    pairs: Iterable[Pair],
    settings: JudgeSettings,
    seed: int = 0,
    concurrency: int = 64,
) -> AsyncIterator[Judgment]:
    """Judge pairs concurrently; yields judgments as they finish (not in input order)."""
    judge_fp = judge_fingerprint(settings, model.served_id, constitution, seed)

    async def one(pair: Pair) -> Judgment:
        ids = principles_for(constitution, settings, principle_key(pair, settings), seed)
        return await judge_pair(model, constitution, pair, settings, ids, judge_fp)

    async for judgment in bounded_map(one, pairs, concurrency):
        yield judgment


async def judgments_by_pair(judged: AsyncIterable[Judgment], close: ChatModel | None = None) -> dict[str, Judgment]:
    """Every judgment of `judged` (`judge_many`'s) by pair id; with `close`, that model (the judge) is closed after,
    whatever happens."""
    try:
        return {j.pair_id: j async for j in judged}
    finally:
        if close is not None:
            await close.aclose()


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)
