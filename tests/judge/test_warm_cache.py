"""Warm, then fan out: a pair's first principle is answered, in each order, before its other principles are asked
(a provider serves a shared prefix from its cache only once a first request with it was answered), while other
pairs go on concurrently."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from charter.concurrency import warm_then_fan_out
from charter.constitutions import Constitution
from charter.errors import FatalProviderError, ProviderError
from charter.judge.pairwise import judge_many, principles_for
from charter.judge.settings import JudgeSettings
from charter.providers import Limits, get_model
from charter.records import Message, Pair
from charter.testing.loopback import LoopbackServer

LIMITS = Limits(concurrency=64, max_retries=0, timeout_s=5.0)
PAIRS = 4


class Timed(LoopbackServer):
    """The loopback server, noting when each request was answered."""

    def __init__(self, delay_s: float) -> None:
        super().__init__(delay_s=delay_s)
        self.answered: list[tuple[float, Any]] = []

    def sent(self, behaviour: Any, body: Any, code: int, written: bool) -> None:
        self.answered.append((time.monotonic(), body))


def constitution() -> Constitution:
    return Constitution.model_validate(
        {
            "name": "t",
            "principles": [
                {
                    "id": f"p{i}",
                    "description": f"principle {i}",
                    "critique_request": "Critique it.",
                    "revision_request": "Revise it.",
                    "comparison": f"Which response is better by rule number {i}?",
                }
                for i in range(4)
            ],
        }
    )


def pairs() -> list[Pair]:
    return [
        Pair(
            pair_id=f"x{i}",
            prompt=[Message(role="user", content=f"question {i}")],
            a=f"first answer of pair {i}",
            b=f"second answer of pair {i}",
            kind="samples",
            a_source="sample:0",
            b_source="sample:1",
        )
        for i in range(PAIRS)
    ]


def _text(body: Any) -> str:
    return "\n".join(str(m["content"]) for m in body["messages"])


def _group(text: str) -> tuple[int, str, int]:
    """(pair, order, principle) of a comparison request, read from its text."""
    pair = next(i for i in range(PAIRS) if f"answer of pair {i}" in text)
    order = "ab" if text.index(f"first answer of pair {pair}") < text.index(f"second answer of pair {pair}") else "ba"
    principle = next(i for i in range(4) if f"rule number {i}?" in text)
    return pair, order, principle


def _judge(server: Timed, warm: bool) -> list[tuple[float, float, tuple[int, str, int]]]:
    """Judge the pairs; (arrived, answered, group) per request."""
    model = get_model(f"openai-compatible:m@{server.openai_url}", limits=LIMITS)
    settings = JudgeSettings(principles_per_pair=3, orders="both", warm_cache=warm)

    async def go() -> None:
        async for judgment in judge_many(model, constitution(), pairs(), settings, concurrency=PAIRS):
            assert judgment.status == "ok", judgment.failure

    asyncio.run(go())
    answered = {_text(body): at for at, body in server.answered}
    return [(r.at, answered[_text(r.body)], _group(_text(r.body))) for r in server.requests]


def test_the_first_principle_is_answered_before_its_siblings_are_asked() -> None:
    server = Timed(delay_s=0.05)
    with server:
        calls = _judge(server, warm=True)
    assert len(calls) == PAIRS * 2 * 3
    settings = JudgeSettings(principles_per_pair=3)
    for pair in range(PAIRS):
        first = int(principles_for(constitution(), settings, f"x{pair}", 0)[0][1:])
        for order in ("ab", "ba"):
            group = [c for c in calls if c[2][:2] == (pair, order)]
            (warm,) = [c for c in group if c[2][2] == first]
            siblings = [c for c in group if c is not warm]
            assert len(siblings) == 2
            assert all(warm[1] <= arrived for arrived, _, _ in siblings), (pair, order)
    # pairs run concurrently: every pair's warm-up calls (both orders) arrive before any of them is answered
    warmups = sorted(calls)[: PAIRS * 2]
    assert {c[2][:2] for c in warmups} == {(p, o) for p in range(PAIRS) for o in ("ab", "ba")}
    assert max(c[0] for c in warmups) < min(c[1] for c in calls)


def test_without_warming_every_call_of_a_pair_is_asked_at_once() -> None:
    server = Timed(delay_s=0.05)
    with server:
        calls = _judge(server, warm=False)
    assert len(calls) == PAIRS * 2 * 3
    assert max(c[0] for c in calls) < min(c[1] for c in calls)  # all asked before the first answer


def test_fan_out_keeps_order_and_stops_on_an_error_that_dooms_the_run() -> None:
    started: list[int] = []

    def call(i: int, error: BaseException | None = None) -> Any:
        async def run() -> int:
            started.append(i)
            await asyncio.sleep(0.01)
            if error is not None:
                raise error
            return i

        return run

    failed = ProviderError("bad reply")
    outcomes = asyncio.run(warm_then_fan_out([call(0, failed), call(1), call(2)], dooms=lambda e: False))
    assert outcomes == [failed, 1, 2] and started == [0, 1, 2]
    started.clear()
    doom = FatalProviderError("bad key")
    fatal = lambda e: isinstance(e, FatalProviderError)  # noqa: E731
    outcomes = asyncio.run(warm_then_fan_out([call(0, doom), call(1)], dooms=fatal))
    assert outcomes == [doom] and started == [0]  # the others are never sent
