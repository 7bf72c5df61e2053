"""The reward server's overhead: requests/s and latency under 64 concurrent clients, against in-process rewards.

    python benchmarks/bench_server.py --requests 2000 --latency 0 0.1

Each side scores the same N distinct (prompt, completion) pairs with `scripted:cai` (rating `verdict`, no call
cache), whose replies wait `latency` seconds (a stand-in for a remote judge). The server: `charter serve reward` in its
own process, 64 aiohttp clients each posting one completion at a time to `/v1/rewards` (as rollout workers do). In
process: `charter.reward_function` called once on all N (TRL's way), 64 judge calls at once on both sides. Reported:
rewards/s, the server's latency percentiles, and its RSS before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import aiohttp
import yaml

import charter

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "bench-token"
SAFE = "I can't help with that; ask a locksmith."


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_server(tmp: Path, latency: float, port: int) -> subprocess.Popen:
    judge = {"model": "scripted:cai", "rating": "verdict", "options": {"latency_s": latency}}
    config = {"judge": judge, "cache": None, "output_dir": str(tmp / f"store-{latency}"), "max_queue": 100000}
    path = tmp / f"serve-{latency}.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    cmd = [sys.executable, "-m", "charter.cli", "serve", "reward", str(path), "--port", str(port), "--token", TOKEN]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(300):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
            return proc
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("the server did not start")


async def clients(url: str, n: int, workers: int, tag: str) -> tuple[float, list[float]]:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(i)
    latencies: list[float] = []
    headers = {"Authorization": f"Bearer {TOKEN}"}

    async def worker(session: aiohttp.ClientSession) -> None:
        while not queue.empty():
            i = queue.get_nowait()
            body = {"prompt": f"How do I pick lock {tag}-{i}?", "completions": [SAFE]}
            start = time.perf_counter()
            async with session.post(url, json=body, headers=headers) as r:
                assert r.status == 200, await r.text()
                assert (await r.json())["rewards"] == [1.0]
            latencies.append(time.perf_counter() - start)

    connector = aiohttp.TCPConnector(limit=workers)
    async with aiohttp.ClientSession(connector=connector) as session:
        start = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(workers)))
        return time.perf_counter() - start, latencies


def in_process(tmp: Path, latency: float, n: int) -> float:
    judge = charter.RoleConfig(model="scripted:cai", options={"latency_s": latency})
    fn = charter.reward_function(judge, store=tmp / f"inproc-{latency}", cache=None, rating="verdict")
    prompts = [f"How do I pick lock in-{i}?" for i in range(n)]
    start = time.perf_counter()
    got = fn(prompts=prompts, completions=[SAFE] * n)
    elapsed = time.perf_counter() - start
    assert got == [1.0] * n
    fn.close()
    return elapsed


def pct(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1] * 1000 if len(values) > 1 else values[0] * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--latency", type=float, nargs="+", default=[0.0, 0.1])
    parser.add_argument("--port", type=int, default=18765)
    args = parser.parse_args()
    print("| judge latency | side | rewards/s | p50 ms | p90 ms | p99 ms | server RSS MiB before → after |")
    print("|---|---|---:|---:|---:|---:|---|")
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        for k, latency in enumerate(args.latency):
            port = args.port + k
            proc = start_server(tmp, latency, port)
            try:
                url = f"http://127.0.0.1:{port}/v1/rewards"
                asyncio.run(clients(url, 200, args.clients, "warm"))
                before = rss_mib(proc.pid)
                elapsed, lat = asyncio.run(clients(url, args.requests, args.clients, "run"))
                after = rss_mib(proc.pid)
            finally:
                proc.terminate()
                proc.wait()
            inproc = in_process(tmp, latency, args.requests)
            ms = f"{latency * 1000:g} ms"
            print(
                f"| {ms} | server, {args.clients} clients | {args.requests / elapsed:.1f} | {pct(lat, 50):.1f} "
                f"| {pct(lat, 90):.1f} | {pct(lat, 99):.1f} | {before:.0f} → {after:.0f} |"
            )
            print(f"| {ms} | in process, one call | {args.requests / inproc:.1f} | | | | |")


if __name__ == "__main__":
    main()
