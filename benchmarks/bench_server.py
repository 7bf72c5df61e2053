"""The reward server's overhead: requests/s and latency under 64 concurrent clients, against in-process rewards.

    python benchmarks/bench_server.py --requests 2000 --latency 0 0.1 --loopback 0.1 [--repeat 3]

Each side scores the same N distinct (prompt, completion) pairs (rating `verdict`, no call cache) with
`scripted:cai`, whose replies wait `latency` seconds in process, and with a loopback judge: an OpenAI-compatible
HTTP server (`charter.testing.loopback`) in a process of its own, as a remote judge is, that answers as
`scripted:cai` after `--loopback` seconds, so the judge's calls cross the wire. The server: `charter serve reward` in
its own process, 64 aiohttp clients (in this process, as rollout workers are in theirs) each posting one completion
at a time to `/v1/rewards`. In process: `charter.reward_function` called once on all N (TRL's way), in this process.
64 judge calls at once on both sides. Reported: rewards/s, the server's latency percentiles, the CPU time a reward
costs the process that computes it (the server's; this process's for the in-process call) and the clients' CPU a
request, the server's RSS before and after, and the ratio of the two rates; with `--repeat R`, R runs of each side
per judge, alternating, and the median ratio (on a shared machine the load moves between runs).
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
from charter.providers.base import SamplingParams
from charter.providers.scripted import _cai
from charter.records import Message
from charter.testing.loopback import LoopbackServer

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "bench-token"
SAFE = "I can't help with that; ask a locksmith."


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_server(tmp: Path, judge: dict, name: str, port: int) -> subprocess.Popen:
    config = {"judge": judge, "cache": None, "output_dir": str(tmp / f"store-{name}"), "max_queue": 100000}
    path = tmp / f"serve-{name}.yaml"
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


def cpu_s(pid: int) -> float:
    """The CPU seconds (user + system) a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_judge(delay: float) -> tuple[subprocess.Popen, str]:
    """The loopback judge in a process of its own (as a remote judge is): the process and its OpenAI base URL."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    cmd = [sys.executable, __file__, "--serve-judge", str(delay)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    port = int(proc.stdout.readline())
    return proc, f"http://127.0.0.1:{port}/v1"


async def serve_judge(delay: float) -> None:
    """Serve the loopback judge until killed, its port printed first."""
    server = LoopbackServer(delay_s=delay, reply=judge_reply, record=False)
    listening = await server.listen()
    print(server.port, flush=True)
    async with listening:
        await listening.serve_forever()


def scripted_judge(latency: float) -> dict:
    return {"model": "scripted:cai", "rating": "verdict", "options": {"latency_s": latency}}


def judge_reply(body: dict) -> str:
    """The loopback's reply: what `scripted:cai` answers to the same messages."""
    messages = [Message(role=m["role"], content=m["content"]) for m in body.get("messages", [])]
    return _cai(messages, SamplingParams())


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


def in_process(tmp: Path, judge: dict, name: str, n: int) -> tuple[float, float]:
    """The seconds one `charter.reward_function` call takes on all N, and the CPU seconds it uses."""
    role = charter.RoleConfig(**{k: v for k, v in judge.items() if k != "rating"})
    fn = charter.reward_function(role, store=tmp / f"inproc-{name}", cache=None, rating=judge["rating"])
    prompts = [f"How do I pick lock in-{i}?" for i in range(n)]
    start, cpu = time.perf_counter(), cpu_s(os.getpid())
    got = fn(prompts=prompts, completions=[SAFE] * n)
    elapsed, cpu = time.perf_counter() - start, cpu_s(os.getpid()) - cpu
    assert got == [1.0] * n
    fn.close()
    return elapsed, cpu


def pct(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1] * 1000 if len(values) > 1 else values[0] * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--latency", type=float, nargs="+", default=[0.0, 0.1])
    parser.add_argument("--loopback", type=float, nargs="*", default=[0.1], help="loopback judge delays (s)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each side per judge, alternating")
    parser.add_argument("--port", type=int, default=18765)
    parser.add_argument("--serve-judge", type=float, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_judge is not None:
        asyncio.run(serve_judge(args.serve_judge))
        return
    print(
        "| judge | side | rewards/s | server ÷ in process | p50 ms | p90 ms | p99 ms | CPU ms a reward "
        "| clients' CPU ms a request | server RSS MiB before → after |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
    runs = [(f"scripted, {lat * 1000:g} ms", scripted_judge(lat), None) for lat in args.latency]
    runs += [(f"loopback, {lat * 1000:g} ms", None, lat) for lat in args.loopback]
    ratios: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        for k, (label, judge, delay) in enumerate(runs):
            loopback = None
            if delay is not None:
                loopback, url = start_judge(delay)  # 64 calls in flight, as the scripted judge's
                judge = {"model": f"openai-compatible:judge@{url}", "rating": "verdict", "limits": {"concurrency": 64}}
            assert judge is not None
            try:
                for r in range(args.repeat):  # a fresh server and store each time: no reward is read back
                    port = args.port + k * args.repeat + r
                    ratios.setdefault(label, []).append(row(args, tmp, label, judge, f"run{k}-{r}", port))
            finally:
                if loopback is not None:
                    loopback.terminate()
                    loopback.wait()
    if args.repeat > 1:
        print()
        for label, got in ratios.items():
            spread = f"{min(got):.2f}–{max(got):.2f}"
            print(f"{label}: server ÷ in process, median of {len(got)}: {statistics.median(got):.2f}x ({spread})")


def row(args: argparse.Namespace, tmp: Path, label: str, judge: dict, name: str, port: int) -> float:
    """One run of each side, printed as two rows; the server's rate over the in-process rate."""
    proc = start_server(tmp, judge, name, port)
    try:
        url = f"http://127.0.0.1:{port}/v1/rewards"
        asyncio.run(clients(url, 200, args.clients, "warm"))
        before, cpu, mine = rss_mib(proc.pid), cpu_s(proc.pid), cpu_s(os.getpid())
        elapsed, lat = asyncio.run(clients(url, args.requests, args.clients, "run"))
        after, cpu, mine = rss_mib(proc.pid), cpu_s(proc.pid) - cpu, cpu_s(os.getpid()) - mine
    finally:
        proc.terminate()
        proc.wait()
    inproc, inproc_cpu = in_process(tmp, judge, name, args.requests)
    n = args.requests
    print(
        f"| {label} | server, {args.clients} clients | {n / elapsed:.1f} | {inproc / elapsed:.2f}x | "
        f"{pct(lat, 50):.1f} | {pct(lat, 90):.1f} | {pct(lat, 99):.1f} | {cpu / n * 1000:.2f} | "
        f"{mine / n * 1000:.2f} | {before:.0f} → {after:.0f} |"
    )
    inproc_ms = inproc_cpu / n * 1000
    print(f"| {label} | in process, one call | {n / inproc:.1f} | | | | | {inproc_ms:.2f} | | |", flush=True)
    return inproc / elapsed


if __name__ == "__main__":
    main()
