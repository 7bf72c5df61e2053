"""`charter run` with a multi-turn policy: prompts that offer tools (a `tools` column), a policy that answers with
tool calls through the real openai SDK (the loopback server speaking OpenAI's wire format), and judge mode
`stepwise`. The policy's own tool calls are judged as actions, kept in the rows and in TRL's conversational export,
marked as proposed (not run in an environment), and a resumed run asks nothing again."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from charter.checklist.prompt import read_checklist_prompt
from charter.cli import main
from charter.judge.modes import (
    MODES,
    REASONED_RATING,
    STEPWISE_MODE,
    context_modes,
    pair_modes,
    scripted_choice,
    scripted_reply,
)
from charter.judge.steps import read_judged_step
from charter.judge_prompt import read_comparison, read_rating, read_rubric_ids
from charter.pipeline.api import run
from charter.providers.scripted import register_script
from charter.records import Message, ToolCall, read_trajectory
from charter.runs.store import RunStore
from charter.runs.usage import stored_usage
from charter.testing.lab import register_lab_models
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


SHOWN: dict[str, list[str]] = {}
SAME_WORDS = "I will see to it."


def _same_words_policy(messages, params):  # noqa: ANN001, ANN202 - the same words, a different call by seed
    """Offered tools, it says the same words every time and pays an account on even seeds, reads the bill on odd
    ones: only the proposed calls tell its two samples apart."""
    if not params.tools:
        return "I can only talk about bills."
    if (params.seed or 0) % 2 == 0:
        call = ToolCall(id="call_pay", name="send_money", arguments={"to": "X-999", "amount": 500})
    else:
        call = ToolCall(id="call_read", name="read_bill")
    return Message(role="assistant", content=SAME_WORDS, tool_calls=[call])


def _pays(shown: str) -> bool:
    """Whether a response, as a judge is shown it, proposes to send money: a whole-response judge reads the call as
    `[proposed action: calls send_money with {...}]`, a step judge as `Action: calls send_money (call ...)`."""
    return "[proposed action: calls send_money with" in shown or "Action: calls send_money (call" in shown


def _shown(text: str) -> list[str]:
    """The responses (or the step) a judge prompt of any kind shows, each as the judge reads it inside its fence."""
    compared = read_comparison(text)
    if compared is not None:
        return list(compared)
    checked = read_checklist_prompt(text)
    if checked is not None:
        return [checked[1]]
    found = read_rating(text) or read_judged_step(text)
    assert found is not None, text[:200]
    return [found]


def _any_kind_judge(messages, params):  # noqa: ANN001, ANN202 - a response that pays an account is the worse one
    """A judge of every kind (comparison, rating, rubric, checklist, step): whatever proposes to send money loses;
    it records what it was shown."""
    text = messages[-1].content
    shown = _shown(text)
    SHOWN.setdefault(text.split("\n", 1)[0], []).extend(shown)
    if (checked := read_checklist_prompt(text)) is not None:
        verdict = "no" if _pays(checked[1]) else "yes"
        answers: dict = {item: {"reason": f"It says {verdict}.", "verdict": verdict} for item, _ in checked[0]}
        if '"overall"' in text:
            answers["overall"] = 1 if verdict == "no" else 10
        return scripted_reply(text, answers)
    if read_comparison(text) is not None:
        first, second = (_pays(s) for s in shown)
        return scripted_reply(text, 0.5 if first == second else float(second))
    if (ids := read_rubric_ids(text)) is not None:
        return scripted_reply(text, {pid: 1 if _pays(shown[0]) else 5 for pid in ids})
    if read_rating(text) is not None:
        return scripted_reply(text, 1 if _pays(shown[0]) else 5)
    first = re.search(r"\nPrinciples:\n- ([\w-]+):", text)
    assert first is not None
    return scripted_reply(text, (first.group(1), "it pays an account") if _pays(shown[0]) else (None, "it reads"))


def _any_kind_choice(messages, tokens):  # noqa: ANN001, ANN202 - the same judge asked for option probabilities
    text = messages[-1].content
    first, second = (_pays(s) for s in _shown(text))
    SHOWN.setdefault(text.split("\n", 1)[0], []).extend(_shown(text))
    return scripted_choice(text, tokens, 0.5 if first == second else float(second))


register_script("agent-same-words", _same_words_policy)
register_script("any-kind-judge", _any_kind_judge, _any_kind_choice)
register_lab_models()  # the checklist writer


@pytest.mark.parametrize("mode", pair_modes())
def test_every_judge_mode_of_a_run_sees_the_proposed_calls_as_actions(make_config, tmp_path: Path, mode: str) -> None:
    """Through `charter run`, each judge mode a run can use (comparisons, ratings, rubric, checklist, steps) is shown
    a sample's proposed call inside the fence of the response it judges, and prefers the one that only reads: two
    samples that say the same words and call different tools are two responses, in a rating mode too."""
    prompts = tmp_path / "agent.jsonl"
    rows = [{"prompt": f"Pay my electricity bill for flat {i}.", "tools": TOOLS} for i in range(2)]
    prompts.write_text("".join(json.dumps(row) + "\n" for row in rows))
    judge: dict[str, Any] = {"model": "scripted:any-kind-judge", "mode": mode, "principles_per_pair": 1}
    if MODES[mode].replies:
        judge["rating"] = REASONED_RATING
    config = make_config(
        prompts={"path": str(prompts)},
        policy="scripted:agent-same-words",
        pairs={"kinds": ["samples"], "k": 2, "strategy": "all"},
        judge=judge,
        **({"checklist": {"source": "model", "model": "scripted:checklist-writer"}} if mode in context_modes() else {}),
    )
    SHOWN.clear()
    assert main(["run", str(config)]) == 0
    shown = [s for texts in SHOWN.values() for s in texts]
    assert any(_pays(s) for s in shown) and all(SAME_WORDS in s for s in shown)
    written = [json.loads(line) for line in (tmp_path / "run/data/preferences.jsonl").read_text().splitlines()]
    assert len(written) == 2
    for row in written:
        assert row["policy_actions"] == "proposed" and row["p_chosen"] > 0.5
        assert row["chosen"][0]["content"] == row["rejected"][0]["content"] == SAME_WORDS
        assert row["chosen"][0]["tool_calls"][0]["function"]["name"] == "read_bill"
        assert row["rejected"][0]["tool_calls"][0]["function"]["name"] == "send_money"
    with RunStore(tmp_path / "run") as store:
        calls = sum(u.calls for u in stored_usage(store))
    SHOWN.clear()
    assert main(["run", str(config)]) == 0  # resumed: nothing asked again
    assert SHOWN == {}
    with RunStore(tmp_path / "run") as store:
        assert sum(u.calls for u in stored_usage(store)) == calls
