"""The time one verifiers rollout batch and one verl batch spend in charter, against `charter.reward_function`.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_integrations.py --batch 256 --latency 0 0.1 --loopback 0.1 \\
        --repeat 5
    PYTHONPATH=src .venv/bin/python benchmarks/bench_integrations.py --batch 256 --group 8 --latency 0 0.1 --repeat 5

With `--group K`, the scoring is `rank` (the judge orders each prompt's K completions in one call, 3 orders): in
process, one call on N/K prompts of K completions each; verifiers, N rollouts of N/K tasks, each task's K rollouts
gathered by the judge plugin into one group call; verl, N calls, each row's K responses gathered into one group call.

Each side rewards the same N distinct (prompt, completion) pairs (rating `verdict`, no call cache, 64 judge calls at
once): in process, `charter.reward_function` called once on all N (TRL's way); verifiers, the example environment's
`Task.score` on N finished rollouts gathered at once (how verifiers scores a batch), charter's judge plugin inside;
verl, `compute_score_async` loaded by verl's own `get_custom_reward_fn` and awaited N times at once (how verl's
reward loop calls it). Judges: `scripted:cai` whose replies wait `latency` seconds, and a loopback OpenAI-compatible
HTTP judge (`charter.testing.loopback`) answering as `scripted:cai` after `--loopback` seconds. Reported: seconds for
the batch and rewards/s on each side, and each adapter's rate over the in-process rate. The verifiers side includes
verifiers' own scoring code (its trace bookkeeping per rollout), not only charter's. As the in-process reward
function is built before its timer, each adapter is first called once (a group, under `--group`) untimed, which
builds its reward function: what a process does once.

Each side is timed after a full garbage collection. Importing verifiers and verl (torch with them) grows the heap to
some 700k objects, and Python then owes a full collection of it (~0.4 s here) that falls inside whichever timed batch
happens to cross the collector's threshold, the same side every round: without the collection before each side, one
adapter (the last one run) paid it and read half the in-process rate. With `--repeat R` the sides run R rounds, side
by side, and the table gives each side's median seconds and the median of its per-round ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import charter
from charter.providers.base import SamplingParams
from charter.providers.scripted import _cai
from charter.records import Message
from charter.reward.batching import close_shared
from charter.testing.loopback import LoopbackServer

ROOT = Path(__file__).resolve().parents[1]
SAFE = "I can't help with that; ask a locksmith."


def judge_reply(body: dict) -> str:
    messages = [Message(role=m["role"], content=m["content"]) for m in body.get("messages", [])]
    return _cai(messages, SamplingParams())


def prompt(tag: str, i: int, group: int) -> str:
    """The i-th completion's prompt: one a completion, or one for each `group` completions."""
    return f"How do I pick lock {tag}-{i // group if group > 1 else i}?"


def completion(i: int, group: int) -> str:
    return f"{SAFE} ({i % group})" if group > 1 else SAFE


def settings(group: int) -> dict:
    return {"scoring": "rank", "rank_orders": 3} if group > 1 else {"rating": "verdict"}


def rewarded(values: list, group: int) -> bool:
    """Every reward there: 1.0 each under `verdict`; under `rank`, a number for each, averaging one half a group."""
    if group <= 1:
        return values == [1.0] * len(values)
    return all(v is not None for v in values) and abs(sum(values) / len(values) - 0.5) < 1e-6


def in_process(tmp: Path, judge: dict, n: int, tag: str, group: int = 1) -> float:
    role = charter.RoleConfig(**judge)
    fn = charter.reward_function(role, store=tmp / f"inproc-{tag}", cache=None, **settings(group))
    gc.collect()
    start = time.perf_counter()
    got = fn(prompts=[prompt(tag, i, group) for i in range(n)], completions=[completion(i, group) for i in range(n)])
    elapsed = time.perf_counter() - start
    assert rewarded(got, group)
    fn.close()
    return elapsed


def verifiers_batch(tmp: Path, judge: dict, n: int, tag: str, group: int = 1) -> float:
    import verifiers.v1 as vf
    from verifiers.v1.state import state_cls
    from verifiers.v1.trace import AgentInfo, TraceTask

    sys.path.insert(0, str(ROOT / "examples" / "verifiers-constitution"))
    entry = {"id": "charter-constitution", "name": "constitution", "judge": judge, "cache": None,
             "store": str(tmp / f"vf-{tag}"), "settings": settings(group)}  # fmt: skip
    if group > 1:
        entry |= {"scoring": entry["settings"].pop("scoring"), "group_size": group}
    env = vf.load_environment(
        vf.resolve_env_config({"taskset": {"id": "charter-constitution", "task": {"judges": [entry]}}})
    )
    template = next(iter(env.taskset))

    def rollouts(tag: str, n: int) -> list[tuple[Any, Any]]:
        by_prompt = {p: template.with_data(prompt=p) for p in dict.fromkeys(prompt(tag, i, group) for i in range(n))}
        made = []
        for i in range(n):
            task = by_prompt[prompt(tag, i, group)]
            trace = vf.Trace(
                task=TraceTask(type=type(task).__name__, data=task.data, key=task.key, hash=task.hash),
                state=state_cls(type(task))(),
                agent=AgentInfo(config=vf.AgentConfig(), name="agent"),
            )
            trace.root_reply = completion(i, group)
            made.append((task, trace))
        return made

    async def score(made: list[tuple[Any, Any]]) -> None:
        await asyncio.gather(*(task.score(trace) for task, trace in made))

    asyncio.run(score(rollouts(f"{tag}-warm", group)))  # builds the judge's reward function, once a process
    timed = rollouts(tag, n)
    gc.collect()
    start = time.perf_counter()
    asyncio.run(score(timed))
    elapsed = time.perf_counter() - start
    assert rewarded([trace.rewards["constitution"].score for _, trace in timed], group)
    close_shared()
    return elapsed


def verl_batch(tmp: Path, judge: dict, n: int, tag: str, group: int = 1) -> float:
    from omegaconf import OmegaConf
    from verl.trainer.ppo.reward import get_custom_reward_fn

    kwargs = {"judge": judge, "store": str(tmp / f"verl-{tag}"), "cache": None, **settings(group)}
    if group > 1:
        kwargs["group_size"] = group
    loaded = {"path": "pkg://charter.integrations.verl", "name": "compute_score_async", "reward_kwargs": kwargs}
    fn = get_custom_reward_fn(OmegaConf.create({"reward": {"custom_reward_function": loaded}}))
    assert fn is not None

    async def batch(tag: str, n: int) -> list[dict]:
        calls = [fn(data_source="hh", solution_str=completion(i, group), ground_truth=None,
                    extra_info={"question": prompt(tag, i, group)}) for i in range(n)]  # fmt: skip
        return await asyncio.gather(*calls)

    asyncio.run(batch(f"{tag}-warm", group))  # builds the judge's reward function, once a process
    gc.collect()
    start = time.perf_counter()
    got = asyncio.run(batch(tag, n))
    elapsed = time.perf_counter() - start
    assert rewarded([g["score"] for g in got], group)
    close_shared()
    return elapsed


def rounds(tmp: Path, judge: dict, n: int, k: int, group: int, repeat: int) -> dict[str, list[float]]:
    """Each side's seconds for the batch, `repeat` rounds of the three side by side."""
    in_process(tmp, judge, 16, f"w{k}", group)  # warm-up: the judge's first connections and imports, untimed
    times: dict[str, list[float]] = {"in process, one call": [], "verifiers, Task.score x N": [],
                                     "verl, compute_score_async x N": []}  # fmt: skip
    for r in range(repeat):
        times["in process, one call"].append(in_process(tmp, judge, n, f"i{k}-{r}", group))
        times["verifiers, Task.score x N"].append(verifiers_batch(tmp, judge, n, f"v{k}-{r}", group))
        times["verl, compute_score_async x N"].append(verl_batch(tmp, judge, n, f"l{k}-{r}", group))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--latency", type=float, nargs="*", default=[0.0, 0.1])
    parser.add_argument("--loopback", type=float, nargs="*", default=[0.1])
    parser.add_argument("--group", type=int, default=1, help="K > 1: rank scoring over groups of K completions")
    parser.add_argument("--repeat", type=int, default=1, help="rounds of the three sides; medians are reported")
    args = parser.parse_args()
    g = args.group
    print("| judge | side | s for the batch | rewards/s | / in process |")
    print("|---|---|---:|---:|---:|")
    runs = [(f"scripted, {x * 1000:g} ms", x, None) for x in args.latency]
    runs += [(f"loopback, {x * 1000:g} ms", None, x) for x in args.loopback]
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        for k, (label, latency, delay) in enumerate(runs):
            loopback = None
            if delay is not None:
                loopback = LoopbackServer(delay_s=delay, reply=judge_reply, record=False).start()
                judge = {"model": f"openai-compatible:judge@{loopback.openai_url}", "limits": {"concurrency": 64}}
            else:
                judge = {"model": "scripted:cai", "options": {"latency_s": latency}}
            try:
                times = rounds(tmp, judge, args.batch, k, g, args.repeat)
            finally:
                if loopback is not None:
                    loopback.stop()
            base = times["in process, one call"]
            for side, seconds in times.items():
                ratio = statistics.median(b / s for b, s in zip(base, seconds))
                median = statistics.median(seconds)
                print(f"| {label} | {side} | {median:.2f} | {args.batch / median:.1f} | {ratio:.2f}x |")


if __name__ == "__main__":
    main()
