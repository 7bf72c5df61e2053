"""One shard against two over a local Ray cluster, against the loopback server at 100 ms (its own process),
where one client process is CPU-bound: the same run (N prompts, one critique round, a both-order judge over 2
principles: 7 requests a prompt) through the real openai SDK. The Ray cluster is started before the clock.

    OPENAI_API_KEY=EMPTY .venv/bin/python benchmarks/bench_shards.py --prompts 1500 --in-flight 512
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from charter.runs.usage import stored_usage


def run_once(tmp: Path, url: str, n: int, shards: int, in_flight: int) -> tuple[float, int]:
    from charter.pipeline.api import runner_for
    from charter.pipeline.config import RunConfig
    from charter.runs.store import RunStore

    model = f"openai-compatible:loopback@{url}"
    role = {"model": model, "limits": {"concurrency": in_flight, "timeout_s": 30}, "params": {"max_tokens": 32}}
    config = RunConfig.model_validate(
        {
            "name": f"s{shards}",
            "output_dir": str(tmp / f"s{shards}"),
            "cache": str(tmp / f"s{shards}.sqlite"),
            "prompts": {"inline": [f"Question {i}: how would someone do thing {i}?" for i in range(n)]},
            "policy": role,
            "judge": {**role, "principles_per_pair": 2},
            "critique": {"rounds": 1, "few_shot": False},
            "concurrency": in_flight,
            "report": False,
            "execution": {"engine": "ray", "shards": shards} if shards > 1 else {"engine": "local"},
        }
    )
    start = time.perf_counter()
    asyncio.run(runner_for(config).arun())
    seconds = time.perf_counter() - start
    with RunStore(config.run_dir()) as store:
        return seconds, sum(u.calls for u in stored_usage(store))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompts", type=int, default=1500)
    parser.add_argument("--in-flight", type=int, default=512)
    parser.add_argument("--delay", type=float, default=0.1)
    args = parser.parse_args()
    os.environ.setdefault("OPENAI_API_KEY", "EMPTY")
    server = subprocess.Popen(
        [sys.executable, "-m", "charter.testing.loopback", "--delay", str(args.delay)],
        stdout=subprocess.PIPE,
        text=True,
    )
    port = int(server.stdout.readline())
    url = f"http://127.0.0.1:{port}/v1"
    import ray

    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False, log_to_driver=False)
    try:
        with tempfile.TemporaryDirectory() as name:
            results = {shards: run_once(Path(name), url, args.prompts, shards, args.in_flight) for shards in (1, 2)}
    finally:
        ray.shutdown()
        server.terminate()
    ideal = args.in_flight / args.delay
    print("| shards | requests | wall s | requests/s | of ideal |")
    print("|---:|---:|---:|---:|---:|")
    for shards, (seconds, calls) in results.items():
        print(f"| {shards} | {calls} | {seconds:.1f} | {calls / seconds:.0f} | {calls / seconds / ideal:.0%} |")
    (s1, _), (s2, _) = results[1], results[2]
    print(f"2 shards / 1 shard: {s1 / s2:.2f}x")


if __name__ == "__main__":
    main()
