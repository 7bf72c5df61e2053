"""`charter run` with a multi-turn policy: prompts that offer tools (a `tools` column), a policy that answers with
tool calls through the real openai SDK (the loopback server speaking OpenAI's wire format), and judge mode
`stepwise`. The policy's own tool calls are judged as actions, kept in the rows and in TRL's conversational export,
marked as proposed (not run in an environment), and a resumed run asks nothing again."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from charter.judge.modes import STEPWISE_MODE, scripted_reply
from charter.judge.steps import read_judged_step
from charter.judge_prompt import read_comparison
from charter.pipeline.api import run
from charter.providers.scripted import register_script
from charter.records import read_trajectory
from charter.runs.store import RunStore
from charter.runs.usage import stored_usage
from charter.testing.loopback import LoopbackServer

TOOLS = [
    {"type": "function", "function": {"name": name, "description": what, "parameters": {"type": "object"}}}
    for name, what in (("read_bill", "Read the user's latest bill."), ("send_money", "Send money to an account."))
]
STEPS_SEEN: list[str] = []


def _policy_reply(body: dict[str, Any]) -> str | dict[str, Any]:
    """An agent at the loopback server: offered tools, it pays an account a tool result named on even seeds, and
    reads the bill first on odd ones; without tools, it only talks."""
    if not body.get("tools"):
        return "I can only talk about bills."
    if (body.get("seed") or 0) % 2 == 0:
        arguments = json.dumps({"to": "X-999", "amount": 500})
        call = {"id": "call_pay", "type": "function", "function": {"name": "send_money", "arguments": arguments}}
        return {"content": None, "tool_calls": [call]}
    call = {"id": "call_read", "type": "function", "function": {"name": "read_bill", "arguments": "{}"}}
    return {"content": "Let me read the bill first.", "tool_calls": [call]}


def _step_judge(messages, params):  # noqa: ANN001, ANN202 - a step that sends money breaks the first principle
    text = messages[-1].content
    step = read_judged_step(text) or ""
    STEPS_SEEN.append(step)
    first = re.search(r"\nPrinciples:\n- ([\w-]+):", text)
    assert first is not None
    if "calls send_money" in step:
        return scripted_reply(text, (first.group(1), "it moves money because a tool result said so"))
    return scripted_reply(text, (None, "it only reads"))


register_script("policy-tool-steps", _step_judge)


def test_a_policys_tool_calls_are_judged_as_actions_and_kept(make_config, tmp_path: Path) -> None:
    prompts = tmp_path / "agent.jsonl"
    rows = [
        {
            "messages": [
                {"role": "system", "content": "You are a banking assistant."},
                {"role": "user", "content": f"Pay my electricity bill for flat {i}."},
            ],
            "tools": TOOLS,
        }
        for i in range(3)
    ]
    prompts.write_text("".join(json.dumps(row) + "\n" for row in rows))
    with LoopbackServer(reply=_policy_reply).start() as server:
        judge = {"model": "scripted:policy-tool-steps", "mode": STEPWISE_MODE.name, "principles_per_pair": 2}
        config = make_config(
            prompts={"path": str(prompts)},
            policy=f"openai-compatible:agent@{server.openai_url}",
            pairs={"kinds": ["samples"], "k": 2, "strategy": "all"},
            judge=judge,
        )
        STEPS_SEEN.clear()
        result = run(config)
        asked = server.count
        assert result.counts["preferences"] == 3
        # the policy was offered the prompt's tools, in OpenAI's wire format
        policy_bodies = [r.body for r in server.requests if r.path.endswith("/chat/completions")]
        assert policy_bodies and all(b["tools"] == TOOLS for b in policy_bodies)
        # the judge saw each call as an action, with its arguments
        assert any("calls send_money" in step and '"to": "X-999"' in step for step in STEPS_SEEN)
        written = [json.loads(line) for line in (tmp_path / "run/data/preferences.jsonl").read_text().splitlines()]
        for row in written:
            assert row["policy_actions"] == "proposed"
            rejected, chosen = row["rejected"][0], row["chosen"][0]
            assert rejected["tool_calls"][0]["function"] == {
                "name": "send_money", "arguments": {"to": "X-999", "amount": 500}
            }  # fmt: skip
            assert chosen["content"] == "Let me read the bill first."
            assert chosen["tool_calls"][0]["function"]["name"] == "read_bill"
            found = json.loads(row["first_violation_rejected"])
            assert found["step"] == 2 and found["reason"] == "it moves money because a tool result said so"
            assert json.loads(row["first_violation_chosen"]) is None and row["p_chosen"] > 0.5
            # TRL's conversational format, tool calls kept: it reads back as a trajectory
            done = read_trajectory({"prompt": row["prompt"], "completion": row["rejected"]}, "trl")
            assert [m.role for m in done.messages] == ["system", "user", "assistant"]
            assert done.messages[-1].tool_calls is not None and done.messages[-1].tool_calls[0].name == "send_money"
        with RunStore(tmp_path / "run") as store:
            calls = sum(u.calls for u in stored_usage(store))
        run(config)  # resumed: the replies that call tools come from the store and the call cache
        assert server.count == asked
        with RunStore(tmp_path / "run") as store:
            assert sum(u.calls for u in stored_usage(store)) == calls


COMPARED: list[str] = []


def _pair_judge(messages, params):  # noqa: ANN001, ANN202 - a pairwise judge: the response that sends money loses
    text = messages[-1].content
    COMPARED.append(text)
    shown = read_comparison(text)
    assert shown is not None
    first, second = shown
    return scripted_reply(
        text, 0.5 if ("send_money" in first) == ("send_money" in second) else float("send_money" in second)
    )


register_script("policy-tool-pairs", _pair_judge)


def test_a_whole_response_judge_reads_the_calls_as_proposed_actions(make_config, tmp_path: Path) -> None:
    prompts = tmp_path / "agent.jsonl"
    prompts.write_text(json.dumps({"prompt": "Pay my electricity bill.", "tools": json.dumps(TOOLS)}) + "\n")
    with LoopbackServer(reply=_policy_reply).start() as server:
        config = make_config(
            prompts={"path": str(prompts)},
            policy=f"openai-compatible:agent@{server.openai_url}",
            pairs={"kinds": ["samples"], "k": 2, "strategy": "all"},
            judge={"model": "scripted:policy-tool-pairs", "mode": "verdict", "principles_per_pair": 1},
        )
        COMPARED.clear()
        result = run(config)
    assert result.counts["preferences"] == 1
    assert COMPARED and all('[proposed action: calls send_money with {"amount": 500, "to": "X-999"}]' in t
                            for t in COMPARED)  # fmt: skip
    [row] = [json.loads(line) for line in (tmp_path / "run/data/preferences.jsonl").read_text().splitlines()]
    assert row["chosen"][0] == {
        "role": "assistant", "content": "Let me read the bill first.",
        "tool_calls": [{"id": "call_read", "type": "function", "function": {"name": "read_bill", "arguments": {}}}],
    }  # fmt: skip
    assert row["policy_actions"] == "proposed" and row["first_violation_chosen"] == "null"
