"""Pipeline throughput: scripted provider (pure overhead), re-run of a finished run, and the
loopback delay server against a bare asyncio loop over the same SDK.

    .venv/bin/python benchmarks/bench_pipeline.py --part scripted   # 1,000 and 10,000 prompts
    .venv/bin/python benchmarks/bench_pipeline.py --part loopback   # 500 ms and 100 ms, concurrency 64
    .venv/bin/python benchmarks/bench_pipeline.py --part loopback-diversity --repeat 3   # the diversity figures' cost
    ... --part loopback-diversity --baseline OLD/src   # and the defaults of another source tree, side by side
    .venv/bin/python benchmarks/bench_pipeline.py --part chain-order --baseline OLD/src --repeat 3

Each measurement runs in a fresh subprocess so peak memory (ru_maxrss) is its own. `chain-order` times the order in
which a run's waiting calls get a slot: 400 prompts as chains of calls (answer, critique, revision at 0.5 s each,
the judge's logprobs at once) on 64 slots with 128 prompts in flight, little CPU in all, so that a busy machine
moves it less; this tree beside `--baseline`'s, alternating.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from charter.runs.usage import stored_usage


def write_prompts(path: Path, n: int) -> None:
    with path.open("w") as handle:
        for i in range(n):
            handle.write(json.dumps({"prompt": f"Request number {i}: how would someone do thing {i}?"}) + "\n")


def one_run(
    n: int, workdir: Path, model: str = "scripted:cai", concurrency: int = 64, limits: dict | None = None
) -> dict:
    """Run the pipeline once in this process; returns seconds, calls and peak RSS."""
    from charter.pipeline.api import runner_for
    from charter.pipeline.config import RunConfig

    prompts = workdir / f"prompts-{n}.jsonl"
    if not prompts.exists():
        write_prompts(prompts, n)
    role = {"model": model, "limits": limits or {"concurrency": concurrency}}
    config = RunConfig.model_validate(
        {
            "name": f"bench-{n}",
            "output_dir": str(workdir / f"run-{n}"),
            "cache": str(workdir / "cache.sqlite"),
            "prompts": {"path": str(prompts)},
            "policy": role,
            "judge": role,
            "concurrency": concurrency,
            "critique": {"rounds": 1, "few_shot": False},
            "report": os.environ.get("BENCH_REPORT", "1") == "1",
        }
    )
    runner = runner_for(config)
    before = _usage(config.run_dir())
    start = time.perf_counter()
    import asyncio

    asyncio.run(runner.arun())
    seconds = time.perf_counter() - start
    after = _usage(config.run_dir())
    calls, cached = after[0] - before[0], after[1] - before[1]
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "prompts": n,
        "seconds": round(seconds, 2),
        "model_calls": calls,
        "cache_hits": cached,
        "peak_rss_mb": round(peak_mb, 1),
    }


def _usage(run_dir: Path) -> tuple[int, int]:
    """(model calls, cache hits) recorded so far in a run directory."""
    from charter.runs.store import RunStore

    if not (run_dir / "run.sqlite").exists():
        return 0, 0
    with RunStore(run_dir) as store:
        usage = stored_usage(store)
    return sum(u.calls for u in usage), sum(u.cached for u in usage)


def in_subprocess(*args: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def scripted(workdir: Path) -> None:
    for n in (1000, 10000):
        first = in_subprocess("run", str(n), str(workdir))
        again = in_subprocess("run", str(n), str(workdir))
        print(
            f"scripted  {n:>6} prompts: first run {first['seconds']:>6.2f} s ({first['model_calls']} calls, "
            f"peak {first['peak_rss_mb']} MB); re-run {again['seconds']:.2f} s with {again['model_calls']} calls"
        )


def chain_run(n: int, workdir: Path, latency: float = 0.5, slots: int = 64) -> dict:
    """A run's calls as chains, timed with little CPU: 400 prompts, `scripted:cai` answering after `latency` seconds
    (the judge's logprobs at once), `slots` calls at once, twice as many prompts in flight; the calls' wall time from
    the first to the last, and the whole run's."""
    import asyncio

    from charter.pipeline.api import runner_for
    from charter.pipeline.config import RunConfig
    from charter.providers import limits

    stamps: list[float] = []
    once = limits.Limiter._once

    async def stamped(self: limits.Limiter, *args: object, **kwargs: object) -> object:
        stamps.append(time.perf_counter())
        try:
            return await once(self, *args, **kwargs)  # type: ignore[arg-type]
        finally:
            stamps.append(time.perf_counter())

    limits.Limiter._once = stamped  # type: ignore[method-assign]
    prompts = workdir / f"prompts-{n}.jsonl"
    write_prompts(prompts, n)
    role = {"model": "scripted:cai", "options": {"latency_s": latency}, "limits": {"concurrency": slots}}
    config = RunConfig.model_validate(
        {
            "name": f"chains-{n}",
            "output_dir": str(workdir / f"run-{time.time_ns()}"),
            "cache": None,
            "prompts": {"path": str(prompts)},
            "policy": role,
            "judge": role,
            "concurrency": 2 * slots,
            "critique": {"rounds": 1, "few_shot": False},
            "diversity": {"embedding_model": None},
            "report": False,
        }
    )
    start = time.perf_counter()
    asyncio.run(runner_for(config).arun())
    return {"calls_s": round(stamps[-1] - stamps[0], 2), "run_s": round(time.perf_counter() - start, 2)}


def chain_order(workdir: Path, baseline: Path | None, repeats: int) -> None:
    """The same chained run from this tree and from `baseline`'s, alternating, each in a fresh process."""
    trees = [("this tree", None)] + ([("baseline", baseline)] if baseline is not None else [])
    for _ in range(repeats):
        line = []
        for name, src in trees:
            env = {**os.environ, "PYTHONPATH": str(src)} if src is not None else None
            done = subprocess.run(
                [sys.executable, __file__, "--child", "chains", "400", str(workdir)],
                capture_output=True,
                text=True,
                check=True,
                env=env,
            )
            result = json.loads(done.stdout.strip().splitlines()[-1])
            line.append(f"{name}: calls {result['calls_s']:.2f} s, run {result['run_s']:.2f} s")
        print(" | ".join(line) + f" | load {os.getloadavg()[0]:.1f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--part", default="scripted", choices=["scripted", "loopback", "loopback-diversity", "chain-order", "all"]
    )
    parser.add_argument("--repeat", type=int, default=3, help="loopback-diversity, chain-order: runs of each arm")
    parser.add_argument(
        "--baseline", type=Path, default=None, help="loopback-diversity, chain-order: also this source tree's run"
    )
    parser.add_argument("--child", nargs="*")
    args = parser.parse_args()
    if args.child:
        kind, n, workdir = args.child[:3]
        print(json.dumps((chain_run if kind == "chains" else one_run)(int(n), Path(workdir))))
        return
    with tempfile.TemporaryDirectory() as tmp:
        if args.part in ("scripted", "all"):
            scripted(Path(tmp))
        if args.part in ("loopback", "all"):
            from bench_pipeline_loopback import loopback  # noqa: PLC0415

            loopback(Path(tmp))
        if args.part in ("loopback-diversity", "all"):
            from bench_pipeline_loopback import diversity_cost  # noqa: PLC0415

            diversity_cost(Path(tmp), args.repeat, baseline=args.baseline)
        if args.part == "chain-order":
            chain_order(Path(tmp), args.baseline, args.repeat)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
