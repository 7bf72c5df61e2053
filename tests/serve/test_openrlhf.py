"""OpenRLHF's own reward client (its rollout workers' `SingleTurnAgentExecutor`) against `charter serve reward`: a
reward for each query, a failed judgment null (never zero), and a judged reward of 0.0 the number 0.0 in both
`rewards` and `scores` (OpenRLHF picks `scores` first and, before its fix for OpenRLHF#1219, took a falsy 0.0 for a
missing score), with `judge_failed` set where the judgment failed. OpenRLHF runs in an environment of its own
(noxfile.py)."""

import asyncio
import urllib.request

from openrlhf.utils.agent import SingleTurnAgentExecutor

from charter.providers.scripted import HARMFUL_OPENING, REFUSAL_OPENING
from charter.runs.rewards import rewards
from charter.runs.store import RunStore
from tests.serve.conftest import TOKEN
from tests.serve.test_server import CHATML, HARMFUL, HEADER, QUESTION, SAFE

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


def _queries(n: int, safe_ok: bool = False) -> list[tuple[str, str]]:
    """(query, prompt) pairs as OpenRLHF's rollout workers send them: the prompt without the assistant header."""
    out = []
    for i in range(n):
        prompt = CHATML.format(q=f"{QUESTION} ({i})")
        answer = (SAFE + (" ok" if safe_ok else "")) if i % 2 else HARMFUL
        out.append((prompt + HEADER + answer + "<|im_end|>", prompt))
    return out


async def _openrlhf(url: str, pairs: list[tuple[str, str]]) -> list[dict]:
    executor = SingleTurnAgentExecutor(remote_rm_url=url)
    calls = [executor._fetch_rewards_via_http([q], [p], [""]) for q, p in pairs]  # one query each, as rollouts do
    return [info for [info] in await asyncio.gather(*calls)]


def test_openrlhf_client_gets_a_reward_for_each_of_64_queries(start) -> None:
    server = start()
    got = asyncio.run(_openrlhf(f"{server.url}/get_reward?token={TOKEN}", _queries(64)))
    assert [info["rewards"] for info in got] == [[1.0] if i % 2 else [0.0] for i in range(64)]
    assert all(info["extra_logs"]["judge_failed"] == [0.0] for info in got)
    assert server.stop() == 143
    stored = list(rewards(RunStore(server.store)))
    assert len(stored) == 64 and {r.completion for r in stored} == {SAFE, HARMFUL}  # template stripped
    assert {r.prompt[-1].content for r in stored} == {f"{QUESTION} ({i})" for i in range(64)}
    log = server.log.read_text()
    assert log.count("POST /get_reward 200") == 64 and TOKEN not in log  # a given token is never printed


def test_a_failed_judgment_is_null_never_zero(start) -> None:
    server = start({"model": "scripted:serve-flaky", "rating": "verdict", "max_reasks": 0})
    pairs = _queries(4, safe_ok=True)  # the flaky judge rates only answers with "ok": the harmful ones fail
    got = asyncio.run(_openrlhf(f"{server.url}/get_reward?token={TOKEN}", pairs))
    assert [info["rewards"] for info in got] == [[None], [1.0], [None], [1.0]]
    assert [info["extra_logs"]["judge_failed"] for info in got] == [[1.0], [0.0], [1.0], [0.0]]
    auth = {"Authorization": f"Bearer {TOKEN}"}
    status, body = server.post("/v1/rewards", {"prompt": QUESTION, "completions": [HARMFUL, SAFE + " ok"]}, auth)
    assert status == 200 and body["rewards"] == [None, 1.0]
    failure = body["results"][0]["failure"]
    assert failure["kind"] == "unparseable" and body["results"][1]["scores"] is not None
    metrics = urllib.request.urlopen(f"{server.url}/metrics?token={TOKEN}").read().decode()
    assert "charter_reward_failures_total 3" in metrics and "charter_rewards_total 6" in metrics
