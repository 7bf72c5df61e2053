"""OpenAIModel through the real openai SDK against the loopback server."""

from __future__ import annotations

import asyncio
import math
import sys
import time

import pytest

from charter.errors import ConfigError, LogprobsUnsupported, MissingAPIKey, MissingExtra, ProviderError
from charter.providers import SamplingParams, get_model
from charter.providers.base import Limits
from charter.providers.openai_chat import OpenAIModel, option_token
from charter.providers.registry import create_backend
from charter.records import Message
from charter.testing.loopback import drop, garbage, slow, status

from .conftest import FAST

HELLO = [Message(role="user", content="hello there")]


def model(server, limits: Limits = FAST, compatible: bool = False) -> OpenAIModel:
    """`openai:` at the loopback server: not OpenAI's API, so the key variable is named (as a proxy's user would)."""
    key = None if compatible else "OPENAI_API_KEY"
    return OpenAIModel("gpt-test", limits, base_url=server.openai_url, compatible=compatible, api_key_env=key)


async def test_generate_batch_in_order_with_usage(loopback, openai_key):
    chat = model(loopback)
    requests = [
        [Message(role="system", content="be brief"), Message(role="user", content=f"question {i}")] for i in range(5)
    ]
    params = SamplingParams(temperature=0.3, top_p=0.9, max_tokens=17, seed=42, stop=("\n\n",))
    completions = await chat.generate(requests, params)
    assert [c.text for c in completions] == [f"echo: question {i}" for i in range(5)]
    assert all(c.model == "openai:gpt-test" and c.finish_reason == "stop" for c in completions)
    assert all(c.prompt_tokens > 0 and c.completion_tokens == 3 for c in completions)
    body = loopback.requests[0].body
    assert body["model"] == "gpt-test" and body["seed"] == 42 and body["stop"] == ["\n\n"]
    assert body["temperature"] == 0.3 and body["top_p"] == 0.9 and body["max_completion_tokens"] == 17
    assert body["messages"][0] == {"role": "system", "content": "be brief"}
    assert loopback.hits == 5 and chat.limiter.retries == 0
    await chat.aclose()


SCHEMA = {
    "type": "object",
    "properties": {"items": {"type": "array", "items": {"type": "string"}}},
    "required": ["items"],
    "additionalProperties": False,
}


async def test_a_json_schema_is_asked_for_as_strict_structured_output(loopback, openai_key):
    await model(loopback).generate([HELLO], SamplingParams(json_schema=SCHEMA))
    assert loopback.requests[0].body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "reply", "schema": SCHEMA, "strict": True},
    }
    # Off for a server that rejects it; and a call without a schema never sends one.
    off = create_backend(f"openai-compatible:gpt-test@{loopback.openai_url}", FAST, structured_output=False)
    await off.generate([HELLO], SamplingParams(json_schema=SCHEMA))
    await model(loopback).generate([HELLO], SamplingParams())
    assert all("response_format" not in r.body for r in loopback.requests[1:])
    await off.aclose()


async def test_key_sent_as_bearer(loopback, openai_key):
    await model(loopback).generate([HELLO], SamplingParams())
    assert loopback.requests[0].headers["authorization"] == f"Bearer {openai_key}"


async def test_missing_key_is_one_line(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(MissingAPIKey) as err:
        OpenAIModel("gpt-4o-mini", FAST)
    assert "OPENAI_API_KEY" in str(err.value) and "\n" not in str(err.value)


async def test_compatible_server_via_model_string_needs_no_key(loopback, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    chat = get_model(f"openai-compatible:llama-3@{loopback.openai_url}", limits=FAST)
    [completion] = await chat.generate([HELLO], SamplingParams(max_tokens=9))
    assert completion.text == "echo: hello there" and completion.model == "openai-compatible:llama-3"
    request = loopback.requests[0]
    assert request.headers["authorization"] == "Bearer EMPTY"
    assert request.body["max_tokens"] == 9 and "max_completion_tokens" not in request.body


async def test_concurrency_limit_is_honoured(loopback, openai_key):
    loopback.delay_s = 0.05
    chat = model(loopback, FAST.model_copy(update={"concurrency": 3}))
    await chat.generate([HELLO] * 12, SamplingParams())
    assert loopback.hits == 12 and loopback.max_in_flight == 3


async def test_choice_logprobs_pools_option_spellings(loopback, openai_key):
    chat = model(loopback)
    probs = await chat.choice_logprobs(HELLO, ["A", "B"])
    body = loopback.requests[0].body
    assert body["logprobs"] is True and body["top_logprobs"] == 20 and body["max_completion_tokens"] == 1
    # "A" and "(A" pool; " B" and "B" pool (see DEFAULT_LOGPROBS)
    expected_a = math.log(math.exp(-0.2) + math.exp(-3.0))
    expected_b = math.log(math.exp(-1.9) + math.exp(-3.5))
    assert probs.raw_logprobs["A"] == pytest.approx(expected_a)
    assert probs.raw_logprobs["B"] == pytest.approx(expected_b)
    assert sum(probs.probs.values()) == pytest.approx(1.0)
    p_a = math.exp(expected_a) / (math.exp(expected_a) + math.exp(expected_b))
    assert probs.probs["A"] == pytest.approx(p_a)
    assert probs.prompt_tokens > 0


async def test_choice_logprobs_missing_option_gets_a_floor(loopback, openai_key):
    loopback.logprobs = {" A": -0.05, "Sure": -3.0}
    probs = await model(loopback).choice_logprobs(HELLO, ["A", "B"])
    assert probs.probs["A"] > 0.99 and "B" not in probs.raw_logprobs


async def test_server_without_logprobs_says_so(loopback, openai_key):
    loopback.logprobs = {}
    with pytest.raises(LogprobsUnsupported, match="no logprobs for the next token") as error:
        await model(loopback, compatible=True).choice_logprobs(HELLO, ["A", "B"])
    # a provider knows no judge modes: the judge adds which to use (tests/judge/test_modes.py)
    assert "mode" not in str(error.value)


@pytest.mark.parametrize("token, label", [(" A", "A"), ("(A", "A"), ("A)", "A"), ("\nB", "B"), ("B", "B")])
def test_option_token(token, label):
    assert option_token(token) == label


async def test_429_honours_retry_after_seconds(loopback, openai_key):
    chat = model(loopback, FAST.model_copy(update={"backoff_max_s": 5.0}))
    loopback.script(status(429, retry_after="1"))
    start = time.monotonic()
    [completion] = await chat.generate([HELLO], SamplingParams())
    waited = loopback.requests[1].at - loopback.requests[0].at
    assert completion.text == "echo: hello there"
    assert chat.limiter.retries == 1 and loopback.hits == 2
    assert waited >= 1.0 and time.monotonic() - start >= 1.0


async def test_429_honours_retry_after_ms(loopback, openai_key):
    chat = model(loopback)  # backoff alone would wait ~0.01 s
    loopback.script(status(429, retry_after_ms="150"), status(429, retry_after_ms="150"))
    await chat.generate([HELLO], SamplingParams())
    assert chat.limiter.retries == 2 and loopback.hits == 3
    assert loopback.requests[1].at - loopback.requests[0].at >= 0.15
    assert loopback.requests[2].at - loopback.requests[1].at >= 0.15


async def test_500_then_success(loopback, openai_key):
    chat = model(loopback)
    loopback.script(status(500), status(503))
    [completion] = await chat.generate([HELLO], SamplingParams())
    assert completion.text == "echo: hello there"
    assert chat.limiter.retries == 2 and chat.limiter.attempts == 3 and loopback.hits == 3


async def test_retries_run_out(loopback, openai_key):
    chat = model(loopback)
    loopback.script(*[status(500)] * 4)
    with pytest.raises(ProviderError) as err:
        await chat.generate([HELLO], SamplingParams())
    assert "HTTP 500" in str(err.value) and "after 4 attempts" in str(err.value)
    assert chat.limiter.retries == 3 and loopback.hits == 4


async def test_slow_reply_times_out_then_retry_succeeds(loopback, openai_key):
    chat = model(loopback, FAST.model_copy(update={"timeout_s": 0.2}))
    loopback.script(slow(1.0))
    [completion] = await chat.generate([HELLO], SamplingParams())
    assert completion.text == "echo: hello there" and chat.limiter.retries == 1 and loopback.hits == 2


async def test_timeouts_run_out(loopback, openai_key):
    chat = model(loopback, FAST.model_copy(update={"timeout_s": 0.2, "max_retries": 1}))
    loopback.script(slow(1.0), slow(1.0))
    with pytest.raises(ProviderError, match="timed out after 0.2 s .after 2 attempts"):
        await chat.generate([HELLO], SamplingParams())
    assert chat.limiter.retries == 1 and loopback.hits == 2


async def test_dropped_connection_is_retried(loopback, openai_key):
    chat = model(loopback)
    loopback.script(drop(), drop())
    [completion] = await chat.generate([HELLO], SamplingParams())
    assert completion.text == "echo: hello there" and chat.limiter.retries == 2 and loopback.hits == 3


@pytest.mark.parametrize("code", [400, 401, 403, 404])
async def test_client_errors_are_never_retried(loopback, openai_key, code):
    chat = model(loopback)
    loopback.script(status(code))
    with pytest.raises(ProviderError) as err:
        await chat.generate([HELLO], SamplingParams())
    message = str(err.value)
    assert f"HTTP {code}" in message and "not retried" in message and "\n" not in message
    assert openai_key not in message and openai_key[:12] not in message
    assert chat.limiter.retries == 0 and loopback.hits == 1 and err.value.status == code


async def test_one_failure_in_a_batch_cancels_the_rest(loopback, openai_key):
    chat = model(loopback, FAST.model_copy(update={"concurrency": 1}))
    loopback.script(status(401))
    with pytest.raises(ProviderError):
        await chat.generate([HELLO] * 6, SamplingParams())
    await asyncio.sleep(0.2)  # left running, the other five would have been sent by now
    # the next in line may already hold the freed slot when the failure lands; the rest never go
    assert loopback.hits <= 2 and chat.limiter.attempts <= 2
    await chat.aclose()


async def test_model_survives_a_new_event_loop(loopback, openai_key):
    """Sync wrappers call asyncio.run more than once with one model: clients and semaphores follow the loop."""
    chat = model(loopback)
    await chat.generate([HELLO], SamplingParams())
    first = chat.client()

    def in_another_loop() -> str:
        return asyncio.run(chat.generate([HELLO], SamplingParams()))[0].text

    assert await asyncio.to_thread(in_another_loop) == "echo: hello there"
    assert chat._client is not first


def test_missing_sdk_names_the_extra(monkeypatch, openai_key):
    monkeypatch.setitem(sys.modules, "openai", None)  # import openai now raises ImportError
    with pytest.raises(MissingExtra, match=r"charter\[openai\]"):
        OpenAIModel("gpt-test", FAST)


def test_unknown_option_is_a_config_error(openai_key):
    with pytest.raises(ConfigError, match="'temperature'"):
        create_backend("openai:gpt-test", FAST, temperature=0.2)


async def test_reply_that_is_not_json_is_retried_then_fails_the_call(loopback, openai_key):
    chat = model(loopback)
    loopback.script(garbage())  # a cut-short or proxy page: retried like a 5xx
    [completion] = await chat.generate([HELLO], SamplingParams())
    assert completion.text.startswith("echo: hello") and loopback.hits == 2
    loopback.reset()
    loopback.script(*[garbage()] * 4)
    with pytest.raises(ProviderError, match="not JSON") as err:
        await chat.generate([HELLO], SamplingParams())
    assert "\n" not in str(err.value) and loopback.hits == 4 and err.value.kind == "malformed"
    assert err.value.raw.startswith("<html>")
