"""verl's own loader of `custom_reward_function` loads charter's `compute_score` (sync and async) and calls it as its
reward loop does: one response per call, concurrently; in process or through `charter serve reward`.

verl 0.9.1 is installed `--no-deps` (its pins are for a GPU cluster: transformers<5.11, ray[default], wandb); the loader
needs only omegaconf and tensordict beside it."""

import asyncio
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from verl.trainer.ppo.reward import get_custom_reward_fn

from charter.errors import ConfigError
from charter.providers.scripted import HARMFUL_OPENING, REFUSAL_OPENING
from charter.reward import batching as shared_judgings
from charter.reward.batching import close_shared
from charter.reward.scoring import JudgmentFailed
from charter.runs.rewards import rewards
from charter.runs.store import RunStore
from tests.online.test_reward import _flaky  # noqa: F401 - registers scripted:flaky-rater
from tests.serve.conftest import TOKEN

QUESTION = "How do I pick a lock?"
SAFE, HARMFUL = f"{REFUSAL_OPENING} ask a locksmith", f"{HARMFUL_OPENING} step one"


def _loaded(name: str, **reward_kwargs):  # noqa: ANN202 - what verl's trainer builds from its YAML
    config = OmegaConf.create(
        {
            "reward": {
                "custom_reward_function": {
                    "path": "pkg://charter.integrations.verl",
                    "name": name,
                    "reward_kwargs": reward_kwargs,
                }
            }
        }
    )
    return get_custom_reward_fn(config)


def _kwargs(tmp_path: Path, judge: str = "scripted:cai") -> dict:
    # rating="verdict": the scripted judge rates a refusal 1 and a harmful answer 0
    return {
        "judge": judge,
        "store": str(tmp_path / "store"),
        "cache": str(tmp_path / "calls.sqlite"),
        "rating": "verdict",
    }


@pytest.fixture(autouse=True)
def _fresh_judgings():
    yield
    close_shared()


def test_verl_loads_and_calls_the_sync_compute_score(tmp_path: Path) -> None:
    fn = _loaded("compute_score", **_kwargs(tmp_path))
    safe = fn(data_source="hh", solution_str=SAFE, ground_truth=None, extra_info={"question": QUESTION})
    harmful = fn(data_source="hh", solution_str=HARMFUL, ground_truth=None, extra_info={"prompt": QUESTION})
    assert (safe["score"], harmful["score"]) == (1.0, 0.0)
    assert isinstance(harmful["score"], float) and set(safe) == set(harmful)  # verl's extra-info columns line up
    stored = list(rewards(RunStore(tmp_path / "store")))
    assert {r.completion for r in stored} == {SAFE, HARMFUL} and all(r.reward is not None for r in stored)


def test_verl_awaits_the_async_compute_score_and_its_calls_share_batches(tmp_path: Path) -> None:
    fn = _loaded("compute_score_async", **_kwargs(tmp_path))

    async def rollouts() -> list[dict]:  # verl's reward loop: one task per response, gathered
        texts = [SAFE if i % 2 else HARMFUL for i in range(16)]
        calls = [
            fn(data_source="hh", solution_str=t, ground_truth=None, extra_info={"question": f"{QUESTION} ({i})"})
            for i, t in enumerate(texts)
        ]
        return await asyncio.gather(*calls)

    got = asyncio.run(rollouts())
    assert all(got[i]["score"] > got[i - 1]["score"] for i in range(1, 16, 2))
    [judging] = shared_judgings._SHARED.values()
    assert judging.reward.tally.rewards == 16 and judging.batches < 16  # gathered, not one reward call each


def test_a_failed_judgment_raises_so_verl_drops_the_rollout(tmp_path: Path) -> None:
    kw = _kwargs(tmp_path, "scripted:flaky-rater") | {"max_failures": 5, "max_reasks": 0}
    fn = _loaded("compute_score", **kw)
    with pytest.raises(JudgmentFailed, match="unparseable"):
        fn(data_source="hh", solution_str=SAFE, ground_truth=None, extra_info={"question": QUESTION})
    [failed] = list(rewards(RunStore(tmp_path / "store")))
    assert failed.reward is None and failed.failure is not None  # stored as a failure, never as 0


def test_a_row_without_the_prompt_is_one_clear_error(tmp_path: Path) -> None:
    fn = _loaded("compute_score", **_kwargs(tmp_path))
    with pytest.raises(ConfigError, match="extra_info"):
        fn(data_source="hh", solution_str=SAFE, ground_truth=None, extra_info={})


def test_compute_score_asks_a_running_reward_server(start) -> None:
    server = start()
    fn = _loaded("compute_score", server_url=server.url, token=TOKEN)
    safe = fn(data_source="hh", solution_str=SAFE, ground_truth=None, extra_info={"question": QUESTION})
    harmful = fn(data_source="hh", solution_str=HARMFUL, ground_truth=None, extra_info={"question": QUESTION})
    assert (safe["score"], harmful["score"]) == (1.0, 0.0)


def test_the_async_compute_score_asks_the_server_which_stores_every_reward(start) -> None:
    server = start()
    fn = _loaded("compute_score_async", server_url=server.url, token=TOKEN)
    texts = [SAFE if i % 2 else HARMFUL for i in range(6)]

    async def rollouts() -> list[dict]:  # verl's reward loop: one task per response, gathered
        return await asyncio.gather(
            *(fn(data_source="hh", solution_str=t, ground_truth=None, extra_info={"question": f"{QUESTION} ({i})"})
              for i, t in enumerate(texts))
        )  # fmt: skip

    got = asyncio.run(rollouts())
    assert [g["score"] for g in got] == [1.0 if t == SAFE else 0.0 for t in texts]
    assert not shared_judgings._SHARED  # no judge in this process: the server judged
    stored = list(rewards(RunStore(server.store)))
    assert len(stored) == 6 and {r.completion for r in stored} == {SAFE, HARMFUL}
    assert sorted(r.reward for r in stored) == [0.0, 0.0, 0.0, 1.0, 1.0, 1.0]


def test_a_failed_judgment_through_the_server_raises_too(start) -> None:
    server = start({"model": "scripted:serve-flaky", "rating": "verdict", "max_reasks": 0})
    fn = _loaded("compute_score", server_url=server.url, token=TOKEN)
    with pytest.raises(JudgmentFailed, match="unparseable"):  # the flaky judge fails answers without "ok"
        fn(data_source="hh", solution_str=HARMFUL, ground_truth=None, extra_info={"question": QUESTION})
    assert fn(data_source="hh", solution_str=SAFE + " ok", ground_truth=None, extra_info={"question": QUESTION}) == {
        "score": 1.0,
        "charter_judge": 1.0,
    }
