"""The cost before the run: `charter run --dry-run --json` and `charter.estimate` forecast calls, tokens and cost per
role and model, and a run then billed by the loopback servers (as OpenAI and Anthropic cache and bill, and OpenAI's
Batch API) pays within a quarter of the expected figure, inside the low-high range. The calls forecast are the
calls a run makes, for every shape of run; a budget below the forecast is warned about before the first call."""

from __future__ import annotations

import hashlib
import json
import logging
import random
from pathlib import Path
from typing import Any

import pytest
import yaml

import charter
from charter.cli import main
from charter.pipeline.forecast import Forecast
from charter.providers import ScriptedModel, register_script
from charter.runs.store import RunStore
from charter.runs.usage import stored_usage
from charter.testing import LoopbackServer
from charter.testing.batches import BatchServer
from charter.testing.billing import AnthropicBilling, OpenAIBilling
from charter.testing.faults import FaultServer

DOCUMENT = " ".join(f"line{i} of the quarterly report." for i in range(300))  # ~1,500 words per prompt
#: Reply lengths in words, by what a reply answers: (fewest, most), before the call's max_tokens cuts it.
LENGTHS = {"answer": (20, 48), "critique": (10, 30), "revision": (20, 48)}
WORDS = "the answer weighs the request and the risks and gives careful steps".split()
WORDS_COUNTED = ["forecast.counter=words", "forecast.tokens_per_word=1"]  # the loopback bills a word as a token


def _text(body: dict[str, Any]) -> str:
    content = body.get("messages", [])[-1].get("content")
    return " ".join(b["text"] for b in content) if isinstance(content, list) else str(content)


def reply(body: dict[str, Any]) -> str:
    """A judge's letter; else a text of its own length (seeded by the request), cut at the call's max_tokens."""
    text = _text(body)
    if "single letter" in text:
        return "A"
    kind = "answer" if len(body.get("messages", [])) <= 2 else "revision" if "rewrite" in text.lower() else "critique"
    words = random.Random(hashlib.sha256(text.encode()).digest()).randint(*LENGTHS[kind])
    cap = body.get("max_completion_tokens") or body.get("max_tokens") or words
    return " ".join(WORDS[i % len(WORDS)] for i in range(min(words, cap)))


class Batches(BatchServer):
    logprobs_for = FaultServer.logprobs_for


@pytest.fixture(autouse=True)
def _keys(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-forecast-test")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-forecast-test")


def write_config(tmp_path: Path, kind: str, url: str, **extra: Any) -> Path:
    model = "anthropic:claude-test" if kind == "anthropic" else "openai:gpt-4o-mini"
    role: dict[str, Any] = {
        "model": model,
        "api_key_env": "ANTHROPIC_API_KEY" if kind == "anthropic" else "OPENAI_API_KEY",
        "params": {"max_tokens": 48},
        **({"options": {"base_url": url}} if kind == "anthropic" else {}),
    }
    price = {"input": 3.0, "output": 15.0, "cached_input": 0.3, "cache_write": 3.75}
    config = {
        "name": "forecast",
        "output_dir": str(tmp_path / "run"),
        "cache": str(tmp_path / "calls.sqlite"),
        "prompts": {"inline": [f"{DOCUMENT}\nQuestion {i}: what changed in quarter {i}?" for i in range(3)]},
        "concurrency": 2,
        "policy": role,
        "judge": {**role, "mode": "logprobs" if kind == "batch" else "verdict", "principles_per_pair": 2},
        "filters": {"drop_inconsistent": False},
        "prices": {model: price if kind == "anthropic" else {"input": 0.15, "output": 0.6, "cached_input": 0.075}},
        "batch": {"enabled": kind == "batch", "poll_s": 0.1, "gather_s": 0.1},
        **extra,
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def dry_run(capsys: pytest.CaptureFixture, path: Path, *settings: str) -> dict[str, Any]:
    capsys.readouterr()
    assert main(["run", str(path), "--dry-run", "--json", *[a for s in settings for a in ("--set", s)]]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("kind", ["openai", "anthropic", "batch"])
def test_the_forecast_is_within_a_quarter_of_the_invoice(tmp_path, monkeypatch, capsys, kind):
    billing = AnthropicBilling(3.0, 15.0) if kind == "anthropic" else OpenAIBilling(input=0.15, output=0.6, read=0.5)
    server = Batches(complete_after_s=0.1, billing=billing, reply=reply) if kind == "batch" else None
    with server or LoopbackServer(billing=billing, reply=reply) as live:
        monkeypatch.setenv("OPENAI_BASE_URL", live.openai_url)
        path = write_config(tmp_path, kind, live.url)
        forecast = dry_run(capsys, path, *WORDS_COUNTED)
        assert live.hits == 0  # the forecast called nothing
        assert main(["run", str(path), *[a for s in WORDS_COUNTED for a in ("--set", s)]]) == 0
    cost, invoice = forecast["total"]["cost_usd"], billing.invoice
    assert invoice.usd == pytest.approx(cost["expected"], rel=0.25)
    assert cost["low"] <= invoice.usd <= cost["high"]
    assert forecast["total"]["calls"]["expected"] == invoice.calls
    if kind != "batch":  # the long prompts' shared prefixes: forecast read from the cache, as they were billed
        assert forecast["total"]["cache_read_tokens"]["expected"] > 0 and invoice.cache_read_tokens > 0
    assert {row["batched"] for row in forecast["rows"]} == {kind == "batch"}
    with RunStore(tmp_path / "run") as store:  # the run stored the same forecast when it started
        assert store.meta("forecast")["total"] == forecast["total"]
    report = (tmp_path / "run" / "report" / "report.md").read_text()
    section = report.split("### Forecast beside the bill", 1)[1].split("## Failures")[0]
    assert f"{cost['expected']:.4f} ({cost['low']:.4f}-{cost['high']:.4f})" in section
    assert f"were billed {invoice.usd / cost['expected']:.2f}x their expected cost" in section


def test_the_json_is_the_documented_forecast(make_config, capsys):
    path = make_config()
    shown = dry_run(capsys, path)
    forecast = Forecast.model_validate(shown)  # the schema of docs/reference/formats.md: no other key, none missing
    assert list(shown) == list(Forecast.model_fields)
    assert forecast.prompts == forecast.counted_prompts == 6 and forecast.stages == ["critique", "judge"]
    assert [(r.role, r.model) for r in forecast.rows] == [(r, "scripted:cai") for r in ("policy", "critic", "judge")]
    for row in [*forecast.rows, forecast.total]:
        for name in ("calls", "prompt_tokens", "completion_tokens", "cost_usd"):
            span = getattr(row, name)
            assert span.low <= span.expected <= span.high, (name, span)
    assert {r.counter for r in forecast.rows} == {"heuristic: 4 characters a token"}
    assert {r.price_source for r in forecast.rows} == {"unpriced"} and forecast.total.cost_usd.high == 0
    assert forecast.budget is None and forecast.assumptions


register_script("cai-second", ScriptedModel("cai").fn, ScriptedModel("cai").choice_fn)


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"critique": {"rounds": 2}, "pairs": {"kinds": ["revision", "samples"], "k": 3, "strategy": "all"}},
        {"judge": {"models": ["scripted:cai", "scripted:cai-second"], "orders": "one", "principles_per_pair": 3}},
        {"judge": {"model": "scripted:cai", "mode": "score"}, "pairs": {"kinds": ["samples"], "k": 3}},
        {"judge": {"model": "scripted:cai", "mode": "rubric", "principles_per_pair": 3}},
        {"judge": {"model": "scripted:cai", "mode": "cot", "principles": ["privacy", "drugs"]}},
    ],
    ids=["revision", "rounds-and-samples", "panel", "score-samples", "rubric", "cot-fixed"],
)
def test_the_calls_forecast_are_the_calls_a_run_makes(make_config, tmp_path, capsys, overrides):
    path = make_config(**overrides)
    forecast = Forecast.model_validate(dry_run(capsys, path))
    assert main(["run", str(path)]) == 0
    with RunStore(tmp_path / "run") as store:
        made = {(u.role, u.model): u.calls for u in stored_usage(store)}
    assert {(r.role, r.model): r.calls.expected for r in forecast.rows} == made
    reasks = forecast.total.calls.high - forecast.total.calls.expected  # re-asks of an unreadable text, at the high end
    assert (reasks > 0) == (overrides.get("judge", {}).get("mode") in ("cot", "rubric"))


def test_a_budget_below_the_forecast_warns_before_the_first_call(tmp_path, monkeypatch, capsys, caplog):
    billing = OpenAIBilling(input=0.15, output=0.6, read=0.5)
    with LoopbackServer(billing=billing, reply=reply) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.openai_url)
        path = write_config(tmp_path, "openai", server.url, budget={"max_cost_usd": 0.0001})
        capsys.readouterr()
        monkeypatch.setenv("COLUMNS", "200")
        assert main(["run", str(path), "--dry-run"]) == 0
        shown = capsys.readouterr().err  # charter's console writes to stderr
        warnings = [line for line in shown.splitlines() if "budget.max_cost_usd" in line]
        forecast = charter.estimate(path).total.cost_usd
        assert warnings == [
            f"warning: budget.max_cost_usd $0.0001 is below the forecast (expected ${forecast.expected:.4f}, "
            f"high ${forecast.high:.4f}): the run will likely stop at the budget before it is done"
        ]
        hits_then: list[int] = []

        class Seen(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                if "budget.max_cost_usd" in record.getMessage():
                    hits_then.append(server.hits)

        seen = Seen()
        logging.getLogger("charter").addHandler(seen)
        try:
            assert main(["run", str(path)]) == 4  # the budget stops it
        finally:
            logging.getLogger("charter").removeHandler(seen)
    assert hits_then == [0]  # warned once, before the first call


def test_estimate_needs_no_key_and_counts_batch_roles_at_the_batch_price(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    config = {
        "prompts": {"inline": ["What is a safe way to store chemicals?"] * 1 + ["How do I bake bread?"]},
        "policy": "openai:gpt-4o-mini",
        "judge": "openai:gpt-4o-mini",
        "prices": {"openai:gpt-4o-mini": {"input": 0.15, "output": 0.6}},
        "output_dir": "/nonexistent/forecast-run",
    }
    synchronous = charter.estimate(config)
    batched = charter.estimate({**config, "batch": {"enabled": True}})
    assert all(row.price_source == "config" for row in synchronous.rows)
    assert batched.total.cost_usd.expected == pytest.approx(synchronous.total.cost_usd.expected * 0.5, abs=2e-6)
    assert batched.total.calls == synchronous.total.calls


def test_a_bad_forecast_setting_is_one_line_naming_its_place(make_config, tmp_path, capsys):
    path = make_config(forecast={"output_share": 0.3, "output_share_low": 0.6})
    capsys.readouterr()
    assert main(["run", str(path), "--dry-run", "--json"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert f"{path}:" in err and "forecast.output_share_low" in err
    assert main(["run", str(make_config()), "--json"]) == 2
    assert "--json goes with --dry-run" in capsys.readouterr().err
