"""The AI judge (RL-CAI / RLAIF): each pair judged under an ensemble of principles, the way its mode's entry in
`charter.judge.modes` says (`Mode.kind`): the pairwise kind (`charter.judge.compare`, both responses in one prompt,
in both orders so that position bias cancels) or a rating kind (`charter.judge.score`, each response rated alone).
A reply that cannot be read fails its judgment with the raw text: never a silent default. A
`charter.judge.panel.Panel` is a judge too: `judge_pair` takes one where it takes one judge model.
"""

from __future__ import annotations

import functools
import random
from collections import Counter
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from typing import Any

from charter.concurrency import bounded_map
from charter.constitutions.schema import Constitution
from charter.errors import ConfigError, JudgeParseError, ProviderError
from charter.judge.compare import COMPARES, comparison_prompt, p_first, same_winner
from charter.judge.judgment import ChecklistCriteria, TierVotes, conflicts, dooms_run
from charter.judge.settings import JudgeSettings
from charter.judge.steps import STEP_FORMAT
from charter.judge_prompt import PROMPT_FORMAT, RATING_FORMAT, transcript_fingerprint, with_actions
from charter.providers.base import ChatModel
from charter.records import Combined, Failure, Judgment, Pair, fingerprint

__all__ = [
    "COMPARES",
    "JudgeParseError",
    "combination_lines",
    "combination_summary",
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
        **transcript_fingerprint(),  # a conversation or trajectory is shown as a transcript
    }
    if settings.mode_entry.kind.subject == "step":  # the step prompt's format (mode stepwise)
        data["step_format"] = STEP_FORMAT
    if settings.rates_alone:  # the scale, how a score is read, the rating prompt's format
        data.update(scale=settings.scale, rating=settings.reply_name, rating_format=RATING_FORMAT)
    if not settings.asks_logprobs:
        # the key keeps the setting's former name, so that judgments made under it keep their fingerprint
        data.update(params=settings.sampling().model_dump(mode="json"), max_retries=settings.max_reasks)
    if settings.reply.clamped:
        data["clamp"] = list(settings.clamp)
    if settings.combination.recorded:  # the default rule leaves the fingerprint as it was before rules existed
        data.update(combine=settings.combine, combine_margin=settings.combine_margin)
        data["settle_early"] = settings.settle_early
    if settings.spec_examples:  # none shown leaves the fingerprint as it was before they could be
        data["spec_examples"] = settings.spec_examples
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
    if kind.judge_whole is None and (pair.a_tool_calls or pair.b_tool_calls):  # a step's judge reads the calls itself
        pair = pair.model_copy(
            update={"a": with_actions(pair.a, pair.a_tool_calls), "b": with_actions(pair.b, pair.b_tool_calls)}
        )
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
    rule = settings.combination
    tiers = rule.tiers(constitution, principle_ids)
    asked: list[TierVotes] = []
    tokens, skipped = [0, 0], []
    for at, (level, ids) in enumerate(tiers):
        outcomes = await kind.judge(model, constitution, pair, settings, ids)
        errors = [o for o in outcomes if isinstance(o, BaseException)]
        fatal = [e for e in errors if dooms_run(e)]
        if fatal:
            raise fatal[0]
        if errors:
            return Judgment(**base, status="failed", failure=judge_failure(errors[0]))
        per = [o for o in outcomes if not isinstance(o, BaseException)]
        asked.append((level, [vote for vote, _, _ in per]))
        tokens[0] += sum(t for _, t, _ in per)
        tokens[1] += sum(t for _, _, t in per)
        if settings.settle_early and rule.settle(asked, settings.combine_margin).level is not None:
            skipped = [pid for _, later in tiers[at + 1 :] for pid in later]
            break
    settled = rule.settle(asked, settings.combine_margin)
    combined = None
    if rule.recorded:
        found = conflicts(asked, settled, settings.combine_margin)
        combined = Combined(rule=rule.name, settled_by=settled.level, skipped=skipped, conflicts=found)
    return Judgment(
        **base,
        status="ok",
        p_a=settled.p_a,
        p_a_ab=settled.p_a_ab,
        p_a_ba=settled.p_a_ba,
        position_consistent=None if settled.p_a_ba is None else same_winner(settled.p_a_ab, settled.p_a_ba),
        principles=[vote for _, votes in asked for vote in votes],
        prompt_tokens=tokens[0],
        completion_tokens=tokens[1],
        combined=combined,
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


def combination_summary(judgments: Iterable[Judgment]) -> dict[str, Any] | None:
    """What a combination rule other than the weighted mean did over `judgments` (`Judgment.combined`): the rule, the
    judgments it combined, how many each level settled (`none`: every level fell through), how many were settled
    before their lowest level was asked and the principles not asked, and the conflicts between levels counted per
    pair of principles (`higher > lower`, the higher one's side winning), most first. None when no judgment records
    one."""
    rule, judged, early, skipped = None, 0, 0, 0
    settled: Counter[str] = Counter()
    conflicts: Counter[str] = Counter()
    for judgment in judgments:
        combined = judgment.combined
        if combined is None:
            continue
        rule, judged = combined.rule, judged + 1
        settled[combined.settled_by or "none"] += 1
        early += bool(combined.skipped)
        skipped += len(combined.skipped)
        conflicts.update(f"{c.settled_by} > {c.overruled}" for c in combined.conflicts)
    if rule is None:
        return None
    return {
        "rule": rule,
        "judged": judged,
        "settled_by": dict(settled.most_common()),
        "settled_early": early,
        "skipped_principles": skipped,
        "conflicts": dict(conflicts.most_common()),
    }


def combination_lines(summary: dict[str, Any]) -> list[str]:
    """`combination_summary` as markdown lines: which level settled the judgments, how many settled early, and the
    conflicts per pair of principles."""
    judged = summary["judged"]
    settled = ", ".join(f"{level} {n}" for level, n in summary["settled_by"].items())
    lines = [
        f"Votes combined by `{summary['rule']}` in {judged} judgment(s). Settled by level: {settled}. Settled before "
        f"the lowest level was asked: {summary['settled_early']} ({summary['skipped_principles']} principle votes "
        "not asked).",
    ]
    if summary["conflicts"]:
        lines += ["", "| conflict (settled by > overruled) | judgments |", "|---|---:|"]
        lines += [f"| {pair} | {n} |" for pair, n in summary["conflicts"].items()]
    else:
        lines += ["", "No conflict between levels among the principles asked."]
    return lines
