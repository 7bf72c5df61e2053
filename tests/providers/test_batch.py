"""The batch runner through the real SDKs against the loopback Files/Batches and Message Batches endpoints."""

from __future__ import annotations

import asyncio

import pytest

from charter.errors import ProviderError
from charter.providers import CallCache, UsageMeter, create_backend, get_model
from charter.providers.base import Limits, SamplingParams
from charter.providers.batch import BatchModel, BatchSettings, MemoryJournal
from charter.providers.usage import Price
from charter.testing.loopback import BatchServer

FAST = BatchSettings(poll_s=0.02, gather_s=0.05)
LIMITS = Limits(max_retries=2, backoff_initial_s=0.01, backoff_max_s=0.05)


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-batch-test-key")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-batch-test-key")
    with BatchServer(complete_after_s=0.05) as srv:
        monkeypatch.setenv("OPENAI_BASE_URL", srv.openai_url)
        yield srv


def ask(text: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": "Be brief."}, {"role": "user", "content": text}]


def backend(spec: str, server: BatchServer):
    """The backend at the batch server: not the provider's own API, so the key variable is named."""
    options = {"base_url": server.url} if spec.startswith("anthropic") else {}
    key = "ANTHROPIC_API_KEY" if spec.startswith("anthropic") else "OPENAI_API_KEY"
    return create_backend(spec, LIMITS, key, **options)


async def answers(model, texts: list[str]) -> list:
    params = SamplingParams(max_tokens=16)
    return await asyncio.gather(*(model.generate([ask(t)], params) for t in texts), return_exceptions=True)


@pytest.mark.parametrize("spec", ["openai:gpt-4o-mini", "anthropic:claude-haiku"])
def test_one_step_is_one_batch_at_the_batch_price(server, tmp_path, spec):
    meter = UsageMeter(prices={spec: Price(input=1.0, output=2.0)})
    model = get_model(BatchModel(backend(spec, server), FAST), cache=CallCache(tmp_path / "c.sqlite"), meter=meter)

    async def main():
        first = await answers(model, [f"q{i}" for i in range(6)])
        again = await answers(model, [f"q{i}" for i in range(6)])  # from the cache: nothing submitted
        await model.aclose()
        return first, again

    first, again = asyncio.run(main())
    assert [r[0].text for r in first] == [f"echo: q{i}" for i in range(6)]
    assert all(r[0].batched and not r[0].cached for r in first) and all(r[0].cached for r in again)
    assert [b["requests"] for b in server.batches_created] == [6]
    tally = meter.tallies[("default", spec)]
    full = (tally.prompt_tokens * 1.0 + tally.completion_tokens * 2.0) / 1e6
    assert tally.calls == 6 and tally.cost_usd == pytest.approx(full / 2)


def test_judge_logprobs_through_a_batch(server):
    model = get_model(BatchModel(backend("openai:gpt-4o-mini", server), FAST))

    async def main():
        probs = await asyncio.gather(*(model.choice_logprobs(ask(f"A or B {i}?"), ["A", "B"]) for i in range(3)))
        await model.aclose()
        return probs

    probs = asyncio.run(main())
    assert all(p.batched and p.probs["A"] > p.probs["B"] > 0 for p in probs)
    assert server.batches_created[0]["requests"] == 3


@pytest.mark.parametrize("spec", ["openai:gpt-4o-mini", "anthropic:claude-haiku"])
def test_partial_failures_expiry_and_rejection(server, spec):
    flaky = {"q1": 1}  # fails once with a 500, then succeeds in the next round

    def fail(body):
        text = str(body)
        if "POISON" in text:
            return 400
        for key, left in flaky.items():
            if key in text and left:
                flaky[key] -= 1
                return 500
        return None

    server.fail = fail
    server.expire_after = 4  # the first round: 6 requests, 4 run (one of them fails), 2 expire
    model = get_model(BatchModel(backend(spec, server), FAST))

    async def main():
        results = await answers(model, ["q0", "q1", "q2", "POISON", "q4", "q5"])
        await model.aclose()
        return results

    results = asyncio.run(main())
    assert [r[0].text for i, r in enumerate(results) if i != 3] == [
        "echo: q0",
        "echo: q1",
        "echo: q2",
        "echo: q4",
        "echo: q5",
    ]
    assert isinstance(results[3], ProviderError) and results[3].kind == "rejected" and results[3].status == 400
    rounds = [b["requests"] for b in server.batches_created]
    assert rounds == [6, 3]  # q1 (500) and the two expired went into a second round
    assert sum(r[0].batched for i, r in enumerate(results) if i != 3) == 5


def test_retries_spent_fail_the_item_with_its_kind(server):
    server.fail = lambda body: 503
    model = get_model(BatchModel(backend("openai:gpt-4o-mini", server), FAST))

    async def main():
        results = await answers(model, ["q0"])
        await model.aclose()
        return results

    [error] = asyncio.run(main())
    assert isinstance(error, ProviderError) and error.kind == "server_error" and error.attempts == 3
    assert len(server.batches_created) == 3  # the first round and LIMITS.max_retries more


def test_a_new_process_follows_the_batch_it_submitted_instead_of_submitting_again(server):
    server.hold = True
    journal = MemoryJournal()

    async def first_process():
        model = get_model(BatchModel(backend("openai:gpt-4o-mini", server), FAST, journal=journal))
        task = asyncio.ensure_future(answers(model, ["q0", "q1"]))
        while not journal.batches:
            await asyncio.sleep(0.01)
        task.cancel()  # the process dies while the batch runs
        await asyncio.gather(task, return_exceptions=True)
        await model.aclose()

    async def second_process():
        model = get_model(BatchModel(backend("openai:gpt-4o-mini", server), FAST, journal=journal))
        results = await answers(model, ["q0", "q1"])
        await model.aclose()
        return results, model.inner.submitted

    asyncio.run(first_process())
    server.hold = False
    results, submitted = asyncio.run(second_process())
    assert [r[0].text for r in results] == ["echo: q0", "echo: q1"]
    assert submitted == 0 and len(server.batches_created) == 1


def test_batch_is_only_for_openai_and_anthropic(tmp_path):
    from charter.errors import ConfigError
    from charter.pipeline.config import load_run_config

    path = tmp_path / "run.yaml"
    path.write_text("policy: {model: 'local:smollm2-135m-instruct', batch: true}\n")
    with pytest.raises(ConfigError, match=r"run.yaml:1.*policy.batch: only the openai and anthropic providers"):
        load_run_config(path)


def test_a_step_larger_than_the_provider_limit_goes_out_in_several_batches(server):
    settings = BatchSettings(poll_s=0.02, gather_s=0.05, max_requests=4)
    model = get_model(BatchModel(backend("openai:gpt-4o-mini", server), settings))

    async def main():
        results = await answers(model, [f"q{i}" for i in range(10)])
        await model.aclose()
        return results

    results = asyncio.run(main())
    assert [r[0].text for r in results] == [f"echo: q{i}" for i in range(10)]
    assert [b["requests"] for b in server.batches_created] == [4, 4, 2]
    byte_capped = BatchModel(backend("openai:gpt-4o-mini", server), BatchSettings(max_bytes=400))
    calls = [
        type("C", (), {"key": f"k{i}", "body": {"messages": [{"role": "user", "content": "x" * 100}]}})()
        for i in range(5)
    ]
    chunks = byte_capped._split(calls)  # noqa: SLF001 - the split rule itself
    assert all(sum(len(line) for _, line in chunk) <= 400 for chunk in chunks) and sum(map(len, chunks)) == 5
