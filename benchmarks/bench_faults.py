"""A run against a faulty world: requests made, rows delivered, failures recorded, wall time, per fault mix.

The fault-injecting server (`python -m charter.testing.faults`) runs in its own process and logs every
request; `charter run` runs here, through the real openai SDK, with these limits (timeout 3 s,
6 retries, concurrency 16). One critique round and a both-order judge with two principles: 7 calls per
prompt. "expected" is the clean minimum divided by (1 - the fault rate each kind of request meets): the
retries the faults force. Option-less logprobs only hit judge (logprobs) requests; a poisoned prompt is one
request, rejected for good.

    OPENAI_API_KEY=EMPTY .venv/bin/python benchmarks/bench_faults.py --prompts 100
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from charter.pipeline.api import runner_for
from charter.pipeline.config import RunConfig
from charter.runs.failures import stored_failures
from charter.runs.store import RunStore
from charter.runs.usage import stored_usage
from charter.testing.faults import Faults, read_log

GENERATE, LOGPROBS = 3, 4  # calls per prompt
MIXES = {
    "clean": Faults(),
    "malformed JSON 2%": Faults(malformed=0.02),
    "empty choices 3%": Faults(empty_choices=0.03),
    "logprobs without the options 10%": Faults(no_option_logprobs=0.10),
    "429 + Retry-After 10%": Faults(rate_limit=0.10, retry_after_s=0.5),
    "500/502/503 10%": Faults(server_error=0.10),
    "dropped connections 5%": Faults(drop=0.05),
    "hangs past the timeout 1%": Faults(hang=0.01, hang_s=5.0),
    "poison prompt (400)": Faults(poison="POISON"),
    "all mixed (19% + poison)": Faults(
        rate_limit=0.03,
        server_error=0.04,
        hang=0.005,
        drop=0.02,
        malformed=0.02,
        empty_choices=0.03,
        no_option_logprobs=0.05,
        poison="POISON",
        retry_after_s=0.5,
        hang_s=5.0,
    ),
}


def start_server(faults: Faults, log: Path, seed: int) -> tuple[subprocess.Popen, int]:
    args = [sys.executable, "-m", "charter.testing.faults", "--log", str(log), "--seed", str(seed)]
    for name in (*Faults.RATES, "retry_after_s", "hang_s"):
        args += [f"--{name.replace('_', '-')}", str(getattr(faults, name))]
    if faults.poison:
        args += ["--poison", faults.poison]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    return proc, int(proc.stdout.readline())


def run_mix(name: str, faults: Faults, n: int, work: Path) -> dict:
    log = work / f"{len(list(work.iterdir()))}.jsonl"
    proc, port = start_server(faults, log, seed=hash(name) % 1000)
    try:
        model = f"openai-compatible:faulty@http://127.0.0.1:{port}/v1"
        limits = {"concurrency": 16, "max_retries": 6, "timeout_s": 3.0, "backoff_initial_s": 0.1, "backoff_max_s": 5}
        prompts = [f"Request {i}: how would someone do thing {i}?" for i in range(n)]
        if faults.poison:
            prompts[7] = "Request 7 carries the POISON word"
        config = RunConfig.model_validate(
            {
                "name": "faults",
                "output_dir": str(work / f"run-{log.stem}"),
                "cache": None,
                "report": False,
                "prompts": {"inline": prompts},
                "concurrency": 16,
                "filters": {"drop_inconsistent": False},
                "policy": {"model": model, "limits": limits, "params": {"max_tokens": 64}},
                "judge": {"model": model, "limits": limits, "principles_per_pair": 2},
            }
        )
        started = time.perf_counter()
        try:
            result = asyncio.run(runner_for(config).arun())
            rows, code = result.counts["preferences"], 0
        except Exception as exc:  # a stop is a figure too
            rows, code = None, getattr(exc, "exit_code", 1)
        wall = time.perf_counter() - started
    finally:
        proc.terminate()
        proc.wait()
    entries = read_log(log)
    with RunStore(config.run_dir()) as store:
        failures = len({(f.stage, f.item_id) for f in stored_failures(store, open_only=True)})
        recorded = sum(u.calls for u in stored_usage(store))
    poisoned = 1 if faults.poison else 0
    clean = (n - poisoned) * (GENERATE + LOGPROBS) + poisoned
    rate_generate = faults.total - faults.no_option_logprobs
    expected = (n - poisoned) * (GENERATE / (1 - rate_generate) + LOGPROBS / (1 - faults.total)) + poisoned
    return {
        "mix": name,
        "requests": len(entries),
        "clean": clean,
        "expected": expected,
        "rows": rows,
        "code": code,
        "failures": failures,
        "wall": wall,
        "answered": sum(e.answered for e in entries),
        "recorded": recorded,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=100)
    parser.add_argument("--only", nargs="*", help="mix names to run (default: all)")
    args = parser.parse_args()
    print(
        "| fault mix | requests | clean minimum | min / (1 - rate) | requests / expected | rows | failures "
        "recorded | usage recorded / answered | exit | wall s |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for name, faults in MIXES.items():
            if args.only and name not in args.only:
                continue
            r = run_mix(name, faults, args.prompts, Path(tmp))
            print(
                f"| {r['mix']} | {r['requests']:,} | {r['clean']:,} | {r['expected']:,.0f} | "
                f"{r['requests'] / r['expected']:.3f} | {r['rows']} | {r['failures']} | "
                f"{r['recorded']} / {r['answered']} | {r['code']} | {r['wall']:.1f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
