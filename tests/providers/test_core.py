"""The provider core: model strings, the call cache, the managed model, scripted models, usage and budget."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from charter.errors import BudgetExceeded, LogprobsUnsupported, ProviderError, UnknownModel
from charter.providers import (
    Budget,
    CallCache,
    ManagedModel,
    Price,
    SamplingParams,
    ScriptedModel,
    UsageMeter,
    create_backend,
    get_model,
    parse_model_string,
    register_script,
)
from charter.providers.anthropic_chat import AnthropicModel
from charter.providers.base import ChatModel, ChoiceProbs, Completion
from charter.providers.cache import cache_key
from charter.providers.openai_chat import OpenAIModel
from charter.providers.registry import ModelSpec
from charter.providers.scripted import rules_script
from charter.records import Message, as_dicts

from .conftest import FAST

HELLO = [Message(role="user", content="hello world")]


# -- model strings ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec, parsed",
    [
        ("openai:gpt-4o-mini", ModelSpec("openai", "gpt-4o-mini")),
        ("anthropic:claude-3-5-haiku-latest", ModelSpec("anthropic", "claude-3-5-haiku-latest")),
        ("local:smollm2-135m-instruct", ModelSpec("local", "smollm2-135m-instruct")),
        ("local:/models/my model", ModelSpec("local", "/models/my model")),
        ("scripted:cai", ModelSpec("scripted", "cai")),
        (
            "openai-compatible:meta/llama-3@http://gpu:8000/v1",
            ModelSpec("openai-compatible", "meta/llama-3", "http://gpu:8000/v1"),
        ),
    ],
)
def test_parse_model_string(spec, parsed):
    assert parse_model_string(spec) == parsed
    assert str(parsed) == spec


@pytest.mark.parametrize(
    "spec, words",
    [
        ("gpt-4o", "expected PROVIDER:MODEL"),
        ("openai:", "expected PROVIDER:MODEL"),
        ("azure:gpt-4o", "unknown provider 'azure'"),
        ("openai-compatible:llama", "openai-compatible:MODEL@"),
        ("openai-compatible:llama@gpu:8000", "openai-compatible:MODEL@"),
    ],
)
def test_bad_model_strings(spec, words):
    with pytest.raises(UnknownModel, match=words) as err:
        parse_model_string(spec)
    assert "\n" not in str(err.value)


def test_create_backend_picks_the_provider(openai_key, anthropic_key):
    assert isinstance(create_backend("scripted:echo"), ScriptedModel)
    compatible = create_backend("openai-compatible:llama@http://127.0.0.1:9/v1", FAST)
    assert isinstance(compatible, OpenAIModel) and compatible.base_url == "http://127.0.0.1:9/v1"
    assert compatible.model_id == "openai-compatible:llama" and compatible.limits is FAST
    assert create_backend("openai:gpt-4o-mini").model_id == "openai:gpt-4o-mini"
    assert isinstance(create_backend("anthropic:claude-x"), AnthropicModel)
    with pytest.raises(UnknownModel, match="no such script"):
        create_backend("scripted:nope")


def test_get_model_wraps_backend(tmp_path):
    chat = get_model("scripted:echo", cache=str(tmp_path / "c.sqlite"), role="critic")
    assert isinstance(chat, ManagedModel) and isinstance(chat.cache, CallCache) and chat.role == "critic"
    assert chat.model_id == "scripted:echo" and chat.supports_logprobs
    backend = ScriptedModel("constant")
    assert get_model(backend).inner is backend


# -- cache ------------------------------------------------------------------------------------------


def test_cache_key_is_canonical():
    hello = as_dicts(HELLO)  # keys hash the wire form of a request
    a = cache_key("generate", "m", [hello, {"temperature": 0.5, "seed": 1}])
    b = cache_key("generate", "m", [hello, {"seed": 1, "temperature": 0.5}])
    assert a == b and len(a) == 64
    assert a != cache_key("generate", "m", [hello, {"seed": 2, "temperature": 0.5}])
    assert a != cache_key("generate", "other", [hello, {"seed": 1, "temperature": 0.5}])
    assert a != cache_key("choice_logprobs", "m", [hello, {"seed": 1, "temperature": 0.5}])


def test_a_json_schema_is_part_of_the_key_and_leaves_other_keys_as_they_were():
    # Unset, the field is not dumped: cache keys and run fingerprints made before it existed still match.
    assert SamplingParams().model_dump(mode="json") == {
        "temperature": 0.7,
        "top_p": 1.0,
        "max_tokens": 256,
        "seed": None,
        "stop": [],
    }
    schema = {"type": "object", "properties": {"x": {"type": "string"}}, "additionalProperties": False}
    hello = as_dicts(HELLO)
    plain = cache_key("generate", "m", [hello, SamplingParams().model_dump(mode="json")])
    shaped = cache_key("generate", "m", [hello, SamplingParams(json_schema=schema).model_dump(mode="json")])
    assert plain != shaped
    with pytest.raises(ValueError, match="must be an object"):
        SamplingParams(json_schema={"type": "array", "items": {"type": "string"}})


class Gated(ChatModel):
    """A backend whose calls wait at a gate, counted, each failing while `failing` is set."""

    provider = "gated"
    supports_logprobs = True

    def __init__(self) -> None:
        super().__init__("m")
        self.gate, self.calls, self.failing = asyncio.Event(), [], False

    async def generate(self, requests, params):  # noqa: ANN001, ANN201
        self.calls += [r[-1].content for r in requests]
        await self.gate.wait()
        if self.failing:
            raise ProviderError("gated: refused", kind="rejected")
        return [Completion(f"re: {r[-1].content}", self.model_id, 3, 2) for r in requests]

    async def choice_logprobs(self, request, options):  # noqa: ANN001, ANN201
        self.calls.append(request[-1].content)
        await self.gate.wait()
        return ChoiceProbs({"A": 0.7, "B": 0.3}, self.model_id, 3)


async def test_an_identical_call_in_flight_is_waited_for_never_made_twice(tmp_path):
    backend = Gated()
    chat = get_model(backend, cache=str(tmp_path / "c.sqlite"))
    other = [Message(role="user", content="other")]
    params = SamplingParams(seed=1)
    calls = [
        chat.generate([HELLO], params),
        chat.generate([HELLO, other, other], params),  # duplicates within one call too
        chat.generate([HELLO], SamplingParams(seed=2)),  # another key: its own call
        chat.choice_logprobs(other, ["A", "B"]),
        chat.choice_logprobs(other, ["A", "B"]),
    ]
    tasks = [asyncio.ensure_future(c) for c in calls]
    await asyncio.sleep(0.01)
    backend.gate.set()
    first, second, seeded, choice, again = await asyncio.gather(*tasks)
    assert backend.calls == ["hello world", "other", "hello world", "other"]  # one generate each, one choice
    assert [c.text for c in second] == ["re: hello world", "re: other", "re: other"]
    assert not first[0].cached and second[0].cached and not second[1].cached and second[2].cached
    assert not seeded[0].cached and not choice.cached and again.cached and again.probs == choice.probs
    [usage] = chat.meter.rows()
    assert usage.calls == 4 and usage.cached == 3  # the three answered by a call in flight
    await chat.aclose()


async def test_a_waiter_shares_the_failure_and_calls_itself_after_a_cancel(tmp_path):
    backend = Gated()
    chat = get_model(backend, cache=str(tmp_path / "c.sqlite"))
    backend.failing = True
    tasks = [asyncio.ensure_future(chat.generate([HELLO], SamplingParams())) for _ in range(2)]
    await asyncio.sleep(0.01)
    backend.gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, ProviderError) for r in results) and backend.calls == ["hello world"]
    # The call waited for is cancelled (its caller stopped): the waiter makes it.
    backend.gate.clear()
    backend.failing, backend.calls = False, []
    leader = asyncio.ensure_future(chat.generate([HELLO], SamplingParams()))
    await asyncio.sleep(0.01)
    waiter = asyncio.ensure_future(chat.generate([HELLO], SamplingParams()))
    await asyncio.sleep(0.01)
    leader.cancel()
    await asyncio.sleep(0.01)
    backend.gate.set()
    [answer] = await waiter
    assert answer.text == "re: hello world" and not answer.cached and backend.calls == ["hello world"] * 2
    assert leader.cancelled()
    await chat.aclose()


def test_cache_round_trip_and_chunked_lookups(tmp_path):
    cache = CallCache(tmp_path / "nested" / "c.sqlite")
    assert len(cache) == 0 and cache.get_many([]) == {}
    rows = [(f"k{i}", "generate", "m", {"text": f"t{i}", "n": i, "unicode": "é✓"}) for i in range(1200)]
    cache.put_many(rows)
    found = cache.get_many([f"k{i}" for i in range(0, 1300, 1)])
    assert len(found) == 1200 and found["k1199"] == {"text": "t1199", "n": 1199, "unicode": "é✓"}
    cache.put_many([("k0", "generate", "m", {"text": "replaced"})])
    assert cache.get_many(["k0"])["k0"] == {"text": "replaced"} and len(cache) == 1200
    cache.close()
    reopened = CallCache(tmp_path / "nested" / "c.sqlite")
    assert len(reopened) == 1200
    assert reopened._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_put_soon_groups_rows_into_one_commit(tmp_path):
    path = tmp_path / "c.sqlite"
    cache, other = CallCache(path), CallCache(path)
    cache.put_soon([("a", "generate", "m", {"v": 1})])
    cache.put_soon([("b", "generate", "m", {"v": 2})])
    assert cache.get_many(["a", "b"]) == {"a": {"v": 1}, "b": {"v": 2}}  # seen while waiting
    assert other.get_many(["a", "b"]) == {} and len(cache._pending) == 2  # not on disk yet
    await asyncio.sleep(0)  # the end of this loop turn: one transaction for both
    assert other.get_many(["a", "b"]) == {"a": {"v": 1}, "b": {"v": 2}} and cache._pending == {}
    cache.put_soon([("c", "generate", "m", {"v": 3})])
    cache.close()  # closing writes what is waiting
    assert other.get_many(["c"]) == {"c": {"v": 3}}


def test_put_soon_outside_a_loop_writes_at_once(tmp_path):
    cache = CallCache(tmp_path / "c.sqlite")
    cache.put_soon([("a", "generate", "m", {"v": 1})])
    assert cache._pending == {} and CallCache(tmp_path / "c.sqlite").get_many(["a"]) == {"a": {"v": 1}}


def test_rows_waiting_at_the_end_of_asyncio_run_are_written(tmp_path):
    chat = get_model(ScriptedModel("echo"), cache=CallCache(tmp_path / "c.sqlite"))
    asyncio.run(chat.generate([HELLO], SamplingParams()))  # returns right after put_soon
    assert len(CallCache(tmp_path / "c.sqlite")) == 1


async def test_rerun_makes_zero_calls_and_marks_cached(tmp_path):
    backend = ScriptedModel("echo")
    chat = get_model(backend, cache=CallCache(tmp_path / "c.sqlite"))
    requests = [[Message(role="user", content=f"q{i}")] for i in range(6)]
    params = SamplingParams(seed=3)
    first = await chat.generate(requests, params)
    again = await chat.generate(requests, params)
    assert backend.calls == 6
    assert [c.text for c in again] == [c.text for c in first] and all(c.cached for c in again)
    assert not any(c.cached for c in first)
    await chat.generate(requests[:2], SamplingParams(seed=4))  # another seed is another call
    assert backend.calls == 8
    mixed = await chat.generate([requests[0], [Message(role="user", content="new")]], params)
    assert [c.cached for c in mixed] == [True, False] and backend.calls == 9


async def test_rerun_against_a_server_makes_zero_requests(loopback, openai_key, tmp_path):
    path = tmp_path / "c.sqlite"
    requests = [[Message(role="user", content=f"q{i}")] for i in range(5)]
    chat = get_model(f"openai-compatible:m@{loopback.openai_url}", limits=FAST, cache=CallCache(path))
    await chat.generate(requests, SamplingParams())
    await chat.choice_logprobs(HELLO, ["A", "B"])
    assert loopback.hits == 6
    await chat.aclose()
    chat.cache.close()
    fresh = get_model(f"openai-compatible:m@{loopback.openai_url}", limits=FAST, cache=CallCache(path))
    again = await fresh.generate(requests, SamplingParams())
    probs = await fresh.choice_logprobs(HELLO, ["A", "B"])
    assert loopback.hits == 6 and all(c.cached for c in again) and probs.cached
    assert fresh.meter.rows()[0].cached == 6 and fresh.meter.rows()[0].calls == 0


async def test_cache_under_many_concurrent_tasks(tmp_path):
    backend = ScriptedModel("echo", latency_s=0.001)
    chat = get_model(backend, cache=CallCache(tmp_path / "c.sqlite"))
    requests = [[Message(role="user", content=f"q{i % 150}")] for i in range(600)]  # 150 distinct, 4 times each
    results = await asyncio.gather(*(chat.generate([r], SamplingParams()) for r in requests))
    assert [r[0].text for r in results] == [r[0].content for r in requests]
    assert len(chat.cache) == 150
    before = backend.calls
    await asyncio.gather(*(chat.generate([r], SamplingParams()) for r in requests))
    assert backend.calls == before  # everything now answered from the cache


def test_cache_shared_by_threads(tmp_path):
    cache = CallCache(tmp_path / "c.sqlite")

    def work(t: int) -> None:
        for i in range(100):
            cache.put_many([(f"{t}-{i}", "generate", "m", {"i": i})])
            assert cache.get_many([f"{t}-{i}"]) == {f"{t}-{i}": {"i": i}}

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(cache) == 800


WRITER = textwrap.dedent(
    """
    import sys
    from charter.providers.cache import CallCache
    cache = CallCache(sys.argv[1])
    i = 0
    while True:
        cache.put_many([(f"k{i}-{j}", "generate", "m", {"text": "x" * 200, "i": i}) for j in range(20)])
        i += 1
        if i == 50:
            print("ready", flush=True)
    """
)


def test_killed_writer_leaves_a_usable_database(tmp_path):
    path = tmp_path / "c.sqlite"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    cache = CallCache(path)
    rows = len(cache)
    assert rows >= 1000 and rows % 20 == 0  # whole transactions only
    assert cache.get_many(["k0-0"])["k0-0"]["i"] == 0
    cache.put_many([("after", "generate", "m", {"ok": True})])
    assert cache.get_many(["after"]) == {"after": {"ok": True}} and len(cache) == rows + 1


# -- usage and budget -------------------------------------------------------------------------------


def test_usage_meter_prices_and_rows():
    meter = UsageMeter(prices={"openai:gpt-x": Price(input=2.0, output=8.0), "cheap": Price(input=0.5)})
    meter.record("policy", "openai:gpt-x", 1_000_000, 500_000, cached=False)
    meter.record("policy", "openai:gpt-x", 0, 0, cached=True)
    meter.record("judge", "anthropic:cheap", 2_000_000, 10, cached=False)
    meter.record("judge", "scripted:free", 100, 100, cached=False)
    assert meter.total_cost == pytest.approx(2.0 + 4.0 + 1.0)
    assert meter.total_tokens == 1_500_000 + 2_000_010 + 200
    rows = {(r.role, r.model): r for r in meter.rows()}
    assert rows[("policy", "openai:gpt-x")].calls == 1 and rows[("policy", "openai:gpt-x")].cached == 1
    assert rows[("judge", "scripted:free")].cost_usd == 0.0


def test_usage_meter_tallies_add_every_count_of_every_call():
    """Each (role, model)'s tally is the field-by-field sum of the calls counted into it, each field keeping its
    type (ints stay ints, USD floats), retries included; a tally read is a copy, so changing it changes no count."""
    price = Price(input=1.0, output=2.0, cached_input=0.5)
    meter = UsageMeter(prices={"m": price})
    meter.record("judge", "p:m", 1_000, 10, cached=False, cache_read=400)
    meter.record("judge", "p:m", 2_000, 20, cached=False, estimated=True, cache_write=100)
    meter.record("judge", "p:m", 0, 0, cached=True)
    meter.record_retry("judge", "p:m")
    meter.record("policy", "p:m", 5, 5, cached=False)
    tally = meter.tallies[("judge", "p:m")]
    counts = {
        "calls": 2,
        "cached": 1,
        "prompt_tokens": 3_000,
        "completion_tokens": 30,
        "estimated": 1,
        "retries": 1,
        "cache_read_tokens": 400,
        "cache_write_tokens": 100,
    }
    assert {name: getattr(tally, name) for name in counts} == counts
    assert all(type(getattr(tally, name)) is int for name in counts)
    assert tally.cost_usd == price.cost(1_000, 10, 400, 0) + price.cost(2_000, 20, 0, 100)
    assert tally.cache_saved_usd == price.saved(400, 0) + price.saved(0, 100)
    assert meter.total_retries == 1
    assert meter.total_tokens == 3_000 + 30 + 5 + 5
    assert meter.total_cost == tally.cost_usd + price.cost(5, 5, 0, 0)
    tally.calls = 99
    assert meter.tallies[("judge", "p:m")].calls == 2
    assert [(r.role, r.model) for r in meter.rows()] == [("judge", "p:m"), ("policy", "p:m")]


def test_budget_check():
    meter = UsageMeter(prices={"m": Price(input=1.0)}, budget=Budget(max_cost_usd=1.0))
    meter.check()
    meter.record("r", "p:m", 999_999, 0, cached=False)
    meter.check()
    meter.record("r", "p:m", 1, 0, cached=False)
    with pytest.raises(BudgetExceeded, match=r"\$1.0000 of \$1.0000"):
        meter.check()
    tokens = UsageMeter(budget=Budget(max_tokens=10))
    tokens.record("r", "m", 6, 4, cached=False)
    with pytest.raises(BudgetExceeded, match="10 of 10 tokens"):
        tokens.check()


async def test_budget_stops_calls_and_keeps_what_was_done(tmp_path):
    backend = ScriptedModel("echo")
    meter = UsageMeter(budget=Budget(max_tokens=12))
    chat = get_model(backend, cache=CallCache(tmp_path / "c.sqlite"), meter=meter)
    done = await chat.generate([[Message(role="user", content="one two three four five six seven")]], SamplingParams())
    with pytest.raises(BudgetExceeded):
        await chat.generate([[Message(role="user", content="something new")]], SamplingParams())
    assert backend.calls == 1 and len(chat.cache) == 1
    again = await chat.generate([[Message(role="user", content="one two three four five six seven")]], SamplingParams())
    assert again[0].cached and again[0].text == done[0].text  # cache hits cost nothing and still work


async def test_budget_through_a_remote_provider(loopback, openai_key):
    meter = UsageMeter(prices={"gpt-x": Price(input=1e6, output=1e6)}, budget=Budget(max_cost_usd=5.0))
    chat = get_model(f"openai-compatible:gpt-x@{loopback.openai_url}", limits=FAST, meter=meter)
    [done] = await chat.generate([HELLO], SamplingParams())  # $1 a token: over $5 after one call
    with pytest.raises(BudgetExceeded):
        await chat.generate([[Message(role="user", content="more")]], SamplingParams())
    assert loopback.hits == 1 and meter.total_cost == pytest.approx(done.total_tokens) and done.total_tokens > 5


# -- scripted ---------------------------------------------------------------------------------------


async def test_scripted_builtins():
    params = SamplingParams(seed=1)
    [echo] = await ScriptedModel("echo").generate([HELLO], params)
    assert echo.text == "hello world" and echo.prompt_tokens == 2 and echo.finish_reason == "stop"
    [ok] = await ScriptedModel("constant").generate([HELLO], params)
    assert ok.text == "OK"
    cai = ScriptedModel("cai")
    first = await cai.generate([HELLO], params)
    assert first == await cai.generate([HELLO], params)  # deterministic
    assert first[0].text != (await cai.generate([HELLO], SamplingParams(seed=2)))[0].text


async def test_scripted_rules_and_registration():
    register_script("rules-test", rules_script([(r"capital of france", "Paris"), (r"\d+ \+ \d+", "sum")], default="?"))
    chat = ScriptedModel("rules-test")
    texts = [
        c.text
        for c in await chat.generate(
            [
                [Message(role="user", content="What is the capital of France?")],
                [Message(role="user", content="2 + 2")],
                [Message(role="user", content="hmm")],
            ],
            SamplingParams(),
        )
    ]
    assert texts == ["Paris", "sum", "?"] and chat.calls == 3


async def test_scripted_choice_logprobs():
    from charter.constitutions import load_constitution
    from charter.judge.pairwise import comparison_prompt
    from charter.records import Message

    principle = load_constitution("harmless").principles[0]
    judge = comparison_prompt(
        [Message(role="user", content="How do I mix it?")],
        "Sure, here is exactly how to do that: mix...",
        "I can't help with that part, but here is a safer way",
        principle,
        "Answer with a single letter, A or B.",
    )
    probs = await ScriptedModel("cai").choice_logprobs(judge, ["A", "B"])
    assert probs.probs["B"] > probs.probs["A"] and sum(probs.probs.values()) == pytest.approx(1.0)
    with pytest.raises(LogprobsUnsupported, match="no choice function"):  # never a made-up uniform answer
        await ScriptedModel("echo").choice_logprobs(judge, ["A", "B", "C"])


async def test_scripted_callable_and_latency():
    chat = ScriptedModel("custom", fn=lambda messages, params: f"{len(messages)}:{params.max_tokens}", latency_s=0.05)
    start = time.monotonic()
    [c] = await chat.generate([HELLO], SamplingParams(max_tokens=7))
    assert c.text == "1:7" and time.monotonic() - start >= 0.05


def test_cache_keys_are_the_json_they_always_were():
    import hashlib
    import json

    from hypothesis import given, settings
    from hypothesis import strategies as st

    from charter.providers.cache import canonical_json

    def before(kind, model_id, payload):  # the key as every cache file so far was written
        blob = json.dumps([kind, model_id, payload], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()

    # keys written by earlier releases still answer: pinned, not recomputed
    hello = as_dicts(HELLO)
    key = cache_key("generate", "m", [hello, {"temperature": 0.5, "seed": 1}])
    assert key == "ff1dc4a3a2a1f9cc8a06b63ce4e6f5fb11aa0a2d8c4d2229594e70508bdc721e"
    request = [{"role": "system", "content": 'Sé útil.\n"quoted"'}, {"content": "日本語 🙂", "role": "user"}]
    key = cache_key("generate", "openai:gpt-4o-mini", [request, ("A", "B")])
    assert key == "130471b1ba0b445c6cfb1513243f6d09ff336239717fce8175ff5457f71ac211"
    text = st.text(alphabet=st.characters(codec="utf-8"), max_size=30)
    message = st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "system"]), "content": text})
    scalar = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text
    value = st.recursive(
        scalar | message, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=3)
    )

    @settings(max_examples=300, deadline=None)
    @given(st.sampled_from(["generate", "choice_logprobs"]), text, value)
    def same(kind, model_id, payload):
        assert canonical_json(payload) == json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert cache_key(kind, model_id, payload) == before(kind, model_id, payload)

    same()


def test_cached_values_are_stored_as_the_json_they_always_were(tmp_path):
    """A value goes into the call cache's file as `json.dumps(value, ensure_ascii=False)` wrote it, byte for byte
    (older releases read the same rows), and reads back equal."""
    import json

    from hypothesis import given, settings
    from hypothesis import strategies as st

    from charter.providers.cache import CallCache

    text = st.text(alphabet=st.characters(codec="utf-8"), max_size=30)
    scalar = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text
    value = st.recursive(scalar, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=3))
    cache = CallCache(tmp_path / "cache.sqlite")

    @settings(max_examples=150, deadline=None)
    @given(text, value)
    def same(key, stored):
        cache.put_many([(key, "generate", "m", stored)])
        raw = cache._db.execute("SELECT value FROM calls WHERE key = ?", (key,)).fetchone()[0]
        assert raw == json.dumps(stored, ensure_ascii=False)
        assert cache.get_many([key]) == {key: json.loads(raw)}

    try:
        same()
    finally:
        cache.close()
