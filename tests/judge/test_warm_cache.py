"""Warm, then fan out: a pair's first call is answered before any other call of the pair is sent (a provider serves a
shared prefix from its cache only once a first request with it was answered; both orders share the instructions and
the conversation), and the other order's first call before that order's other principles, while other pairs go on
concurrently. Observed through the order of the loopback server's own log of arrivals and replies."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from charter.concurrency import warm_then_fan_out
from charter.constitutions import Constitution
from charter.errors import FatalProviderError, ProviderError
from charter.judge.pairwise import judge_many, judge_pair, principles_for
from charter.judge.settings import JudgeSettings, Orders
from charter.providers import Limits, get_model
from charter.records import Message, Pair
from charter.testing.loopback import LoopbackServer, status

LIMITS = Limits(concurrency=64, max_retries=0, timeout_s=5.0)
PAIRS = 4


class Logged(LoopbackServer):
    """The loopback server, logging each request's arrival and reply in the order it saw them."""

    def __init__(self, delay_s: float) -> None:
        super().__init__(delay_s=delay_s)
        self.log: list[tuple[str, str]] = []

    def respond(self, conn: Any, method: str, path: str, headers: dict[str, str], raw: bytes) -> None:
        self.log.append(("arrived", _text(json.loads(raw))))
        super().respond(conn, method, path, headers, raw)

    def sent(self, behaviour: Any, body: Any, code: int, written: bool) -> None:
        self.log.append(("answered", _text(body)))


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


def _judge(server: Logged, warm: bool, orders: Orders = "both") -> dict[tuple[int, str, int], tuple[int, int]]:
    """Judge the pairs; each request's (pair, order, principle) -> the places of its arrival and its reply in the
    server's log."""
    model = get_model(f"openai-compatible:m@{server.openai_url}", limits=LIMITS)
    settings = JudgeSettings(principles_per_pair=3, orders=orders, warm_cache=warm)

    async def go() -> None:
        async for judgment in judge_many(model, constitution(), pairs(), settings, concurrency=PAIRS):
            assert judgment.status == "ok", judgment.failure

    asyncio.run(go())
    places: dict[tuple[int, str, int], list[int]] = {}
    for place, (_, text) in enumerate(server.log):
        places.setdefault(_group(text), []).append(place)
    assert all(len(p) == 2 for p in places.values())  # each asked once, answered once
    return {group: (arrived, answered) for group, (arrived, answered) in places.items()}


def _first(pair: int) -> int:
    return int(principles_for(constitution(), JudgeSettings(principles_per_pair=3), f"x{pair}", 0)[0][1:])


def test_a_pairs_first_call_is_answered_before_any_other_of_the_pair_is_sent() -> None:
    server = Logged(delay_s=0.2)
    with server:
        calls = _judge(server, warm=True)
    assert len(calls) == PAIRS * 2 * 3
    for pair in range(PAIRS):
        first = _first(pair)
        mine = {group: places for group, places in calls.items() if group[0] == pair}
        _, warmed = mine.pop((pair, "ab", first))
        assert all(warmed < arrived for arrived, _ in mine.values()), pair  # the pair's first call warms all
        _, other_warmed = mine.pop((pair, "ba", first))  # the other order's first call warms that order
        assert all(other_warmed < arrived for (_, order, _), (arrived, _) in mine.items() if order == "ba"), pair
    # pairs run concurrently: every pair's first call arrives before any call is answered
    firsts = [calls[(pair, "ab", _first(pair))][0] for pair in range(PAIRS)]
    assert max(firsts) < min(answered for _, answered in calls.values())


def test_in_one_order_the_first_principle_warms_the_others() -> None:
    server = Logged(delay_s=0.05)
    with server:
        calls = _judge(server, warm=True, orders="one")
    assert len(calls) == PAIRS * 3
    for pair in range(PAIRS):
        _, warmed = calls.pop((pair, "ab", _first(pair)))
        assert all(warmed < arrived for (p, _, _), (arrived, _) in calls.items() if p == pair)


def test_without_warming_every_call_of_a_pair_is_asked_at_once() -> None:
    server = Logged(delay_s=0.2)
    with server:
        calls = _judge(server, warm=False)
    assert len(calls) == PAIRS * 2 * 3
    assert max(arrived for arrived, _ in calls.values()) < min(answered for _, answered in calls.values())


def test_a_first_call_that_dooms_the_run_is_the_only_call_of_its_pair() -> None:
    with Logged(delay_s=0.0) as server:
        server.script(status(401))
        model = get_model(f"openai-compatible:m@{server.openai_url}", limits=LIMITS)
        settings = JudgeSettings(principles_per_pair=3, orders="both")
        [pair] = pairs()[:1]
        ids = principles_for(constitution(), settings, pair.pair_id, 0)
        with pytest.raises(FatalProviderError):
            asyncio.run(judge_pair(model, constitution(), pair, settings, ids, "fp"))
        assert server.hits == 1


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
