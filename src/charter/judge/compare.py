"""The pairwise kind of judgment (`COMPARES`, the judge modes `logprobs`, `cot` and `verdict`): a multiple-choice
comparison of two responses per principle, asked in both orders so that position bias cancels.

How the reply is asked for and read is the mode's `Reply`: `logprobs` reads P("A") vs P("B") as the next token; `cot`
asks for reasoning then a verdict and clamps each vote into `clamp` (Bai et al. 2022 use 40-60% for chain-of-thought
labels); `verdict` asks for a single letter. Unparseable output is re-asked, then recorded as a failure with the raw
text: never a silent default.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from charter.concurrency import warm_then_fan_out
from charter.constitutions.schema import Constitution, Principle
from charter.errors import ConfigError, JudgeParseError
from charter.judge.judgment import (
    JudgeOptions,
    Kind,
    Reply,
    VoteOutcome,
    ask_until_read,
    dooms_run,
    next_token_probabilities,
)
from charter.judge_prompt import RANKING_SCHEMA, render_conversation, write_comparison, write_ranking
from charter.providers.base import ChatModel, Completion, Messages, SamplingParams
from charter.records import Message, Pair, Vote
from charter.records.base import user

__all__ = [
    "COMPARES",
    "ORDERS",
    "ROLE_AUTHORITY",
    "authority_note",
    "compare_principles",
    "order_group",
    "comparison_prompt",
    "p_first",
    "same_winner",
]


#: Who speaks with which authority: a chat role, how the judge's prompt names its speaker, and the level of a chain of
#: command its messages carry. `developer` is the hook for conversations whose messages carry that role.
ROLE_AUTHORITY = {"system": ("System", "system"), "developer": ("Developer", "developer"), "user": ("Human", "user")}


def authority_note(principle: Principle, prompt: Sequence[Message]) -> str | None:
    """For a principle that is a default: the paragraph that tells the judge an instruction at one of its
    `overridable_by` levels may override it, and which messages of the conversation carry which authority. None for
    any other principle (its prompt is as it always was)."""
    if not principle.default:
        return None
    levels = ", ".join(principle.overridable_by)
    roles = {m.role for m in prompt}
    speakers = [
        f"{name} messages speak at level {level}" for role, (name, level) in ROLE_AUTHORITY.items() if role in roles
    ]
    said = f" In this conversation, {'; '.join(speakers)}." if speakers else ""
    return (
        f"This principle is a default, not a fixed rule: an instruction in a message at level {levels} may override "
        f"it, and a response that follows such an instruction does not fall short of it.{said}"
    )


def worked_examples(principle: Principle, prompt: Sequence[Message], limit: int) -> str | None:
    """Up to `limit` of the principle's own spec examples as a paragraph before its question (`Principle.
    shown_examples`: never the conversation judged); None where there are none to show (the prompt as it was)."""
    shown = principle.shown_examples(prompt, limit) if limit else []
    if not shown:
        return None
    parts = ["The spec's own examples for this principle, each with a reply it calls good and one it calls bad:"]
    for number, (example, good, bad) in enumerate(shown, 1):
        said = "\n".join(f"{m.role}: {m.content}" for m in example.conversation)
        parts.append(
            f"Example {number}:\n{said}\nGood reply: {good.content}"
            + (f"\n(Why: {good.why})" if good.why else "")
            + f"\nBad reply: {bad.content}"
            + (f"\n(Why: {bad.why})" if bad.why else "")
        )
    return "\n\n".join(parts)


def before_question(principle: Principle, prompt: Sequence[Message], examples: int) -> str | None:
    """What goes before a principle's question: its spec examples (`examples` of them) and, for a default, what may
    override it; None for neither."""
    said = [p for p in (worked_examples(principle, prompt, examples), authority_note(principle, prompt)) if p]
    return "\n\n".join(said) or None


def comparison_prompt(
    prompt: list[Message],
    first: str,
    second: str,
    principle: Principle,
    instruction: str,
    fenced: bool = True,
    examples: int = 0,
) -> Messages:
    """The multiple-choice question for one principle and one presentation order, ending on `instruction` (a judge
    mode's, `JudgeSettings.reply.instruction`). charter.judge_prompt writes it: fenced in format 3; `fenced=False`
    gives the unfenced format 1, kept so that an audit can show what the fences buy. A principle's question comes
    after its spec examples (`examples` of them) and, for a default, what may override it (`before_question`)."""
    text = write_comparison(
        render_conversation(prompt, authority=principle.ranked),
        principle.comparison,
        principle.description,
        first,
        second,
        instruction,
        fenced,
        authority=before_question(principle, prompt, examples),
    )
    return [user(text)]


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
    if reply.logprobs:  # P(first preferred): the expected value over the options' probabilities
        probs = await next_token_probabilities(model, request, tuple(reply.options), settings)
        p = sum(probs.probs[option] * says for option, says in reply.options.items())
        return _Asked(p, None, probs.prompt_tokens, 1)
    assert reply.read is not None  # a text reply has a reader (register_mode checks)
    option, completions = await ask_until_read(model, request, settings, reply.read, _unparseable)
    low, high = settings.clamp if reply.clamped else (0.0, 1.0)
    last = completions[-1]
    return _Asked(_between(reply.options[option], low, high), last.text, last.prompt_tokens, last.completion_tokens)


def _between(says: float, low: float, high: float) -> float:
    """An option's P(first preferred) moved into [low, high]: its ends onto the ends, a grade in between."""
    return high if says == 1.0 else low if says == 0.0 else low + (high - low) * says


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
    request = comparison_prompt(
        prompt, first, second, principle, settings.reply.instruction, fenced=fenced, examples=settings.spec_examples
    )
    return (await _ask(model, request, settings)).p_first


def same_winner(p_ab: float, p_ba: float) -> bool:
    """Whether two probabilities that `a` is better pick the same side (0.5 picks neither)."""
    side = lambda p: (p > 0.5) - (p < 0.5)  # noqa: E731
    return side(p_ab) == side(p_ba)


def _order_requests(pair: Pair, principle: Principle, settings: JudgeOptions) -> list[Messages]:
    """One principle's comparison requests: `a` shown first, then (both orders) `b` shown first."""
    shown = [(pair.a, pair.b), (pair.b, pair.a)][: 2 if settings.orders == "both" else 1]
    instruction = settings.reply.instruction
    examples = settings.spec_examples
    return [
        comparison_prompt(pair.prompt, first, second, principle, instruction, examples=examples)
        for first, second in shown
    ]


def _vote(principle_id: str, answers: Sequence[_Asked]) -> tuple[Vote, int, int]:
    """One principle's vote from its answers in each order asked, and their tokens."""
    p_ab = answers[0].p_first
    p_ba = 1.0 - answers[1].p_first if len(answers) > 1 else None
    vote = Vote(
        principle_id=principle_id,
        p_a=p_ab if p_ba is None else (p_ab + p_ba) / 2,
        p_a_ab=p_ab,
        p_a_ba=p_ba,
        consistent=None if p_ba is None else same_winner(p_ab, p_ba),
        rationale_ab=answers[0].rationale,
        rationale_ba=answers[1].rationale if len(answers) > 1 else None,
    )
    return vote, sum(a.prompt_tokens for a in answers), sum(a.completion_tokens for a in answers)


async def compare_principles(
    model: ChatModel, constitution: Constitution, pair: Pair, settings: JudgeOptions, principle_ids: list[str]
) -> list[VoteOutcome]:
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
    votes: list[VoteOutcome] = []
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


async def order_group(
    model: ChatModel, prompt: list[Message], shown: list[str], criteria: list[str], reply: Reply
) -> list[int]:
    """One ordering call: the indexes (into `shown`) best first, under the criteria's texts, asked and read as the
    ranking mode's `reply` says (one structured-output call, greedy; a reply that is no ordering of them all raises
    `JudgeParseError`)."""
    text = write_ranking(render_conversation(prompt), criteria, shown, reply.instruction)
    budget = reply.max_tokens + 8 * len(shown)
    params = SamplingParams(temperature=0.0, max_tokens=budget, seed=0, json_schema=RANKING_SCHEMA)
    [answer] = await model.generate([[user(text)]], params)
    assert reply.read is not None  # a text reply has a reader (register_mode checks)
    return reply.read(answer.text, len(shown))


async def _orders_no_pair(
    model: ChatModel, constitution: Constitution, pair: Pair, settings: JudgeOptions, ids: list[str]
) -> list[VoteOutcome]:
    raise ConfigError(
        f"judge mode {settings.mode} orders a prompt's completions together (a reward scoring asks it); it judges "
        "no pair"
    )


#: A group of responses ordered in one call (mode `rank`).
ORDERS = Kind("ranking", _orders_no_pair, subject="group", order=order_group)
#: Two responses compared in one prompt under each principle, in each order asked (modes `logprobs`, `cot`,
#: `verdict`).
COMPARES = Kind("pairwise", compare_principles)
