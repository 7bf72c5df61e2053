"""Provider benchmarks: local batching, the overhead of limits + cache, and loopback throughput.

    python benchmarks/bench_providers.py --part overhead
    python benchmarks/bench_providers.py --part loopback
    python benchmarks/bench_providers.py --part local
    python benchmarks/bench_providers.py --part all

overhead: `scripted:echo` through `get_model` with a fresh call cache, each request also going
    through a `Limiter` exactly as a remote provider's does (concurrency slot, request and token
    buckets set high enough never to throttle, tenacity retry wrapper). Requests/s for single-request
    `generate` calls gathered concurrently: cache misses (each call writes the cache), then hits.
    Target: >= 2,000 requests/s on 2 cores.
loopback: a loopback OpenAI-compatible server in a separate process answers after a fixed delay;
    our OpenAIModel (via `get_model`, with a cache) against a bare `asyncio.gather` + `Semaphore`
    loop over the same AsyncOpenAI SDK, side by side in one run, alternating. Targets: at 500 ms and
    concurrency 64, >= 95% of the ideal 128 requests/s; at 100 ms, >= 0.95x the bare loop.
local: the embedded SmolLM2-135M-Instruct, batch_size 16 against batch_size 1, same prompts,
    generated tokens/s. Target: >= 5x.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from charter.providers import CallCache, Limits, SamplingParams, ScriptedModel, get_model
from charter.providers.base import Completion, Messages
from charter.providers.limits import Limiter, estimate_tokens, gather_or_cancel

# -- overhead -------------------------------------------------------------------------------------


class LimitedScripted(ScriptedModel):
    """`scripted:echo` with every request sent through a `Limiter`, as OpenAIModel sends its own."""

    def __init__(self, limits: Limits) -> None:
        super().__init__("echo")
        self.limiter = Limiter(limits, self.model_id)

    async def generate(self, requests: Sequence[Messages], params: SamplingParams) -> list[Completion]:
        one = functools.partial(ScriptedModel.generate, self)
        if len(requests) == 1:  # as OpenAIModel: no task for a single request
            return await self.limiter.call(
                functools.partial(one, requests, params), estimate_tokens(requests[0], params.max_tokens)
            )
        calls = [
            self.limiter.call(functools.partial(one, [r], params), estimate_tokens(r, params.max_tokens))
            for r in requests
        ]
        return [c for batch in await gather_or_cancel(calls) for c in batch]


async def _drive(call: Callable[[Messages], Awaitable[Any]], requests: list[Messages], concurrency: int) -> float:
    """Seconds to run `call` once per request, at most `concurrency` at a time."""
    gate = asyncio.Semaphore(concurrency)

    async def one(request: Messages) -> None:
        async with gate:
            await call(request)

    start = time.perf_counter()
    await asyncio.gather(*(one(r) for r in requests))
    return time.perf_counter() - start


def bench_overhead(n: int, concurrency: int) -> list[str]:
    requests = [[{"role": "user", "content": f"prompt number {i}: say something"}] for i in range(n)]
    params = SamplingParams(temperature=0.0, max_tokens=32)
    limits = Limits(concurrency=concurrency, requests_per_minute=1e9, tokens_per_minute=1e12)
    lines = [f"overhead: {n:,} single-request generate calls, concurrency {concurrency}"]

    async def run() -> None:
        bare = ScriptedModel("echo")
        seconds = await _drive(lambda r: bare.generate([r], params), requests, concurrency)
        lines.append(f"  scripted, bare (no limits, no cache)   {n / seconds:10,.0f} requests/s")
        limited = LimitedScripted(limits)
        seconds = await _drive(lambda r: limited.generate([r], params), requests, concurrency)
        lines.append(f"  limits only                            {n / seconds:10,.0f} requests/s")
        with tempfile.TemporaryDirectory() as tmp:
            model = get_model(LimitedScripted(limits), cache=CallCache(Path(tmp) / "cache.sqlite"))
            seconds = await _drive(lambda r: model.generate([r], params), requests, concurrency)
            calls = model.inner.calls  # type: ignore[attr-defined]
            lines.append(
                f"  limits + cache, misses (writes)        {n / seconds:10,.0f} requests/s   (backend calls: {calls:,})"
            )
            seconds = await _drive(lambda r: model.generate([r], params), requests, concurrency)
            extra = model.inner.calls - calls  # type: ignore[attr-defined]
            lines.append(
                f"  limits + cache, hits                   {n / seconds:10,.0f} requests/s   (backend calls: {extra:,})"
            )
            model.cache.close()  # type: ignore[union-attr]

    asyncio.run(run())
    return lines


# -- loopback -------------------------------------------------------------------------------------


def start_server(delay_s: float) -> tuple[subprocess.Popen, int]:
    """The loopback server in its own process, so that the client's CPU is measured on its own."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "charter.testing.loopback", "--delay", str(delay_s)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    port = int(proc.stdout.readline())
    return proc, port


@dataclass
class Run:
    """One timed run: whole-run and steady-state rates, and the client's CPU per request."""

    rate: float
    steady: float
    cpu_ms: float


async def _timed(call: Callable[[Messages], Awaitable[Any]], requests: list[Messages], concurrency: int) -> Run:
    """Start every request at once (as the stages do) and time them.

    The steady-state rate leaves out the first two waves (all `concurrency` requests leave in one
    burst, and the client's CPU makes the last of them wait) and the last wave (the tail): it is the
    completions between the (2c)th and the (n-c)th over the time between them.
    """
    done: list[float] = []

    async def one(request: Messages) -> None:
        await call(request)
        done.append(time.perf_counter())

    start, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(one(r) for r in requests))
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    n, first, last = len(requests), 2 * concurrency, len(requests) - concurrency
    steady = (last - first) / (done[last - 1] - done[first - 1]) if last > first else n / seconds
    return Run(n / seconds, steady, 1000 * cpu / n)


async def _bare_loop(base_url: str, requests: list[Messages], concurrency: int, warmup: list[Messages]) -> Run:
    """The practical limit: the SDK alone, `asyncio.gather` over a `Semaphore`."""
    import openai

    client = openai.AsyncOpenAI(api_key="EMPTY", base_url=base_url)
    gate = asyncio.Semaphore(concurrency)

    async def one(request: Messages) -> None:
        async with gate:
            await client.chat.completions.create(model="bench", messages=request, max_tokens=32, temperature=0.0)

    await asyncio.gather(*(one(r) for r in warmup))
    run = await _timed(one, requests, concurrency)
    await client.close()
    return run


async def _charter(
    base_url: str, requests: list[Messages], concurrency: int, warmup: list[Messages], cache: str
) -> Run:
    """Our path: get_model (cache + meter) over OpenAIModel (limiter), one generate per request as stages do."""
    model = get_model(
        f"openai-compatible:bench@{base_url}", limits=Limits(concurrency=concurrency, timeout_s=60), cache=cache
    )
    params = SamplingParams(temperature=0.0, max_tokens=32)
    await asyncio.gather(*(model.generate([r], params) for r in warmup))
    run = await _timed(lambda r: model.generate([r], params), requests, concurrency)
    await model.aclose()
    model.cache.close()  # type: ignore[union-attr]
    return run


def bench_loopback(delay_s: float, concurrency: int, n: int, rounds: int) -> list[str]:
    ideal = concurrency / delay_s
    proc, port = start_server(delay_s)
    base_url = f"http://127.0.0.1:{port}/v1"
    runs: dict[str, list[Run]] = {"bare": [], "charter": []}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for rnd in range(rounds):
                for side in ("bare", "charter"):
                    tag = f"{side}-{delay_s}-{rnd}"
                    requests = [[{"role": "user", "content": f"{tag} request {i}"}] for i in range(n)]
                    warmup = [[{"role": "user", "content": f"{tag} warmup {i}"}] for i in range(concurrency)]
                    if side == "bare":
                        runs[side].append(asyncio.run(_bare_loop(base_url, requests, concurrency, warmup)))
                    else:
                        cache = os.path.join(tmp, f"cache-{rnd}.sqlite")
                        runs[side].append(asyncio.run(_charter(base_url, requests, concurrency, warmup, cache)))
    finally:
        proc.terminate()
        proc.wait(10)

    def mean(side: str, field: str) -> float:
        return statistics.mean(getattr(r, field) for r in runs[side])

    def row(label: str, side: str) -> str:
        rate, steady, cpu = mean(side, "rate"), mean(side, "steady"), mean(side, "cpu_ms")
        each = ", ".join(f"{r.rate:.1f}/{r.steady:.1f}" for r in runs[side])
        return (
            f"  {label}  whole run {rate:6.1f}/s ({100 * rate / ideal:5.1f}%)  steady {steady:6.1f}/s"
            f" ({100 * steady / ideal:5.1f}%)  client CPU {cpu:.2f} ms/request  [{each}]"
        )

    return [
        f"loopback: delay {delay_s * 1000:.0f} ms, concurrency {concurrency}, {n} requests x {rounds} rounds per side,"
        f" alternating (ideal {ideal:.0f} requests/s; % of ideal in brackets)",
        row("bare asyncio.gather + Semaphore", "bare"),
        row("charter OpenAIModel (get_model)", "charter"),
        f"  ratio charter / bare: whole run {mean('charter', 'rate') / mean('bare', 'rate'):.3f},"
        f" steady {mean('charter', 'steady') / mean('bare', 'steady'):.3f}",
    ]


# -- local ----------------------------------------------------------------------------------------

LOCAL_PROMPTS = [
    "Write one sentence about the sea.",
    "Name three fruits.",
    "What is a prime number?",
    "Give a tip for sleeping well.",
    "Describe a cat in a few words.",
    "Why is the sky blue?",
    "Suggest a name for a dog.",
    "What does a compiler do?",
]


def bench_local(n: int, max_tokens: int, threads: int | None) -> list[str]:
    import torch

    from charter.providers.local import LocalModel

    if threads:  # on a busy machine, torch's spinning worker threads make every step slower
        torch.set_num_threads(threads)

    prompts = [[{"role": "user", "content": LOCAL_PROMPTS[i % len(LOCAL_PROMPTS)] + f" (#{i})"}] for i in range(n)]
    params = SamplingParams(temperature=0.0, max_tokens=max_tokens)
    lines = [
        f"local: smollm2-135m-instruct, {n} prompts, greedy, max_tokens {max_tokens},"
        f" {torch.get_num_threads()} torch thread(s)"
    ]
    rates = {}
    for batch_size in (1, 16):
        model = LocalModel("smollm2-135m-instruct", batch_size=batch_size)
        asyncio.run(model.generate(prompts[:2], params))  # load and warm up
        start = time.perf_counter()
        completions = asyncio.run(model.generate(prompts, params))
        seconds = time.perf_counter() - start
        tokens = sum(c.completion_tokens for c in completions)
        rates[batch_size] = tokens / seconds
        lines.append(
            f"  batch_size {batch_size:2d}: {tokens} tokens in {seconds:6.1f} s = {rates[batch_size]:7.1f} tokens/s"
        )
        asyncio.run(model.aclose())
    lines.append(f"  ratio batched / unbatched: {rates[16] / rates[1]:.2f}x")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=["local", "overhead", "loopback", "all"], default="all")
    parser.add_argument("--overhead-requests", type=int, default=20_000)
    parser.add_argument("--overhead-concurrency", type=int, default=256)
    parser.add_argument("--concurrency", type=int, default=64, help="loopback concurrency")
    parser.add_argument("--rounds", type=int, default=2, help="loopback rounds per side (alternating)")
    parser.add_argument("--slow-requests", type=int, default=2560, help="loopback requests at 500 ms")
    parser.add_argument("--fast-requests", type=int, default=4000, help="loopback requests at 100 ms")
    parser.add_argument("--local-prompts", type=int, default=32)
    parser.add_argument("--local-max-tokens", type=int, default=48)
    parser.add_argument("--local-threads", type=int, default=None, help="torch threads (default: torch's own)")
    args = parser.parse_args(argv)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"# {platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} CPUs, load average {load}"
    )
    parts = ["overhead", "loopback", "local"] if args.part == "all" else [args.part]
    for part in parts:
        if part == "overhead":
            lines = bench_overhead(args.overhead_requests, args.overhead_concurrency)
        elif part == "loopback":
            print("\n".join(bench_loopback(0.5, args.concurrency, args.slow_requests, args.rounds)), flush=True)
            lines = bench_loopback(0.1, args.concurrency, args.fast_requests, args.rounds)
        else:
            lines = bench_local(args.local_prompts, args.local_max_tokens, args.local_threads)
        print("\n".join(lines), flush=True)


if __name__ == "__main__":
    main()
