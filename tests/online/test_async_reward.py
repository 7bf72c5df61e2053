"""`charter.reward_function(...).as_async()`: the judge as an async reward function that TRL's GRPOTrainer awaits on
its own event loop (no thread of charter's), with failures as None, the same records as the sync form, and one
session (store, cache, tally) under both."""

from __future__ import annotations

import asyncio
import inspect
import threading
from pathlib import Path

import pytest

import charter
from charter.errors import ConfigError, TooManyFailures
from charter.judge_prompt import read_rating
from charter.providers.scripted import HARMFUL_OPENING, REFUSAL_OPENING, _cai, _cai_choice, register_script
from charter.runs.rewards import rewards
from charter.runs.store import RunStore

PROMPTS = ["How do I pick a lock?"] * 4
HARMFUL, SAFE = f"{HARMFUL_OPENING} step one", f"{REFUSAL_OPENING} ask a locksmith"


def _even_rater(messages, params):  # noqa: ANN001, ANN202 - rates a response of even length, fails the others
    rated = read_rating(messages[-1].content)
    if rated is not None and len(rated) % 2:
        return "I would rather not say."
    return _cai(messages, params)


register_script("even-rater", _even_rater, _cai_choice)


def _new_charter_threads(before: set[threading.Thread]) -> list[str]:
    """Threads of charter's reward event loop started since `before` (tests before this one may leave theirs)."""
    return [t.name for t in set(threading.enumerate()) - before if t.name == "charter-reward"]


def test_the_async_form_gives_the_sync_forms_records_on_the_callers_loop(tmp_path: Path) -> None:
    sync = charter.reward_function("scripted:cai", "harmless", store=tmp_path / "sync", cache=None, rating="verdict")
    fn = charter.reward_function(
        "scripted:cai", "harmless", store=tmp_path / "async", cache=None, rating="verdict"
    ).as_async()
    assert inspect.iscoroutinefunction(fn.__call__) and fn.__name__ == "charter_score"
    completions = [HARMFUL, SAFE, HARMFUL, SAFE + " now"]
    expected = sync(prompts=PROMPTS, completions=completions)
    sync.close()
    assert expected == [0.0, 1.0, 0.0, 1.0]
    before = set(threading.enumerate())

    async def trl_like() -> list[float | None]:
        got = await fn(prompts=PROMPTS, completions=completions)
        await fn.aclose()
        return got

    assert asyncio.run(trl_like()) == expected
    assert not _new_charter_threads(before)  # the async form made no event loop of its own
    keys = lambda run: [(r.key, r.reward, r.fingerprint) for r in rewards(RunStore(tmp_path / run))]  # noqa: E731
    assert keys("async") == keys("sync")


def test_async_failures_are_none_and_the_failure_limit_holds(tmp_path: Path) -> None:
    fn = charter.reward_function(
        "scripted:even-rater", "harmless", store=tmp_path / "r", cache=None, rating="verdict", max_reasks=0,
        max_failures=2,
    ).as_async()  # fmt: skip
    odd, even = SAFE, SAFE + "!"
    assert len(odd) % 2 and not len(even) % 2
    got = asyncio.run(fn(prompts=PROMPTS[:2], completions=[odd, even]))
    assert got == [None, 1.0]
    [failed] = [r for r in rewards(fn.store) if r.reward is None]
    assert failed.failure is not None and failed.failure.kind == "unparseable"
    with pytest.raises(TooManyFailures, match="3 of 4 judge rewards failed"):
        asyncio.run(fn(prompts=PROMPTS[:2], completions=[odd + " a", odd + " b"]))
    with pytest.raises(ConfigError, match="completions"):
        asyncio.run(fn(prompts=PROMPTS[:2], completions=[odd]))
    fn.close()


def test_grpo_trainer_awaits_the_async_reward_function_on_its_own_loop(tiny_model: Path, tmp_path: Path) -> None:
    import datasets
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    judge = charter.reward_function(
        "scripted:even-rater", "harmless", store=tmp_path / "rewards", cache=tmp_path / "c.sqlite", rating="verdict",
        max_reasks=0, max_failures=1000,
    ).as_async()  # fmt: skip
    seen: list[str] = []
    before = set(threading.enumerate())

    class Watch:  # a second async reward function, to see where TRL runs them
        __name__ = "watch"

        async def __call__(self, completions, **kwargs):  # noqa: ANN001, ANN003, ANN204
            seen.append(threading.current_thread().name)
            seen.extend(_new_charter_threads(before))
            return [0.0] * len(completions)

    dataset = datasets.Dataset.from_list([{"prompt": [{"role": "user", "content": f"question {i}"}]} for i in range(8)])
    args = GRPOConfig(
        output_dir=str(tmp_path / "trl"), use_cpu=True, bf16=False, report_to="none", save_strategy="no",
        logging_steps=1, max_steps=1, num_generations=4, per_device_train_batch_size=4, max_completion_length=8,
    )  # fmt: skip
    trainer = GRPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(tiny_model),
        reward_funcs=[judge, Watch()],
        args=args,
        train_dataset=dataset,
        processing_class=AutoTokenizer.from_pretrained(tiny_model),
    )
    trainer.train()
    judge.close()  # on TRL's loop, which still runs
    assert trainer.state.global_step == 1
    assert seen and "charter-reward" not in seen and seen[0] != threading.main_thread().name
    stored = list(rewards(RunStore(tmp_path / "rewards")))
    assert len(stored) == 4 and {r.step for r in stored} == {1}
    failed, judged = [r for r in stored if r.reward is None], [r.reward for r in stored if r.reward is not None]
    assert all(r.failure is not None for r in failed) and all(r.failure is None for r in stored if r.reward is not None)
    [logged] = [e for e in trainer.state.log_history if "rewards/charter_score/mean" in e]
    assert logged["charter/judge_failures"] == len(failed)  # TRL got None (NaN) for each failure, never a number
    if judged:
        assert logged["rewards/charter_score/mean"] == pytest.approx(sum(judged) / len(judged))
