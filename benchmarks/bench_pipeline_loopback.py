"""The whole pipeline (critique + judge, store writes included) against a loopback OpenAI-compatible
server that answers after a fixed delay, side by side with a bare asyncio.gather + Semaphore loop
over the same openai SDK.

    .venv/bin/python benchmarks/bench_pipeline.py --part loopback
    .venv/bin/python benchmarks/bench_pipeline.py --part loopback-diversity --repeat 3

The server runs in its own process, so the client's CPU is measured alone. `loopback-diversity` is the cost of the
dataset's diversity figures on a run: 400 prompts at 500 ms, one critique round, both-order judge, concurrency 64,
end to end (the run's own process, the MiniLM load and embeddings included), with the default
`diversity.embedding_model` and with it null, beside the bare loop over the same 2,000 calls, each run in a fresh
process, the three in turn `--repeat` times; each run with the defaults says whether its embedding figures were
measured (or why not: past `diversity.embed_share`, say), read from the run's stored figures. `--baseline SRC` adds a
fourth arm in the same turn: the run with the defaults from another source tree (`SRC` on the child's PYTHONPATH, a
`src` folder of an earlier commit, say), so that a change is measured side by side with what it changes.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONCURRENCY = 64
REQUESTS_PER_PROMPT = 5  # initial answer, critique, revision, judge in two orders


def start_server(delay: float) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "charter.testing.loopback", "--delay", str(delay)], stdout=subprocess.PIPE, text=True
    )
    port = int(proc.stdout.readline())
    return proc, port


async def bare_loop(base_url: str, n: int) -> float:
    """n chat completions through AsyncOpenAI with a Semaphore; returns requests/s."""
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=base_url, api_key="EMPTY", max_retries=0)
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(i: int) -> None:
        async with gate:
            await client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": f"hello {i}"}], max_tokens=16
            )

    start = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    rate = n / (time.perf_counter() - start)
    await client.close()
    return rate


def pipeline(
    base_url: str, n_prompts: int, workdir: Path, diversity: dict | None = None, seen: dict | None = None
) -> float:
    """The pipeline over n prompts; returns model requests/s (cache cold). `diversity`: the run's `diversity`
    section (None: the defaults). `seen`, where given, gets the run directory (`run_dir`)."""
    from charter.pipeline.api import runner_for
    from charter.pipeline.config import RunConfig

    prompts = workdir / f"p{n_prompts}.jsonl"
    prompts.write_text(
        "".join(json.dumps({"prompt": f"Prompt {i}: explain thing {i}."}) + "\n" for i in range(n_prompts))
    )
    role = {
        "model": f"openai-compatible:m@{base_url}",
        "params": {"max_tokens": 16},
        "limits": {"concurrency": CONCURRENCY, "timeout_s": 30},
    }
    config = RunConfig.model_validate(
        {
            "name": "loop",
            "output_dir": str(workdir / f"run-{time.time_ns()}"),
            "cache": str(workdir / f"cache-{time.time_ns()}.sqlite"),
            "prompts": {"path": str(prompts)},
            "policy": role,
            "judge": role,
            "concurrency": 2 * CONCURRENCY,
            "report": False,
            "critique": {"rounds": 1, "few_shot": False},
            **({"diversity": diversity} if diversity is not None else {}),
        }
    )
    start = time.perf_counter()
    asyncio.run(runner_for(config).arun())
    rate = n_prompts * REQUESTS_PER_PROMPT / (time.perf_counter() - start)
    if seen is not None:
        seen["run_dir"] = config.run_dir()
    return rate


def embedding_figures(run_dir: Path) -> str:
    """Whether the run's stored diversity figures include the embedding ones: "measured" (every field's Vendi
    score), else the first field's note saying why not (no model; past `diversity.embed_share`; ...)."""
    from charter.preference.diversity import stored_diversity
    from charter.runs.store import open_store

    with open_store(run_dir, read_only=True) as store:
        report = stored_diversity(store)
    if report is None:
        return "no figures stored"
    fields = report.fields.values()
    if fields and all(f.vendi.value is not None for f in fields):
        return "measured"
    return next((f.vendi.note for f in fields if f.vendi.value is None and f.vendi.note), "not measured")


def loopback(workdir: Path | None = None) -> None:
    workdir = workdir or Path(tempfile.mkdtemp())
    for delay, n_prompts in ((0.5, 800), (0.1, 1000)):
        proc, port = start_server(delay)
        try:
            base_url = f"http://127.0.0.1:{port}/v1"
            n = n_prompts * REQUESTS_PER_PROMPT
            bare = asyncio.run(bare_loop(base_url, n))
            ours = pipeline(base_url, n_prompts, workdir)
        finally:
            proc.terminate()
            proc.wait()
        ideal = CONCURRENCY / delay
        print(
            f"loopback delay {delay * 1000:.0f} ms, concurrency {CONCURRENCY}, {n} requests: "
            f"ideal {ideal:.0f} req/s | bare loop {bare:.1f} req/s ({bare / ideal:.0%} of ideal) | "
            f"pipeline {ours:.1f} req/s ({ours / ideal:.0%} of ideal, {ours / bare:.2f}x bare)"
        )


def _fresh_pipeline(base_url: str, n_prompts: int, workdir: Path, embedding: str, src: Path | None = None) -> dict:
    """One run in a fresh process (nothing loaded before it: the model load is the run's); its requests/s, end to
    end from the runner's start to its return, and whether its embedding figures were measured. `src`: charter's
    source tree for the child (None: this one's)."""
    env = {**os.environ, "PYTHONPATH": str(src)} if src is not None else None
    done = subprocess.run(
        [sys.executable, __file__, "--child", base_url, str(n_prompts), str(workdir), embedding],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def _child(base_url: str, n_prompts: int, workdir: Path, embedding: str) -> None:
    diversity = {"embedding_model": None if embedding == "none" else embedding}
    seen: dict = {}
    rate = pipeline(base_url, n_prompts, workdir, diversity, seen)
    print(json.dumps({"rate": rate, "embeddings": embedding_figures(seen["run_dir"])}))


def diversity_cost(
    workdir: Path | None = None,
    repeats: int = 3,
    n_prompts: int = 400,
    delay: float = 0.5,
    baseline: Path | None = None,
) -> dict:
    """The diversity figures' cost on a run: the bare loop, the run with its defaults (MiniLM embeddings) and the
    run with `diversity.embedding_model: null`, in turn, `repeats` times against one server; with `baseline`, the
    run with its defaults from that source tree too, in the same turn."""
    workdir = workdir or Path(tempfile.mkdtemp())
    proc, port = start_server(delay)
    rates: dict[str, list[float]] = {"bare": [], "defaults": [], "no embeddings": [], "baseline": []}
    measured: list[str] = []  # per run with the defaults: whether its embedding figures were measured, or why not
    try:
        base_url = f"http://127.0.0.1:{port}/v1"
        for _ in range(repeats):
            rates["bare"].append(asyncio.run(bare_loop(base_url, n_prompts * REQUESTS_PER_PROMPT)))
            defaults = _fresh_pipeline(base_url, n_prompts, workdir, "minilm-l6")
            rates["defaults"].append(defaults["rate"])
            measured.append(defaults["embeddings"])
            rates["no embeddings"].append(_fresh_pipeline(base_url, n_prompts, workdir, "none")["rate"])
            if baseline is not None:
                rates["baseline"].append(_fresh_pipeline(base_url, n_prompts, workdir, "minilm-l6", baseline)["rate"])
                print(
                    f"baseline ({baseline}) defaults {rates['baseline'][-1]:.1f} req/s "
                    f"({rates['baseline'][-1] / rates['bare'][-1]:.2f}x bare)",
                    flush=True,
                )
            print(
                f"bare {rates['bare'][-1]:.1f} req/s | defaults {rates['defaults'][-1]:.1f} "
                f"({rates['defaults'][-1] / rates['bare'][-1]:.2f}x; embedding figures: {measured[-1]}) "
                f"| no embeddings {rates['no embeddings'][-1]:.1f} "
                f"({rates['no embeddings'][-1] / rates['bare'][-1]:.2f}x) | load {os.getloadavg()[0]:.1f}",
                flush=True,
            )
    finally:
        proc.terminate()
        proc.wait()
    ratios = [d / b for d, b in zip(rates["defaults"], rates["bare"], strict=True)]
    print(f"defaults against the bare loop, side by side: {', '.join(f'{r:.2f}x' for r in ratios)}")
    if baseline is not None:
        before = [d / b for d, b in zip(rates["baseline"], rates["bare"], strict=True)]
        print(f"the baseline's defaults against the bare loop: {', '.join(f'{r:.2f}x' for r in before)}")
    return {"rates": rates, "ratios": ratios, "embedding_figures": measured}


if __name__ == "__main__":
    os.environ.setdefault("OPENAI_API_KEY", "EMPTY")
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child(sys.argv[2], int(sys.argv[3]), Path(sys.argv[4]), sys.argv[5])
    else:
        loopback()
