"""What asking a generation's token log-probabilities costs (`SamplingParams.top_logprobs`, which the checklist judge
asks for each item's P(yes)), side by side in one invocation: the same calls with and without it, alternated.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_token_logprobs.py [--rounds 3] [--requests 8] [--tokens 64] \
        [--responses 200]

- `local`: the embedded `local:smollm2-135m-instruct` (no call cache) generating `--requests` greedy replies of
  `--tokens` tokens, with `top_logprobs: 5` and without; the seconds of each, per round, and the ratio of medians.
- `loopback`: `--responses` checklist judgments (`charter.checklist.check.check_response`, four items) through the
  real openai SDK against the loopback server, once with the logprobs asked (each reply carrying every token's five
  top alternatives, read for each item's P(yes)) and once with the model option `token_logprobs: false`; seconds
  (the server runs in this process, so they hold its work too), the share of verdicts that got a P(yes), and the
  mean row of a fresh call cache that every call went through.
- `client`: the client's own work a reply, apart: reading one reply with its tokens' log-probabilities (JSON, then
  `OpenAIModel.completion_from`) against reading it without (the JSON parse apart), the size of the tokens a call
  cache row keeps, and reading the four items' P(yes) from them.

Prints one Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from charter.checklist import checklist_from_rows
from charter.checklist.check import check_response
from charter.checklist.probability import verdict_probabilities
from charter.providers import get_model
from charter.providers.base import SamplingParams
from charter.records.base import user
from charter.testing.lab import CRITERIA, checklist_server_reply, verdict_alternatives
from charter.testing.loopback import LoopbackServer, tokens

RULES = ("number", "polite", "question", "calm")
ITEMS = [{"id": rule, "requirement": CRITERIA[rule][0], "weight": 1} for rule in RULES]


async def local_round(model, requests, tokens: int, asked: bool) -> float:  # noqa: ANN001
    params = SamplingParams(temperature=0, max_tokens=tokens, top_logprobs=5 if asked else None)
    start = time.perf_counter()
    replies = await model.generate(requests, params)
    took = time.perf_counter() - start
    assert all((r.token_logprobs is not None) == asked for r in replies)
    return took


async def bench_local(rounds: int, n: int, tokens: int) -> list[tuple[str, str]]:
    model = get_model("local:smollm2-135m-instruct", cache=None)
    requests = [[user(f"Write a short story about a robot number {i}.")] for i in range(n)]
    await local_round(model, requests[:1], 4, False)  # load
    times: dict[bool, list[float]] = {False: [], True: []}
    for r in range(rounds):
        for asked in (False, True) if r % 2 == 0 else (True, False):
            times[asked].append(await local_round(model, requests, tokens, asked))
    await model.aclose()
    plain, asked = statistics.median(times[False]), statistics.median(times[True])
    return [
        ("local, without", f"{plain:.2f} s (rounds {', '.join(f'{t:.2f}' for t in times[False])})"),
        ("local, top_logprobs 5", f"{asked:.2f} s (rounds {', '.join(f'{t:.2f}' for t in times[True])})"),
        ("local, ratio", f"{asked / plain:.3f}"),
    ]


async def loopback_pass(url: str, responses: list[str], asked: bool, cache: str) -> tuple[float, float]:
    options = {} if asked else {"token_logprobs": False}
    model = get_model(f"openai-compatible:checklist-judge@{url}", cache=cache, **options)
    checklist = checklist_from_rows(ITEMS, "items")
    prompt = [user("How long does delivery take?")]
    start = time.perf_counter()
    checked = await asyncio.gather(*(check_response(model, prompt, r, checklist) for r in responses))
    took = time.perf_counter() - start
    await model.aclose()
    verdicts = [v for c in checked for v in c.verdicts.values() if v.verdict in ("yes", "no")]
    return took, sum(v.p_yes is not None for v in verdicts) / len(verdicts)


async def bench_loopback(rounds: int, n: int) -> list[tuple[str, str]]:
    os.environ.setdefault("OPENAI_API_KEY", "EMPTY")
    responses = [f"It takes {i} days, thank you{'?' if i % 2 else '.'}" for i in range(n)]
    times: dict[bool, list[float]] = {False: [], True: []}
    share: dict[bool, float] = {}
    row: dict[bool, float] = {}
    with tempfile.TemporaryDirectory() as folder:
        with LoopbackServer(reply=checklist_server_reply, alternatives=five_alternatives).start() as server:
            for r in range(rounds):
                for asked in (False, True) if r % 2 == 0 else (True, False):
                    cache = str(Path(folder) / f"{r}-{asked}.sqlite")  # a fresh call cache: every call is made
                    took, share[asked] = await loopback_pass(server.openai_url, responses, asked, cache)
                    times[asked].append(took)
                    with sqlite3.connect(cache) as db:
                        [(row[asked],)] = db.execute("SELECT avg(length(value)) FROM calls").fetchall()
    plain, asked = statistics.median(times[False]), statistics.median(times[True])
    said = {a: f"P(yes) on {share[a]:.0%} of verdicts, call cache row {row[a]:,.0f} B" for a in (False, True)}
    return [
        ("loopback, without", f"{plain:.2f} s, {n} judgments, {said[False]}"),
        ("loopback, top_logprobs 5", f"{asked:.2f} s, {n} judgments, {said[True]}"),
        ("loopback, ratio", f"{asked / plain:.3f}"),
    ]


VERDICTS = verdict_alternatives(0.8)


def five_alternatives(body: dict, before: str, token: str) -> dict[str, float]:
    """Five top alternatives at every token, as OpenAI gives them: at a verdict, the judge 0.8 sure of it."""
    top = VERDICTS(body, before, token) or {token: -0.0123456789}
    return {**top, **{f" filler{i}": -7.123456789 - i for i in range(5 - len(top))}}


def reply_of(text: str, with_logprobs: bool) -> bytes:
    """A chat completion's wire JSON for `text`, with each token's five top alternatives where asked."""
    content, before = [], ""
    for token in tokens(text):
        top = five_alternatives({}, before, token)
        alts = [{"token": t, "logprob": lp, "bytes": list(t.encode())} for t, lp in top.items()]
        content.append({"token": token, "logprob": top.get(token, 0.0), "bytes": list(token.encode()),
                        "top_logprobs": alts})  # fmt: skip
        before += token
    choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop",
              "logprobs": {"content": content} if with_logprobs else None}  # fmt: skip
    usage = {"prompt_tokens": 300, "completion_tokens": len(content), "total_tokens": 300 + len(content)}
    return json.dumps({"choices": [choice], "usage": usage}).encode()


def bench_client(n: int) -> list[tuple[str, str]]:
    os.environ.setdefault("OPENAI_API_KEY", "EMPTY")
    model = get_model("openai-compatible:checklist-judge@http://127.0.0.1:9/v1", cache=None).inner
    text = json.dumps({rule: {"reason": "It does hold.", "verdict": "yes"} for rule in RULES})
    took: dict[str, float] = {}
    for name, raw in (("without", reply_of(text, False)), ("with", reply_of(text, True))):
        start = time.perf_counter()
        for _ in range(n):
            completion = model.completion_from(json.loads(raw), [user("Q?")])
        took[name] = (time.perf_counter() - start) / n
        took[name + " bytes"] = len(raw)
    start = time.perf_counter()
    for _ in range(n):
        json.loads(raw)
    took["parse"] = (time.perf_counter() - start) / n
    start = time.perf_counter()
    for _ in range(n):
        verdict_probabilities(text, list(RULES), completion.token_logprobs)
    took["p_yes"] = (time.perf_counter() - start) / n
    return [
        ("client, a reply read without / with logprobs",
         f"{took['without'] * 1e3:.3f} / {took['with'] * 1e3:.3f} ms ({took['without bytes']:,.0f} / "
         f"{took['with bytes']:,.0f} bytes, {len(tokens(text))} tokens), of which the JSON parse "
         f"{took['parse'] * 1e3:.3f} ms"),
        ("client, four items' P(yes) read", f"{took['p_yes'] * 1e3:.3f} ms"),
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--responses", type=int, default=200)
    args = parser.parse_args()
    print(f"load before: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    rows = asyncio.run(bench_loopback(args.rounds, args.responses))
    rows += bench_client(args.responses)
    rows += asyncio.run(bench_local(args.rounds, args.requests, args.tokens))
    print(f"load after: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print("| calls | figure |\n|---|---|")
    for name, figure in rows:
        print(f"| {name} | {figure} |")


if __name__ == "__main__":
    main()
