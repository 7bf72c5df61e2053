"""The cost forecast against the bill: `charter run --dry-run --json` before a run, then the run, and the loopback
server's invoice (`charter.testing.billing`: OpenAI's automatic prefix caching, Anthropic's breakpoints, batches at
half price), through the real SDKs.

Four runs, each with a fresh server and call cache:

- sync: 32 bundled prompts, one critique round (with the worked examples), revision pairs, a `logprobs` judge in
  both orders over 2 principles; `openai:gpt-4o-mini` at $0.15/$0.60 (cached input $0.075);
- cached (openai): 16 prompts of about 2,300 words (a long report and a question), a `verdict` judge in both orders
  over 3 principles: the prompts are long enough for the provider's cache;
- cached (anthropic): the same against Anthropic-style caching ($3/$15, reads 0.1x, writes 1.25x);
- batch: the 16 long prompts with a `logprobs` judge through the OpenAI Batch API (`charter.testing.batches`), at
  half price.

The server answers as a model would, at lengths of its own, never told the forecast's shares: a first answer of 60 to
240 words, a critique of 30 to 120, a revision of 60 to 240 (uniform, seeded by the request), each cut at the call's
`max_tokens`; a judge answers one letter or one token. It bills a whitespace-separated word (and each message's
role) as a token, so the forecast counts the same way (`forecast.counter: words`, `tokens_per_word: 1`), as it would
with a model's own tokenizer; the default heuristic (4 characters a token) is shown beside it.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_forecast.py
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import random
import tempfile
from pathlib import Path
from typing import Any

import yaml

from charter.cli import main as cli
from charter.judge_prompt import read_comparison
from charter.testing.batches import BatchServer
from charter.testing.billing import AnthropicBilling, OpenAIBilling
from charter.testing.loopback import LoopbackServer

REPORT = " ".join(f"Item {i}: revenue in the region moved by a small amount this quarter." for i in range(180))
WORDS = "the response answers what was asked and adds a few careful details about the steps and the risks".split()
OPENAI = {"input": 0.15, "output": 0.6, "cached_input": 0.075}
ANTHROPIC = {"input": 3.0, "output": 15.0, "cached_input": 0.3, "cache_write": 3.75}
#: A reply's length in words, by what it answers: (fewest, most).
LENGTHS = {"answer": (60, 240), "critique": (30, 120), "revision": (60, 240)}


def _last_text(body: dict[str, Any]) -> str:
    content = (body.get("messages") or [{}])[-1].get("content") or ""
    return " ".join(b.get("text", "") for b in content) if isinstance(content, list) else str(content)


def _kind(body: dict[str, Any], text: str) -> str:
    if len(body.get("messages", [])) <= 2:
        return "answer"
    return "revision" if "rewrite" in text.lower() or "revis" in text.lower() else "critique"


def reply(body: dict[str, Any]) -> str:
    """A model's reply: the letter of the longer response to a judge, else text of a length of its own."""
    text = _last_text(body)
    if "Response (A):" in text:
        a, b = (len(r) for r in read_comparison(text) or ("", ""))
        return "A" if a >= b else "B"
    low, high = LENGTHS[_kind(body, text)]
    seed = hashlib.sha256(f"{text}|{body.get('seed')}".encode()).digest()
    words = random.Random(seed).randint(low, high)
    cap = body.get("max_completion_tokens") or body.get("max_tokens") or words
    return " ".join(WORDS[i % len(WORDS)] for i in range(min(words, cap)))


def _judge_logprobs(self: Any, body: dict[str, Any]) -> dict[str, float]:
    a, b = (len(r) for r in read_comparison(_last_text(body)) or ("", ""))
    return {"A": -0.1, "B": -2.4} if a >= b else {"A": -2.4, "B": -0.1}


class Sync(LoopbackServer):
    logprobs_for = _judge_logprobs


class Batches(BatchServer):
    logprobs_for = _judge_logprobs


def config(tmp: Path, name: str, workload: str, url: str) -> Path:
    anthropic = workload == "anthropic"
    model = "anthropic:claude-bench" if anthropic else "openai:gpt-4o-mini"
    role: dict[str, Any] = {
        "model": model,
        "api_key_env": "ANTHROPIC_API_KEY" if anthropic else "OPENAI_API_KEY",
        "params": {"max_tokens": 256},
    }
    if anthropic:
        role["options"] = {"base_url": url}
    long = workload != "sync"
    prompts: dict[str, Any] = (
        {"inline": [f"{REPORT}\nQuestion {i}: what should the board ask about item {i}?" for i in range(16)]}
        if long
        else {"bundled": True, "limit": 32}
    )
    judge = {
        **role,
        "mode": "verdict" if long else "logprobs",
        "orders": "both",
        "principles_per_pair": 3 if long else 2,
    }
    data = {
        "name": name,
        "output_dir": str(tmp / name),
        "cache": str(tmp / f"{name}.sqlite"),
        "prompts": prompts,
        "concurrency": 8,
        "report": False,
        "policy": role,
        "critique": {"rounds": 1},
        "pairs": {"kinds": ["revision"]},
        "judge": judge,
        "filters": {"drop_inconsistent": False},
        "prices": {model: ANTHROPIC if anthropic else OPENAI},
        "batch": {"enabled": workload == "batch", "poll_s": 0.5, "gather_s": 0.5},
    }
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def dry_run(path: Path, *settings: str) -> dict[str, Any]:
    """`charter run PATH --dry-run --json`, its stdout read back."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli(["run", str(path), "--dry-run", "--json", *[a for s in settings for a in ("--set", s)]]) == 0
    return json.loads(out.getvalue())


def one(tmp: Path, workload: str) -> dict[str, Any]:
    anthropic = workload == "anthropic"
    billing = AnthropicBilling(3.0, 15.0) if anthropic else OpenAIBilling(input=0.15, output=0.6, read=0.5)
    server = Batches(complete_after_s=1.0, billing=billing, reply=reply, record=False) if workload == "batch" else None
    with server or Sync(billing=billing, reply=reply, record=False) as live:
        os.environ["OPENAI_BASE_URL"] = live.openai_url
        path = config(tmp, workload, workload, live.url)
        words = dry_run(path, "forecast.counter=words", "forecast.tokens_per_word=1")
        chars = dry_run(path)
        assert cli(["run", str(path), "--set", "forecast.counter=words", "--set", "forecast.tokens_per_word=1"]) == 0
    bill, cost = billing.invoice, words["total"]["cost_usd"]
    return {
        "run": workload,
        "calls": f"{words['total']['calls']['expected']} / {bill.calls}",
        "input": f"{words['total']['prompt_tokens']['expected']} / {bill.prompt_tokens}",
        "cached": f"{words['total']['cache_read_tokens']['expected']} / {bill.cache_read_tokens}",
        "output": f"{words['total']['completion_tokens']['expected']} / {bill.output_tokens}",
        "forecast_usd": f"{cost['expected']:.4f} ({cost['low']:.4f}-{cost['high']:.4f})",
        "invoice_usd": round(bill.usd, 4),
        "invoice_over_forecast": round(bill.usd / cost["expected"], 3),
        "chars_heuristic_usd": round(chars["total"]["cost_usd"]["expected"], 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", nargs="+", default=["sync", "openai", "anthropic", "batch"])
    args = parser.parse_args()
    os.environ.setdefault("OPENAI_API_KEY", "sk-bench")
    os.environ.setdefault("ANTHROPIC_API_KEY", "sk-ant-bench")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for workload in args.runs:
            rows.append(one(Path(tmp), workload))
            print(json.dumps(rows[-1]), flush=True)
    print(
        "| run | calls | input tokens | cached input | output tokens | forecast USD (low-high) | invoice USD | "
        "invoice / forecast | chars heuristic USD |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['run']} | {r['calls']} | {r['input']} | {r['cached']} | {r['output']} | {r['forecast_usd']} | "
            f"{r['invoice_usd']} | {r['invoice_over_forecast']} | {r['chars_heuristic_usd']} |"
        )


if __name__ == "__main__":
    main()
