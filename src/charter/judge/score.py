"""The kinds that judge each response alone. Rubric scores (the rating kinds: judge modes `score` and `rubric`): the
judge rates one response alone on a 1..K scale, per principle or for every principle in one call, and a pair's vote
compares the two responses' scores. Checklists (the checklist kind: judge mode `checklist`): each response checked
alone against its prompt's checklist; the checking itself (one structured-output call a response, verifier items by
code, the explicit and implicit aggregations) lives with the checklists, in `charter.checklist.check`, and this kind
hands it the `ChecklistCriteria` a caller gives the judge, so that no caller asks which mode it is.

Pointwise judging, as in Self-Rewarding and Meta-Rewarding language models (Yuan et al. 2024; Wu et al. 2024) and
UltraFeedback: k samples cost k calls per principle rather than k(k-1) comparisons. With `rating: logprobs` the score
is the expected value over the score tokens' probabilities; with `cot` or `verdict` it is the number the judge
writes. A reply without a valid score is re-asked, then recorded as a failure: never a default score.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from charter.checklist.check import judge_checklist_pair, rank_by_checklist
from charter.concurrency import warm_then_fan_out
from charter.constitutions.schema import Constitution
from charter.errors import ConfigError, JudgeParseError
from charter.judge.compare import before_question
from charter.judge.judgment import (
    ChecklistCriteria,
    JudgeOptions,
    Kind,
    PrincipleScore,
    RatesResponse,
    Scored,
    ToRate,
    VoteOutcome,
    ask_until_read,
    dooms_run,
    gather_all,
    next_token_probabilities,
    raise_first,
)
from charter.judge_prompt import (
    DEFAULT_RUBRIC,
    render_conversation,
    rubric_schema,
    with_actions,
    write_rating,
    write_rubric,
)
from charter.providers.base import ChatModel, Completion, Messages
from charter.records import Judgment, Message, Pair, Sample, Vote
from charter.records.base import user

__all__ = [
    "CHECKS_ITEMS",
    "RATES_ALL_PRINCIPLES",
    "RATES_EACH_PRINCIPLE",
    "PrincipleScore",
    "expected_score",
    "mean_score",
    "p_first_from_scores",
    "rank_samples",
    "rating_prompt",
    "rubric_failure",
    "rubric_prompt",
    "score_all",
    "score_each",
    "score_on_unit_scale",
    "rates_of",
    "score_one",
    "score_options",
    "ToRate",
]


def score_options(scale: int) -> tuple[str, ...]:
    """The score tokens 1..scale."""
    return tuple(str(i) for i in range(1, scale + 1))


def rating_prompt(
    constitution: Constitution, prompt: list[Message], response: str, principle_id: str, settings: JudgeOptions
) -> Messages:
    """The request that rates `response` under one principle."""
    principle = constitution.principle(principle_id)
    text = write_rating(
        render_conversation(prompt, authority=principle.ranked),
        constitution.rating_question(principle_id),
        principle.description,
        response,
        settings.scale,
        constitution.rubric or DEFAULT_RUBRIC,
        settings.reply.instruction,
        authority=before_question(principle, prompt, settings.spec_examples),
    )
    return [user(text)]


def expected_score(probs: dict[str, float]) -> float:
    """The mean score under the judge's probabilities of the score tokens (normalised over them)."""
    return sum(int(option) * p for option, p in probs.items())


def _no_score(last: JudgeParseError, completions: list[Completion]) -> JudgeParseError:
    said = "a score outside the scale" if last.kind == "out_of_scale" else "no score"
    tries = len(completions)
    return JudgeParseError(
        f"{said} in the judge's reply after {tries} tries", raw=completions[-1].text, attempts=tries, kind=last.kind
    )


async def score_one(
    model: ChatModel,
    constitution: Constitution,
    prompt: list[Message],
    response: str,
    principle_id: str,
    settings: JudgeOptions,
) -> PrincipleScore:
    """Rate one response under one principle. Raises JudgeParseError (no score after the retries) or ProviderError;
    never returns a default."""
    request = rating_prompt(constitution, prompt, response, principle_id, settings)
    reply = settings.reply
    if reply.logprobs:
        got = await next_token_probabilities(model, request, score_options(settings.scale), settings)
        return PrincipleScore(
            principle_id, expected_score(got.probs), dict(got.probs), None, got.prompt_tokens, 1, got.cached
        )
    assert reply.read is not None  # a text reply has a reader (register_mode checks)
    read = reply.read
    value, completions = await ask_until_read(
        model, request, settings, lambda text: read(text, settings.scale), _no_score
    )
    last = completions[-1]
    return PrincipleScore(
        principle_id, float(value), None, last.text, last.prompt_tokens, last.completion_tokens, last.cached
    )


async def score_each(
    model: ChatModel, constitution: Constitution, item: ToRate, settings: JudgeOptions
) -> list[PrincipleScore]:
    """Mode `score`: rate one response under each principle, one call each; every call runs to its end (paid for,
    cached) before the first error, if any, is raised."""
    rate = functools.partial(score_one, model, constitution, item.prompt, item.response)
    outcomes = await warm_then_fan_out(
        [functools.partial(rate, pid, settings) for pid in item.principle_ids],
        warm=settings.warm_cache,
        dooms=dooms_run,
    )  # the conversation and the response come first in each request: the first call warms the cache for the rest
    return raise_first(outcomes)


def rubric_prompt(constitution: Constitution, item: ToRate, settings: JudgeOptions) -> Messages:
    """The request that rates a response under every principle of `item` in one call (mode `rubric`)."""
    listed = [
        (pid, constitution.principle(pid).description, constitution.rating_question(pid)) for pid in item.principle_ids
    ]
    conversation, rubric = render_conversation(item.prompt), constitution.rubric or DEFAULT_RUBRIC
    text = write_rubric(conversation, item.response, listed, settings.scale, rubric, settings.reply.instruction)
    return [user(text)]


async def score_all(
    model: ChatModel, constitution: Constitution, item: ToRate, settings: JudgeOptions
) -> list[PrincipleScore]:
    """Mode `rubric`: rate one response under every principle in one structured-output call. A reply lacking some
    principle's score is re-asked (the scores read so far are kept); a principle still without one raises
    JudgeParseError naming it, never a default. The call's tokens are counted on the first principle's row."""
    ids = list(item.principle_ids)
    request = rubric_prompt(constitution, item, settings)
    assert settings.reply.read is not None
    read_scores = settings.reply.read
    found: dict[str, tuple[int, str]] = {}
    missing: dict[str, JudgeParseError] = {}

    def read(text: str) -> dict[str, tuple[int, str]]:
        for pid, value in read_scores(text, ids, settings.scale).items():
            if pid in found:
                continue
            if isinstance(value, JudgeParseError):
                missing[pid] = value
            else:
                found[pid] = (value, text)
                missing.pop(pid, None)
        if missing:
            raise JudgeParseError("some principles have no score yet", raw=text)
        return found

    def failed(_: JudgeParseError, completions: list[Completion]) -> JudgeParseError:
        return rubric_failure(list(missing.values()), len(completions))

    schema = rubric_schema(ids, settings.scale)
    _, completions = await ask_until_read(model, request, settings, read, failed, json_schema=schema)
    prompt_tokens = sum(c.prompt_tokens for c in completions)
    completion_tokens = sum(c.completion_tokens for c in completions)
    cached = all(c.cached for c in completions)
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


def rates_of(settings: JudgeOptions) -> RatesResponse:
    """How the settings' rating mode rates one response under each principle (`score_each` or `score_all`, or a
    registered mode's own); ConfigError for a mode that compares two responses."""
    rate = settings.mode_entry.kind.rate
    if rate is None:
        raise ConfigError(f"judge mode {settings.mode_entry.name!r} compares two responses; it rates none alone")
    return rate


def mean_score(scores: Sequence[PrincipleScore]) -> float:
    """The mean score over principles."""
    return sum(s.score for s in scores) / len(scores)


def score_on_unit_scale(score: float, scale: int) -> float:
    """A score on 1..scale mapped onto 0..1."""
    return (score - 1) / (scale - 1)


def p_first_from_scores(score_a: float, score_b: float, scale: int) -> float:
    """The row's p for two scores: 0.5 plus half the normalised gap (0.5 a tie, 1 the widest gap for `a`)."""
    return 0.5 + (score_a - score_b) / (2 * (scale - 1))


def _votes(scores_a: list[PrincipleScore], scores_b: list[PrincipleScore], scale: int) -> list[VoteOutcome]:
    """Each principle's vote from the two responses' scores under it, with the tokens of both ratings."""
    votes: list[VoteOutcome] = []
    for a, b in zip(scores_a, scores_b):
        p_a = p_first_from_scores(a.score, b.score, scale)
        vote = Vote(principle_id=a.principle_id, p_a=p_a, p_a_ab=p_a, score_a=a.score, score_b=b.score)
        votes.append((vote, a.prompt_tokens + b.prompt_tokens, a.completion_tokens + b.completion_tokens))
    return votes


async def _judge_principle(
    model: ChatModel, constitution: Constitution, pair: Pair, settings: JudgeOptions, principle_id: str
) -> VoteOutcome:
    """Mode `score`: rate `a` and `b` alone under one principle; the vote's p is 0.5 plus half the normalised gap."""
    a, b = await gather_all(
        score_each(model, constitution, ToRate(pair.prompt, pair.a, [principle_id]), settings),
        score_each(model, constitution, ToRate(pair.prompt, pair.b, [principle_id]), settings),
    )
    return _votes(a, b, settings.scale)[0]


async def judge_each_principle(
    model: ChatModel, constitution: Constitution, pair: Pair, settings: JudgeOptions, principle_ids: list[str]
) -> list[VoteOutcome]:
    """Mode `score`: each principle's vote from `a` and `b` rated alone under it (the first principle's ratings warm
    the provider's cache for the others: a's and b's prompts share no long prefix)."""
    return await warm_then_fan_out(
        [functools.partial(_judge_principle, model, constitution, pair, settings, pid) for pid in principle_ids],
        warm=settings.warm_cache,
        dooms=dooms_run,
    )


async def judge_all_principles(
    model: ChatModel, constitution: Constitution, pair: Pair, settings: JudgeOptions, principle_ids: list[str]
) -> list[VoteOutcome]:
    """Mode `rubric`: `a` and `b` rated alone, each in one call for every principle; the votes are those of mode
    `score` (the call's tokens count on the first principle's vote). A failure stands for every principle."""
    try:
        a, b = await gather_all(
            score_all(model, constitution, ToRate(pair.prompt, pair.a, principle_ids), settings),
            score_all(model, constitution, ToRate(pair.prompt, pair.b, principle_ids), settings),
        )
    except Exception as exc:  # the one failure stands for every principle the call covered
        return [exc]
    return _votes(a, b, settings.scale)


#: Each response rated alone, one call a principle (mode `score`).
RATES_EACH_PRINCIPLE = Kind("rating", judge_each_principle, score_each, subject="response")
#: Each response rated alone under every principle in one call (mode `rubric`).
RATES_ALL_PRINCIPLES = Kind("rating", judge_all_principles, score_all, subject="response")


async def rank_samples(
    model: ChatModel,
    constitution: Constitution,
    prompt: list[Message],
    samples: Sequence[Sample],
    principle_ids: Sequence[str],
    settings: JudgeOptions,
    criteria: ChecklistCriteria | None = None,
) -> list[Scored]:
    """Each sample with its score, best first (ties in sample order), as the settings' mode scores each response
    alone (its text, then the tools it calls as proposed actions, as `judge_pair` shows a pair's responses): its mean
    score over the principles (k calls per principle, one per distinct response), or, for a mode that
    judges by checklist, its score under `criteria` (the prompt's checklist). Raises the first failure once every
    call has run to its end."""
    kind = settings.mode_entry.kind
    if kind.rank_by_checklist is not None:
        if criteria is None:
            raise ConfigError(f"judge mode {settings.mode_entry.name!r} scores samples by their prompt's checklist")
        return await kind.rank_by_checklist(model, prompt, samples, criteria, settings)
    shown = {s.sample_idx: with_actions(s.text, s.tool_calls) for s in samples}  # its calls as actions
    texts = list(dict.fromkeys(shown.values()))
    rate = rates_of(settings)
    rated = await gather_all(
        *(rate(model, constitution, ToRate(prompt, text, principle_ids), settings) for text in texts)
    )
    means = {text: mean_score(scores) for text, scores in zip(texts, rated)}
    ranked = sorted(samples, key=lambda s: (-means[shown[s.sample_idx]], s.sample_idx))
    return [(s, means[shown[s.sample_idx]]) for s in ranked]


async def _judge_pair_by_checklist(
    model: ChatModel, pair: Pair, criteria: ChecklistCriteria, settings: JudgeOptions, ids: list[str], judge_fp: str
) -> Judgment:
    return await judge_checklist_pair(model, pair, criteria.checklist, settings, criteria.aggregation, ids, judge_fp)


async def _rank_samples_by_checklist(
    model: ChatModel,
    prompt: list[Message],
    samples: Sequence[Sample],
    criteria: ChecklistCriteria,
    settings: JudgeOptions,
) -> list[Scored]:
    return await rank_by_checklist(model, prompt, samples, criteria.checklist, settings, criteria.aggregation)


async def _needs_its_checklist(
    model: ChatModel, constitution: Constitution, pair: Pair, settings: JudgeOptions, ids: list[str]
) -> list[VoteOutcome]:
    """A checklist kind judges a pair against its prompt's checklist (`judge_by_checklist`, which
    `charter.judge.pairwise.judge_pair` calls with the `ChecklistCriteria` it is given); a bare pair carries none."""
    raise ConfigError(
        f"judge mode {settings.mode} judges a pair against its prompt's checklist: use it in a run with a "
        "`checklist:` section, or with a reward scoring that checks each completion against its prompt's checklist"
    )


#: Each response checked alone against its prompt's checklist (mode `checklist`).
CHECKS_ITEMS = Kind(
    "checklist",
    _needs_its_checklist,
    subject="response",
    criteria="checklist",
    judge_by_checklist=_judge_pair_by_checklist,
    rank_by_checklist=_rank_samples_by_checklist,
)
