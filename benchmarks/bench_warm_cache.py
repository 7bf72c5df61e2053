"""Warm, then fan out: the wall-time cost of answering a pair's first principle (in each order) before its other
principles are asked, at a fixed concurrency, side by side with every judge call of a pair asked at once.

The whole pipeline (critique with one round, then the judge: `principles_per_pair: 3`, `orders: both`, six judge
calls a pair) against a loopback OpenAI-compatible server in its own process that answers each call after a fixed
delay. The two settings alternate, each with a cold call cache and a new run directory; medians are compared.

    .venv/bin/python benchmarks/bench_warm_cache.py --prompts 300 --delay 0.2 --repeats 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_pipeline_loopback import start_server  # noqa: E402

CALLS_PER_PROMPT = 3 + 6  # initial answer, critique, revision; 3 principles x 2 orders


def run_once(base_url: str, prompts: Path, workdir: Path, concurrency: int, warm: bool) -> tuple[float, int]:
    """One cold pipeline run: its wall time in seconds and the calls it made."""
    import charter
    from charter.pipeline.config import RunConfig
    from charter.pipeline.launch import runner_for

    role = {
        "model": f"openai-compatible:m@{base_url}",
        "params": {"max_tokens": 16},
        "limits": {"concurrency": concurrency, "timeout_s": 60},
    }
    stamp = time.time_ns()
    config = RunConfig.model_validate(
        {
            "name": "warm",
            "output_dir": str(workdir / f"run-{stamp}"),
            "cache": str(workdir / f"cache-{stamp}.sqlite"),
            "prompts": {"path": str(prompts)},
            "policy": role,
            "judge": {**role, "principles_per_pair": 3, "orders": "both", "warm_cache": warm},
            "concurrency": 2 * concurrency,
            "report": False,
            "critique": {"rounds": 1, "few_shot": False},
            "filters": {"drop_inconsistent": False, "drop_ties": False},
        }
    )
    start = time.perf_counter()
    asyncio.run(runner_for(config).arun())
    seconds = time.perf_counter() - start
    return seconds, int(charter.status(workdir / f"run-{stamp}")["usage"]["totals"]["calls"])


def main() -> None:
    parser = argparse.ArgumentParser(description="Warm, then fan out: its wall-time cost at a fixed concurrency.")
    parser.add_argument("--prompts", type=int, default=300)
    parser.add_argument("--delay", type=float, default=0.2, help="seconds before each loopback reply")
    parser.add_argument("--concurrency", type=int, default=64, help="requests in flight per role")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("OPENAI_API_KEY", "EMPTY")
    workdir = Path(tempfile.mkdtemp())
    prompts = workdir / "prompts.jsonl"
    prompts.write_text(
        "".join(json.dumps({"prompt": f"Prompt {i}: explain thing {i}."}) + "\n" for i in range(args.prompts))
    )
    proc, port = start_server(args.delay)
    times: dict[bool, list[float]] = {True: [], False: []}
    calls = args.prompts * CALLS_PER_PROMPT
    try:
        base_url = f"http://127.0.0.1:{port}/v1"
        run_once(base_url, prompts, workdir, args.concurrency, True)  # imports and first connections, not timed
        for _ in range(args.repeats):
            for warm in (False, True):
                seconds, made = run_once(base_url, prompts, workdir, args.concurrency, warm)
                assert made == calls, f"{made} calls, {calls} expected"
                times[warm].append(seconds)
    finally:
        proc.terminate()
        proc.wait()
    cold, warm = statistics.median(times[False]), statistics.median(times[True])
    print(
        f"{args.prompts} prompts, {calls} calls, delay {args.delay * 1000:.0f} ms, concurrency {args.concurrency}: "
        f"all at once {cold:.2f} s (runs {', '.join(f'{t:.2f}' for t in times[False])}) | "
        f"warm, then fan out {warm:.2f} s (runs {', '.join(f'{t:.2f}' for t in times[True])}) | "
        f"ratio {warm / cold:.3f}"
    )


if __name__ == "__main__":
    main()
