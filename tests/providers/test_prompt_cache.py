"""Provider prompt caching and the bill: cached and written tokens parsed from the real SDKs' replies (sync and
batch), priced at their own rates so that the meter's cost is the loopback server's invoice; Anthropic breakpoints,
OpenAI's prompt_cache_key; prices from the config, else genai-prices (offline), and the price-key error. The
loopback servers cache a prompt as the providers do: once it has been answered."""

from __future__ import annotations

import asyncio
import socket

import pytest

from charter.errors import ConfigError
from charter.pipeline.config import load_run_config
from charter.providers import SamplingParams, UsageMeter, get_model
from charter.providers.anthropic_chat import with_breakpoints
from charter.providers.batch import BatchModel, BatchSettings
from charter.providers.prices import library_price, resolve_price, unmatched_price_key
from charter.providers.registry import create_backend
from charter.providers.usage import Price
from charter.records import Message
from charter.testing.loopback import BatchServer, LoopbackServer, ok
from tests.support.billing import AnthropicBilling, OpenAIBilling

from .conftest import FAST

REPORT = " ".join(f"word{i}" for i in range(1600))  # a long shared document, past the 1,024-token minimum
FAST_BATCH = BatchSettings(poll_s=0.02, gather_s=0.05)


def judge_prompt(question: str) -> list[Message]:
    """A format-3-like comparison: the shared part (instructions, document, two responses), then the question."""
    shared = f"Compare.\n{REPORT}\n<response-a-x1>short</response-a-x1>\n<response-b-x1>longer one</response-b-x1>"
    return [Message(role="system", content="You are a careful judge."), Message(role="user", content=shared + question)]


def short(body: dict) -> str:
    """A judge's short answer (an echo of the prompt would make the output dominate the bill)."""
    return "A"


def price_like(billing) -> Price:  # noqa: ANN001
    """The price a config gives for what the server bills."""
    return Price(
        input=billing.input,
        output=billing.output,
        cached_input=billing.input * billing.read,
        cache_write=billing.input * billing.write,
    )


def backend(spec: str, server: LoopbackServer, **options):  # noqa: ANN001, ANN201
    """The backend at the loopback server (not the provider's own API: the key variable is named)."""
    key = "ANTHROPIC_API_KEY" if spec.startswith("anthropic") else "OPENAI_API_KEY"
    url = server.url if spec.startswith("anthropic") else server.openai_url
    return create_backend(spec, FAST, key, base_url=url, **options)


async def ask_all(model, questions: list[str]) -> list:  # noqa: ANN001
    """The first question alone (it warms the cache), then the rest at once."""
    params = SamplingParams(max_tokens=16)
    first = await model.generate([judge_prompt(questions[0])], params)
    rest = await asyncio.gather(*(model.generate([judge_prompt(q)], params) for q in questions[1:]))
    await model.aclose()
    return [*first, *(r[0] for r in rest)]


QUESTIONS = [f"\nWhich response is more {w}? Answer A or B." for w in ("honest", "helpful", "harmless", "concise")]


def billing_for(spec: str) -> OpenAIBilling | AnthropicBilling:
    return OpenAIBilling(read=0.5) if spec.startswith("openai") else AnthropicBilling()


SPECS = ["openai:gpt-4o-mini", "anthropic:claude-test"]


@pytest.fixture
def keys(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-cache-test")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-cache-test")
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


def test_openai_cached_tokens_are_billed_at_the_cached_price(keys):
    billing = OpenAIBilling(input=0.15, output=0.6, read=0.5)
    with LoopbackServer(billing=billing, reply=short) as server:
        spec = "openai:gpt-4o-mini"
        meter = UsageMeter({spec: price_like(billing)})
        answers = asyncio.run(ask_all(get_model(backend(spec, server), meter=meter), QUESTIONS))
        bodies = [r.body for r in server.requests]
    assert answers[0].cache_read_tokens == 0 and all(a.cache_read_tokens >= 1024 for a in answers[1:])
    tally = meter.tallies[("default", spec)]
    assert tally.cache_read_tokens == billing.invoice.cache_read_tokens > 3 * 1024
    assert meter.total_cost == pytest.approx(billing.invoice.usd, rel=0.01)
    full = (tally.prompt_tokens * 0.15 + tally.completion_tokens * 0.6) / 1e6
    assert meter.total_cost < 0.8 * full and tally.cache_saved_usd == pytest.approx(full - meter.total_cost)
    # one routing key for the shared prefix: the four questions about one pair go to one cache
    assert len({b["prompt_cache_key"] for b in bodies}) == 1 and bodies[0]["prompt_cache_key"].startswith("charter-")


def test_openai_compatible_servers_report_cached_tokens_and_get_no_cache_key(keys):
    billing = OpenAIBilling(input=1.0, output=1.0, read=0.25)
    with LoopbackServer(billing=billing, reply=short) as server:
        spec = f"openai-compatible:m@{server.openai_url}"
        meter = UsageMeter({spec: price_like(billing)})  # keyed by the model string as a role writes it
        model = get_model(create_backend(spec, FAST), meter=meter)
        asyncio.run(ask_all(model, QUESTIONS))
        bodies = [r.body for r in server.requests]
    assert all("prompt_cache_key" not in b for b in bodies)
    assert meter.tallies[("default", "openai-compatible:m")].cache_read_tokens > 0
    assert meter.total_cost == pytest.approx(billing.invoice.usd, rel=0.01)


def test_anthropic_breakpoints_reads_and_writes_match_the_invoice(keys):
    billing = AnthropicBilling(input=3.0, output=15.0)
    with LoopbackServer(billing=billing, reply=short) as server:
        spec = "anthropic:claude-test"
        meter = UsageMeter({spec: price_like(billing)})
        answers = asyncio.run(ask_all(get_model(backend(spec, server), meter=meter), QUESTIONS))
        body = server.requests[0].body
    marked = [b for b in [*body["system"], *body["messages"][-1]["content"]] if "cache_control" in b]
    assert 1 <= len(marked) <= 4 and marked[-1]["text"].endswith("</response-b-x1>")
    assert "cache_control" not in body["messages"][-1]["content"][-1]  # the question is never cached
    assert answers[0].cache_write_tokens > 1024 and answers[0].cache_read_tokens == 0
    assert all(a.cache_read_tokens == answers[0].cache_write_tokens for a in answers[1:])
    # input_tokens excludes the cache: charter counts all three as prompt tokens
    assert answers[1].prompt_tokens == answers[0].prompt_tokens
    tally = meter.tallies[("default", spec)]
    assert tally.prompt_tokens == billing.invoice.prompt_tokens
    assert meter.total_cost == pytest.approx(billing.invoice.usd, rel=0.01)


def test_prompt_cache_false_sends_no_breakpoint(keys):
    billing = AnthropicBilling()
    with LoopbackServer(billing=billing, reply=short) as server:
        spec = "anthropic:claude-test"
        asyncio.run(ask_all(get_model(backend(spec, server, prompt_cache=False)), QUESTIONS[:2]))
        body = server.requests[0].body
    assert isinstance(body["system"], str) and isinstance(body["messages"][-1]["content"], str)
    assert billing.invoice.cache_read_tokens == billing.invoice.cache_write_tokens == 0


@pytest.mark.parametrize("spec", ["openai:gpt-4o-mini", "anthropic:claude-test"])
def test_a_batch_with_caching_costs_the_batch_invoice(keys, monkeypatch, spec):
    billing = OpenAIBilling(read=0.5) if spec.startswith("openai") else AnthropicBilling()
    with BatchServer(complete_after_s=0.02, billing=billing, reply=short) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.openai_url)
        meter = UsageMeter({spec: price_like(billing)})
        options = {"base_url": server.url} if spec.startswith("anthropic") else {}
        key = "ANTHROPIC_API_KEY" if spec.startswith("anthropic") else "OPENAI_API_KEY"
        inner = BatchModel(create_backend(spec, FAST, key, **options), FAST_BATCH)
        answers = asyncio.run(ask_all(get_model(inner, meter=meter), QUESTIONS))
    assert all(a.batched for a in answers) and billing.invoice.cache_read_tokens > 3 * 1024
    assert meter.tallies[("default", spec)].cache_read_tokens == billing.invoice.cache_read_tokens
    assert meter.total_cost == pytest.approx(billing.invoice.usd, rel=0.01)


def test_price_with_cache_rates():
    price = Price(input=2.0, output=8.0, cached_input=0.5, cache_write=2.5)
    # 1,000 prompt tokens: 600 read from cache, 100 written, 300 uncached; 50 out
    assert price.cost(1000, 50, cache_read=600, cache_write=100) == pytest.approx(
        (300 * 2.0 + 600 * 0.5 + 100 * 2.5 + 50 * 8.0) / 1e6
    )
    assert price.saved(600, 100) == pytest.approx((600 * 1.5 - 100 * 0.5) / 1e6)
    assert Price(input=2.0).cost(1000, 0, cache_read=600) == pytest.approx(2000 / 1e6)  # no cache price: full


def test_unpriced_models_take_genai_prices_offline(monkeypatch):
    def no_network(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("genai-prices tried the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    library_price.cache_clear()
    price, source = resolve_price({}, "openai:gpt-4o-mini")
    assert source == "genai-prices" and price.input > 0 and 0 < price.cached_input < price.input
    claude, _ = resolve_price({}, "anthropic:claude-sonnet-4-5")
    assert claude.cache_write == pytest.approx(1.25 * claude.input) and claude.cached_input == pytest.approx(
        0.1 * claude.input
    )
    configured = Price(input=9.0)
    assert resolve_price({"gpt-4o-mini": configured}, "openai:gpt-4o-mini") == (configured, "config")
    assert resolve_price({}, "openai:no-such-model-xyz")[1] == "unpriced"
    assert resolve_price({}, "openai-compatible:gpt-4o-mini")[1] == "unpriced"  # a self-hosted server: no list
    assert UsageMeter().price_of("openai:gpt-4o-mini") == price


def test_a_price_key_naming_no_model_is_an_error(tmp_path):
    role = "openai-compatible:m@http://127.0.0.1:9/v1"
    assert unmatched_price_key([role, "openai-compatible:m", "m"], [role]) is None
    config = tmp_path / "run.yaml"
    config.write_text(
        f"policy: {role}\njudge:\n  model: anthropic:claude-x\n"
        f'prices:\n  "{role}": {{input: 1}}\n  "openai:gpt-4o": {{input: 1}}\n'
    )
    with pytest.raises(ConfigError) as caught:
        load_run_config(config)
    message = str(caught.value)
    assert "\n" not in message and "prices key 'openai:gpt-4o' names no model of this run" in message
    assert "openai-compatible:m" in message and "anthropic:claude-x" in message and ":6:" in message


def test_breakpoints_mark_the_shared_parts_and_never_more_than_four():
    turns = [{"role": r, "content": f"turn {i}"} for i, r in enumerate(["user", "assistant", "user", "assistant"])]
    turns.append({"role": "user", "content": "revise it"})
    request = with_breakpoints("Be brief.", turns)
    marked = [b["text"] for b in request["system"] if "cache_control" in b]
    marked += [b["text"] for t in request["messages"] for b in t["content"] if "cache_control" in b]
    assert marked == ["Be brief.", "turn 0", "turn 3"]  # the system prompt, the first turn, the turn before the last
    judge = "Compare.\n<conversation-ab12>\nhi\n</conversation-ab12>\n\n<response-b-ab12>\nx\n</response-b-ab12>\nQ?"
    request = with_breakpoints("S", [{"role": "user", "content": judge}])
    pieces = request["messages"][0]["content"]
    assert [p["text"] for p in pieces][0].endswith("</conversation-ab12>") and "".join(
        p["text"] for p in pieces
    ) == judge
    assert [("cache_control" in p) for p in pieces] == [True, True, False]  # both orders share the conversation
    many = with_breakpoints("S", [*turns[:4], {"role": "user", "content": judge}])  # five places: the last four
    blocks = [*many["system"], *(b for t in many["messages"] for b in t["content"])]
    assert sum("cache_control" in b for b in blocks) == 4 and "cache_control" not in many["system"][0]


def test_online_training_refuses_a_price_key_naming_no_model():
    from charter.online.config import OnlineConfig

    fields = {"prompts": "p.jsonl", "judge": {"model": "scripted:judge", "mode": "score"}}
    assert OnlineConfig.model_validate({**fields, "prices": {"scripted:judge": {"input": 1}}}).prices
    with pytest.raises(ValueError, match="prices key 'openai:gpt-4o' names no model"):
        OnlineConfig.model_validate({**fields, "prices": {"openai:gpt-4o": {"input": 1}}})


BLIND = "openai-compatible:m@http://127.0.0.1:9/v1"


@pytest.mark.parametrize("kind", ["grpo", "online-dpo", "serve"])
def test_every_config_with_a_cost_cap_refuses_a_model_it_cannot_price(kind):
    """Online training (GRPO/RLOO, online DPO) and the reward server take a budget too: a cap over a judge with no
    price is refused, unless the price is given, or given as 0 (free)."""
    from charter.online.config import OnlineConfig, OnlineDPOConfig
    from charter.serve.config import ServeConfig

    make = {"grpo": OnlineConfig, "online-dpo": OnlineDPOConfig, "serve": ServeConfig}[kind]
    mode = "logprobs" if kind == "online-dpo" else "score"
    fields = {"prompts": "p.jsonl"} if kind != "serve" else {}
    fields = {**fields, "judge": {"model": BLIND, "mode": mode}, "budget": {"max_cost_usd": 1.0}}
    with pytest.raises(ValueError, match=r"a cost cap cannot see what judge \(openai-compatible:m\) spends"):
        make.model_validate(fields)
    assert make.model_validate({**fields, "prices": {"openai-compatible:m": {"input": 0, "output": 0}}}).budget
    assert make.model_validate({**fields, "prices": {"openai-compatible:m": {"input": 0.2, "output": 0.8}}}).budget
    assert make.model_validate({**fields, "budget": {"max_tokens": 1000}}).budget  # a token cap counts any model


def test_the_reward_function_and_the_win_rate_callback_refuse_a_cost_cap_they_cannot_see(tmp_path):
    import charter
    from charter.providers.usage import Budget

    with pytest.raises(ConfigError, match=r"cannot see what judge \(openai-compatible:m\) spends"):
        charter.reward_function(BLIND, store=tmp_path / "r", cache=None, budget=Budget(max_cost_usd=1.0))
    free = {"openai-compatible:m": Price(input=0, output=0)}
    assert charter.reward_function(
        BLIND, store=tmp_path / "r", cache=None, budget=Budget(max_cost_usd=1.0), prices=free
    )
    with pytest.raises(ConfigError, match=r"cannot see what judge \(openai-compatible:m\) spends"):
        charter.WinRateCallback(["Hi?"], judge=BLIND, references=["Hello."], budget=Budget(max_cost_usd=1.0))
    callback = charter.WinRateCallback(
        ["Hi?"], judge=BLIND, references=["Hello."], cache=None, budget=Budget(max_cost_usd=1.0), prices=free
    )
    assert callback.meter.budget.max_cost_usd == 1.0


def test_the_billing_server_shares_no_code_with_charter():
    """The invoice the forecast is checked against is written apart from it: the billing module imports nothing of
    charter, so that it cannot agree with the forecast's cache model by construction."""
    import ast
    import inspect

    import tests.support.billing as billing

    tree = ast.parse(inspect.getsource(billing))
    imported = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    imported += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert imported and not [name for name in imported if name.split(".")[0] == "charter"]


def test_the_billing_server_caches_token_prefixes_in_steps_once_answered():
    from tests.support.billing import MIN_CACHED, STEP, tokenize

    text = "Institutionalization, in 2024: it's 12345 words long."
    assert "".join(tokenize(text)) == text and len(tokenize(text)) > len(text.split())  # its own tokens, not words
    shared = " ".join(f"w{i}" for i in range(1200))

    def body(question: str) -> dict:
        return {"messages": [{"role": "user", "content": f"{shared} {question}"}]}

    billing = OpenAIBilling(input=1.0, output=1.0, read=0.1)
    first = billing.usage(body("one?"), "ok")
    together = billing.usage(body("two?"), "ok")  # sent before the first was answered: nothing cached yet
    billing.fill(body("one?"))
    after = billing.usage(body("three?"), "ok")
    assert first["prompt_tokens_details"]["cached_tokens"] == together["prompt_tokens_details"]["cached_tokens"] == 0
    read = after["prompt_tokens_details"]["cached_tokens"]
    assert read >= MIN_CACHED and (read - MIN_CACHED) % STEP == 0 and after["prompt_tokens"] - read < STEP + 8
    assert billing.invoice.calls == 3 and billing.invoice.cache_read_tokens == read
    capped = billing.usage({**body("four?"), "max_tokens": 3}, "a reply of rather more than three tokens")
    assert capped["completion_tokens"] == 3  # a provider stops at max_tokens


def test_call_cache_rows_keep_no_prompt_cache_counts(keys, tmp_path):
    from charter.providers import CallCache

    billing = OpenAIBilling()
    with LoopbackServer(billing=billing, reply=short) as server:
        spec = "openai:gpt-4o-mini"
        model = get_model(backend(spec, server), cache=CallCache(tmp_path / "calls.sqlite"))
        asyncio.run(ask_all(model, QUESTIONS[:2]))
        again = get_model(backend(spec, server), cache=CallCache(tmp_path / "calls.sqlite"))
        [hit] = asyncio.run(again.generate([judge_prompt(QUESTIONS[1])], SamplingParams(max_tokens=16)))
    assert hit.cached and hit.cache_read_tokens == 0 and server.hits == 2  # answered by the call cache, unbilled


@pytest.mark.parametrize("spec", SPECS)
def test_a_prompt_is_cached_once_it_is_answered_not_when_it_arrives(keys, spec):
    billing = billing_for(spec)
    with LoopbackServer(billing=billing, reply=short) as server:
        server.script(ok(delay_s=1.0), ok(delay_s=0.0))  # the first to arrive is answered after the second arrived
        model = get_model(backend(spec, server))
        params = SamplingParams(max_tokens=16)

        async def ask() -> list:
            together = await asyncio.gather(*(model.generate([judge_prompt(q)], params) for q in QUESTIONS[:2]))
            [later] = await model.generate([judge_prompt(QUESTIONS[2])], params)
            await model.aclose()
            return [*(t[0] for t in together), later]

        first, second, later = asyncio.run(ask())
    # sent together, the two share a prefix but neither finds it cached: both miss (and both write it, at Anthropic)
    assert first.cache_read_tokens == second.cache_read_tokens == 0
    if spec.startswith("anthropic"):
        assert first.cache_write_tokens == second.cache_write_tokens > 1024
    assert later.cache_read_tokens > 1024  # sent after an answer, it reads the prefix they share
    assert billing.invoice.cache_read_tokens == later.cache_read_tokens


@pytest.mark.parametrize("spec", SPECS)
def test_a_revision_reads_the_prefix_of_its_critique(keys, spec):
    """A critique chain's revision request goes on from its critique request: once the critique is answered, the
    revision reads all of it that the provider caches (at Anthropic, the breakpoint two turns back, in its
    look-back)."""
    billing = billing_for(spec)
    with LoopbackServer(billing=billing, reply=short) as server:
        model = get_model(backend(spec, server))
        params = SamplingParams(max_tokens=16)
        conversation = [Message(role="user", content=REPORT), Message(role="assistant", content="A summary.")]
        critique = [*conversation, Message(role="user", content="Critique the summary.")]
        revision = [*critique, Message(role="assistant", content="Too short."), Message(role="user", content="Fix.")]

        async def ask() -> list:
            [asked] = await model.generate([critique], params)
            [revised] = await model.generate([revision], params)
            await model.aclose()
            return [asked, revised]

        asked, revised = asyncio.run(ask())
    # what the critique cached: its prompt in 128-token steps (OpenAI), up to its last breakpoint (Anthropic)
    cached = asked.cache_write_tokens if spec.startswith("anthropic") else asked.prompt_tokens // 128 * 128
    assert asked.cache_read_tokens == 0 and revised.cache_read_tokens == cached > 1024
