"""The AI judge (RL-CAI / RLAIF): a multiple-choice comparison per principle, evaluated in both
orders so position bias cancels, with an ensemble over principles.

`judge_pair` judges a pair the way its mode's entry in `charter.judge.modes` says: the pairwise kind here
(`COMPARES`: both responses in one prompt), the rating kinds in `charter.judge.score`. How a reply is asked for and
read is the entry's `Reply`: `logprobs` reads P("A") vs P("B") as the next token; `cot` asks for reasoning then a
verdict and clamps each vote into `clamp` (Bai et al. 2022 use 40-60% for chain-of-thought labels); `verdict` asks for
a single letter. Unparseable output is re-asked, then recorded as a failure with the raw text: never a silent default.
A `charter.judge.panel.Panel` is a judge too: `judge_pair` asks each member and pools their judgments.
"""

from __future__ import annotations

import functools
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Any

from charter.concurrency import bounded_map, warm_then_fan_out
from charter.constitutions.schema import Constitution, Principle
from charter.errors import ConfigError, JudgeParseError, ProviderError
from charter.judge.asking import ask_until_read, dooms_run
from charter.judge.entry import JudgeOptions, Kind, Outcome
from charter.judge.score import rating_fingerprint_fields
from charter.judge_prompt import PROMPT_FORMAT, write_comparison
from charter.messages import render_conversation, user
from charter.providers.base import ChatModel, Completion, Messages
from charter.records import Failure, Judgment, Message, Pair, Vote, fingerprint

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

OPTIONS = ("A", "B")


def judge_fingerprint(settings: JudgeOptions, model: str, constitution: Constitution, seed: int) -> str:
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
    if settings.rates_alone:
        data.update(rating_fingerprint_fields(settings))
    if not settings.asks_logprobs:
        data.update(params=settings.sampling().model_dump(mode="json"), max_retries=settings.max_retries)
    if settings.reply.clamped:
        data["clamp"] = list(settings.clamp)
    return fingerprint(data)


def comparison_prompt(
    prompt: list[Message], first: str, second: str, principle: Principle, instruction: str, fenced: bool = True
) -> Messages:
    """The multiple-choice question for one principle and one presentation order, ending on `instruction` (a judge
    mode's, `JudgeSettings.reply.instruction`). charter.judge_prompt writes it: fenced in format 3; `fenced=False`
    gives the unfenced format 1, kept so that an audit can show what the fences buy."""
    text = write_comparison(
        render_conversation(prompt), principle.comparison, principle.description, first, second, instruction, fenced
    )
    return [user(text)]


def sample_principles(constitution: Constitution, k: int, rng: random.Random) -> list[str]:
    """k distinct principle ids, drawn by weight without replacement."""
    pool = list(constitution.principles)
    chosen: list[str] = []
    for _ in range(min(k, len(pool))):
        pick = rng.choices(pool, weights=[p.weight for p in pool])[0]
        chosen.append(pick.id)
        pool.remove(pick)
    return chosen


def principles_for(constitution: Constitution, settings: JudgeOptions, pair_id: str, seed: int) -> list[str]:
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


def principle_key(pair: Pair, settings: JudgeOptions) -> str:
    """What a pair's principles are drawn by: its id, or under mode `score` the prompt of a samples pair (every
    sample of a prompt is rated under the same principles, so that their scores compare)."""
    if settings.rates_alone and pair.kind == "samples" and pair.prompt_id:
        return pair.prompt_id
    return pair.pair_id


class _Asked:
    """One order's answer: P(first shown preferred), rationale, tokens."""

    def __init__(self, p_first: float, rationale: str | None, prompt_tokens: int, completion_tokens: int) -> None:
        self.p_first, self.rationale = p_first, rationale
        self.prompt_tokens, self.completion_tokens = prompt_tokens, completion_tokens


def _unparseable(_: JudgeParseError, completions: list[Completion]) -> JudgeParseError:
    tries = len(completions)
    return JudgeParseError(f"unparseable judge output after {tries} tries", raw=completions[-1].text, attempts=tries)


async def _ask(model: ChatModel, request: Messages, settings: JudgeOptions) -> _Asked:
    reply = settings.reply
    if reply.logprobs:
        probs = await model.choice_logprobs(request, OPTIONS)
        return _Asked(probs.probs["A"], None, probs.prompt_tokens, 1)
    assert reply.read is not None  # a text reply has a reader (register_mode checks)
    letter, completions = await ask_until_read(model, request, settings, reply.read, _unparseable)
    low, high = settings.clamp if reply.clamped else (0.0, 1.0)
    last = completions[-1]
    return _Asked(high if letter == "A" else low, last.text, last.prompt_tokens, last.completion_tokens)


async def p_first(
    model: ChatModel,
    prompt: list[Message],
    first: str,
    second: str,
    principle: Principle,
    settings: JudgeOptions,
    fenced: bool = True,
) -> float:
    """P(the response shown first is preferred) under one principle, in one order (the judge's unit question).

    Raises JudgeParseError (no parseable answer after retries) or ProviderError; never returns a default."""
    request = comparison_prompt(prompt, first, second, principle, settings.reply.instruction, fenced=fenced)
    return (await _ask(model, request, settings)).p_first


def _same_winner(p_ab: float, p_ba: float) -> bool:
    side = lambda p: (p > 0.5) - (p < 0.5)  # noqa: E731
    return side(p_ab) == side(p_ba)


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def _order_requests(pair: Pair, principle: Principle, settings: JudgeOptions) -> list[Messages]:
    """One principle's comparison requests: `a` shown first, then (both orders) `b` shown first."""
    shown = [(pair.a, pair.b), (pair.b, pair.a)][: 2 if settings.orders == "both" else 1]
    instruction = settings.reply.instruction
    return [comparison_prompt(pair.prompt, first, second, principle, instruction) for first, second in shown]


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


async def compare_principles(
    model: ChatModel, constitution: Constitution, pair: Pair, settings: JudgeOptions, principle_ids: list[str]
) -> list[Outcome]:
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
    votes: list[Outcome] = []
    for i, pid in enumerate(principle_ids):
        answers = [order[i] for order in by_order]
        errors = [a for a in answers if isinstance(a, BaseException)]
        votes.append(errors[0] if errors else _vote(pid, answers))
    return votes


async def _ask_in_turn(model: ChatModel, requests: Sequence[Messages], settings: JudgeOptions) -> list[Any]:
    """One order's calls, warmed by its first (they share everything up to the question): an answer or an error
    each; when the first fails in a way that dooms the run, its error stands for the calls never sent."""
    calls = [functools.partial(_ask, model, request, settings) for request in requests]
    outcomes = await warm_then_fan_out(calls, warm=settings.warm_cache, dooms=dooms_run)
    return outcomes + outcomes[:1] * (len(calls) - len(outcomes))


#: Two responses compared in one prompt under each principle, in each order asked (modes `logprobs`, `cot`,
#: `verdict`).
COMPARES = Kind("pairwise", compare_principles)


@functools.singledispatch
async def judge_pair(
    model: ChatModel,
    constitution: Constitution,
    pair: Pair,
    settings: JudgeOptions,
    principle_ids: list[str],
    judge_fp: str,
) -> Judgment:
    """Judge one pair under each principle, as the settings' mode judges (`Mode.kind`); a failed parse is a failed
    judgment, an error that dooms the run is raised once every call has run to its end. A judge made of judges
    registers its own way (`charter.judge.panel.Panel` asks each member and pools their judgments)."""
    base = {
        "pair_id": pair.pair_id,
        "fingerprint": judge_fp,
        "mode": settings.mode,
        "orders": settings.orders_asked,
        "judge_model": model.model_id,
        "principle_ids": principle_ids,
    }
    outcomes = await settings.mode_entry.kind.judge(model, constitution, pair, settings, principle_ids)
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


def judge_failure(error: BaseException) -> Failure:
    """The failure record of a judgment: an unparseable answer, or a call that failed for good."""
    assert isinstance(error, JudgeParseError | ProviderError)
    return Failure(kind=error.kind, message=str(error), raw=error.raw, attempts=error.attempts)


async def judge_many(
    model: ChatModel,
    constitution: Constitution,
    pairs: Iterable[Pair],
    settings: JudgeOptions,
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
    settings: JudgeOptions,
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
