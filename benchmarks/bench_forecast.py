"""The cost forecast against a bill it did not write: `charter run --dry-run --json` before a run, then the run,
and the loopback server's invoice, through the real SDKs. The billing server (`tests.support.billing`) imports
nothing of charter: it tokenizes with a pre-tokenizer of its own (about 1.3 tokens a word of English prose), frames
chat messages as OpenAI does, and caches token prefixes as the providers do (OpenAI: 1,024+ tokens in 128-token
steps, readable once a reply is sent; Anthropic: at the request's breakpoints, reads 0.1x, writes 1.25x); batches
at half price. The forecast counts with its default heuristic (4 characters a token), as it would for a model whose
tokenizer it does not have.

Five runs, each with a fresh server and call cache: one critique round (with the worked examples), revision pairs,
a judge in both orders over 2 principles (`logprobs`; `verdict` for Anthropic, which gives no next-token
probabilities), `max_tokens` 256, at $1.00 / $0.10 cached / $4.00 per million tokens (Anthropic-style: $3 / $15):

- sync-short: 32 bundled prompts; sync-long: 12 prompts of about 900 words (passages of OpenAI's Model Spec from
  the shared data, each with a question), long enough for the provider's cache;
- anthropic-long: the 12 long prompts against Anthropic-style caching;
- batch-short and batch-long: the same through the OpenAI Batch API (`charter.testing.loopback`).

The server answers as a model would, at lengths of its own, never told the forecast's shares: a first answer of 60 to
240 words, a critique of 30 to 120, a revision of 60 to 240 (uniform, seeded by the request), each cut at the call's
`max_tokens` in the server's tokens; a judge answers one letter or one token.

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
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from charter.cli import main as cli
from charter.judge_prompt import read_comparison
from charter.testing.loopback import BatchServer, LoopbackServer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.support.billing import AnthropicBilling, OpenAIBilling  # noqa: E402  (the tests' billing server)

SPEC = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "specs" / "openai_model_spec" / "model_spec.md"
WORDS = "the response answers what was asked and adds a few careful details about the steps and the risks".split()
OPENAI = {"input": 1.0, "output": 4.0, "cached_input": 0.1}
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


def long_prompts(count: int, words: int = 900) -> list[str]:
    """`count` distinct prompts of about `words` words: consecutive passages of OpenAI's Model Spec, each with a
    question about it."""
    text = SPEC.read_text(encoding="utf-8").split()
    return [
        " ".join(text[i * words : (i + 1) * words]) + f"\nQuestion {i}: what does this passage ask of an assistant?"
        for i in range(count)
    ]


#: The runs: (prompts, the provider's format, through a batch API).
WORKLOADS: dict[str, tuple[str, str, bool]] = {
    "sync-short": ("short", "openai", False),
    "sync-long": ("long", "openai", False),
    "anthropic-long": ("long", "anthropic", False),
    "batch-short": ("short", "openai", True),
    "batch-long": ("long", "openai", True),
}


def config(tmp: Path, name: str, url: str) -> Path:
    length, provider, batched = WORKLOADS[name]
    anthropic = provider == "anthropic"
    model = "anthropic:claude-bench" if anthropic else "openai:gpt-bench"
    role: dict[str, Any] = {"model": model, "api_key_env": "ANTHROPIC_API_KEY" if anthropic else "OPENAI_API_KEY"}
    if anthropic:
        role["options"] = {"base_url": url}
    prompts: dict[str, Any] = {"inline": long_prompts(12)} if length == "long" else {"bundled": True, "limit": 32}
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
        # Anthropic's API gives no next-token probabilities: its judge answers a letter (`verdict`)
        "judge": {**role, "mode": "verdict" if anthropic else "logprobs", "orders": "both", "principles_per_pair": 2},
        "filters": {"drop_inconsistent": False},
        "prices": {model: ANTHROPIC if anthropic else OPENAI},
        "batch": {"enabled": batched, "poll_s": 0.5, "gather_s": 0.5},
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


def billed_by_role(run_dir: Path) -> dict[str, float]:
    """USD per role as the run recorded it from the server's `usage` (which is the invoice, call by call)."""
    from charter.runs.store import RunStore
    from charter.runs.usage import stored_usage

    with RunStore(run_dir) as store:
        rows = stored_usage(store)
    found: dict[str, float] = {}
    for row in rows:
        found[row.role] = found.get(row.role, 0.0) + row.cost_usd
    return found


def one(tmp: Path, workload: str) -> dict[str, Any]:
    _, provider, batched = WORKLOADS[workload]
    anthropic = provider == "anthropic"
    billing = AnthropicBilling(3.0, 15.0) if anthropic else OpenAIBilling(input=1.0, output=4.0, read=0.1)
    server = Batches(complete_after_s=1.0, billing=billing, reply=reply, record=False) if batched else None
    with server or Sync(billing=billing, reply=reply, record=False) as live:
        os.environ["OPENAI_BASE_URL"] = live.openai_url
        path = config(tmp, workload, live.url)
        found = dry_run(path)
        assert live.hits == 0
        assert cli(["run", str(path)]) == 0
    bill, total, cost = billing.invoice, found["total"], found["total"]["cost_usd"]
    roles = billed_by_role(tmp / workload)
    by_role = {
        row["role"]: round(row["cost_usd"]["expected"] / roles[row["role"]], 2)
        for row in found["rows"]
        if roles.get(row["role"])
    }
    return {
        "run": workload,
        "calls": f"{total['calls']['expected']} / {bill.calls}",
        "input": f"{total['prompt_tokens']['expected']} / {bill.prompt_tokens}",
        "cached": f"{total['cache_read_tokens']['expected']} / {bill.cache_read_tokens}",
        "output": f"{total['completion_tokens']['expected']} / {bill.output_tokens}",
        "forecast_usd": f"{cost['expected']:.4f} ({cost['low']:.4f}-{cost['high']:.4f})",
        "invoice_usd": round(bill.usd, 4),
        "forecast_over_invoice": round(cost["expected"] / bill.usd, 3),
        "inside_range": cost["low"] <= bill.usd <= cost["high"],
        "forecast_over_invoice_by_role": by_role,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", nargs="+", choices=list(WORKLOADS), default=list(WORKLOADS))
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
        "forecast / invoice | in range | forecast / bill by role |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|---|")
    for r in rows:
        roles = ", ".join(f"{role} {ratio}" for role, ratio in r["forecast_over_invoice_by_role"].items())
        print(
            f"| {r['run']} | {r['calls']} | {r['input']} | {r['cached']} | {r['output']} | {r['forecast_usd']} | "
            f"{r['invoice_usd']} | {r['forecast_over_invoice']} | {'yes' if r['inside_range'] else 'no'} | {roles} |"
        )


if __name__ == "__main__":
    main()
