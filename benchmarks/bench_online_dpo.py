"""Online DPO learning curve: `charter train online-dpo` on the embedded SmolLM2-135M-Instruct, a pairwise judge
whose preference is known and learnable against a constant judge, with the masked shares per step.

    .venv/bin/python benchmarks/bench_online_dpo.py [--steps 30] [--arms brevity constant] [--out DIR]

The learnable judge (`scripted:briefer`) compares two responses through charter's comparison prompt and the
log-probability path: P(A better) = sigmoid((words(B) - words(A)) / 4), so the briefer response wins and two of
about the same length are close calls; on one pair in ten (by a hash of the two texts, the same in both orders) it
answers nothing readable, a failed judgment. Both orders are asked; `min_confidence` is 0.1 (|P - 0.5| below it:
undecided). The constant judge (`scripted:indifferent`) answers P(A better) = 0.5 to every pair: no pair is ever
decided, so every pair must be masked and the policy must not move.

Measured per step: the pairs, those trained on and those masked (failed, undecided), from the run's metrics; the
mean brevity of the step's completions, 0..1 (1 at 15 words or fewer, 0 at 45 or more, linear between: the same
scale as benchmarks/bench_online.py), from the reward store's pairs; the step's wall time and judge calls.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TQDM_DISABLE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_online import CONSTITUTION, LONG, SHORT, mean, run_arms  # noqa: E402 - the brevity task, one arm a process

CALLS = [0]
JUDGES = {"brevity": "scripted:briefer", "constant": "scripted:indifferent"}


def brevity(text: str) -> float:
    """0..1: 1 at SHORT words or fewer, 0 at LONG or more, linear between."""
    return min(max((LONG - len(text.split())) / (LONG - SHORT), 0.0), 1.0)


def _fails(a: str, b: str) -> bool:
    """One pair in ten fails, the same in both orders."""
    first, second = sorted((a, b))
    return hashlib.sha256(f"{first}\x00{second}".encode()).digest()[0] < 26


def register_judges() -> None:
    from charter.judge_prompt import read_comparison
    from charter.providers.scripted import register_script

    def p_first(messages: Any) -> float | None:
        a, b = read_comparison(messages[-1].content) or ("", "")
        if _fails(a, b):
            return None
        return 1 / (1 + math.exp(-(len(b.split()) - len(a.split())) / 4))

    def verdict(messages: Any, params: Any) -> str:
        CALLS[0] += 1
        p = p_first(messages)
        return "I cannot compare these." if p is None else ("A" if p >= 0.5 else "B")

    def choice(messages: Any, options: Any) -> dict[str, float]:
        CALLS[0] += 1
        p = p_first(messages)
        if p is None:  # nothing readable: a failed judgment
            from charter.errors import JudgeParseError

            raise JudgeParseError("neither option among the answer's tokens")
        return {o: (p if o == options[0] else 1 - p) for o in options}

    def indifferent(messages: Any, options: Any) -> dict[str, float]:
        CALLS[0] += 1
        return {o: 0.5 for o in options}

    register_script("briefer", verdict, choice)
    register_script("indifferent", lambda messages, params: "A", indifferent)


def config(arm: str, out: Path, steps: int, lr: float, seed: int) -> dict[str, Any]:
    (out / "brevity.yaml").write_text(CONSTITUTION)
    return {
        "model": "smollm2-135m-instruct",
        "prompts": {"bundled": True, "shuffle": True, "limit": 64},
        "constitution": str(out / "brevity.yaml"),
        "judge": {"model": JUDGES[arm], "mode": "logprobs", "orders": "both", "max_retries": 0},
        "min_confidence": 0.1,
        "max_failures": 0.5,
        "cache": str(out / f"{arm}-calls.sqlite"),
        "output_dir": str(out / arm),
        "seed": seed,
        "device": "cpu",
        "resume": False,
        "trl": {"max_steps": steps, "per_device_train_batch_size": 8, "max_new_tokens": 48, "temperature": 1.0,
                "learning_rate": lr, "beta": 0.1, "logging_steps": 1, "save_strategy": "no", "report_to": []},
    }  # fmt: skip


def child(arm: str, out: Path, steps: int, lr: float, seed: int) -> dict[str, Any]:
    from transformers import TrainerCallback

    from charter.online.dpo import train_online_dpo
    from charter.runs.rewards import rewards
    from charter.runs.store import RunStore

    register_judges()
    timing: list[dict[str, Any]] = []

    class StepClock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):  # noqa: ANN001, ANN003, ANN201
            self.start, self.calls = time.perf_counter(), CALLS[0]

        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001, ANN003, ANN201
            timing.append({"step": state.global_step, "seconds": round(time.perf_counter() - self.start, 2),
                           "calls": CALLS[0] - self.calls})  # fmt: skip

    started = time.perf_counter()
    metrics = train_online_dpo(config(arm, out, steps, lr, seed), callbacks=[StepClock()])
    total = time.perf_counter() - started
    texts: dict[int, list[str]] = {}
    for r in rewards(RunStore(out / arm)):
        texts.setdefault(r.step or 0, []).extend([r.completion, r.reference or ""])
    by_step = {s["step"]: s for s in metrics["steps"]}
    rows = []
    for t in timing:
        s = by_step.get(t["step"], {})
        done = texts.get(t["step"], [])
        rows.append({**t, "pairs": s.get("pairs", 0), "trained": s.get("trained", 0), "failed": s.get("failed", 0),
                     "undecided": s.get("undecided", 0),
                     "brevity": sum(map(brevity, done)) / len(done) if done else None,
                     "words": sum(len(x.split()) for x in done) / len(done) if done else None})  # fmt: skip
    return {"arm": arm, "steps": rows, "trained": metrics["trained"], "masked": metrics["masked"],
            "pairs": metrics["pairs"], "seconds": round(total, 1)}  # fmt: skip


def summary(results: list[dict[str, Any]]) -> str:
    lines = ["| arm | brevity, first 5 steps | brevity, last 5 steps | words, first 5 → last 5 | pairs | trained | "
             "masked failed | masked undecided | judge calls a step | wall time a step (median) |",
             "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in results:
        steps = r["steps"]
        first, last = mean([s["brevity"] for s in steps[:5]]), mean([s["brevity"] for s in steps[-5:]])
        words = f"{mean([s['words'] for s in steps[:5]]):.1f} → {mean([s['words'] for s in steps[-5:]]):.1f}"
        seconds = sorted(s["seconds"] for s in steps)[len(steps) // 2]
        n = r["pairs"]
        lines.append(f"| {r['arm']} | {first:.3f} | {last:.3f} | {words} | {n} | {r['trained']} "
                     f"({r['trained'] / n:.0%}) | {r['masked']['failed']} ({r['masked']['failed'] / n:.0%}) | "
                     f"{r['masked']['undecided']} ({r['masked']['undecided'] / n:.0%}) | "
                     f"{mean([s['calls'] for s in steps]):.1f} | {seconds:.1f} s |")  # fmt: skip
    return "\n".join(lines)


def table(results: list[dict[str, Any]]) -> str:
    head = " | ".join(f"{r['arm']}: brevity | trained / failed / undecided" for r in results)
    lines = [f"| step | {head} |", "|---" * (1 + 2 * len(results)) + "|"]
    for rows in zip(*(r["steps"] for r in results), strict=True):
        cells = " | ".join(f"{s['brevity']:.3f} | {s['trained']} / {s['failed']} / {s['undecided']}" for s in rows)
        lines.append(f"| {rows[0]['step']} | {cells} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--lr", type=float, default=1e-5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--arms", nargs="+", choices=list(JUDGES), default=list(JUDGES))
    parser.add_argument("--out", type=Path, default=None, help="where the runs go (default: a temporary folder)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.out, args.steps, args.lr, args.seed)))
        return
    results = run_arms(args, __file__)
    print("\n" + summary(results) + "\n\n" + table(results))


if __name__ == "__main__":
    main()
