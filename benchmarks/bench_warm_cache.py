"""Warm, then fan out: the wall-time cost of the judge's call schedules at a fixed concurrency, side by side.

The whole pipeline (critique with one round, then the judge: `principles_per_pair: 3`, `orders: both`, six judge
calls a pair) against a loopback OpenAI-compatible server in its own process that answers each call after a fixed
delay. The schedules of a pair's six calls (see bench_cache.py): `pair` (charter's: the pair's first call answered,
then the other principles in that order and the other order, itself warmed by its first call), `principle` (the
first principle in both orders at once, then the other four) and `none` (`judge.warm_cache: false`, all six at
once). They alternate, each going first in turn, each run with a cold call cache and a new run directory; the
medians are compared, and the median of the repeats' own ratios.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_warm_cache.py --prompts 300 --delay 0.2 --repeats 3
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

from bench_cache import SCHEDULES, schedule_by_principle  # noqa: E402
from bench_pipeline_loopback import start_server  # noqa: E402

CALLS_PER_PROMPT = 3 + 6  # initial answer, critique, revision; 3 principles x 2 orders


def run_once(base_url: str, prompts: Path, workdir: Path, concurrency: int, schedule: str) -> tuple[float, int]:
    """One cold pipeline run: its wall time in seconds and the calls it made."""
    import charter
    from charter.judge.modes import MODES
    from charter.pipeline.api import runner_for
    from charter.pipeline.config import RunConfig

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
            "judge": {**role, "principles_per_pair": 3, "orders": "both", "warm_cache": schedule != "none"},
            "concurrency": 2 * concurrency,
            "report": False,
            "critique": {"rounds": 1, "few_shot": False},
            "filters": {"drop_inconsistent": False, "drop_ties": False},
        }
    )
    modes = dict(MODES)
    if schedule == "principle":
        schedule_by_principle()
    try:
        start = time.perf_counter()
        asyncio.run(runner_for(config).arun())
        seconds = time.perf_counter() - start
    finally:
        MODES.update(modes)
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
    times: dict[str, list[float]] = {schedule: [] for schedule in SCHEDULES}
    calls = args.prompts * CALLS_PER_PROMPT
    try:
        base_url = f"http://127.0.0.1:{port}/v1"
        run_once(base_url, prompts, workdir, args.concurrency, "pair")  # imports and first connections, not timed
        for repeat in range(args.repeats):
            for schedule in SCHEDULES[repeat % 3 :] + SCHEDULES[: repeat % 3]:  # each goes first in turn
                seconds, made = run_once(base_url, prompts, workdir, args.concurrency, schedule)
                assert made == calls, f"{made} calls, {calls} expected"
                times[schedule].append(seconds)
    finally:
        proc.terminate()
        proc.wait()
    medians = {schedule: statistics.median(t) for schedule, t in times.items()}
    shown = " | ".join(
        f"{schedule} {medians[schedule]:.2f} s (runs {', '.join(f'{t:.2f}' for t in times[schedule])})"
        for schedule in SCHEDULES
    )
    print(
        f"{args.prompts} prompts, {calls} calls, delay {args.delay * 1000:.0f} ms, concurrency {args.concurrency}: "
        f"{shown} | pair / principle {ratios(times, 'principle')}, pair / none {ratios(times, 'none')}"
    )


def ratios(times: dict[str, list[float]], other: str) -> str:
    """The ratio of the medians, and the median of each repeat's ratio (its runs ran back to back, so a load that
    drifts over the invocation weighs on both sides alike)."""
    paired = statistics.median(a / b for a, b in zip(times["pair"], times[other]))
    return f"{statistics.median(times['pair']) / statistics.median(times[other]):.3f} (paired {paired:.3f})"


if __name__ == "__main__":
    main()
