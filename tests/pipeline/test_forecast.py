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
from charter.testing.faults import FaultServer
from charter.testing.loopback import BatchServer, LoopbackServer
from tests.support.billing import AnthropicBilling, OpenAIBilling

#: Reply lengths in words, by what a reply answers: (fewest, most), before the call's max_tokens (256) cuts it: the
#: server's own, never told the forecast's shares.
LENGTHS = {"answer": (60, 240), "critique": (30, 120), "revision": (60, 240)}
WORDS = "the answer weighs the request and the risks and gives careful steps".split()


def _text(body: dict[str, Any]) -> str:
    content = body.get("messages", [])[-1].get("content")
    return " ".join(b["text"] for b in content) if isinstance(content, list) else str(content)


def reply(body: dict[str, Any]) -> str:
    """A judge's letter; else a text of its own length (seeded by the request)."""
    text = _text(body)
    if "single letter" in text:
        return "A"
    kind = "answer" if len(body.get("messages", [])) <= 2 else "revision" if "rewrite" in text.lower() else "critique"
    words = random.Random(hashlib.sha256(text.encode()).digest()).randint(*LENGTHS[kind])
    return " ".join(WORDS[i % len(WORDS)] for i in range(words))


class Batches(BatchServer):
    logprobs_for = FaultServer.logprobs_for


@pytest.fixture(autouse=True)
def _keys(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-forecast-test")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-forecast-test")


def long_prompts(shared_data: Path, count: int, words: int = 900) -> list[str]:
    """`count` distinct prompts of about `words` words: passages of the Model Spec, each with a question."""
    text = (shared_data / "specs" / "openai_model_spec" / "model_spec.md").read_text(encoding="utf-8").split()
    return [" ".join(text[i * words : (i + 1) * words]) + f"\nQuestion {i}: what does it ask?" for i in range(count)]


def write_config(tmp_path: Path, kind: str, url: str, prompts: list[str] | None = None, **extra: Any) -> Path:
    model = "anthropic:claude-test" if kind == "anthropic" else "openai:gpt-test"
    role: dict[str, Any] = {
        "model": model,
        "api_key_env": "ANTHROPIC_API_KEY" if kind == "anthropic" else "OPENAI_API_KEY",
        **({"options": {"base_url": url}} if kind == "anthropic" else {}),
    }
    price = {"input": 3.0, "output": 15.0, "cached_input": 0.3, "cache_write": 3.75}
    config = {
        "name": "forecast",
        "output_dir": str(tmp_path / "run"),
        "cache": str(tmp_path / "calls.sqlite"),
        "prompts": {"inline": prompts} if prompts else {"bundled": True, "limit": 6},
        "concurrency": 2,
        "policy": role,
        "critique": {"rounds": 1},
        "judge": {**role, "mode": "verdict" if kind == "anthropic" else "logprobs", "principles_per_pair": 2},
        "filters": {"drop_inconsistent": False},
        "prices": {model: price if kind == "anthropic" else {"input": 1.0, "output": 4.0, "cached_input": 0.1}},
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


@pytest.mark.parametrize(
    ("kind", "length"),
    [("openai", "short"), ("openai", "long"), ("anthropic", "long"), ("batch", "short"), ("batch", "long")],
)
def test_the_forecast_is_within_a_quarter_of_an_independent_invoice(
    tmp_path, monkeypatch, capsys, shared_data, kind, length
):
    """The billing server tokenizes and caches its own way (`tests.support.billing` imports nothing of charter);
    the forecast counts with its default heuristic, as it would for a model whose tokenizer it does not have."""
    billing = AnthropicBilling(3.0, 15.0) if kind == "anthropic" else OpenAIBilling(input=1.0, output=4.0, read=0.1)
    server = Batches(complete_after_s=0.1, billing=billing, reply=reply) if kind == "batch" else None
    prompts = long_prompts(shared_data, 3) if length == "long" else None
    with server or LoopbackServer(billing=billing, reply=reply) as live:
        monkeypatch.setenv("OPENAI_BASE_URL", live.openai_url)
        path = write_config(tmp_path, kind, live.url, prompts)
        forecast = dry_run(capsys, path)
        assert live.hits == 0  # the forecast called nothing
        assert main(["run", str(path)]) == 0
    cost, invoice = forecast["total"]["cost_usd"], billing.invoice
    assert invoice.usd == pytest.approx(cost["expected"], rel=0.25)
    assert cost["low"] <= invoice.usd <= cost["high"]
    assert forecast["total"]["calls"]["expected"] == invoice.calls
    if length == "long":  # the long prompts' shared prefixes: forecast read from the cache, as they were billed
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


def test_a_batched_judge_sends_both_orders_in_one_batch():
    """Without warming (a batch API), a pair's calls in both orders go out together: none of them can read what
    another cached, as none is answered before the others are sent (the forecast expected the other order to read the
    first's prefix, which a batch never gives)."""
    import asyncio

    from charter.constitutions import load_constitution
    from charter.pipeline.config import RunConfig
    from charter.pipeline.forecast_calls import Replies, Walk, prompt_calls
    from charter.records import Message, Prompt

    role = {"model": "openai:gpt-test", "api_key_env": "OPENAI_API_KEY"}
    prompt = Prompt(
        prompt_id="p", source="inline", messages=[Message(role="user", content="How do I store bleach safely?")]
    )
    for batched in (True, False):
        config = RunConfig.model_validate(
            {"policy": role, "judge": {**role, "principles_per_pair": 2}, "batch": {"enabled": batched}}
        )
        walk = Walk.of(config, load_constitution(config.constitution))
        judged = [c for c in asyncio.run(prompt_calls(walk, prompt, Replies())) if c.role == "judge"]
        assert len(judged) == 4
        first_answer = min(c.answered for c in judged)
        together = [c.started < first_answer for c in judged]
        # in one batch all four; warmed (synchronous), the first alone, then its order's other call with the other
        # order's first, then the last once that one is answered
        assert together == ([True] * 4 if batched else [True, False, False, False])


@pytest.mark.parametrize("optimistic", [False, True])
def test_a_prefix_near_the_cache_minimum_is_cached_as_likely_as_the_count_reaches_it(optimistic):
    """A heuristic's count may be off either way: a prefix it counts just past 1,024 tokens is read in the expected
    figure only in part (the provider's count falls short of the minimum in part of the range); at the low end,
    wherever it can be; a tokenizer's exact count is read as it stands."""
    from charter.pipeline.forecast_cache import MIN_CACHED, cacheable_share, openai_read

    assert openai_read(1030, 0.0, optimistic) == MIN_CACHED and cacheable_share(1030, 0.0, optimistic) == 1.0
    assert openai_read(1000, 0.0, optimistic) == 0 and cacheable_share(1000, 0.0, optimistic) == 0.0
    near, far = openai_read(1030, 0.15, optimistic), openai_read(5000, 0.15, optimistic)
    if optimistic:
        assert near >= MIN_CACHED and openai_read(1000, 0.15, True) > 0 and cacheable_share(1000, 0.15, True) == 1
    else:
        assert 0 < near < MIN_CACHED and 0 < cacheable_share(1030, 0.15, False) < 1
    assert 4800 < far <= 5000 and cacheable_share(5000, 0.15, optimistic) == 1.0


def test_a_cost_cap_over_an_unpriced_model_is_refused_before_the_first_call(tmp_path, capsys):
    """A model no price table knows would cost the cap $0 a call: the cap would never stop the run. The config is
    refused (exit 2, one line naming the roles and the two ways out) before anything is sent."""
    with LoopbackServer(reply=reply) as server:
        model = f"openai-compatible:m@{server.openai_url}"
        path = tmp_path / "run.yaml"
        path.write_text(
            yaml.safe_dump(
                {
                    "output_dir": str(tmp_path / "run"),
                    "prompts": {"bundled": True, "limit": 4},
                    "policy": {"model": model},
                    "judge": {"model": model},
                    "budget": {"max_cost_usd": 0.0001},
                }
            )
        )
        for args in (["--dry-run"], ["--dry-run", "--json"], []):
            capsys.readouterr()
            assert main(["run", str(path), *args]) == 2
            err = capsys.readouterr().err.strip()
            assert len(err.splitlines()) == 1 and "Traceback" not in err
            assert err.startswith(f"error: {path}:") and "budget.max_cost_usd" in err
            assert "policy (openai-compatible:m), judge (openai-compatible:m)" in err
            assert "prices: {openai-compatible:m: {input: ..., output: ...}}" in err and "{input: 0, output: 0}" in err
        assert server.hits == 0
        free = ["--set", 'prices={"openai-compatible:m": {"input": 0, "output": 0}}']
        assert main(["run", str(path), "--dry-run", "--json", *free]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["budget_sees"] == [
        {"role": "policy", "model": "openai-compatible:m", "seen_as": "free"},
        {"role": "judge", "model": "openai-compatible:m", "seen_as": "free"},
    ]


def test_the_dry_run_shows_what_the_cap_sees(make_config, capsys):
    path = make_config(
        policy={"model": "openai:gpt-test"},
        budget={"max_cost_usd": 1.0},
        prices={"openai:gpt-test": {"input": 1.0, "output": 4.0}},
    )
    seen = dry_run(capsys, path)["budget_sees"]
    assert seen == [
        {"role": "policy", "model": "openai:gpt-test", "seen_as": "config"},
        {"role": "judge", "model": "scripted:cai", "seen_as": "in-process"},
    ]
    capsys.readouterr()
    assert main(["run", str(path), "--dry-run"]) == 0
    shown = " ".join(capsys.readouterr().err.split())
    assert (
        "the cost cap sees policy (openai:gpt-test: priced by the config), judge (scripted:cai: free, runs in this "
        "process)" in shown
    )
    assert dry_run(capsys, make_config())["budget_sees"] == []  # no cost cap: nothing to see


def test_the_forecast_table_cuts_nothing_at_80_columns(make_config, capsys, monkeypatch):
    model = "openai-compatible:a-rather-long-model-name@http://127.0.0.1:9/v1"
    path = make_config(
        policy={"model": model}, prices={"openai-compatible:a-rather-long-model-name": {"input": 1.0, "output": 4.0}}
    )
    monkeypatch.setenv("COLUMNS", "80")
    capsys.readouterr()
    assert main(["run", str(path), "--dry-run"]) == 0
    shown = capsys.readouterr().err
    lines = [line.rstrip() for line in shown.splitlines() if "│" in line]
    rows = [
        line.split("│")[1:-1] if line.startswith("│") else line.split("│") for line in lines
    ]  # with or without edges
    assert len(rows) >= 4 and "…" not in shown
    assert "openai-compatible:a-rather-long-model-name" in "".join(row[1].strip() for row in rows)  # folded, whole
    forecast = charter.estimate(path).total.cost_usd
    assert f"({forecast.low:.4f}-{forecast.high:.4f})" in " ".join(" ".join(row[-1] for row in rows).split())
