"""A policy offered tools answers with tool calls: OpenAI's `tool_calls` and Anthropic's `tool_use` blocks through the
real SDKs against the loopback server, a scripted model's `Message`, and the call cache, which keeps the calls (a
plain reply's row is what it always was). A call whose arguments are not a JSON object fails the item."""

from __future__ import annotations

import json
import sqlite3

import pytest

from charter.errors import ProviderError
from charter.providers import SamplingParams, get_model
from charter.providers.anthropic_chat import AnthropicModel
from charter.providers.cache import CallCache
from charter.providers.openai_chat import OpenAIModel
from charter.providers.scripted import ScriptedModel
from charter.records import Message, ToolCall

from .conftest import FAST

ASK = [Message(role="user", content="Pay my bill.")]
TOOLS = [{"type": "function", "function": {"name": "pay", "description": "Pay a bill.", "parameters": {
    "type": "object", "properties": {"amount": {"type": "number"}}}}}]  # fmt: skip
PAY = {"id": "call_1", "type": "function", "function": {"name": "pay", "arguments": '{"amount": 52.1}'}}


def _agent(body: dict) -> str | dict:
    return {"content": None, "tool_calls": [PAY]} if body.get("tools") else "no tools, no calls"


async def test_openai_reply_tool_calls_are_read_and_tools_sent(loopback, openai_key) -> None:
    loopback.reply = _agent
    chat = OpenAIModel("gpt-test", FAST, base_url=loopback.openai_url, api_key_env="OPENAI_API_KEY")
    [done] = await chat.generate([ASK], SamplingParams(tools=TOOLS))
    assert done.text == "" and done.finish_reason == "tool_calls" and done.answered
    assert done.tool_calls == [ToolCall(id="call_1", name="pay", arguments={"amount": 52.1})]
    assert loopback.requests[-1].body["tools"] == TOOLS
    [plain] = await chat.generate([ASK], SamplingParams())
    assert plain.text == "no tools, no calls" and plain.tool_calls is None
    assert "tools" not in loopback.requests[-1].body


async def test_openai_tool_call_arguments_that_are_not_json_fail_the_item(loopback, openai_key) -> None:
    loopback.reply = lambda body: {
        "content": None,
        "tool_calls": [{**PAY, "function": {"name": "pay", "arguments": "{amount"}}],
    }
    chat = OpenAIModel("gpt-test", FAST, base_url=loopback.openai_url, api_key_env="OPENAI_API_KEY")
    with pytest.raises(ProviderError) as failed:
        await chat.generate([ASK], SamplingParams(tools=TOOLS))
    assert failed.value.kind == "bad_tool_call" and "tool calls cannot be read" in str(failed.value)


async def test_anthropic_tool_use_blocks_are_read_and_tools_sent(loopback, anthropic_key) -> None:
    loopback.reply = _agent
    chat = AnthropicModel("claude-test", FAST, api_key_env="ANTHROPIC_API_KEY", base_url=loopback.url)
    [done] = await chat.generate([ASK], SamplingParams(tools=TOOLS))
    assert done.finish_reason == "tool_use" and done.text == ""
    assert done.tool_calls == [ToolCall(id="call_1", name="pay", arguments={"amount": 52.1})]
    [offered] = loopback.requests[-1].body["tools"]
    assert offered == {"name": "pay", "description": "Pay a bill.", "input_schema": TOOLS[0]["function"]["parameters"]}


async def test_a_script_answers_with_tool_calls_and_the_cache_keeps_them(tmp_path) -> None:  # noqa: ANN001
    asked: list[SamplingParams] = []

    def agent(messages, params):  # noqa: ANN001, ANN202
        asked.append(params)
        if not params.tools:
            return "I only talk."
        return Message(
            role="assistant", content="", tool_calls=[ToolCall(id="c1", name="pay", arguments={"amount": 1})]
        )

    cache = CallCache(tmp_path / "calls.sqlite")
    chat = get_model(ScriptedModel("agent", fn=agent), cache=cache)
    [first] = await chat.generate([ASK], SamplingParams(tools=TOOLS))
    [again] = await chat.generate([ASK], SamplingParams(tools=TOOLS))
    [plain] = await chat.generate([ASK], SamplingParams())
    cache.flush()
    assert len(asked) == 2 and asked[0].tools == TOOLS  # the second reply came from the cache
    assert again.cached and again.tool_calls == first.tool_calls == [
        ToolCall(id="c1", name="pay", arguments={"amount": 1})
    ]
    with sqlite3.connect(tmp_path / "calls.sqlite") as db:
        rows = {json.loads(v)["text"]: json.loads(v) for (v,) in db.execute("SELECT value FROM calls")}
    assert rows[""]["tool_calls"] == [{"id": "c1", "name": "pay", "arguments": {"amount": 1}}]
    assert "tool_calls" not in rows[plain.text]  # a plain reply's row is as it always was
    assert "tools" not in SamplingParams().model_dump()  # and so are the keys of calls offering no tools
