"""A judgment, and what every judgment does the same way.

A judgment is a subject (a response, a pair, a group of responses) judged against criteria (the constitution's
principles, or the prompt's own checklist) by a kind of judgment (pairwise, rating, checklist, ranking), with a reply
asked for and read one way. The table of modes (`charter.judge.modes`) holds one `Mode` entry a mode, made of:

- `Reply`: how a reply is asked for and read: the instruction that ends the prompt, the reader of a text reply (or
  the option tokens' log-probabilities instead), the options with what each says, whether each vote is clamped, the
  reply budget, and how a scripted judge writes such a reply (`answer`);
- `Kind`: what kind of judgment the mode makes: its subject and criteria, and the callables that judge (a pair under
  its principles, one response alone, a pair or samples by their prompt's checklist, a group in one ordering);
- `JudgeOptions`: what a kind of judgment reads of its settings (`charter.judge.settings.JudgeSettings` has it).

Every judgment asks until the reply can be read, gathers calls that all run to their end, and tells an item's
failure from one that stops the run (`ask_until_read`, `gather_all`, `dooms_run`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeVar

from charter.checklist.aggregate import Aggregation
from charter.checklist.items import Checklist
from charter.constitutions.schema import Constitution
from charter.errors import ConfigError, FatalProviderError, JudgeParseError, LogprobsUnsupported, ProviderError
from charter.providers.base import ChatModel, ChoiceProbs, Completion, Messages, SamplingParams
from charter.records import Conflict, Judgment, Message, Pair, Sample, Vote


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
    options: Mapping[str, float] = field(default_factory=lambda: dict(LETTERS))
    """A comparison's options, each with the P(the response shown first is preferred) it says: what `read` returns
    (one of them), and the tokens asked for when the reply is log-probabilities (P(first) is then the expected value
    over them). A graded mode gives more than two (`A>>B`: 1.0, `A>B`: 0.75, ...)."""
    answer: Callable[[Any], str] | None = None
    """How a scripted judge writes such a reply, given what it means to say: a comparison's P(first shown preferred)
    (the option nearest to it), a rating's score, a checklist's `{item id: (reason, verdict)}`, a ranking's order
    (1-based). The scripted, fault-injecting and lab judges of `charter.testing` ask the table for it
    (`charter.judge.modes.scripted_reply`). None: a comparison's option letter as `write_verdict` writes it."""


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


#: The options of a comparison answered with a letter: (A) is the response shown first.
LETTERS = {"A": 1.0, "B": 0.0}
#: What one judgment sees: one response alone, a pair of responses, or a group of responses ordered in one call (a
#: conversation or an agent's trajectory is one more subject, judged by a kind of its own).
Subject = Literal["response", "pair", "group", "step"]
#: What a subject is judged against: the constitution's principles (one vote each), or the prompt's own checklist
#: (its items, each answered; a per-prompt context the caller passes as `ChecklistCriteria`).
Criteria = Literal["principles", "checklist"]

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
class ChecklistCriteria:
    """A prompt's own criteria, for a kind that judges by checklist: its checklist, and how the verdicts on its items
    become a score (`explicit`: the items' weights and gates; `implicit`: the judge's overall score)."""

    checklist: Checklist
    aggregation: Aggregation


#: Judges a pair by its prompt's checklist (model, pair, criteria, settings, principle ids, the judge's fingerprint):
#: the judgment, failed where a call failed for good.
JudgesByChecklist = Callable[
    [ChatModel, Pair, ChecklistCriteria, "JudgeOptions", list[str], str], Awaitable["Judgment"]
]
#: Judges a pair into a whole judgment (model, constitution, pair, settings, principle ids, the judge's fingerprint),
#: for a kind whose judgment carries more than its votes; failed where a call failed for good.
JudgesWhole = Callable[[ChatModel, Constitution, Pair, "JudgeOptions", list[str], str], Awaitable["Judgment"]]
#: A sample with its score.
Scored = tuple[Sample, float]
#: Scores each sample of a prompt alone by its checklist (model, prompt, samples, criteria, settings): each scored
#: sample with its score, best first.
RanksByChecklist = Callable[
    [ChatModel, list[Message], Sequence[Sample], ChecklistCriteria, "JudgeOptions"], Awaitable[list[Scored]]
]
#: Orders a group of responses in one call (model, conversation, the responses as shown, the criteria's texts, the
#: mode's reply): the indexes of the responses, best first.
OrdersGroup = Callable[[ChatModel, list[Message], list[str], list[str], Reply], Awaitable[list[int]]]


@dataclass(frozen=True)
class Kind:
    """What kind of judgment a mode makes: its subject, its criteria and the callables that judge."""

    name: Literal["pairwise", "rating", "checklist", "ranking", "stepwise"]
    """`pairwise`: the two responses compared in one prompt; `rating`: each response rated alone, the ratings
    compared; `checklist`: each response checked alone against its prompt's checklist; `ranking`: a group ordered in
    one call; `stepwise`: each assistant step of a trajectory judged in the context of the turns before it."""
    judge: JudgesPair
    """Judges a pair under its principles (a kind that cannot raises `ConfigError` saying what it needs)."""
    rate: RatesResponse | None = None
    """A rating kind: rates one response (online rewards and ranked samples ask this)."""
    subject: Subject = "pair"
    """What one judgment sees: `response` for a kind that rates each response alone (a pair is then judged by the
    two ratings), `pair`, `group`, or `step` (an agent's step in the context of its trajectory's turns before it)."""
    criteria: Criteria = "principles"
    """What the subject is judged against."""
    judge_by_checklist: JudgesByChecklist | None = None
    """A checklist kind: judges a pair by its prompt's checklist (`charter.judge.pairwise.judge_pair` calls it with
    the `ChecklistCriteria` it is given)."""
    rank_by_checklist: RanksByChecklist | None = None
    """A checklist kind: scores a prompt's samples by its checklist (`charter.judge.score.rank_samples` calls it)."""
    order: OrdersGroup | None = None
    """A ranking kind: orders a group in one call (the online scoring `rank` asks it through its mode)."""
    judge_whole: JudgesWhole | None = None
    """A kind whose judgment carries more than its votes (the step kind: each response's first violating step):
    judges a pair into the whole judgment (`charter.judge.pairwise.judge_pair` calls it instead of `judge`)."""

    @property
    def needs_context(self) -> bool:
        """Whether a judgment needs per-prompt criteria (a checklist) besides the pair: a run judges such a mode's
        pairs only with each prompt's checklist (a `checklist:` section)."""
        return self.criteria != "principles"

    @property
    def rates_alone(self) -> bool:
        """Whether each response is judged alone (a pair by its two ratings or checks)."""
        return self.subject == "response"


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
    def needs_context(self) -> bool:
        """Whether its judgments need each prompt's checklist (its kind's `needs_context`)."""
        return self.kind.needs_context

    def all_replies(self) -> dict[str, Reply]:
        """Its replies by name (a mode with one reply: under its own name)."""
        return dict(self.replies) if self.reply is None else {self.name: self.reply}

    async def order(self, model: ChatModel, prompt: list[Message], shown: list[str], criteria: list[str]) -> list[int]:
        """A ranking mode's ordering of `shown` (indexes, best first) under `criteria`, in one call; ConfigError for
        a mode of another kind."""
        if self.kind.order is None or self.reply is None:
            raise ConfigError(f"judge mode {self.name!r} orders no group of responses")
        return await self.kind.order(model, prompt, shown, criteria, self.reply)


class JudgeOptions(Protocol):
    """What a kind of judgment reads of its settings (`JudgeSettings` has each)."""

    orders: Orders
    clamp: tuple[float, float]
    max_reasks: int
    scale: int
    warm_cache: bool
    spec_examples: int

    @property
    def mode(self) -> str: ...

    @property
    def mode_entry(self) -> Mode: ...

    @property
    def reply(self) -> Reply: ...

    @property
    def without_probabilities(self) -> str: ...

    def attempt(self, number: int) -> SamplingParams: ...


T = TypeVar("T")


async def next_token_probabilities(
    model: ChatModel, request: Messages, options: Sequence[str], settings: JudgeOptions
) -> ChoiceProbs:
    """The options' probabilities as the next token of the reply to `request`. A backend that gives none raises
    `LogprobsUnsupported`, here with what the table of modes offers instead (`JudgeOptions.without_probabilities`)."""
    try:
        return await model.choice_logprobs(request, options)
    except LogprobsUnsupported as exc:
        raise LogprobsUnsupported(f"{exc}; {settings.without_probabilities}") from None


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


#: One tier of principles asked together: its level's name and the principle ids at it, in the ensemble's order.
Tier = tuple[str, list[str]]
#: What a tier said: its name and the votes of its principles.
TierVotes = tuple[str, list[Vote]]
#: The level name of the hard constraints, which come before every level in priority order.
HARD_TIER = "hard"


@dataclass(frozen=True)
class Settled:
    """What a combination rule makes of the votes asked so far: the judgment's P(a better) in each order, and
    the level that settled the pair (None: none did, or the rule does not settle by level)."""

    p_a: float
    p_a_ab: float
    p_a_ba: float | None
    level: str | None = None


@dataclass(frozen=True)
class Combination:
    """A rule that combines a pair's per-principle votes into one judgment: the order its principles are asked in
    (tiers), and what the votes of the tiers asked so far say. A rule that settles by level lets a judgment stop
    asking once a tier settles the pair (`JudgeSettings.settle_early`)."""

    name: str
    description: str
    tiers: Callable[[Constitution, list[str]], list[Tier]]
    """The principles of an ensemble in the order they are asked, as tiers (one tier: all asked together)."""
    settle: Callable[[list[TierVotes], float], Settled]
    """The judgment from the tiers' votes, with the margin a verdict must clear to be decisive."""
    recorded: bool = True
    """Whether a judgment records the rule and its settlement (`Judgment.combined`); the default rule records
    nothing, so that its rows and fingerprints stay as they were before rules could be chosen."""


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def _mean_votes(votes: Sequence[Vote]) -> tuple[float, float, float | None]:
    p_bas = [v.p_a_ba for v in votes if v.p_a_ba is not None]
    return _mean([v.p_a for v in votes]), _mean([v.p_a_ab for v in votes]), _mean(p_bas) if p_bas else None


def _one_tier(_: Constitution, principle_ids: list[str]) -> list[Tier]:
    return [("all", list(principle_ids))]


def _weighted(tiers: list[TierVotes], _: float) -> Settled:
    return Settled(*_mean_votes([vote for _, votes in tiers for vote in votes]))


def side(p_ab: float, p_ba: float | None, margin: float = 0.0) -> int:
    """The response a verdict prefers: 1 for `a`, -1 for `b`, 0 for none (undecided: within `margin` of 0.5, or
    the two orders asked pick different winners)."""
    sides = {(p > 0.5 + margin) - (p < 0.5 - margin) for p in ([p_ab] if p_ba is None else [p_ab, p_ba])}
    return sides.pop() if len(sides) == 1 else 0


def vote_side(vote: Vote, margin: float = 0.0) -> int:
    """The response one principle's vote prefers (`side`)."""
    return side(vote.p_a_ab, vote.p_a_ba, margin)


def priority_tiers(constitution: Constitution, principle_ids: list[str]) -> list[Tier]:
    """An ensemble's principles in priority order: its hard constraints first, then each level's principles,
    highest level first (a flat constitution is one level, `all`); a tier the ensemble has no principle of is left
    out."""
    chosen = set(principle_ids)
    hard = [pid for pid in principle_ids if constitution.principle(pid).hard]
    tiers: list[Tier] = [(HARD_TIER, hard)]
    for level, principles in constitution.level_order():
        tiers.append((level, [p.id for p in principles if p.id in chosen and not p.hard]))
    order = {pid: i for i, pid in enumerate(principle_ids)}
    return [(name, sorted(ids, key=order.__getitem__)) for name, ids in tiers if ids]


def _lexicographic(tiers: list[TierVotes], margin: float) -> Settled:
    """The first tier whose mean verdict is decisive settles the pair, with its own P; undecided tiers fall through;
    with none decisive, the mean of every vote asked."""
    for name, votes in tiers:
        p_a, p_ab, p_ba = _mean_votes(votes)
        if side(p_ab, p_ba, margin):
            return Settled(p_a, p_ab, p_ba, level=name)
    return _weighted(tiers, margin)


def conflicts(tiers: list[TierVotes], settled: Settled, margin: float) -> list[Conflict]:
    """Each (principle at the settling level that preferred the winner, principle at a lower level that preferred
    the other response)."""
    if settled.level is None:
        return []
    names = [name for name, _ in tiers]
    at = names.index(settled.level)
    winner = side(settled.p_a_ab, settled.p_a_ba, margin)
    ahead = [v.principle_id for v in tiers[at][1] if vote_side(v, margin) == winner]
    return [
        Conflict(settled_by=high, level=settled.level, overruled=low.principle_id, overruled_level=name)
        for high in ahead
        for name, votes in tiers[at + 1 :]
        for low in votes
        if vote_side(low, margin) == -winner
    ]


#: The rule every judgment combined its votes by before rules could be chosen, and still does by default.
DEFAULT_COMBINATION = "weighted"
#: The table of combination rules, by name (`JudgeSettings.combine` takes one).
COMBINATIONS: dict[str, Combination] = {}


def register_combination(rule: Combination) -> None:
    """Add a combination rule to the table (`JudgeSettings.combine` then accepts its name)."""
    COMBINATIONS[rule.name] = rule


register_combination(
    Combination(
        "weighted",
        "the mean of every principle's vote (the ensemble is drawn by weight)",
        _one_tier,
        _weighted,
        recorded=False,
    )
)
register_combination(
    Combination(
        "priority",
        "in priority order: hard constraints, then each level highest first; the first decisive level settles the "
        "pair, undecided levels fall through",
        priority_tiers,
        _lexicographic,
    )
)
