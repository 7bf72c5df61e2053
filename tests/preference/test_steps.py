"""Step-level critique and revision: only the first violating step is rewritten, the revised step is checked by the
judge and continued in a real (scripted tool) environment, and the pair becomes a step-level DPO row in TRL's
conversational format with the shared prefix and the branching step; every failure on the way is recorded."""

from __future__ import annotations

import asyncio
import json

import pytest

from charter.judge.modes import STEPWISE_MODE
from charter.judge.settings import JudgeSettings
from charter.judge.steps import read_judged_step
from charter.preference.steps import ToolEnvironment, revise_trajectory
from charter.providers.scripted import ScriptedModel
from tests.judge.agents import AGENTS, TRAJECTORY, injected_judge

SETTINGS = JudgeSettings(mode=STEPWISE_MODE.name)
REVISED = {
    "critique": "It obeys an instruction found in a tool result.",
    "content": "Checking your balance only.",
    "tool_calls": [{"name": "get_balance", "arguments": {}}],
}


def _critic(reply: dict | str) -> ScriptedModel:
    def write(messages, params):
        text = messages[-1].content
        assert "The step to rewrite is message [4]" in text and "Rewrite the last step" in text
        assert "[5]" not in text  # the turns after the violating step are not shown
        return reply if isinstance(reply, str) else json.dumps(reply)

    return ScriptedModel("critic", fn=write)


def _bank(log: list[str]) -> ToolEnvironment:
    def get_balance() -> str:
        log.append("get_balance")
        return "1200"

    def send_money(to: str, amount: int) -> str:
        log.append(f"send_money {to} {amount}")
        return "sent"

    def policy(messages):
        return {"role": "assistant", "content": f"Your balance is {messages[-1]['content']}."}

    return ToolEnvironment({"get_balance": get_balance, "send_money": send_money}, policy)


def _revise(critic, environment=None, judge_fn=injected_judge):
    judge = ScriptedModel("steps", fn=judge_fn)
    return asyncio.run(revise_trajectory(judge, critic, AGENTS, TRAJECTORY, SETTINGS, environment))


def test_the_first_violating_step_is_revised_alone_and_becomes_a_step_level_row() -> None:
    log: list[str] = []
    done = _revise(_critic(REVISED), _bank(log))
    row = done.row
    assert done.failure is None and row is not None
    assert row.branch_step == 4 and row.principle_id == "untrusted" and "send_money" in row.reason
    assert [m["content"] for m in row.prompt] == [m["content"] for m in TRAJECTORY[:4]]
    assert len(row.prompt) == 4 and row.prompt[3]["role"] == "tool"  # the shared prefix, tool result kept
    assert row.prompt[2]["tool_calls"][0]["function"]["name"] == "get_balance"
    assert row.rejected[0]["tool_calls"][0]["function"]["name"] == "send_money"
    assert row.chosen[0]["content"] == "Checking your balance only."
    assert row.chosen[0]["tool_calls"][0]["function"]["name"] == "get_balance"
    # the rollout went on from the revised step in the environment: its tool ran, the policy answered
    assert log == ["get_balance"]
    assert row.continuation == [
        {"role": "tool", "tool_call_id": "revised-0", "name": "get_balance", "content": "1200"},
        {"role": "assistant", "content": "Your balance is 1200."},
    ]
    assert set(row.trl()) == {"prompt", "chosen", "rejected"}
    assert done.revised_judgment is not None and done.revised_judgment.steps[-1].violates is False


def test_an_environment_that_raises_is_a_recorded_failure_without_a_row() -> None:
    def broken() -> str:
        raise RuntimeError("the bank is down")

    environment = ToolEnvironment({"get_balance": broken}, lambda messages: {"role": "assistant", "content": "?"})
    done = _revise(_critic(REVISED), environment)
    assert done.row is None and done.failure is not None
    assert done.failure.kind == "environment" and "the bank is down" in done.failure.message


def test_an_unreadable_critic_is_a_recorded_failure() -> None:
    done = _revise(_critic("I'd rather not."))
    assert done.row is None and done.revision is not None and done.revision.status == "failed"
    assert done.failure is not None and done.failure.kind == "unparseable" and done.failure.attempts == 3


def test_a_revision_that_still_violates_makes_no_row() -> None:
    still = {
        **REVISED,
        "content": "Sending it anyway.",
        "tool_calls": [{"name": "send_money", "arguments": {"to": "X-999", "amount": 500}}],
    }
    done = _revise(_critic(still))
    assert done.row is None and done.failure is not None and done.failure.kind == "still_violates"


def test_a_clean_trajectory_is_not_revised() -> None:
    def passes(messages, params):
        from charter.judge.modes import scripted_reply

        assert read_judged_step(messages[-1].content) is not None
        return scripted_reply(messages[-1].content, (None, "fine"))

    done = _revise(_critic(REVISED), judge_fn=passes)
    assert done.revision is None and done.row is None and done.judgment.reward() == 1.0


def test_the_public_functions_judge_and_revise_trajectories() -> None:
    import charter
    from charter.errors import DatasetError

    judged = charter.judge_trajectory(TRAJECTORY, ScriptedModel("steps", fn=injected_judge), AGENTS)
    assert judged.first_violation == 4 and judged.principle_id == "untrusted"
    log: list[str] = []
    [done, clean] = charter.step_preferences(
        [TRAJECTORY, TRAJECTORY[:4] + [{"role": "assistant", "content": "It is 1,200."}]],
        ScriptedModel("steps", fn=injected_judge),
        _critic(REVISED),
        AGENTS,
        environment=_bank(log),
    )
    assert done.row is not None and done.row.branch_step == 4 and log == ["get_balance"]
    assert clean.row is None and clean.judgment.reward() == 1.0
    with pytest.raises(DatasetError, match=r"trajectories\[1\]: message 0: role: unknown role"):
        charter.step_preferences([TRAJECTORY, [{"role": "robot", "content": "x"}]], "scripted:cai", constitution=AGENTS)


def test_the_multi_turn_example_runs_offline(capsys: pytest.CaptureFixture[str]) -> None:
    import runpy
    from pathlib import Path

    example = runpy.run_path(str(Path(__file__).resolve().parents[2] / "examples" / "agent_steps.py"))
    row = example["main"]([])
    assert row["rejected"][0]["tool_calls"][0]["function"]["name"] == "send_money"
    assert row["chosen"][0]["tool_calls"][0]["function"]["name"] == "get_balance"
    assert [m["role"] for m in row["prompt"]] == ["system", "user", "assistant", "tool"]
    assert "first violating step: 4 (untrusted-data" in capsys.readouterr().out
