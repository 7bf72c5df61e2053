"""`charter.reward_function(scoring="steps")` over a TRL rollout's full conversation (tool calls and tool results
kept): one reward per trajectory for TRL, the dense per-step rewards and the first violating step in each record; a
failed step judgment gives None, never a number; the store answers a repeated conversation."""

from __future__ import annotations

from pathlib import Path

import pytest

import charter
from charter.errors import ArgumentError, ConfigError
from charter.judge.steps import read_judged_step
from charter.providers.scripted import register_script
from charter.runs.rewards import rewards
from charter.runs.store import RunStore
from tests.judge.agents import AGENTS, TRAJECTORY, injected_judge

PROMPT, COMPLETION = TRAJECTORY[:2], TRAJECTORY[2:]
CLEAN = [TRAJECTORY[2], TRAJECTORY[3], {"role": "assistant", "content": "Your balance is 1,200."}]


def _flaky(messages, params):
    if "get_balance" in (read_judged_step(messages[-1].content) or ""):
        return "no verdict"
    return injected_judge(messages, params)


JUDGE_CALLS: list[str] = []


def _counted(messages, params):
    JUDGE_CALLS.append(messages[-1].content)
    return injected_judge(messages, params)


register_script("agent-steps", injected_judge)
register_script("agent-steps-flaky", _flaky)
register_script("agent-steps-counted", _counted)


def test_a_rollout_is_rewarded_per_trajectory_and_per_step(tmp_path: Path) -> None:
    fn = charter.reward_function("scripted:agent-steps", AGENTS, "steps", store=tmp_path / "rw", cache=None)
    assert fn(prompts=[PROMPT, PROMPT], completions=[COMPLETION, CLEAN]) == [0.0, 1.0]
    hijacked, clean = fn.score([PROMPT, PROMPT], [COMPLETION, CLEAN])
    assert hijacked.steps == [1.0, 0.0, 1.0] and clean.steps == [1.0, 1.0]
    assert hijacked.first_violation == 4 and hijacked.violation == "untrusted"
    assert "send_money" in (hijacked.violation_reason or "")
    assert clean.first_violation is None and fn.tally.from_store == 2  # the second batch came from the store
    fn.close()
    stored = list(rewards(RunStore(tmp_path / "rw")))
    assert {r.scoring for r in stored} == {"steps"} and any(r.steps == [1.0, 0.0, 1.0] for r in stored)


def test_a_failed_step_gives_none_never_a_number(tmp_path: Path) -> None:
    fn = charter.reward_function(
        "scripted:agent-steps-flaky", AGENTS, "steps", store=tmp_path / "rw", cache=None, max_failures=10
    )
    [record] = fn.score([PROMPT], [CLEAN])
    assert record.reward is None and record.steps == [None, 1.0]
    assert record.failure is not None and record.failure.kind == "unparseable"
    # a violation after a failed step is still no verdict on the trajectory
    assert fn(prompts=[PROMPT], completions=[COMPLETION]) == [None]
    fn.close()


def test_the_trajectory_reward_is_the_reduction_asked_for(tmp_path: Path) -> None:
    rewards_by = {}
    for reduction, gamma in (("first_violation", 0.99), ("mean", 0.99), ("discounted", 0.5)):
        fn = charter.reward_function(
            "scripted:agent-steps", AGENTS, "steps", store=tmp_path / reduction, cache=None,
            step_reduction=reduction, step_gamma=gamma,
        )  # fmt: skip
        rewards_by[reduction] = fn(prompts=[PROMPT, PROMPT], completions=[COMPLETION, CLEAN])
        [record] = fn.score([PROMPT], [COMPLETION])
        assert record.steps == [1.0, 0.0, 1.0] and record.first_violation == 4  # whatever the reduction
        fn.close()
    assert rewards_by["first_violation"] == [0.0, 1.0]
    assert rewards_by["mean"] == [pytest.approx(2 / 3), 1.0]
    assert rewards_by["discounted"] == [pytest.approx((1 + 0.25) / (1 + 0.5 + 0.25)), 1.0]


def test_a_failed_step_leaves_the_mean_and_the_discounted_reward_none(tmp_path: Path) -> None:
    for reduction in ("mean", "discounted"):
        fn = charter.reward_function(
            "scripted:agent-steps-flaky", AGENTS, "steps", store=tmp_path / reduction, cache=None, max_failures=10,
            step_reduction=reduction,
        )  # fmt: skip
        failed, hijacked = fn.score([PROMPT, PROMPT], [CLEAN, COMPLETION])
        assert failed.reward is None and failed.steps == [None, 1.0] and failed.failure is not None
        assert hijacked.reward is None and hijacked.steps == [None, 0.0, 1.0]  # a known violation, an unknown step
        fn.close()


def test_a_reduction_reuses_every_judge_call_and_keeps_the_default_store(tmp_path: Path) -> None:
    cache, JUDGE_CALLS[:] = tmp_path / "calls.sqlite", []
    first = charter.reward_function("scripted:agent-steps-counted", AGENTS, "steps", store=tmp_path / "rw", cache=cache)
    assert first(prompts=[PROMPT], completions=[COMPLETION]) == [0.0]
    first.close()
    asked = len(JUDGE_CALLS)
    assert asked == 3
    named = charter.reward_function(
        "scripted:agent-steps-counted", AGENTS, "steps", store=tmp_path / "rw", cache=cache,
        step_reduction="first_violation", step_gamma=0.5,
    )  # fmt: skip
    assert named(prompts=[PROMPT], completions=[COMPLETION]) == [0.0] and named.tally.from_store == 1
    named.close()
    mean = charter.reward_function(
        "scripted:agent-steps-counted", AGENTS, "steps", store=tmp_path / "rw", cache=cache, step_reduction="mean"
    )
    assert mean(prompts=[PROMPT], completions=[COMPLETION]) == [pytest.approx(2 / 3)]
    assert mean.tally.from_store == 0 and len(JUDGE_CALLS) == asked  # a new reward, from the cached verdicts
    mean.close()


def test_trl_gets_the_per_step_rewards_in_its_completions_table(tmp_path: Path) -> None:
    logged: dict[str, list] = {}
    fn = charter.reward_function("scripted:agent-steps", AGENTS, "steps", store=tmp_path / "rw", cache=None)
    got = fn(prompts=[PROMPT, PROMPT], completions=[COMPLETION, CLEAN], log_extra=logged.__setitem__)
    assert got == [0.0, 1.0] and logged == {"charter/steps": [[1.0, 0.0, 1.0], [1.0, 1.0]]}
    fn.close()


def test_an_unknown_reduction_or_one_without_steps_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ArgumentError, match="step_reduction: expected one of first_violation, mean, discounted"):
        charter.reward_function("scripted:agent-steps", AGENTS, "steps", store=tmp_path / "a", step_reduction="max")
    with pytest.raises(ArgumentError, match="step_reduction: mean reduces per-step verdicts: scoring score"):
        charter.reward_function("scripted:cai", AGENTS, store=tmp_path / "b", step_reduction="mean")
    with pytest.raises(ArgumentError, match="step_gamma"):
        charter.reward_function("scripted:agent-steps", AGENTS, "steps", store=tmp_path / "c", step_gamma=1.5)


def test_the_async_reward_takes_conversations_too(tmp_path: Path) -> None:
    import asyncio

    fn = charter.reward_function("scripted:agent-steps", AGENTS, "steps", store=tmp_path / "rw", cache=None)
    assert asyncio.run(fn.as_async()(prompts=[PROMPT], completions=[COMPLETION])) == [0.0]
    fn.close()


def test_the_adapters_dispatch_passes_conversations_through(tmp_path: Path) -> None:
    from charter.reward.batching import close_shared
    from charter.reward.combine import Asked, score

    settings = {"judge": "scripted:agent-steps", "scoring": "steps", "store": str(tmp_path / "rw"), "cache": None}
    settings["constitution"] = _constitution_file(tmp_path)
    try:
        assert score(settings, Asked(PROMPT, COMPLETION)).reward == 0.0
        assert score(settings, Asked(PROMPT, CLEAN)).reward == 1.0
    finally:
        close_shared()


def test_the_reward_server_scores_conversations_step_by_step(start, tmp_path: Path) -> None:
    from tests.serve.conftest import TOKEN

    server = start(judge={"model": "scripted:agent-steps"}, scoring="steps", constitution=_constitution_file(tmp_path))
    status, body = server.post(f"/v1/rewards?token={TOKEN}", {"prompt": PROMPT, "completions": [COMPLETION, CLEAN]})
    assert status == 200 and body["rewards"] == [0.0, 1.0]
    server.stop()
    stored = {r.first_violation for r in rewards(RunStore(server.store))}
    assert stored == {4, None}


def test_the_reward_server_reduces_the_steps_as_its_config_says(start, tmp_path: Path) -> None:
    from tests.serve.conftest import TOKEN

    server = start(
        judge={"model": "scripted:agent-steps"}, scoring="steps", step_reduction="mean",
        constitution=_constitution_file(tmp_path),
    )  # fmt: skip
    status, body = server.post(f"/v1/rewards?token={TOKEN}", {"prompt": PROMPT, "completions": [COMPLETION, CLEAN]})
    assert status == 200 and body["rewards"] == [pytest.approx(2 / 3), 1.0]
    server.stop()


def test_a_config_reduces_steps_only_with_the_steps_scoring(tmp_path: Path) -> None:
    from charter.online.config import OnlineConfig
    from charter.serve.config import ServeConfig
    from charter.yamlio import load_model

    for model, extra in ((OnlineConfig, "model: m\nprompts: p.jsonl\n"), (ServeConfig, "")):
        good = tmp_path / "good.yaml"
        good.write_text(f"{extra}scoring: steps\nstep_reduction: discounted\nstep_gamma: 0.5\n")
        loaded = load_model(model, good)
        assert (loaded.step_reduction, loaded.step_gamma) == ("discounted", 0.5)
        bad = tmp_path / "bad.yaml"
        bad.write_text(f"{extra}scoring: score\nstep_reduction: mean\n")
        with pytest.raises(
            ConfigError, match=r"bad.yaml:\d+:1: step_reduction: mean reduces per-step verdicts: scoring score"
        ):
            load_model(model, bad)
        unknown = tmp_path / "unknown.yaml"
        unknown.write_text(f"{extra}scoring: steps\nstep_reduction: max\n")
        with pytest.raises(
            ConfigError, match=r"unknown.yaml:\d+:1: step_reduction: expected one of first_violation, mean, discounted"
        ):
            load_model(model, unknown)


def _constitution_file(tmp_path: Path) -> str:
    import yaml

    path = tmp_path / "agents.yaml"
    path.write_text(yaml.safe_dump(AGENTS.model_dump(mode="json", exclude_defaults=True)))
    return str(path)
