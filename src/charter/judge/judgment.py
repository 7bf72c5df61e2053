"""What an entry of the table of modes is made of (`charter.judge.modes` holds the entries):

- `Reply`: how a reply is asked for and read: the instruction that ends the prompt, the reader of a text reply (or
  the option tokens' log-probabilities instead), whether each vote is clamped, the reply budget;
- `Kind`: what kind of judgment the mode makes: a callable that judges a pair under its principles (comparing the
  two responses in one prompt, or rating each alone), and for a rating kind the callable that rates one response;
- `JudgeOptions`: what a kind of judgment reads of its settings (`charter.judge.settings.JudgeSettings` has it).

What every judgment does the same way: ask until the reply can be read, gather calls that all run to their end,
and tell an item's failure from one that stops the run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeVar

from charter.constitutions.schema import Constitution
from charter.errors import FatalProviderError, JudgeParseError, ProviderError
from charter.providers.base import ChatModel, Completion, Messages, SamplingParams
from charter.records import Message, Pair, Vote


@dataclass(frozen=True)
class Reply:
    """How a judge's reply is asked for and read."""

    instruction: str
    """The prompt's last paragraph, telling the judge how to answer (a rating's may name `{scale}`); one paragraph,
    so that testing judges find the options above it whatever it says."""
    read: Callable[..., Any] | None = None
    """The reader of a text reply: an option letter from the text (comparisons), a score from the text and the scale
    (ratings), the scores of the listed principles (one-call ratings); it raises `JudgeParseError` on a reply it
    cannot read, which is asked again, then recorded as a failure. None: the reply is log-probabilities."""
    logprobs: bool = False
    """The reply is the next-token probabilities of the option (or score) tokens, not text: such calls need a
    provider with `choice_logprobs`, and are never asked again."""
    clamped: bool = False
    """Each vote is clamped into `JudgeSettings.clamp` (chain-of-thought labels, Bai et al. 2022)."""
    max_tokens: int = 8
    """The reply budget of a text reply when `judge.params` sets none."""


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


#: Whether each comparison is asked with the responses in both orders or in one.
Orders = Literal["both", "one"]
#: One principle's vote with its prompt and completion tokens, or the error that stopped it.
VoteOutcome = tuple[Vote, int, int] | BaseException
#: Judges a pair under each principle (model, constitution, pair, settings, principle ids): an outcome each (or one
#: error standing for every principle a single call covered); every call runs to its end before it returns.
JudgesPair = Callable[[ChatModel, Constitution, Pair, "JudgeOptions", list[str]], Awaitable[list[VoteOutcome]]]


@dataclass(frozen=True)
class ToRate:
    """One response to rate alone: its conversation, the response, and the principles it is rated under."""

    prompt: list[Message]
    response: str
    principle_ids: Sequence[str]


#: Rates one response under each of its principles (model, constitution, the response to rate, settings); raises the
#: first failure once every call has run to its end.
RatesResponse = Callable[[ChatModel, Constitution, ToRate, "JudgeOptions"], Awaitable[list[PrincipleScore]]]


@dataclass(frozen=True)
class Kind:
    """What kind of judgment a mode makes."""

    name: Literal["pairwise", "rating"]
    """`pairwise`: the two responses compared in one prompt; `rating`: each response rated alone, the ratings
    compared."""
    judge: JudgesPair
    """Judges a pair under its principles."""
    rate: RatesResponse | None = None
    """A rating kind: rates one response (online rewards and ranked samples ask this)."""
    by_checklist: bool = False
    """Checks each response against its prompt's checklist rather than the constitution's principles: a run judges
    its pairs with `charter.judge.checklist` and the prompt's checklist (a `checklist:` section), not with `judge`."""


@dataclass(frozen=True)
class Mode:
    """One judge mode: what kind of judgment it makes, and how its reply is asked for and read."""

    name: str
    description: str
    kind: Kind
    reply: Reply | None = None
    """The mode's one way of replying."""
    replies: Mapping[str, Reply] = field(default_factory=dict)
    """Or the ways it may reply, by name, of which `JudgeSettings.rating` chooses one."""

    @property
    def by_checklist(self) -> bool:
        """Whether the mode checks responses against their prompt's checklist (its kind's `by_checklist`)."""
        return self.kind.by_checklist


class JudgeOptions(Protocol):
    """What a kind of judgment reads of its settings (`JudgeSettings` has each)."""

    orders: Orders
    clamp: tuple[float, float]
    max_reasks: int
    scale: int
    warm_cache: bool

    @property
    def mode_entry(self) -> Mode: ...

    @property
    def reply(self) -> Reply: ...

    def attempt(self, number: int) -> SamplingParams: ...


T = TypeVar("T")


async def ask_until_read(
    model: ChatModel,
    request: Messages,
    settings: JudgeOptions,
    read: Callable[[str], T],
    failed: Callable[[JudgeParseError, list[Completion]], JudgeParseError],
    json_schema: dict[str, Any] | None = None,
) -> tuple[T, list[Completion]]:
    """What `read` finds in the judge's reply to `request`, and every completion asked for it: a reply `read` cannot
    read (`JudgeParseError`) is asked again with the next try's sampling (`settings.attempt`), up to
    `settings.max_reasks` times; then the error `failed` makes of the last one and the completions is raised. Never a
    default."""
    completions: list[Completion] = []
    last = JudgeParseError("no reply")
    for attempt in range(settings.max_reasks + 1):
        params = settings.attempt(attempt)
        if json_schema is not None:
            params = params.model_copy(update={"json_schema": json_schema})
        [completion] = await model.generate([request], params)
        completions.append(completion)
        try:
            return read(completion.text), completions
        except JudgeParseError as exc:
            last = exc
    raise failed(last, completions)


def raise_first(outcomes: Sequence[T | BaseException]) -> list[T]:
    """The outcomes, or the first error among them raised."""
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
    return [o for o in outcomes if not isinstance(o, BaseException)]


async def gather_all(*calls: Awaitable[T]) -> list[T]:
    """Every call's result; every call runs to its end (its answer is paid for and cached) before the first error, if
    any, is raised."""
    return raise_first(await asyncio.gather(*calls, return_exceptions=True))


def dooms_run(error: BaseException) -> bool:
    """An error that is not one item's failure (auth, budget, a bug): it stops the run."""
    return not isinstance(error, JudgeParseError | ProviderError) or isinstance(error, FatalProviderError)
