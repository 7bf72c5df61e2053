"""Batch mode against synchronous calls: the same quickstart-sized run (16 prompts, one critique round, a
both-order judge over 2 principles, `openai:gpt-4o-mini` at $0.15/$0.60 per million tokens) through the real
openai SDK, once against the loopback chat server and once against the loopback Files + Batches server
(`charter.testing.loopback`, batches ending 1 s after creation, polled every 0.5 s). Then the same batch run killed
(SIGKILL) right after its first batch is journaled, and resumed.

    .venv/bin/python benchmarks/bench_batch.py [--prompts 16]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from charter.cli import main as cli
from charter.runs.batches import stored_batches
from charter.runs.store import RunStore
from charter.runs.usage import stored_usage
from charter.testing import loopback
from charter.testing.faults import FaultServer

MODEL = "openai:gpt-4o-mini"


class Sync(loopback.LoopbackServer):
    logprobs_for = FaultServer.logprobs_for


class Batches(loopback.BatchServer):
    logprobs_for = FaultServer.logprobs_for


def config(tmp: Path, name: str, n: int, batch: bool) -> Path:
    data = {
        "name": name,
        "output_dir": str(tmp / name),
        "cache": str(tmp / f"{name}.sqlite"),
        "report": False,
        "prompts": {"inline": [f"Question {i}: how would someone do thing {i}?" for i in range(n)]},
        "policy": {"model": MODEL, "params": {"max_tokens": 64}},
        "judge": {"model": MODEL, "principles_per_pair": 2},
        "filters": {"drop_inconsistent": False},
        "prices": {MODEL: {"input": 0.15, "output": 0.60}},
        "batch": {"enabled": batch, "poll_s": 0.5, "gather_s": 0.5},
    }
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def summary(run_dir: Path) -> dict:
    with RunStore(run_dir) as store:
        usage = stored_usage(store)
        batches_ = stored_batches(store)
    rows = (run_dir / "data" / "preferences.jsonl").read_text().splitlines()
    strip = [{k: v for k, v in json.loads(r).items() if k not in ("run_id", "created_at")} for r in rows]
    return {
        "calls": sum(u.calls for u in usage),
        "cost": sum(u.cost_usd for u in usage),
        "tokens": sum(u.prompt_tokens + u.completion_tokens for u in usage),
        "batches": len(batches_),
        "rows": sorted(json.dumps(r, sort_keys=True) for r in strip),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompts", type=int, default=16)
    n = parser.parse_args().prompts
    os.environ["OPENAI_API_KEY"] = "sk-bench"
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        with Sync() as server:
            os.environ["OPENAI_BASE_URL"] = server.openai_url
            start = time.perf_counter()
            assert cli(["run", str(config(tmp, "sync", n, False))]) == 0
            sync_s, sync_requests = time.perf_counter() - start, server.hits
        with Batches(complete_after_s=1.0) as server:
            os.environ["OPENAI_BASE_URL"] = server.openai_url
            start = time.perf_counter()
            assert cli(["run", str(config(tmp, "batch", n, True))]) == 0
            batch_s, created = time.perf_counter() - start, list(server.batches_created)
        with Batches(complete_after_s=1.0, hold=True) as server:
            path = config(tmp, "killed", n, True)
            env = {**os.environ, "OPENAI_BASE_URL": server.openai_url}
            child = subprocess.Popen(
                [sys.executable, "-m", "charter.cli", "run", str(path)],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            while not (tmp / "killed" / "run.sqlite").exists() or not stored_batches(RunStore(tmp / "killed")):
                time.sleep(0.05)
            child.send_signal(signal.SIGKILL)
            child.wait()
            server.hold = False
            os.environ["OPENAI_BASE_URL"] = server.openai_url
            assert cli(["run", str(path)]) == 0
            killed_created = list(server.batches_created)
        sync, batch, killed = summary(tmp / "sync"), summary(tmp / "batch"), summary(tmp / "killed")
    print("| mode | requests or batch requests | batches | recorded tokens | recorded cost | wall s | rows as sync |")
    print("|---|---:|---:|---:|---:|---:|---|")
    print(f"| synchronous | {sync_requests} | – | {sync['tokens']} | ${sync['cost']:.6f} | {sync_s:.1f} | – |")
    print(
        f"| batch | {sum(b['requests'] for b in created)} | {len(created)} "
        f"({', '.join(str(b['requests']) for b in created)}) "
        f"| {batch['tokens']} | ${batch['cost']:.6f} ({batch['cost'] / sync['cost']:.3f} of sync) | {batch_s:.1f} | "
        f"{batch['rows'] == sync['rows']} |"
    )
    print(
        f"| batch, SIGKILL after the first submit, resumed | {sum(b['requests'] for b in killed_created)} | "
        f"{len(killed_created)} | {killed['tokens']} | ${killed['cost']:.6f} | – | {killed['rows'] == sync['rows']} |"
    )


if __name__ == "__main__":
    main()
