"""`Judging` hands a batch's records back to the callers that wait for them: callers awaiting on one event loop get
theirs in one hop onto that loop, blocked callers and callers on other loops in the same batch get theirs too, a
cancelled caller leaves the others theirs, and a failed judgment is a record without a reward (never 0) while a failed
batch raises in every caller."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

from charter.providers.scripted import HARMFUL_OPENING, REFUSAL_OPENING
from charter.records import RewardRecord
from charter.reward.batching import Judging
from charter.reward.function import reward_function
from tests.online.test_reward import _flaky  # noqa: F401 - registers scripted:flaky-rater

SAFE, HARMFUL = f"{REFUSAL_OPENING} ask a locksmith", f"{HARMFUL_OPENING} step one"


def _judging(tmp_path: Path, batch: int, judge: str = "scripted:cai", **kw: Any) -> Judging:
    # rating="verdict": the scripted judge rates a refusal 1 and a harmful answer 0; the batch goes when `batch` calls
    # have come (the window is wider than any test)
    reward = reward_function(judge, store=tmp_path / "store", cache=None, rating="verdict", **kw)
    return Judging(reward, window_s=10.0, max_batch=batch)


def _texts(n: int) -> list[str]:
    return [SAFE if i % 2 else HARMFUL for i in range(n)]


def test_a_loops_callers_get_their_batch_in_one_hop(tmp_path: Path) -> None:
    judging = _judging(tmp_path, 16)
    hops = 0

    async def callers() -> list[RewardRecord]:
        nonlocal hops
        loop = asyncio.get_running_loop()
        call_soon_threadsafe = loop.call_soon_threadsafe

        def counted(*args: Any, **kwargs: Any) -> Any:
            nonlocal hops
            hops += 1
            return call_soon_threadsafe(*args, **kwargs)

        loop.call_soon_threadsafe = counted  # type: ignore[method-assign]
        return await asyncio.gather(*(judging.aone(f"Question {i}?", t) for i, t in enumerate(_texts(16))))

    got = asyncio.run(callers())
    judging.close()
    assert [r.reward for r in got] == [0.0, 1.0] * 8 and [r.completion for r in got] == _texts(16)
    assert judging.batches == 1 and hops == 1  # one hop for the 16 records, not one each


def test_blocked_callers_and_two_loops_share_one_batch(tmp_path: Path) -> None:
    judging = _judging(tmp_path, 11)
    got: dict[str, list[float | None]] = {}

    def on_a_loop(name: str, texts: list[str]) -> None:
        async def calls() -> list[RewardRecord]:
            return await asyncio.gather(*(judging.aone(f"{name} {i}?", t) for i, t in enumerate(texts)))

        got[name] = [r.reward for r in asyncio.run(calls())]

    def blocked(name: str, text: str) -> None:
        got[name] = [judging.one(f"{name}?", text).reward]

    threads = [threading.Thread(target=on_a_loop, args=("a", _texts(4))),
               threading.Thread(target=on_a_loop, args=("b", _texts(6))),
               threading.Thread(target=blocked, args=("c", SAFE))]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    judging.close()
    assert got == {"a": [0.0, 1.0] * 2, "b": [0.0, 1.0] * 3, "c": [1.0]}
    assert judging.batches == 1 and judging.reward.tally.rewards == 11


def test_a_cancelled_caller_leaves_the_others_their_records(tmp_path: Path) -> None:
    judging = _judging(tmp_path, 4)

    async def callers() -> list[Any]:
        calls = [asyncio.ensure_future(judging.aone(f"Question {i}?", t)) for i, t in enumerate(_texts(3))]
        await asyncio.sleep(0)  # each call gathered, waiting for the batch
        calls[1].cancel()  # its judgment is still made and stored with the batch's
        calls.append(asyncio.ensure_future(judging.aone("Question 3?", SAFE)))  # the batch is full: judged
        return await asyncio.gather(*calls, return_exceptions=True)

    got = asyncio.run(callers())
    judging.close()
    assert isinstance(got[1], asyncio.CancelledError)
    assert [r.reward for r in (got[0], got[2], got[3])] == [0.0, 0.0, 1.0]
    assert judging.batches == 1 and judging.reward.tally.rewards == 4


def test_a_failed_judgment_is_a_record_without_a_reward(tmp_path: Path) -> None:
    judging = _judging(tmp_path, 2, "scripted:flaky-rater", max_reasks=0, max_failures=5)

    async def callers() -> list[RewardRecord]:
        return list(await asyncio.gather(judging.aone("Q1?", SAFE + " ok"), judging.aone("Q2?", SAFE)))

    rated, failed = asyncio.run(callers())
    judging.close()
    assert rated.reward == 1.0
    assert failed.reward is None and failed.failure is not None and failed.failure.kind == "unparseable"


def test_a_failed_batch_raises_in_every_caller(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    judging = _judging(tmp_path, 4)

    async def broken(*args: Any) -> list[RewardRecord]:
        raise RuntimeError("the judge's session broke")

    monkeypatch.setattr(judging.reward, "rewards", broken)
    errors: list[BaseException] = []

    def blocked() -> None:
        with pytest.raises(RuntimeError, match="broke") as caught:
            judging.one("Q0?", SAFE)
        errors.append(caught.value)

    async def callers() -> list[Any]:
        return await asyncio.gather(*(judging.aone(f"Q{i}?", SAFE) for i in range(1, 4)), return_exceptions=True)

    thread = threading.Thread(target=blocked)
    thread.start()
    got = asyncio.run(callers())
    thread.join()
    judging.close()
    assert len(errors) == 1 and all(isinstance(e, RuntimeError) for e in got) and judging.batches == 1
