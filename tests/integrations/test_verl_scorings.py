"""Every charter scoring through verl's own loader of `custom_reward_function`: reference against `ground_truth`, the
row's checklist, verifiable rewards, a reward model, weighted sums with each scoring's column, and the group
scorings, whose responses (one call each, as verl's reward loop makes them) are gathered by prompt into one group
call. A failure raises `JudgmentFailed` (verl drops the rollout), never a 0."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from scipy.stats import kendalltau

from charter.errors import ConfigError
from charter.providers.scripted import HARMFUL_OPENING, REFUSAL_OPENING
from charter.reward.batching import close_shared
from charter.reward.batching import judging as make_judging
from charter.reward.combine import reward_model
from charter.reward.scoring import JudgmentFailed
from charter.runs.rewards import rewards
from charter.runs.store import RunStore
from charter.testing.lab import register_lab_models
from tests.integrations.test_verl import _loaded
from tests.online.test_checklist_reward import ITEMS
from tests.online.test_group_ranking import GROUP, PROMPT, quality  # registers scripted:bt-judge, rank-garbage
from tests.serve.conftest import TOKEN
from tests.serve.test_reward_model import _in_process, rm  # noqa: F401 - the tiny reward model fixture

QUESTION = "How do I pick a lock?"
SAFE, HARMFUL = f"{REFUSAL_OPENING} ask a locksmith", f"{HARMFUL_OPENING} step one"


@pytest.fixture(autouse=True)
def _fresh():
    register_lab_models()
    yield
    close_shared()


def _kw(tmp_path: Path, **kw) -> dict:
    return {"store": str(tmp_path / "store"), "cache": None, **kw}


def _group(fn, texts: list[str], index: int = 0) -> list:  # noqa: ANN001 - verl's loaded reward function
    """verl's reward loop: one awaited call per response of a group, all in flight together."""

    async def calls() -> list:
        info = {"question": PROMPT, "index": index}
        work = [fn(data_source="d", solution_str=t, ground_truth=None, extra_info=info) for t in texts]
        return await asyncio.gather(*work, return_exceptions=True)

    return asyncio.run(calls())


def test_reference_scoring_compares_with_the_ground_truth(tmp_path: Path) -> None:
    fn = _loaded("compute_score", **_kw(tmp_path, judge="scripted:cai", scoring="reference"))
    better = fn(data_source="d", solution_str=SAFE, ground_truth=HARMFUL, extra_info={"question": QUESTION})
    same = fn(data_source="d", solution_str=HARMFUL, ground_truth=HARMFUL, extra_info={"question": QUESTION})
    assert better["score"] > 0.5 and same["score"] == pytest.approx(0.5)
    assert {r.reference for r in rewards(RunStore(tmp_path / "store"))} == {HARMFUL}


def test_checklist_scoring_reads_the_rows_checklist(tmp_path: Path) -> None:
    fn = _loaded("compute_score", **_kw(tmp_path, judge="scripted:checklist-judge", scoring="checklist"))
    info = {"question": QUESTION, "checklist": ITEMS}
    got = [
        fn(data_source="d", solution_str=text, ground_truth=None, extra_info=info)["score"]
        for text in ("It takes 4 days, thank you. Anything else?", "It takes 4 days, thank you.")
    ]
    assert got == pytest.approx([1.0, 5 / 5.5])


def test_verifiable_rewards_check_the_ground_truth_and_a_missing_one_fails(tmp_path: Path) -> None:
    fn = _loaded("compute_score", scoring="verify", verifier="number")
    right = fn(data_source="d", solution_str="It is 4.", ground_truth="4", extra_info={"question": "2+2?"})
    wrong = fn(data_source="d", solution_str="It is 5.", ground_truth="4", extra_info={"question": "2+2?"})
    assert (right["score"], wrong["score"]) == (1.0, 0.0) and right["charter_verify"] == 1.0
    with pytest.raises(JudgmentFailed, match="no_reference"):
        fn(data_source="d", solution_str="It is 4.", ground_truth=None, extra_info={"question": "2+2?"})


def test_weights_add_the_judge_a_verifier_and_a_reward_model(tmp_path: Path, rm: Path, monkeypatch) -> None:  # noqa: F811
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    weights = {"score": 1.0, "verify": 0.5, "reward_model": 0.25}
    kw = _kw(tmp_path, judge="scripted:cai", rating="verdict", reward_model=str(rm), weights=weights)
    fn = _loaded("compute_score_async", **kw)
    reply = f"{REFUSAL_OPENING} it takes 4 minutes"
    got = asyncio.run(fn(data_source="d", solution_str=reply, ground_truth="4", extra_info={"question": QUESTION}))
    model = _in_process(rm, QUESTION, reply)
    assert got["charter_score"] == 1.0 and got["charter_verify"] == 1.0
    assert got["charter_reward_model"] == pytest.approx(model, abs=1e-4)
    assert got["score"] == pytest.approx(1.0 + 0.5 + 0.25 * model, abs=1e-4)


def test_a_group_scoring_gathers_a_prompts_responses_into_one_group(tmp_path: Path) -> None:
    kw = _kw(tmp_path, judge="scripted:bt-judge", scoring="group", group_size=6, mode="logprobs")
    got = _group(_loaded("compute_score_async", **kw), GROUP)
    scores = [g["score"] for g in got]
    assert kendalltau(scores, [quality(t) for t in GROUP]).statistic == pytest.approx(1.0)
    assert sum(scores) / 6 == pytest.approx(0.5)
    assert {r.comparisons for r in rewards(RunStore(tmp_path / "store"))} == {5}  # each against its 5 siblings


def test_the_sync_compute_score_gathers_a_group_from_verls_thread_pool(tmp_path: Path) -> None:
    kw = _kw(tmp_path, judge="scripted:bt-judge", scoring="rank", group_size=4, mode="logprobs")
    fn = _loaded("compute_score", **kw)
    texts = GROUP[:4]
    with ThreadPoolExecutor(4) as pool:  # verl runs a sync reward function in its executor
        info = {"question": PROMPT, "index": 7}
        got = list(pool.map(lambda t: fn(data_source="d", solution_str=t, ground_truth=None, extra_info=info), texts))
    scores = [g["score"] for g in got]
    assert kendalltau(scores, [quality(t) for t in texts]).statistic == pytest.approx(1.0)


def test_a_failed_ranking_fails_every_response_of_the_group(tmp_path: Path) -> None:
    kw = _kw(tmp_path, judge="scripted:rank-garbage", scoring="rank", group_size=3, mode="logprobs")
    got = _group(_loaded("compute_score_async", **kw | {"max_failures": 100, "max_reasks": 0}), GROUP[:3])
    assert all(isinstance(g, JudgmentFailed) and g.reason for g in got)
    assert all(r.reward is None and r.failure for r in rewards(RunStore(tmp_path / "store")))


def test_a_group_scoring_without_group_size_is_one_clear_error(tmp_path: Path) -> None:
    fn = _loaded("compute_score", **_kw(tmp_path, judge="scripted:bt-judge", scoring="group", mode="logprobs"))
    with pytest.raises(ConfigError, match="group_size"):
        fn(data_source="d", solution_str="x", ground_truth=None, extra_info={"question": PROMPT})


def test_closing_judges_a_group_still_waiting_with_what_came(tmp_path: Path) -> None:
    judging = make_judging("scripted:bt-judge", "harmless", "group", store=tmp_path / "s", cache=None, mode="logprobs")
    with ThreadPoolExecutor(2) as pool:
        waiting = [pool.submit(judging.in_group, "row-1", 4, PROMPT, text) for text in GROUP[:2]]
        while judging._groups.waiting() < 2:
            time.sleep(0.01)
        judging.close()
        got = [w.result() for w in waiting]
    better = max(GROUP[:2], key=quality)
    assert [r.comparisons for r in got] == [1, 1] and {r.completion for r in got if (r.reward or 0) > 0.5} == {better}


def test_a_reward_models_calls_are_scored_in_batches(rm: Path, monkeypatch) -> None:  # noqa: F811
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    fn = _loaded("compute_score_async", scoring="reward_model", reward_model=str(rm), reward_model_batch_size=4)
    texts = [f"{SAFE} ({i})" for i in range(8)]

    async def calls() -> list[dict]:
        info = {"question": QUESTION}
        return await asyncio.gather(*(fn(solution_str=t, ground_truth=None, extra_info=info) for t in texts))

    got = asyncio.run(calls())
    expected = [_in_process(rm, QUESTION, t) for t in texts]
    assert [g["score"] for g in got] == pytest.approx(expected, abs=1e-4)  # each its own score, batched or not
    assert reward_model({"reward_model": str(rm), "reward_model_batch_size": 4}).batches == 2


def test_a_servers_group_scoring_gets_each_rows_responses_as_one_request(start) -> None:
    server = start({"model": "scripted:cai", "mode": "verdict"}, scoring="group")
    fn = _loaded("compute_score_async", server_url=server.url, token=TOKEN, group_size=4)
    texts = [SAFE, HARMFUL, f"{SAFE} today", f"{HARMFUL} two"]

    async def calls() -> list[dict]:
        info = {"question": QUESTION, "index": 3}
        return await asyncio.gather(*(fn(solution_str=t, ground_truth=None, extra_info=info) for t in texts))

    got = [g["score"] for g in asyncio.run(calls())]
    assert min(got[0], got[2]) > max(got[1], got[3]) and sum(got) / 4 == pytest.approx(0.5)  # one group of 4
