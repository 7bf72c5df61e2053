"""The AI judge (RL-CAI / RLAIF): a multiple-choice comparison per principle, evaluated in both
orders so position bias cancels, with an ensemble over principles.

How the judge answers is its mode's entry in `charter.judge.modes` (pairwise modes here; rating modes rate each
response alone, `charter.judge.score`): `logprobs` reads P("A") vs P("B") as the next token; `cot` asks for
reasoning then a verdict and clamps each vote into `clamp` (Bai et al. 2022 use 40-60% for chain-of-thought labels);
`verdict` asks for a single letter. Unparseable output is re-asked, then recorded as a failure with the raw text:
never a silent default.
"""

from __future__ import annotations

import asyncio
import functools
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Any

from charter.concurrency import bounded_map, warm_then_fan_out
from charter.constitutions.schema import Constitution, Principle
from charter.errors import ConfigError, JudgeParseError, ProviderError
from charter.judge.modes import mode
from charter.judge.panel import Panel, pool
from charter.judge.score import dooms_run, p_first_from_scores, rating_fingerprint_fields, score_response
from charter.judge.settings import JudgeSettings
from charter.judge_prompt import PROMPT_FORMAT, write_comparison
from charter.messages import render_conversation, user
from charter.providers.base import ChatModel, Messages
from charter.records import Failure, Judgment, Message, Pair, Vote, fingerprint

OPTIONS = ("A", "B")


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
    if settings.rates:
        data.update(rating_fingerprint_fields(settings))
    if not settings.asks_logprobs:
        data.update(params=settings.sampling().model_dump(mode="json"), max_retries=settings.max_retries)
    if settings.spec.clamped:
        data["clamp"] = list(settings.clamp)
    return fingerprint(data)


def comparison_prompt(
    prompt: list[Message], first: str, second: str, principle: Principle, reads: str, fenced: bool = True
) -> Messages:
    """The multiple-choice question for one principle and one presentation order, ending on the instruction of the
    mode named `reads` (charter.judge_prompt writes it: fenced in format 2; `fenced=False` gives the unfenced
    format 1, kept so that an audit can show what the fences buy)."""
    text = write_comparison(
        render_conversation(prompt),
        principle.comparison,
        principle.description,
        first,
        second,
        mode(reads).instruction,
        fenced,
    )
    return [user(text)]


def parse_verdict(text: str, reads: str) -> str:
    """The option letter in a judge answer, read by the reader of the mode named `reads`; raises JudgeParseError
    if there is none."""
    reader = mode(reads).read_choice
    assert reader is not None, f"mode {reads} answers with probabilities, not text"
    return reader(text)


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
    if settings.rates and pair.kind == "samples" and pair.prompt_id:
        return pair.prompt_id
    return pair.pair_id


class _Asked:
    """One order's answer: P(first shown preferred), rationale, tokens."""

    def __init__(self, p_first: float, rationale: str | None, prompt_tokens: int, completion_tokens: int) -> None:
        self.p_first, self.rationale = p_first, rationale
        self.prompt_tokens, self.completion_tokens = prompt_tokens, completion_tokens


async def _ask(model: ChatModel, request: Messages, settings: JudgeSettings) -> _Asked:
    spec = settings.spec
    if spec.logprobs:
        probs = await model.choice_logprobs(request, OPTIONS)
        return _Asked(probs.probs["A"], None, probs.prompt_tokens, 1)
    raws: list[str] = []
    for attempt in range(settings.max_retries + 1):
        [completion] = await model.generate([request], settings.attempt(attempt))
        raws.append(completion.text)
        try:
            letter = parse_verdict(completion.text, spec.name)
        except JudgeParseError:
            continue
        low, high = settings.clamp if spec.clamped else (0.0, 1.0)
        p_first = high if letter == "A" else low
        return _Asked(p_first, completion.text, completion.prompt_tokens, completion.completion_tokens)
    raise JudgeParseError(f"unparseable judge output after {len(raws)} tries", raw=raws[-1], attempts=len(raws))


async def p_first(
    model: ChatModel,
    prompt: list[Message],
    first: str,
    second: str,
    principle: Principle,
    settings: JudgeSettings,
    fenced: bool = True,
) -> float:
    """P(the response shown first is preferred) under one principle, in one order (the judge's unit question).

    Raises JudgeParseError (no parseable answer after retries) or ProviderError; never returns a default."""
    request = comparison_prompt(prompt, first, second, principle, settings.reads, fenced=fenced)
    return (await _ask(model, request, settings)).p_first


def _same_winner(p_ab: float, p_ba: float) -> bool:
    side = lambda p: (p > 0.5) - (p < 0.5)  # noqa: E731
    return side(p_ab) == side(p_ba)


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def _order_requests(pair: Pair, principle: Principle, settings: JudgeSettings) -> list[Messages]:
    """One principle's comparison requests: `a` shown first, then (both orders) `b` shown first."""
    shown = [(pair.a, pair.b), (pair.b, pair.a)][: 2 if settings.orders == "both" else 1]
    return [comparison_prompt(pair.prompt, first, second, principle, settings.reads) for first, second in shown]


def _vote(principle_id: str, answers: Sequence[_Asked]) -> tuple[Vote, int, int]:
    """One principle's vote from its answers in each order asked, and their tokens."""
    p_ab = answers[0].p_first
    p_ba = 1.0 - answers[1].p_first if len(answers) > 1 else None
    vote = Vote(
        principle_id=principle_id,
        p_a=p_ab if p_ba is None else (p_ab + p_ba) / 2,
        p_a_ab=p_ab,
        p_a_ba=p_ba,
        consistent=None if p_ba is None else _same_winner(p_ab, p_ba),
        rationale_ab=answers[0].rationale,
        rationale_ba=answers[1].rationale if len(answers) > 1 else None,
    )
    return vote, sum(a.prompt_tokens for a in answers), sum(a.completion_tokens for a in answers)


async def _compare_all_principles(
    model: ChatModel, constitution: Constitution, pair: Pair, settings: JudgeSettings, principle_ids: list[str]
) -> list[tuple[Vote, int, int] | BaseException]:
    """Pairwise modes: every principle in each order, one call each; a principle's outcome is its vote or the error
    of its first failed order.

    Warm, then fan out, so that each call reads from the provider's prompt cache what it shares with a call already
    answered: the pair's first call (the first principle, `a` shown first) is answered before any other is sent;
    then the other principles in that order (they share everything up to the question) and, at the same time, the
    other order, warmed the same way by its own first call (it shares the instructions and the conversation)."""
    first, *others = zip(*(_order_requests(pair, constitution.principle(pid), settings) for pid in principle_ids))
    calls: list[Callable[[], Awaitable[Any]]] = [functools.partial(_ask, model, r, settings) for r in first]
    calls += [functools.partial(_ask_in_turn, model, order, settings) for order in others]
    outcomes = await warm_then_fan_out(calls, warm=settings.warm_cache, dooms=dooms_run)
    if len(outcomes) < len(calls):  # the first call failed in a way that dooms the run: nothing else was sent
        return outcomes
    by_order = [outcomes[: len(first)], *outcomes[len(first) :]]
    votes: list[tuple[Vote, int, int] | BaseException] = []
    for i, pid in enumerate(principle_ids):
        answers = [order[i] for order in by_order]
        errors = [a for a in answers if isinstance(a, BaseException)]
        votes.append(errors[0] if errors else _vote(pid, answers))
    return votes


async def _ask_in_turn(model: ChatModel, requests: Sequence[Messages], settings: JudgeSettings) -> list[Any]:
    """One order's calls, warmed by its first (they share everything up to the question): an answer or an error
    each; when the first fails in a way that dooms the run, its error stands for the calls never sent."""
    calls = [functools.partial(_ask, model, request, settings) for request in requests]
    outcomes = await warm_then_fan_out(calls, warm=settings.warm_cache, dooms=dooms_run)
    return outcomes + outcomes[:1] * (len(calls) - len(outcomes))


async def _score_principle(
    model: ChatModel, constitution: Constitution, pair: Pair, settings: JudgeSettings, principle_id: str
) -> tuple[Vote, int, int]:
    """Mode `score`: rate `a` and `b` alone under the principle; the vote's p is 0.5 plus half the normalised gap."""
    rated = await asyncio.gather(
        score_response(model, constitution, pair.prompt, pair.a, [principle_id], settings),
        score_response(model, constitution, pair.prompt, pair.b, [principle_id], settings),
        return_exceptions=True,
    )
    errors = [r for r in rated if isinstance(r, BaseException)]
    if errors:
        raise errors[0]
    [[a], [b]] = rated  # type: ignore[misc]
    p_a = p_first_from_scores(a.score, b.score, settings.scale)
    vote = Vote(principle_id=principle_id, p_a=p_a, p_a_ab=p_a, score_a=a.score, score_b=b.score)
    return vote, a.prompt_tokens + b.prompt_tokens, a.completion_tokens + b.completion_tokens


async def _score_all_principles(
    model: ChatModel, constitution: Constitution, pair: Pair, settings: JudgeSettings, principle_ids: list[str]
) -> list[tuple[Vote, int, int]]:
    """Mode `rubric`: rate `a` and `b` alone, each in one call for every principle; the votes are those of mode
    `score` (the call's tokens count on the first principle's vote)."""
    rated = await asyncio.gather(
        score_response(model, constitution, pair.prompt, pair.a, principle_ids, settings),
        score_response(model, constitution, pair.prompt, pair.b, principle_ids, settings),
        return_exceptions=True,
    )
    errors = [r for r in rated if isinstance(r, BaseException)]
    if errors:
        raise errors[0]
    scores_a, scores_b = [r for r in rated if not isinstance(r, BaseException)]
    votes = []
    for a, b in zip(scores_a, scores_b):
        p_a = p_first_from_scores(a.score, b.score, settings.scale)
        vote = Vote(principle_id=a.principle_id, p_a=p_a, p_a_ab=p_a, score_a=a.score, score_b=b.score)
        votes.append((vote, a.prompt_tokens + b.prompt_tokens, a.completion_tokens + b.completion_tokens))
    return votes


async def _ask_votes(
    model: ChatModel, constitution: Constitution, pair: Pair, settings: JudgeSettings, principle_ids: list[str]
) -> list[tuple[Vote, int, int] | BaseException]:
    """Each principle's vote, or the error that stopped it; every call runs to its end (its answer is paid for and
    cached) before the judgment is decided."""
    if settings.spec.all_principles:
        try:
            return list(await _score_all_principles(model, constitution, pair, settings, principle_ids))
        except Exception as exc:  # the one failure stands for every principle the call covered
            return [exc]
    if settings.spec.kind == "pairwise":
        return await _compare_all_principles(model, constitution, pair, settings, principle_ids)
    return await warm_then_fan_out(
        [functools.partial(_score_principle, model, constitution, pair, settings, pid) for pid in principle_ids],
        warm=settings.warm_cache,
        dooms=dooms_run,
    )  # each response's first rating warms the cache for its others (a's and b's prompts share no long prefix)


async def judge_pair(
    model: ChatModel | Panel,
    constitution: Constitution,
    pair: Pair,
    settings: JudgeSettings,
    principle_ids: list[str],
    judge_fp: str,
) -> Judgment:
    """Judge one pair under each principle (both orders if set); a failed parse is a failed judgment. A `Panel`
    asks each member and pools their votes (a pair any member fails is a failed judgment of the panel)."""
    if isinstance(model, Panel):
        return await _panel_pair(model, constitution, pair, settings, principle_ids, judge_fp)
    base = {
        "pair_id": pair.pair_id,
        "fingerprint": judge_fp,
        "mode": settings.mode,
        "orders": settings.orders_asked,
        "judge_model": model.model_id,
        "principle_ids": principle_ids,
    }
    outcomes = await _ask_votes(model, constitution, pair, settings, principle_ids)
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
        position_consistent=None if p_ba is None else _same_winner(p_ab, p_ba),
        principles=votes,
        prompt_tokens=sum(t for _, t, _ in per),
        completion_tokens=sum(t for _, _, t in per),
    )


async def _panel_pair(
    panel: Panel,
    constitution: Constitution,
    pair: Pair,
    settings: JudgeSettings,
    principle_ids: list[str],
    judge_fp: str,
) -> Judgment:
    outcomes = await asyncio.gather(
        *(judge_pair(m, constitution, pair, settings, principle_ids, judge_fp) for m in panel.members),
        return_exceptions=True,
    )  # every member's calls run to their end before a fatal error is raised
    fatal = [o for o in outcomes if isinstance(o, BaseException)]
    if fatal:
        raise fatal[0]
    judgments = [o for o in outcomes if not isinstance(o, BaseException)]
    return pool([{pair.pair_id: j} for j in judgments], panel.model_id, panel.weights)[pair.pair_id]


def judge_failure(error: BaseException) -> Failure:
    """The failure record of a judgment: an unparseable answer, or a call that failed for good."""
    if isinstance(error, JudgeParseError):
        return Failure(kind=error.kind, message=str(error), raw=error.raw, attempts=error.attempts)
    assert isinstance(error, ProviderError)
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


async def judgments_by_pair(
    model: ChatModel,
    constitution: Constitution,
    pairs: Iterable[Pair],
    settings: JudgeSettings,
    seed: int = 0,
    concurrency: int = 64,
    *,
    close: bool = False,
) -> dict[str, Judgment]:
    """Every pair's judgment by pair id (`judge_many`, collected); with `close`, the model is closed after, whatever
    happens."""
    try:
        return {j.pair_id: j async for j in judge_many(model, constitution, pairs, settings, seed, concurrency)}
    finally:
        if close:
            await model.aclose()
