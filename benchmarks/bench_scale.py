"""A run at scale on one machine: scripted models, one critique round, a both-order judge over 2 principles
(7 calls a prompt), every other setting at its default (the constitution's worked examples in front of each
critique, 64 prompts in flight, the call cache, the report), at 10,000, 100,000 and 1,000,000 prompts.
`--no-few-shot` and `--concurrency N` change those two settings, to compare. Each size runs in a fresh
subprocess, so the peak RSS (ru_maxrss) is its own; the run store's size is read after the run.

    .venv/bin/python benchmarks/bench_scale.py --sizes 10000 100000 1000000 [--shards 2]

`--shards N` runs the same workload sharded over a local Ray cluster (the driver's peak RSS is reported, and the
largest shard's, in its Ray worker process, beside it). From 20,000 prompts the SFT file is written by a second
process while the driver writes the preferences; its own peak RSS (VmHWM) is reported too. Every process of the run
(the driver, the SFT writer, Ray's workers and services) is sampled twice a second from outside, and the largest
peak RSS is reported with its process, and their CPU seconds summed (steadier than wall time on a shared machine).
`--keep DIR` (one size) runs in DIR and leaves the run there, to look at its
dataset pass or report again afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from charter.runs.counts import stage_states
from charter.runs.usage import stored_usage


def write_prompts(path: Path, n: int) -> None:
    with path.open("w") as handle:
        for i in range(n):
            handle.write(json.dumps({"prompt": f"Request number {i}: how would someone do thing {i}?"}) + "\n")


def timed_phases() -> dict[str, float]:
    """Seconds spent in the driver's phases after the per-prompt work: merging shards, writing the datasets,
    writing the report (wrappers around the functions that do them), and the driver's peak RSS after each."""
    import charter.pipeline.report.write as report
    import charter.pipeline.run as run
    import charter.pipeline.shards as shards

    phases: dict[str, float] = {}

    def wrap(owner, name: str, label: str) -> None:
        inner = getattr(owner, name)

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                phases[label] = round(phases.get(label, 0.0) + time.perf_counter() - start, 1)
                phases[f"peak MB after {label}"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)

        setattr(owner, name, timed)

    wrap(shards, "merge_shard", "merge")
    wrap(run.Runner, "_build", "datasets")
    wrap(report, "write_report", "report")
    watch_sft_writer(phases)
    return phases


def watch_sft_writer(phases: dict) -> None:
    """The SFT writer's own peak RSS (VmHWM, read until it exits): the driver's RUSAGE_CHILDREN also counts
    whatever else it waited for (Ray's helper processes among them)."""
    import threading

    from charter.preference import sft

    started = sft.SFTBeside.__init__

    def init(self, *args, **kwargs):
        started(self, *args, **kwargs)
        status = Path(f"/proc/{self.process.pid}/status")

        def poll() -> None:
            while self.process.poll() is None:
                try:
                    lines = status.read_text().splitlines()
                except OSError:
                    break
                hwm = next((int(line.split()[1]) for line in lines if line.startswith("VmHWM:")), 0)
                phases["SFT writer peak MB"] = max(phases.get("SFT writer peak MB", 0), round(hwm / 1024))
                time.sleep(0.05)

        threading.Thread(target=poll, daemon=True).start()

    sft.SFTBeside.__init__ = init


def child(n: int, workdir: Path, shards: int, few_shot: bool = True, concurrency: int | None = None) -> dict:
    from charter.pipeline.api import runner_for
    from charter.pipeline.config import RunConfig
    from charter.runs.store import RunStore

    phases = timed_phases()

    prompts = workdir / f"prompts-{n}.jsonl"
    write_prompts(prompts, n)
    role: dict = {"model": "scripted:cai"}
    changed: dict = {}
    if concurrency is not None:
        role["limits"] = {"concurrency": concurrency}
        changed["concurrency"] = concurrency
    execution = {"engine": "ray", "shards": shards, "num_cpus": shards} if shards > 1 else {"engine": "local"}
    config = RunConfig.model_validate(
        {
            "name": f"scale-{n}",
            "output_dir": str(workdir / f"run-{n}"),
            "cache": str(workdir / f"cache-{n}.sqlite"),
            "prompts": {"path": str(prompts)},
            "policy": role,
            "judge": {**role, "principles_per_pair": 2},
            "critique": {"rounds": 1} if few_shot else {"rounds": 1, "few_shot": False},
            "report": True,
            "execution": execution,
            **changed,
        }
    )
    start = time.perf_counter()
    asyncio.run(runner_for(config).arun())
    seconds = time.perf_counter() - start
    with RunStore(config.run_dir()) as store:
        calls = sum(u.calls for u in stored_usage(store))
        shard_peak = (stage_states(store).get("judge", {}).get("counts") or {}).get("shard_peak_rss_mb")
    store_mb = sum(f.stat().st_size for f in config.run_dir().glob("run.sqlite*")) / 2**20
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_pipeline_loopback import embedding_figures  # noqa: PLC0415

    return {
        "prompts": n,
        "seconds": round(seconds, 1),
        "calls": calls,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        # the processes this one started and waited for: the SFT writer (Ray's are still running)
        "children_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
        "shard_peak_rss_mb": shard_peak,
        "store_mb": round(store_mb, 1),
        "embedding_figures": embedding_figures(config.run_dir()),
        "phases": phases,
    }


class TreePeaks:
    """The peak RSS of each process in a process tree, sampled every `every` seconds in a thread until `stop`."""

    def __init__(self, root: int, every: float = 0.5) -> None:
        import threading

        self.root, self.every = root, every
        self.peaks: dict[int, tuple[int, str]] = {}
        self.cpu: dict[int, float] = {}
        """The CPU seconds (user + system) last seen of each process: a process's last half second before it exits
        is missed, so the total is a slight undercount."""
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _sample(self) -> None:
        import psutil

        while not self.done.is_set():
            try:
                root = psutil.Process(self.root)
                tree = [root, *root.children(recursive=True)]
            except psutil.Error:
                tree = []
            for process in tree:
                with contextlib.suppress(psutil.Error):
                    name = "driver" if process.pid == self.root else (process.cmdline() or [process.name()])[0]
                    rss, named = self.peaks.get(process.pid, (0, ""))
                    # a Ray worker is titled by its task while it runs one (ray::IDLE between tasks)
                    named = named if name.endswith("IDLE") and named else Path(name).name[:40]
                    self.peaks[process.pid] = (max(rss, process.memory_info().rss), named)
                    times = process.cpu_times()
                    self.cpu[process.pid] = times.user + times.system
            self.done.wait(self.every)

    def stop(self, top: int = 5) -> list[tuple[str, int]]:
        """Stop sampling; returns the `top` processes by peak RSS, largest first: (name and pid, peak MB)."""
        self.done.set()
        self.thread.join()
        ranked = sorted(self.peaks.items(), key=lambda item: -item[1][0])[:top]
        return [(f"{name} {pid}", round(rss / 2**20)) for pid, (rss, name) in ranked]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[10000, 100000])
    parser.add_argument("--shards", type=int, default=1)
    parser.add_argument("--no-few-shot", action="store_true", help="critique without the worked examples")
    parser.add_argument("--concurrency", type=int, help="prompts in flight and each role's limit (default: 64)")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    parser.add_argument("--keep", help="run in this folder and keep it (one size), to look at the run afterwards")
    args = parser.parse_args()
    if args.child:
        n, workdir, shards, few_shot, concurrency = args.child
        print(json.dumps(child(int(n), Path(workdir), int(shards), few_shot == "1", int(concurrency) or None)))
        return
    if args.keep and len(args.sizes) != 1:
        parser.error("--keep runs one size")
    for n in args.sizes:
        with contextlib.ExitStack() as stack:
            tmp = args.keep or stack.enter_context(tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")))
            Path(tmp).mkdir(parents=True, exist_ok=True)
            process = subprocess.Popen(
                [sys.executable, __file__, "--child", str(n), tmp, str(args.shards)]
                + [str(int(not args.no_few_shot)), str(args.concurrency or 0)],
                stdout=subprocess.PIPE,
                text=True,
            )
            tree = TreePeaks(process.pid)
            out, _ = process.communicate()
            largest = tree.stop()
            cpu_s = sum(tree.cpu.values())
            if process.returncode:
                raise SystemExit(f"the run of {n} prompts failed (exit code {process.returncode})")
            result = json.loads(out.strip().splitlines()[-1])
        print(
            f"{n:>9,} prompts, {args.shards} shard(s): {result['seconds']:>7.1f} s "
            f"({result['seconds'] / n * 1000:.2f} ms a prompt, {result['calls']:,} calls), peak RSS "
            f"{result['peak_rss_mb']:.0f} MB"
            + (f" (shards' peak {result['shard_peak_rss_mb']:.0f} MB)" if result["shard_peak_rss_mb"] else "")
            + f", child processes' peak {result['children_peak_rss_mb']:.0f} MB, "
            f"store {result['store_mb']:.0f} MB; embedding figures: {result['embedding_figures']}; "
            f"CPU of all processes {cpu_s:.1f} s ({cpu_s / n * 1000:.2f} ms a prompt); "
            f"largest peaks (MB) of all processes: {largest}; "
            f"driver phases (s): {result['phases']}",
            flush=True,
        )


if __name__ == "__main__":
    main()
