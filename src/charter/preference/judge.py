"""The AI judge (RL-CAI / RLAIF): a multiple-choice comparison per principle, evaluated in both
orders so position bias cancels, with an ensemble over principles.

Modes: `logprobs` reads P("A") vs P("B") as the next token; `cot` asks for reasoning then a verdict
and clamps each vote into `clamp` (Bai et al. 2022 use 40-60% for chain-of-thought labels);
`verdict` asks for a single letter. Unparseable output is re-asked, then recorded as a failure with
the raw text: never a silent default.
"""

from __future__ import annotations

import asyncio
import random
import re
from typing import AsyncIterator, Iterable, Literal, Sequence

from pydantic import BaseModel, ConfigDict, Field, model_validator

from charter.constitutions.schema import Constitution, Principle
from charter.errors import CharterError
from charter.providers.base import ChatModel, Messages, SamplingParams

OPTIONS = ("A", "B")


class JudgeSettings(BaseModel):
    """How the judge compares two responses."""

    model_config = ConfigDict(extra="forbid")
    mode: Literal["logprobs", "cot", "verdict"] = "logprobs"
    """`logprobs`: option-token probabilities; `cot`: reasoning then a verdict; `verdict`: one letter."""
    orders: Literal["both", "one"] = "both"
    """Evaluate each comparison with the responses in both orders (position bias cancels) or one."""
    principles_per_pair: int = Field(default=1, ge=1)
    """Ensemble size: principles sampled per pair (by weight, seeded, without replacement)."""
    principles: list[str] | None = None
    """Fixed principle ids to use for every pair instead of sampling."""
    clamp: tuple[float, float] = (0.4, 0.6)
    """Range each chain-of-thought vote is clamped into (loser, winner)."""
    max_retries: int = Field(default=2, ge=0)
    """Re-asks (with a new seed) on unparseable output before recording a failure."""
    params: SamplingParams | None = None
    """Sampling for `cot`/`verdict` (default: greedy; 512 tokens for cot, 8 for verdict)."""

    @model_validator(mode="after")
    def _check_clamp(self) -> "JudgeSettings":
        low, high = self.clamp
        if not 0 <= low <= 0.5 <= high <= 1:
            raise ValueError("clamp must satisfy 0 <= low <= 0.5 <= high <= 1")
        return self

    def sampling(self) -> SamplingParams:
        if self.params is not None:
            return self.params
        return SamplingParams(temperature=0.0, max_tokens=512 if self.mode == "cot" else 8, seed=0)


class JudgeParseError(CharterError):
    """The judge's answer named neither option."""


def render_conversation(prompt: Messages) -> str:
    """The conversation as Human/Assistant turns (system messages left out)."""
    names = {"user": "Human", "assistant": "Assistant"}
    return "\n\n".join(f"{names[m['role']]}: {m['content']}" for m in prompt if m["role"] in names)


_INSTRUCTIONS = {
    "logprobs": "Answer with a single letter, A or B.",
    "verdict": "Answer with a single letter, A or B, and nothing else.",
    "cot": (
        "Think it through step by step, then end with exactly 'Therefore, the answer is (A)' "
        "or 'Therefore, the answer is (B)'."
    ),
}


def comparison_prompt(prompt: Messages, first: str, second: str, principle: Principle, mode: str) -> Messages:
    """The multiple-choice question for one principle and one presentation order."""
    question = principle.comparison.format(
        prompt=render_conversation(prompt), response="", critique="", principle=principle.description
    )
    text = (
        "Consider the following conversation between a human and an assistant:\n\n"
        f"{render_conversation(prompt)}\n\n{question}\n"
        f"Options:\n(A) {first}\n(B) {second}\n\n{_INSTRUCTIONS[mode]}"
    )
    return [{"role": "user", "content": text}]


_COT_VERDICT = re.compile(r"answer is:?\s*\(?\s*([AB])\b", re.I)
_LETTER = re.compile(r"^\W*\(?\s*([AB])\b")


def parse_verdict(text: str, mode: str) -> str:
    """The option letter in a judge answer; raises JudgeParseError if there is none."""
    if mode == "cot":
        found = _COT_VERDICT.findall(text)
        if found:
            return found[-1].upper()
    else:
        match = _LETTER.match(text.strip())
        if match:
            return match.group(1).upper()
    raise JudgeParseError(f"judge answer names neither (A) nor (B): {text[:80]!r}")


def sample_principles(constitution: Constitution, k: int, rng: random.Random) -> list[str]:
    """k distinct principle ids, drawn by weight without replacement."""
    pool = list(constitution.principles)
    chosen: list[str] = []
    for _ in range(min(k, len(pool))):
        pick = rng.choices(pool, weights=[p.weight for p in pool])[0]
        chosen.append(pick.id)
        pool.remove(pick)
    return chosen


class _Asked:
    """One order's answer: P(first shown preferred), rationale, tokens."""

    def __init__(self, p_first: float, rationale: str | None, prompt_tokens: int, completion_tokens: int) -> None:
        self.p_first, self.rationale = p_first, rationale
        self.prompt_tokens, self.completion_tokens = prompt_tokens, completion_tokens


async def _ask(model: ChatModel, request: Messages, settings: JudgeSettings) -> _Asked:
    if settings.mode == "logprobs":
        probs = await model.choice_logprobs(request, OPTIONS)
        return _Asked(probs.probs["A"], None, probs.prompt_tokens, 1)
    base = settings.sampling()
    raws: list[str] = []
    for attempt in range(settings.max_retries + 1):
        params = base if attempt == 0 else base.model_copy(update={"seed": (base.seed or 0) + attempt,
                                                                   "temperature": max(base.temperature, 0.7)})
        [completion] = await model.generate([request], params)
        raws.append(completion.text)
        try:
            letter = parse_verdict(completion.text, settings.mode)
        except JudgeParseError:
            continue
        low, high = settings.clamp if settings.mode == "cot" else (0.0, 1.0)
        p_first = high if letter == "A" else low
        return _Asked(p_first, completion.text, completion.prompt_tokens, completion.completion_tokens)
    raise JudgeParseError(f"unparseable judge output after {len(raws)} tries") from _RawText(raws[-1])


class _RawText(Exception):
    """Carries the raw text of a failed parse to the failure record."""


async def _judge_principle(
    model: ChatModel, constitution: Constitution, pair: dict, settings: JudgeSettings, principle_id: str
) -> dict:
    principle = constitution.principle(principle_id)
    ab = comparison_prompt(pair["prompt"], pair["a"], pair["b"], principle, settings.mode)
    asks = [_ask(model, ab, settings)]
    if settings.orders == "both":
        ba = comparison_prompt(pair["prompt"], pair["b"], pair["a"], principle, settings.mode)
        asks.append(_ask(model, ba, settings))
    answers = await asyncio.gather(*asks)
    p_ab = answers[0].p_first
    p_ba = 1.0 - answers[1].p_first if len(answers) > 1 else None
    p_a = p_ab if p_ba is None else (p_ab + p_ba) / 2
    return {
        "principle_id": principle_id,
        "p_a": p_a,
        "p_a_ab": p_ab,
        "p_a_ba": p_ba,
        "consistent": None if p_ba is None else _same_winner(p_ab, p_ba),
        "rationale_ab": answers[0].rationale,
        "rationale_ba": answers[1].rationale if len(answers) > 1 else None,
        "_tokens": (sum(a.prompt_tokens for a in answers), sum(a.completion_tokens for a in answers)),
    }


def _same_winner(p_ab: float, p_ba: float) -> bool:
    side = lambda p: (p > 0.5) - (p < 0.5)  # noqa: E731
    return side(p_ab) == side(p_ba)


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


async def judge_pair(
    model: ChatModel, constitution: Constitution, pair: dict, settings: JudgeSettings, principle_ids: list[str]
) -> dict:
    """Judge one pair under each principle (both orders if set); returns a judgment record."""
    base = {"pair_id": pair["pair_id"], "mode": settings.mode, "orders": settings.orders,
            "judge_model": model.model_id, "principle_ids": principle_ids}
    try:
        per = await asyncio.gather(
            *(_judge_principle(model, constitution, pair, settings, pid) for pid in principle_ids)
        )
    except JudgeParseError as exc:
        raw = exc.__cause__.args[0] if isinstance(exc.__cause__, _RawText) else None
        return {**base, "status": "failed", "error": str(exc), "raw": raw, "p_a": None, "p_a_ab": None, "p_a_ba": None,
                "position_consistent": None, "principles": [],
                "prompt_tokens": 0, "completion_tokens": 0}
    prompt_tokens = sum(p["_tokens"][0] for p in per)
    completion_tokens = sum(p["_tokens"][1] for p in per)
    for p in per:
        del p["_tokens"]
    p_ab = _mean([p["p_a_ab"] for p in per])
    p_ba = None if settings.orders == "one" else _mean([p["p_a_ba"] for p in per])
    return {
        **base, "status": "ok", "error": None, "raw": None,
        "p_a": _mean([p["p_a"] for p in per]),
        "p_a_ab": p_ab, "p_a_ba": p_ba,
        "position_consistent": None if p_ba is None else _same_winner(p_ab, p_ba),
        "principles": per, "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
    }


def principles_for(constitution: Constitution, settings: JudgeSettings, pair_id: str, seed: int) -> list[str]:
    """The principle ids for a pair: fixed, or sampled with a per-pair seed (stable across resumes)."""
    if settings.principles:
        unknown = [p for p in settings.principles if p not in constitution.principle_ids]
        if unknown:
            raise CharterError(f"judge.principles: unknown principle id '{unknown[0]}'")
        return list(settings.principles)
    return sample_principles(constitution, settings.principles_per_pair, random.Random(f"{seed}:{pair_id}"))


async def judge_many(
    model: ChatModel, constitution: Constitution, pairs: Iterable[dict], settings: JudgeSettings,
    seed: int = 0, concurrency: int = 64,
) -> AsyncIterator[dict]:
    """Judge pairs concurrently; yields judgment records as they finish (not in input order)."""
    from charter.pipeline.concurrency import bounded_map

    async def one(pair: dict) -> dict:
        return await judge_pair(model, constitution, pair, settings, principles_for(constitution, settings,
                                                                                    pair["pair_id"], seed))

    async for record in bounded_map(one, pairs, concurrency):
        yield record
