"""Online RLAIF learning curve: GRPO on the embedded SmolLM2-135M-Instruct with charter's judge as the reward
(direct RLAIF), against a reward model distilled from the same judge (canonical RLAIF) and a constant reward.

    .venv/bin/python benchmarks/bench_online.py [--steps 30] [--arms judge distilled constant] [--out DIR]
        [--plot docs/assets/online-grpo.svg]

The judge is scripted so that its preference is known and learnable: it rates each completion 1-5 on a one-principle
constitution ("brevity") from the completion's word count (5 at 15 words or fewer, 1 at 45 or more, linear between),
through charter's rating prompt and log-probability path (the expected score over the score tokens), so every call
goes through the reward function, its cache and its reward store as a real judge's would. The policy rarely
answers briefly at first (most completions run to the 48-token cap).

Arms, each in its own subprocess, on the same prompts, seed and TRL settings:
  judge      judge_weight 1: the judge's score is the reward (direct RLAIF, d-RLAIF).
  distilled  canonical RLAIF (Lee et al. 2023): first the policy answers the training prompts 4 times each (the
             embedded model through charter's local engine, temperature 1, cut at 12, 24, 36 and 48 tokens so that
             the lengths vary), the judge rates every answer once (`charter.reward_function`), every two answers of a
             prompt whose ratings differ by more than 0.05 make a preference pair, and `charter.train_reward_model`
             trains MiniLM-L6 on them (2 epochs, 20% held out). Then GRPO with `reward_model: RM` and
             judge_weight 0: the reward model's score is the reward.
  constant   judge_weight 0 and no reward model: TRL's reward is 0 for every completion (no learning signal).
In the distilled and constant arms the judge still scores every completion into the reward store (weight 0), so
every curve is measured by the same judge; those calls measure, they do not train, and are counted apart.

Per step it records the mean judge reward (from the reward store), the completions' mean length (TRL's log), judge
calls made (counted inside the script), rewards answered from the cache or store, and the step's wall time. Prints
one JSON line per arm and a markdown table, and writes an SVG plot.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

CONSTITUTION = """\
name: brevity
version: "1"
description: Answers as short as the question allows.
rubric: >-
  1 means the response is long-winded; {scale} means it answers in at most fifteen words.
principles:
  - id: brevity
    description: The response is brief.
    critique_request: Say where the assistant's last response is longer than it needs to be.
    revision_request: Rewrite the response in at most fifteen words.
    comparison: Which response is briefer?
    rating: How brief is the response?
"""

SHORT, LONG = 15, 45
CALLS = [0]


def brevity_score(text: str, scale: int) -> float:
    """The known preference: `scale` at SHORT words or fewer, 1 at LONG or more, linear between."""
    words = len(text.split())
    share = min(max((LONG - words) / (LONG - SHORT), 0.0), 1.0)
    return 1 + (scale - 1) * share


def register_brevity_judge() -> None:
    """`scripted:brevity`: rates a rating prompt's response by brevity_score, with log-probabilities on the two
    score tokens around it so that the expected score is brevity_score exactly."""
    from charter.judge_prompt import read_rating, read_scale
    from charter.providers.scripted import register_script

    def generate(messages, params) -> str:
        CALLS[0] += 1
        last = messages[-1].content
        rated = read_rating(last)
        return "1" if rated is None else str(round(brevity_score(rated, read_scale(last))))

    def choice(messages, options) -> dict[str, float]:
        CALLS[0] += 1
        last = messages[-1].content
        rated = read_rating(last) or ""
        score = brevity_score(rated, len(options))
        low = int(score)
        high = min(low + 1, len(options))
        probs = {str(low): 1.0} if low == high else {str(low): high - score, str(high): score - low}
        return {o: max(probs.get(o, 0.0), 1e-9) for o in options}

    register_script("brevity", generate, choice)


def config(arm: str, out: Path, steps: int, lr: float, seed: int, reward_model: Path | None = None) -> dict[str, Any]:
    (out / "brevity.yaml").write_text(CONSTITUTION)
    return {
        **({"reward_model": str(reward_model), "reward_model_weight": 1.0} if reward_model else {}),
        "model": "smollm2-135m-instruct",
        "prompts": {"bundled": True, "shuffle": True, "limit": 64},
        "constitution": str(out / "brevity.yaml"),
        "scoring": "score",
        "judge": {"model": "scripted:brevity", "mode": "score", "rating": "logprobs", "scale": 5},
        "judge_weight": 1.0 if arm == "judge" else 0.0,
        "judge_monitor": arm != "judge",  # the judge rates every arm's completions: one measure for all
        "cache": str(out / f"{arm}-calls.sqlite"),  # one cache an arm: hits are repeats within it
        "output_dir": str(out / arm),
        "seed": seed,
        "device": "cpu",
        "resume": False,
        "trl": {
            "max_steps": steps,
            "num_generations": 8,
            "per_device_train_batch_size": 16,
            "max_completion_length": 48,
            "learning_rate": lr,
            "logging_steps": 1,
            "save_strategy": "no",
            "report_to": [],
        },
    }


def distill(out: Path, seed: int) -> dict[str, Any]:
    """Canonical RLAIF's first half: the policy's answers, rated once each by the judge, as pairs; a reward model
    trained on them. Returns the reward model's folder, the judge calls, the pairs and the held-out accuracy."""
    import asyncio

    from charter import reward_function, train_reward_model
    from charter.online.config import OnlineConfig
    from charter.online.train import train_prompts
    from charter.providers import SamplingParams, get_model
    from charter.records import as_dicts

    started, calls = time.perf_counter(), CALLS[0]
    prompts = [p.messages for p in train_prompts(OnlineConfig.model_validate(config("distilled", out, 1, 1e-5, seed)))]
    policy = get_model("local:smollm2-135m-instruct", role="policy")

    async def answers() -> list[tuple[int, str]]:
        found = []
        try:
            for k, cut in enumerate((12, 24, 36, 48)):
                params = SamplingParams(temperature=1.0, max_tokens=cut, seed=seed + k)
                found += [(i, c.text) for i, c in enumerate(await policy.generate(prompts, params))]
        finally:
            await policy.aclose()
        return found

    sampled = asyncio.run(answers())
    generated = time.perf_counter() - started
    rate = reward_function("scripted:brevity", str(out / "brevity.yaml"), "score", store=out / "distill-rewards",
                           cache=None, mode="score", rating="logprobs", scale=5)  # fmt: skip
    rewards = rate(prompts=[as_dicts(prompts[i]) for i, _ in sampled], completions=[t for _, t in sampled])
    rate.close()
    by_prompt: dict[int, list[tuple[str, float]]] = {}
    for (i, text), r in zip(sampled, rewards):
        if r is not None:
            by_prompt.setdefault(i, []).append((text, r))
    pairs = []
    for i, scored in by_prompt.items():
        for a in range(len(scored)):
            for b in range(a + 1, len(scored)):
                (ta, ra), (tb, rb) = scored[a], scored[b]
                if abs(ra - rb) > 0.05 and ta.strip() != tb.strip():
                    chosen, rejected = (ta, tb) if ra > rb else (tb, ta)
                    pairs.append({"prompt": as_dicts(prompts[i]), "chosen": chosen, "rejected": rejected})
    data = out / "distill-pairs.jsonl"
    data.write_text("".join(json.dumps(p) + "\n" for p in pairs))
    judged = CALLS[0] - calls
    metrics = train_reward_model({"dataset": str(data), "model": "minilm-l6", "output_dir": str(out / "rm"),
                                  "eval_fraction": 0.2, "seed": seed, "device": "cpu",
                                  "trl": {"num_train_epochs": 2, "learning_rate": 1e-4, "save_strategy": "no",
                                          "report_to": []}})  # fmt: skip
    return {"reward_model": str(out / "rm"), "answers": len(sampled), "judge_calls": judged, "pairs": len(pairs),
            "held_out_accuracy": metrics["held_out_accuracy"], "generate_seconds": round(generated, 1),
            "seconds": round(time.perf_counter() - started, 1)}  # fmt: skip


def child(arm: str, out: Path, steps: int, lr: float, seed: int) -> dict[str, Any]:
    from transformers import TrainerCallback

    from charter.online.train import train_online

    register_brevity_judge()
    distilled = distill(out, seed) if arm == "distilled" else None
    timing: list[dict[str, Any]] = []

    class StepClock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            self.start, self.calls = time.perf_counter(), CALLS[0]

        def on_step_end(self, args, state, control, **kwargs):
            timing.append(
                {
                    "step": state.global_step,
                    "seconds": round(time.perf_counter() - self.start, 2),
                    "calls": CALLS[0] - self.calls,
                }
            )

    started = time.perf_counter()
    settings = config(arm, out, steps, lr, seed, Path(distilled["reward_model"]) if distilled else None)
    metrics = train_online(settings, "grpo", callbacks=[StepClock()])
    total = time.perf_counter() - started
    judged = {s["step"]: s for s in metrics["steps"]}
    length = {int(e["step"]): e.get("completions/mean_length") for e in metrics["trl_log"] if "step" in e}
    rows = []
    for t in timing:
        s = judged.get(t["step"], {})
        rows.append(
            {
                **t,
                "reward": s.get("mean"),
                "rewards": s.get("n"),
                "failed": s.get("failed"),
                "cached": s.get("cached"),
                "mean_length": length.get(t["step"]),
            }
        )
    return {
        "arm": arm,
        "steps": rows,
        "usage": metrics["usage"],
        "failures": metrics["failures"],
        "seconds": round(total, 1),
        "train_seconds": metrics["training"]["seconds"],
        "distilled": distilled,
    }


def spawn(arm: str, args: argparse.Namespace, script: str = __file__) -> dict[str, Any]:
    """Run one arm in a process of its own (`script --child ARM ...`) and return its JSON line."""
    cmd = [sys.executable, script, "--child", arm, "--out", str(args.out), "--steps", str(args.steps)]
    cmd += ["--lr", str(args.lr), "--seed", str(args.seed)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"{arm} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_arms(args: argparse.Namespace, script: str = __file__) -> list[dict[str, Any]]:
    """Each of `args.arms` in its own process, into `args.out` or a temporary folder; their JSON lines printed."""
    with tempfile.TemporaryDirectory() as tmp:
        args.out = args.out or Path(tmp)
        args.out.mkdir(parents=True, exist_ok=True)
        results = [spawn(arm, args, script) for arm in args.arms]
    for r in results:
        print(json.dumps(r))
    return results


def mean(values: list[float | None]) -> float:
    found = [v for v in values if v is not None]
    return sum(found) / len(found) if found else float("nan")


def table(results: list[dict[str, Any]]) -> str:
    head = " | ".join(f"{r['arm']}: reward | length (tokens)" for r in results)
    lines = [f"| step | {head} |", "|---" * (1 + 2 * len(results)) + "|"]
    for rows in zip(*(r["steps"] for r in results), strict=True):
        cells = " | ".join(f"{s['reward']:.3f} | {s['mean_length']:.1f}" for s in rows)
        lines.append(f"| {rows[0]['step']} | {cells} |")
    return "\n".join(lines)


def summary(results: list[dict[str, Any]]) -> str:
    lines = [
        "| arm | reward, first 5 steps | reward, last 5 steps | judge calls that train, a step | judge calls before "
        "training | wall time a step (median) | wall time before training | failures |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        steps = r["steps"]
        first = mean([s["reward"] for s in steps[:5]])
        last = mean([s["reward"] for s in steps[-5:]])
        seconds = sorted(s["seconds"] for s in steps)[len(steps) // 2]
        training_calls = mean([s["calls"] for s in steps]) if r["arm"] == "judge" else 0.0
        before = r["distilled"] or {}
        lines.append(
            f"| {r['arm']} | {first:.3f} | {last:.3f} | {training_calls:.1f} | {before.get('judge_calls', 0)} | "
            f"{seconds:.1f} s | {before.get('seconds', 0.0):.0f} s | {r['failures']} |"
        )
    return "\n".join(lines)


def plot(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matplotlib.rcParams["svg.hashsalt"] = "charter"
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 5.5), sharex=True)
    labels = {"judge": "judge reward (direct)", "distilled": "distilled reward model (canonical)",
              "constant": "constant reward"}  # fmt: skip
    for r, style in zip(results, ("-o", "-^", "--s"), strict=False):
        steps = [s["step"] for s in r["steps"]]
        label = labels[r["arm"]]
        top.plot(steps, [s["reward"] for s in r["steps"]], style, markersize=3, label=label)
        bottom.plot(steps, [s["mean_length"] for s in r["steps"]], style, markersize=3, label=label)
    top.set_ylabel("mean judge reward (0-1)")
    top.set_title("GRPO on SmolLM2-135M-Instruct, scripted brevity judge (CPU)")
    top.legend(loc="upper left")
    bottom.set_ylabel("completion length (tokens)")
    bottom.set_xlabel("training step")
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="svg", metadata={"Date": None})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--lr", type=float, default=2e-5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--arms", nargs="+", choices=["judge", "distilled", "constant"],
                        default=["judge", "distilled", "constant"])  # fmt: skip
    parser.add_argument("--out", type=Path, default=None, help="where the runs go (default: a temporary folder)")
    parser.add_argument("--plot", type=Path, default=Path("docs/assets/online-grpo.svg"))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.out, args.steps, args.lr, args.seed)))
        return
    results = run_arms(args)
    print()
    print(summary(results))
    print()
    print(table(results))
    plot(results, args.plot)
    print(f"\nplot: {args.plot}")


if __name__ == "__main__":
    main()
