"""`charter run` against loopback servers that cache and bill prompts as OpenAI and Anthropic do: the cost the run
records (and `charter status` shows) is the server's invoice, within 1%, across a budget stop and a resume; with
replies that take time (calls sent together all miss), the judge's schedule reads most input from the cache."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from charter.cli import main
from charter.hub.card import _usage
from charter.hub.rundata import read_run
from charter.runs.store import RunStore
from charter.runs.usage import stored_usage
from charter.testing.loopback import LoopbackServer
from tests.support.billing import AnthropicBilling, OpenAIBilling

N = 4
DOCUMENT = " ".join(f"line{i} of the quarterly report." for i in range(300))  # ~1,500 words per prompt


def reply(body: dict) -> str:
    """For a judge prompt, the letter of the longer response; otherwise a short first answer, then longer ones."""
    content = body.get("messages", [])[-1].get("content")
    text = " ".join(b["text"] for b in content) if isinstance(content, list) else str(content)
    if "single letter" in text:
        a, b = (len(m.group(1)) for m in re.finditer(r"<response-[ab][^>]*>(.*?)</response-[ab]", text, re.S))
        return "A" if a > b else "B"
    turns = len(body.get("messages", []))
    return "A short answer." if turns == 1 else f"A careful answer, with more detail ({turns} turns)."


def write_config(tmp_path: Path, model: str, billing, **extra) -> Path:  # noqa: ANN001
    key = "ANTHROPIC_API_KEY" if model.startswith("anthropic") else "OPENAI_API_KEY"
    role = {"model": model, "api_key_env": key, "params": {"max_tokens": 32}}
    config = {
        "name": "bill",
        "output_dir": str(tmp_path / "bill"),
        "cache": str(tmp_path / "calls.sqlite"),
        "prompts": {"inline": [f"{DOCUMENT}\nQuestion {i}: what changed in quarter {i}?" for i in range(N)]},
        "concurrency": 2,
        "policy": role,
        "judge": {**role, "mode": "verdict", "orders": "both", "principles_per_pair": 3},
        "filters": {"drop_inconsistent": False},
        "prices": {
            model: {
                "input": billing.input,
                "output": billing.output,
                "cached_input": billing.input * billing.read,
                "cache_write": billing.input * billing.write,
            }
        },
        **extra,
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def recorded(run_dir: Path) -> tuple[float, int, int]:
    with RunStore(run_dir) as store:
        usage = stored_usage(store)
    return (
        sum(u.cost_usd for u in usage),
        sum(u.prompt_tokens for u in usage),
        sum(u.cache_read_tokens for u in usage),
    )


@pytest.fixture(autouse=True)
def _keys(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-invoice-test")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-invoice-test")


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_the_recorded_cost_is_the_invoice(tmp_path, monkeypatch, capsys, provider):
    billing = OpenAIBilling(input=0.15, output=0.6, read=0.5) if provider == "openai" else AnthropicBilling()
    with LoopbackServer(billing=billing, reply=reply) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.openai_url)
        model = "openai:gpt-4o-mini" if provider == "openai" else "anthropic:claude-test"
        config = write_config(tmp_path, model, billing)
        if provider == "anthropic":  # the Anthropic SDK takes its URL from the role's options
            data = yaml.safe_load(config.read_text())
            for role in ("policy", "judge"):
                data[role]["options"] = {"base_url": server.url}
            config.write_text(yaml.safe_dump(data))
        assert main(["run", str(config)]) == 0
    cost, prompt_tokens, read = recorded(tmp_path / "bill")
    assert prompt_tokens == billing.invoice.prompt_tokens and read == billing.invoice.cache_read_tokens
    assert read > 0.3 * prompt_tokens  # the shared prefixes were read from the cache
    with RunStore(tmp_path / "bill") as store:
        assert {u.role for u in stored_usage(store)} >= {"policy", "judge"}
    assert cost == pytest.approx(billing.invoice.usd, rel=0.01)
    capsys.readouterr()
    monkeypatch.setenv("COLUMNS", "200")  # the usage table unfolded
    assert main(["status", str(tmp_path / "bill")]) == 0
    shown = " ".join(capsys.readouterr().out.split())
    assert f"{cost:.4f}" in shown and "read from the providers' caches" in shown
    assert f"Priced by {model}: config" in shown
    share = f"{read / prompt_tokens:.1%}"
    report = (tmp_path / "bill" / "report" / "report.md").read_text()
    assert f"{share} of prompt tokens were read from the providers' prompt caches" in report
    assert _usage(read_run(tmp_path / "bill"))["cache_share"] == share  # the dataset card's figure


def test_a_resumed_run_keeps_the_first_process_usage(tmp_path, monkeypatch):
    billing = OpenAIBilling(input=0.15, output=0.6, read=0.5)
    with LoopbackServer(billing=billing, reply=reply) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.openai_url)
        config = write_config(tmp_path, "openai:gpt-4o-mini", billing, budget={"max_cost_usd": 0.0004})
        assert main(["run", str(config)]) == 4  # stopped by the budget, which counts the cached price
        first_cost, _, _ = recorded(tmp_path / "bill")
        first_bill = billing.invoice.usd
        assert main(["run", str(config), "--set", "budget.max_cost_usd=null"]) == 0
    cost, prompt_tokens, _ = recorded(tmp_path / "bill")
    assert first_cost == pytest.approx(first_bill, rel=0.01) and billing.invoice.usd > first_bill
    assert prompt_tokens == billing.invoice.prompt_tokens
    assert cost == pytest.approx(billing.invoice.usd, rel=0.01)


def test_a_model_the_config_does_not_price_is_priced_by_genai_prices(tmp_path, monkeypatch, capsys):
    billing = OpenAIBilling(input=0.15, output=0.6, read=0.5)  # gpt-4o-mini's list prices
    with LoopbackServer(billing=billing, reply=reply) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.openai_url)
        config = write_config(tmp_path, "openai:gpt-4o-mini", billing)
        data = yaml.safe_load(config.read_text())
        del data["prices"]
        config.write_text(yaml.safe_dump(data))
        assert main(["run", str(config)]) == 0
    cost, _, _ = recorded(tmp_path / "bill")
    assert cost == pytest.approx(billing.invoice.usd, rel=0.01)
    with RunStore(tmp_path / "bill") as store:
        assert store.meta("price_sources") == {"openai:gpt-4o-mini": "genai-prices"}
    capsys.readouterr()
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["status", str(tmp_path / "bill")]) == 0
    assert "Priced by openai:gpt-4o-mini: genai-prices" in " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_with_slow_replies_most_input_is_read_from_the_cache(tmp_path, monkeypatch, provider):
    """The benchmark's workload, small: a pair's first judge call is answered before its other five are sent, and
    the other order's first before that order's others, so each reads what it shares with one already answered."""
    billing = OpenAIBilling(input=0.15, output=0.6, read=0.5) if provider == "openai" else AnthropicBilling()
    with LoopbackServer(billing=billing, reply=reply, delay_s=0.1) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.openai_url)
        model = "openai:gpt-4o-mini" if provider == "openai" else "anthropic:claude-test"
        config = write_config(tmp_path, model, billing, concurrency=N, report=False)
        data = yaml.safe_load(config.read_text())
        data["pairs"] = {"kinds": ["revision"]}
        for role in ("policy", "judge") if provider == "anthropic" else ():
            data[role]["options"] = {"base_url": server.url}
        config.write_text(yaml.safe_dump(data))
        assert main(["run", str(config)]) == 0
    cost, prompt_tokens, read = recorded(tmp_path / "bill")
    assert billing.invoice.calls == N * (3 + 6) and read == billing.invoice.cache_read_tokens
    # 0.62 (OpenAI-style) and 0.64 (Anthropic-style); 0.53 and 0.54 when both orders' first calls go together
    assert read > 0.58 * prompt_tokens
    assert cost == pytest.approx(billing.invoice.usd, rel=0.01)
