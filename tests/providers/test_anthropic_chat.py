"""AnthropicModel through the real anthropic SDK against the loopback server."""

from __future__ import annotations

import sys

import pytest

from charter.errors import ConfigError, LogprobsUnsupported, MissingAPIKey, MissingExtra, ProviderError
from charter.providers import SamplingParams, get_model
from charter.providers.anthropic_chat import AnthropicModel, split_system
from charter.providers.registry import create_backend
from charter.records import Message, as_dicts
from charter.testing.loopback import drop, slow, status

from .conftest import FAST

CHAT = [
    Message(role="system", content="You are terse."),
    Message(role="system", content="Answer in English."),
    Message(role="user", content="first"),
    Message(role="assistant", content="ok"),
    Message(role="user", content="second"),
]


def model(server, **options) -> AnthropicModel:
    """`anthropic:` at the loopback server: not Anthropic's API, so the key variable is named."""
    return AnthropicModel("claude-test", FAST, api_key_env="ANTHROPIC_API_KEY", base_url=server.url, **options)


def test_split_system():
    system, turns = split_system(CHAT)
    assert system == "You are terse.\n\nAnswer in English."
    assert [t["role"] for t in turns] == ["user", "assistant", "user"]
    assert split_system(CHAT[2:]) == (None, as_dicts(CHAT[2:]))


async def test_generate_puts_system_in_its_field(loopback, anthropic_key):
    chat = model(loopback, prompt_cache=False)
    completions = await chat.generate([CHAT, CHAT[2:3]], SamplingParams(max_tokens=50, stop=("END",)))
    assert [c.text for c in completions] == ["echo: second", "echo: first"]
    assert completions[0].finish_reason == "end_turn" and completions[0].prompt_tokens > 0
    assert completions[0].completion_tokens == 2 and completions[0].model == "anthropic:claude-test"
    first, second = sorted(loopback.requests, key=lambda r: "system" not in r.body)
    assert first.path == "/v1/messages" and first.body["system"] == "You are terse.\n\nAnswer in English."
    assert all(m["role"] != "system" for m in first.body["messages"])
    assert first.body["max_tokens"] == 50 and first.body["stop_sequences"] == ["END"]
    assert "system" not in second.body and "temperature" not in first.body
    sent = first.headers.get("x-api-key") or first.headers["authorization"].removeprefix("Bearer ")
    assert sent == anthropic_key
    await chat.aclose()


async def test_sampling_params_option_sends_temperature(loopback, anthropic_key):
    await model(loopback, sampling_params=True).generate([CHAT], SamplingParams(temperature=0.2, top_p=0.5))
    body = loopback.requests[0].body
    assert body["temperature"] == 0.2 and body["top_p"] == 0.5


async def test_via_model_string(loopback, anthropic_key):
    chat = get_model("anthropic:claude-test", limits=FAST, api_key_env="ANTHROPIC_API_KEY", base_url=loopback.url)
    [completion] = await chat.generate([CHAT], SamplingParams())
    assert completion.text == "echo: second" and chat.model_id == "anthropic:claude-test"


async def test_a_json_schema_is_asked_for_as_an_output_format(loopback, anthropic_key):
    schema = {"type": "object", "properties": {"x": {"type": "string"}}, "additionalProperties": False}
    await model(loopback).generate([CHAT], SamplingParams(json_schema=schema))
    await model(loopback, structured_output=False).generate([CHAT], SamplingParams(json_schema=schema))
    await model(loopback).generate([CHAT], SamplingParams())
    first, off, plain = (r.body for r in loopback.requests)
    assert first["output_config"] == {"format": {"type": "json_schema", "schema": schema}}
    assert "output_config" not in off and "output_config" not in plain


def test_missing_key(monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(MissingAPIKey, match="ANTHROPIC_API_KEY"):
        AnthropicModel("claude-test", FAST)


def test_unknown_option(anthropic_key):
    with pytest.raises(ConfigError, match="'temperature'"):
        create_backend("anthropic:claude-test", FAST, temperature=0.1)


async def test_no_logprobs(loopback, anthropic_key):
    with pytest.raises(LogprobsUnsupported):
        await model(loopback).choice_logprobs(CHAT, ["A", "B"])
    assert loopback.hits == 0


async def test_transient_failures_are_retried(loopback, anthropic_key):
    chat = AnthropicModel(
        "claude-test",
        FAST.model_copy(update={"timeout_s": 0.2, "max_retries": 4}),
        api_key_env="ANTHROPIC_API_KEY",
        base_url=loopback.url,
    )
    loopback.script(status(529), status(429, retry_after_ms="100"), drop(), slow(1.0))
    [completion] = await chat.generate([CHAT], SamplingParams())
    assert completion.text == "echo: second"
    assert chat.limiter.retries == 4 and loopback.hits == 5
    assert loopback.requests[2].at - loopback.requests[1].at >= 0.1


@pytest.mark.parametrize("code", [400, 401, 403])
async def test_client_errors_not_retried(loopback, anthropic_key, code):
    chat = model(loopback)
    loopback.script(status(code))
    with pytest.raises(ProviderError) as err:
        await chat.generate([CHAT], SamplingParams())
    assert f"HTTP {code}" in str(err.value) and anthropic_key not in str(err.value)
    assert loopback.hits == 1 and chat.limiter.retries == 0


def test_missing_sdk_names_the_extra(monkeypatch, anthropic_key):
    monkeypatch.setitem(sys.modules, "anthropic", None)
    with pytest.raises(MissingExtra, match=r"charter\[anthropic\]"):
        AnthropicModel("claude-test", FAST)
