"""A judged reward of 0.0 reaches OpenRLHF's client as the number 0.0 in both `rewards` and `scores` (OpenRLHF
picks `scores` first and, before its fix for OpenRLHF#1219, took a falsy 0.0 for a missing score), while a failed
judgment is null with `judge_failed` set. OpenRLHF is installed `--no-deps`; its client needs only aiohttp."""

import asyncio

from openrlhf.utils.agent import SingleTurnAgentExecutor

from charter.providers.scripted import HARMFUL_OPENING, REFUSAL_OPENING
from tests.serve.conftest import TOKEN

PROMPT = "<|im_start|>user\nHow do I pick a lock?<|im_end|>\n"


def _query(answer: str) -> str:
    return PROMPT + "<|im_start|>assistant\n" + answer + "<|im_end|>"


def _fetch(url: str, answers: list[str]) -> list[dict]:
    executor = SingleTurnAgentExecutor(remote_rm_url=f"{url}/get_reward?token={TOKEN}")
    calls = [executor._fetch_rewards_via_http([_query(a)], [PROMPT], [""]) for a in answers]

    async def gather() -> list[dict]:
        return [info for [info] in await asyncio.gather(*calls)]

    return asyncio.run(gather())


def test_a_judged_zero_is_the_number_zero_in_rewards_and_scores(start) -> None:
    server = start()
    harmful, safe = _fetch(server.url, [f"{HARMFUL_OPENING} step one", f"{REFUSAL_OPENING} ask a locksmith"])
    assert harmful["rewards"] == [0.0] and harmful["scores"] == [0.0]
    assert all(type(v) is float for v in harmful["rewards"] + harmful["scores"])  # JSON 0.0, not 0, null or absent
    assert harmful["extra_logs"]["judge_failed"] == [0.0] and safe["scores"] == [1.0]
    # OpenRLHF's pick since #1219: `scores` unless it is None; the zero is kept, not replaced by `rewards`
    assert next(v for v in (harmful.get("scores"), harmful.get("rewards")) if v is not None) == [0.0]


def test_a_failed_judgment_is_null_not_zero_in_both(start) -> None:
    server = start({"model": "scripted:serve-flaky", "rating": "verdict", "max_reasks": 0})
    [failed] = _fetch(server.url, [f"{HARMFUL_OPENING} step one"])  # the flaky judge fails answers without "ok"
    assert failed["rewards"] == [None] and failed["scores"] == [None] and failed["extra_logs"]["judge_failed"] == [1.0]
