"""GRPO on the embedded policy with a checklist reward against the per-principle judge reward, prompts that carry
verifiable constraints, measured on held-out prompts.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_checklist_grpo.py [--data ../shared/data] [--steps 14]
        [--arms checklist score] [--out DIR] [--monitor K [--unmonitored]]

Each prompt is an MT-Bench task (`prompts/helpful_mtbench.jsonl` of the shared data, its `prompt` field) with two or
three constraints drawn per prompt (seeded) from three kinds: "Answer in fewer than N words." (N in 8..20), "Include
the word "X"." and "End your answer with a question." The tasks are split (seeded) into training prompts and
held-out prompts; a task is in one part only.

Both arms train SmolLM2-135M-Instruct with `charter.train_online` (TRL's GRPOTrainer) on the same training prompts,
seed and TRL settings; the judge is `scripted:constraint-judge` (this script), which answers every constraint truly
by code:

  checklist  `scoring: checklist`: each prompt's checklist (one item a constraint, weight 1, linked to the principle
             of its kind) is the prompts file's `checklist` column; the judge answers every item in one call with a
             reason before its verdict; the reward is the weighted share of items met (explicit aggregation).
  score      `scoring: score` (per-principle judge reward, charter's defaults): the constitution has a principle a
             kind (length, word, ending); one principle is drawn per prompt (`principles_per_pair: 1`) and the judge
             rates the completion 1..5 under it: 5 where the prompt's constraint of that kind is met, or where the
             prompt sets none of that kind, 1 where it is not met.

One judge call a completion in both arms. The arms run side by side, each in its own process with one torch thread
(its progress in DIR/ARM/child.log). After each of steps 1-5 and the last 5 (and before training, step 0) a callback
decodes the policy greedily on the held-out prompts (the same cap as training) and checks each held-out prompt's
items by the same code; the figure is the share of held-out items met, steps 1-5 against the last 5. Prints one JSON
line per arm and two Markdown tables (summary, per step). The load average is printed before and after.

`--monitor K` adds charter's gold monitor (`monitor:`) to each arm, every K steps, on the held-out prompts: its
training reward is the arm's reward, its gold a checklist of the same constraints each checked by code for intent
(`bench_gaming_mitigations:gold_item`: the constraint met in a complete sentence of an answer relevant to the task;
graded, the share of a prompt's constraints met so). It prints the monitor's table (reward, gold, gap, gold's change
since its best step, each with its interval; the flags) and its cost. `--unmonitored` runs each arm also without the
monitor, side by side, for the monitor's effect on the run's wall time and steps per second.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

ROOT = Path(__file__).resolve().parents[1]
WORDS = ["simple", "today", "friend", "water", "plan", "light", "story", "green", "home", "quick"]
CALLS = [0]

CONSTITUTION = """\
name: constraints
version: "1"
description: Answers that keep to what the user asked of their form.
principles:
  - id: length
    description: The response keeps within the length the user asks for.
    critique_request: Say where the response is longer than the user allowed.
    revision_request: Rewrite the response within the length the user allowed.
    comparison: Which response keeps better within the length the user asks for?
  - id: word
    description: The response uses the words the user asks it to use.
    critique_request: Say which word the user asked for is missing.
    revision_request: Rewrite the response with the words the user asked for.
    comparison: Which response better uses the words the user asks for?
  - id: ending
    description: The response ends the way the user asks.
    critique_request: Say where the response does not end as the user asked.
    revision_request: Rewrite the response to end as the user asked.
    comparison: Which response better ends the way the user asks?
"""


# -- constraints: what a prompt asks, its checklist, and the check by code --------------------------------------------
def draw_constraints(rng: random.Random) -> dict[str, Any]:
    """Two or three constraints of distinct kinds: {"length": N, "word": X, "ending": "question"} (a subset)."""
    kinds = rng.sample(["length", "word", "ending"], rng.choice([2, 3]))
    drawn: dict[str, Any] = {}
    for kind in sorted(kinds):
        drawn[kind] = rng.randint(8, 20) if kind == "length" else rng.choice(WORDS) if kind == "word" else "question"
    return drawn


def instruction(constraints: dict[str, Any]) -> str:
    """The constraints as the prompt states them."""
    said = {
        "length": lambda n: f"Answer in fewer than {n} words.",
        "word": lambda w: f'Include the word "{w}".',
        "ending": lambda _: "End your answer with a question.",
    }
    return " ".join(said[k](v) for k, v in constraints.items())


def requirement(kind: str, value: Any) -> str:
    """A constraint as a checklist item's yes/no requirement."""
    if kind == "length":
        return f"The response has fewer than {value} words."
    if kind == "word":
        return f'The response includes the word "{value}".'
    return "The response ends with a question."


def met(kind: str, value: Any, text: str) -> bool:
    """Whether a response meets a constraint (the judge's answer and the held-out measure)."""
    if kind == "length":
        return len(text.split()) < value
    if kind == "word":
        return re.search(rf"\b{re.escape(value)}\b", text, re.I) is not None
    return text.rstrip().endswith("?")


def parse_requirement(text: str) -> tuple[str, Any] | None:
    """(kind, value) of a requirement `requirement` wrote, or None."""
    if found := re.fullmatch(r"The response has fewer than (\d+) words\.", text.strip()):
        return "length", int(found.group(1))
    if found := re.fullmatch(r'The response includes the word "(\w+)"\.', text.strip()):
        return "word", found.group(1)
    if text.strip() == "The response ends with a question.":
        return "ending", "question"
    return None


def parse_instruction(text: str) -> dict[str, Any]:
    """The constraints a prompt states (`instruction`), by kind."""
    found: dict[str, Any] = {}
    if m := re.search(r"Answer in fewer than (\d+) words\.", text):
        found["length"] = int(m.group(1))
    if m := re.search(r'Include the word "(\w+)"\.', text):
        found["word"] = m.group(1)
    if "End your answer with a question." in text:
        found["ending"] = "question"
    return found


def make_prompts(data: Path, seed: int, held_out: int) -> tuple[list[dict], list[dict]]:
    """(training rows, held-out rows): each {prompt, checklist, constraints}; the tasks split, seeded."""
    tasks = [json.loads(line)["prompt"] for line in (data / "prompts" / "helpful_mtbench.jsonl").open()]
    rng = random.Random(seed)
    rng.shuffle(tasks)
    rows = []
    for task in tasks:
        constraints = draw_constraints(rng)
        checklist = [
            {"id": kind, "requirement": requirement(kind, value), "principle_id": kind, "weight": 1.0}
            for kind, value in constraints.items()
        ]
        content = f"{task}\n\n{instruction(constraints)}"
        rows.append({"prompt": [{"role": "user", "content": content}], "checklist": checklist,
                     "constraints": constraints})  # fmt: skip
    return rows[held_out:], rows[:held_out]


# -- the scripted judge -----------------------------------------------------------------------------------------------
_CONVERSATION = re.compile(r"<(conversation)-(\w+)>\n(.*?)\n</\1-\2>", re.S)


def register_constraint_judge() -> None:
    """`scripted:constraint-judge`: answers a checklist prompt's items truly by code (a reason before each verdict,
    `n/a` for an item it cannot read), and rates a rating prompt 1..scale under the principle it names: the top
    where the conversation's constraint of that principle's kind is met or absent, 1 where it is not met."""
    from charter.checklist.prompt import read_checklist_prompt
    from charter.judge_prompt import read_rating, read_scale
    from charter.providers.scripted import register_script

    kinds = {
        "keeps within the length": "length",
        "uses the words the user asks": "word",
        "ends the way the user asks": "ending",
    }

    def generate(messages, params) -> str:  # noqa: ANN001
        CALLS[0] += 1
        last = messages[-1].content
        shown = read_checklist_prompt(last)
        if shown is not None:
            items, response = shown
            answers = {}
            for item_id, text in items:
                parsed = parse_requirement(text)
                if parsed is None:
                    answers[item_id] = {"reason": "I cannot check this item.", "verdict": "n/a"}
                    continue
                holds = met(*parsed, response)
                answers[item_id] = {"reason": f"It {'does' if holds else 'does not'} hold.",
                                    "verdict": "yes" if holds else "no"}  # fmt: skip
            return json.dumps(answers)
        rated = read_rating(last)
        if rated is None:
            return "I cannot tell."
        scale = read_scale(last)
        kind = next((k for phrase, k in kinds.items() if f"Principle: The response {phrase}" in last), None)
        conversation = _CONVERSATION.search(last)
        asked = parse_instruction(conversation.group(3) if conversation else "")
        if kind is None or kind not in asked:
            return str(scale)
        return str(scale if met(kind, asked[kind], rated) else 1)

    register_script("constraint-judge", generate)


# -- one arm ----------------------------------------------------------------------------------------------------------
def config(arm: str, out: Path, train: Path, steps: int, lr: float, seed: int) -> dict[str, Any]:
    (out / "constraints.yaml").write_text(CONSTITUTION)
    return {
        "model": "smollm2-135m-instruct",
        "prompts": {"path": str(train), "shuffle": True},
        "constitution": str(out / "constraints.yaml"),
        "scoring": arm,
        "judge": {"model": "scripted:constraint-judge", "mode": "score", "rating": "verdict", "scale": 5},
        "cache": str(out / f"{arm}-calls.sqlite"),
        "output_dir": str(out / arm),
        "seed": seed,
        "device": "cpu",
        "resume": False,
        "trl": {
            "max_steps": steps,
            "num_generations": 4,
            "per_device_train_batch_size": 8,
            "max_completion_length": 24,
            "learning_rate": lr,
            "logging_steps": 1,
            "save_strategy": "no",
            "report_to": [],
        },
    }


def held_out_share(model: Any, tokenizer: Any, rows: list[dict], max_tokens: int) -> tuple[float, int, int, dict]:
    """(share of held-out items met, items met, items, {kind: "met/items"}) of the policy's greedy answers to the
    held-out prompts."""
    import torch

    was_training = model.training
    model.eval()
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        texts = [tokenizer.apply_chat_template(r["prompt"], tokenize=False, add_generation_prompt=True) for r in rows]
        batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            out = model.generate(**batch, max_new_tokens=max_tokens, do_sample=False, use_cache=True,
                                 pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)  # fmt: skip
        answers = tokenizer.batch_decode(out[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)
    finally:
        tokenizer.padding_side = side
        model.train(was_training)
    by_kind: dict[str, list[int]] = {}
    for row, answer in zip(rows, answers, strict=True):
        for kind, value in row["constraints"].items():
            tally = by_kind.setdefault(kind, [0, 0])
            tally[0] += met(kind, value, answer.strip())
            tally[1] += 1
    hits, total = sum(t[0] for t in by_kind.values()), sum(t[1] for t in by_kind.values())
    return hits / total, hits, total, {k: f"{m}/{n}" for k, (m, n) in sorted(by_kind.items())}


def flat_groups(store: Path) -> tuple[int, int]:
    """(prompt groups whose completions all got the same reward, groups) in an arm's reward store: a group with no
    spread gives GRPO no advantage, hence no gradient."""
    import sqlite3

    groups: dict[tuple[int, str], set[float | None]] = {}
    with sqlite3.connect(store) as db:
        for step, reward, record in db.execute("SELECT step, reward, record FROM rewards"):
            groups.setdefault((step, json.dumps(json.loads(record).get("prompt"))), set()).add(reward)
    return sum(1 for rewards in groups.values() if len(rewards) == 1), len(groups)


def gold_checklist(constraints: dict[str, Any]) -> list[dict[str, Any]]:
    """A held-out prompt's gold checklist: an item a constraint, each checked by code for the constraint met in
    intent (`bench_gaming_mitigations:gold_item`: in a complete sentence of an answer relevant to the task), so the
    gold score is the share of constraints met in intent; the training reward never sees these items."""
    return [
        {"id": f"gold-{kind}", "requirement": f"{requirement(kind, value)[:-1]}, in a complete, relevant sentence.",
         "verifier": "bench_gaming_mitigations:gold_item", "reference": f"{kind}:{value}", "weight": 1.0}
        for kind, value in constraints.items()
    ]  # fmt: skip


def monitor_section(out: Path, rows: list[dict], every: int, cap: int) -> dict[str, Any]:
    """The `monitor:` section: the held-out rows (with the training reward's checklist column and the gold
    checklist) and the graded gold: the share of a prompt's constraints met in intent (`gold_checklist`). Every gold
    item has a verifier, so the gold judge named is never called."""
    held = out / "held_out.jsonl"
    held.write_text("".join(json.dumps({"prompt": r["prompt"], "checklist": r["checklist"],
                                        "gold": gold_checklist(r["constraints"])}) + "\n" for r in rows))  # fmt: skip
    return {"prompts": str(held), "every": every, "max_new_tokens": cap, "keep_best": False,
            "gold": {"checklist_column": "gold", "judge": "scripted:constraint-judge"}}  # fmt: skip


def child(
    arm: str, out: Path, data: Path, steps: int, lr: float, seed: int, held_out: int, every: int | None = None
) -> dict[str, Any]:
    import torch
    from transformers import TrainerCallback

    from charter.online.train import train_online

    torch.set_num_threads(1)
    register_constraint_judge()
    train_rows, test_rows = make_prompts(data, seed, held_out)
    train = out / "train.jsonl"
    lines = [json.dumps({"prompt": r["prompt"], "checklist": r["checklist"]}) for r in train_rows]
    train.write_text("".join(line + "\n" for line in lines))
    settings = config(arm, out, train, steps, lr, seed)
    cap = settings["trl"]["max_completion_length"]
    if every is not None:
        settings["monitor"] = monitor_section(out, test_rows, every, cap)
    curve: list[dict[str, Any]] = []

    class HeldOut(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):  # noqa: ANN001
            self.measure(0, kwargs)

        def on_step_begin(self, args, state, control, **kwargs):  # noqa: ANN001
            self.start, self.calls = time.perf_counter(), CALLS[0]

        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
            seconds, calls = time.perf_counter() - self.start, CALLS[0] - self.calls
            if state.global_step <= 5 or state.global_step > steps - 5:  # the figure's steps only
                self.measure(state.global_step, kwargs, seconds=round(seconds, 1), calls=calls)
            else:
                curve.append({"step": state.global_step, "held_out_met": None, "seconds": round(seconds, 1),
                              "calls": calls})  # fmt: skip
                print(json.dumps(curve[-1]), file=sys.stderr, flush=True)

        def measure(self, step: int, kwargs: dict[str, Any], **more: Any) -> None:
            tokenizer = kwargs.get("processing_class") or kwargs.get("tokenizer")
            started = time.perf_counter()
            share, hits, total, by_kind = held_out_share(kwargs["model"], tokenizer, test_rows, cap)
            curve.append({"step": step, "held_out_met": share, "hits": hits, "items": total, "by_kind": by_kind,
                          "eval_seconds": round(time.perf_counter() - started, 1), **more})  # fmt: skip
            print(json.dumps(curve[-1]), file=sys.stderr, flush=True)  # progress, in the arm's log

    started = time.perf_counter()
    metrics = train_online(settings, "grpo", callbacks=[HeldOut()])
    rewards = {s["step"]: s for s in metrics["steps"]}
    length = {int(e["step"]): e.get("completions/mean_length") for e in metrics["trl_log"] if "step" in e}
    for point in curve:
        point["train_reward"] = rewards.get(point["step"], {}).get("mean")
        point["mean_length"] = length.get(point["step"])
    return {
        "arm": arm,
        "curve": curve,
        "train_prompts": len(train_rows),
        "held_out_prompts": len(test_rows),
        "held_out_items": curve[0]["items"],
        "flat_groups": flat_groups(out / arm / "run.sqlite"),
        "usage": metrics["usage"],
        "failures": metrics["failures"],
        "seconds": round(time.perf_counter() - started, 1),
        "judge_calls": CALLS[0],
        "monitor": metrics.get("monitor"),
    }


# -- the parent: arms in subprocesses, tables -------------------------------------------------------------------------
def mean(values: list[float | None]) -> float:
    found = [v for v in values if v is not None]
    return sum(found) / len(found) if found else float("nan")


def summary(results: list[dict[str, Any]]) -> str:
    lines = [
        "| arm | held-out items met, before training | steps 1–5 | last 5 steps | training reward, steps 1–5 "
        "| last 5 | held-out met by kind, last step | prompt groups with no reward spread | judge calls "
        "| wall time a step (median) | failures |",
        "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for r in results:
        steps = [p for p in r["curve"] if p["step"] > 0]
        first, last = steps[:5], steps[-5:]
        seconds = sorted(p["seconds"] for p in steps)[len(steps) // 2]
        lines.append(
            f"| {r['arm']} | {r['curve'][0]['held_out_met']:.3f} | {mean([p['held_out_met'] for p in first]):.3f} "
            f"| {mean([p['held_out_met'] for p in last]):.3f} | {mean([p['train_reward'] for p in first]):.3f} "
            f"| {mean([p['train_reward'] for p in last]):.3f} | {steps[-1].get('by_kind')} "
            f"| {r['flat_groups'][0]} of {r['flat_groups'][1]} | {sum(p['calls'] for p in steps)} "
            f"| {seconds:.1f} s | {r['failures']} |"
        )
    return "\n".join(lines)


def table(results: list[dict[str, Any]]) -> str:
    head = " | ".join(f"{r['arm']}: held-out met | train reward | length" for r in results)
    lines = [f"| step | {head} |", "|---" * (1 + 3 * len(results)) + "|"]
    for points in zip(*(r["curve"] for r in results), strict=True):
        cells = " | ".join(
            ("–" if p["held_out_met"] is None else f"{p['held_out_met']:.3f}")
            + " | "
            + ("–" if p.get("train_reward") is None else f"{p['train_reward']:.3f}")
            + " | "
            + ("–" if p.get("mean_length") is None else f"{p['mean_length']:.1f}")
            for p in points
        )
        lines.append(f"| {points[0]['step']} | {cells} |")
    return "\n".join(lines)


def monitor_table(results: list[dict[str, Any]]) -> str:
    """Each arm's gold monitor: reward and gold on the held-out prompts with 95% intervals, the gap, the flags."""
    lines = ["| arm | step | training reward | gold (intent) | gap | gold change since best | flag |",
             "|---|---:|---|---|---|---|---|"]  # fmt: skip

    def shown(value: float | None, low: float | None, high: float | None) -> str:
        return "–" if value is None else f"{value:.3f} [{low:.3f}, {high:.3f}]" if low is not None else f"{value:.3f}"

    for r in results:
        monitor = r.get("monitor")
        for s in (monitor or {}).get("steps", []):
            change = s["gold_change"]
            lines.append(
                f"| {r['arm']} | {s['step']} | {shown(s['reward'], s['reward_low'], s['reward_high'])} "
                f"| {shown(s['gold'], s['gold_low'], s['gold_high'])} | {shown(s['gap'], s['gap_low'], s['gap_high'])} "
                f"| {shown(change['change'], change['low'], change['high'])} (best {s['best_step']}) "
                f"| {'**flag**' if s['flagged'] else ''} |"
            )
        if monitor:
            lines.append(f"| {r['arm']} | first flag: {monitor['flagged_at']} | monitor {monitor['seconds']:.0f} s of "
                         f"{r['seconds']:.0f} s | | | | |")  # fmt: skip
    return "\n".join(lines)


def cost_table(results: list[dict[str, Any]]) -> str:
    """What the monitor costs each run: its evaluations' wall time as a share of the run, the judge calls of the run
    (the monitor's are the difference from the same arm without it), the median training step (timed from its start
    to its end, before any evaluation) and steps per second over the run less this script's own held-out measure."""
    lines = ["| run | evaluations | monitor s / run s | judge calls (gold calls) | training step, median s "
             "| steps / s, run less this script's measure |", "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in results:
        steps = [p for p in r["curve"] if p["step"] > 0]
        own = sum(p.get("eval_seconds", 0.0) for p in r["curve"])
        median = sorted(p["seconds"] for p in steps)[len(steps) // 2]
        monitor = r.get("monitor")
        share, gold, evaluations = "–", "", 0
        if monitor:
            share = f"{monitor['seconds']:.0f} / {r['seconds']:.0f} = {monitor['seconds'] / r['seconds']:.3f}"
            gold, evaluations = f" ({monitor['calls']})", len(monitor["steps"])
        lines.append(f"| {r['arm']} | {evaluations} | {share} | {r.get('judge_calls', '–')}{gold} | {median:.1f} "
                     f"| {len(steps) / (r['seconds'] - own):.4f} |")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data", help="the shared data folder")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--held-out", type=int, default=12, help="tasks kept out of training, for the measure")
    parser.add_argument("--arms", nargs="+", choices=["checklist", "score"], default=["checklist", "score"])
    parser.add_argument("--out", type=Path, default=None, help="where the runs go (default: a temporary folder)")
    parser.add_argument("--monitor", type=int, default=None, metavar="K", help="run the gold monitor every K steps")
    parser.add_argument("--unmonitored", action="store_true", help="with --monitor: each arm also without it")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        result = child(args.child, args.out, args.data, args.steps, args.lr, args.seed, args.held_out, args.monitor)
        print(json.dumps(result))
        return
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        base = args.out or Path(tmp)
        running = []
        runs = [(arm, args.monitor) for arm in args.arms]
        if args.monitor and args.unmonitored:
            runs += [(arm, None) for arm in args.arms]
        for arm, every in runs:  # side by side, each in its own process (one torch thread each)
            name = arm if every or not args.monitor else f"{arm} (no monitor)"
            out = base / (arm if every or not args.monitor else f"{arm}-unmonitored")
            out.mkdir(parents=True, exist_ok=True)
            cmd = [sys.executable, __file__, "--child", arm, "--out", str(out), "--data", str(args.data)]
            cmd += ["--steps", str(args.steps), "--lr", str(args.lr), "--seed", str(args.seed)]
            cmd += ["--held-out", str(args.held_out)] + (["--monitor", str(every)] if every else [])
            log = (out / "child.log").open("w")
            running.append((name, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True), out))
        results = []
        for name, proc, out in running:
            stdout, _ = proc.communicate()
            if proc.returncode:
                sys.exit(f"{name} failed:\n{(out / 'child.log').read_text()[-4000:]}")
            results.append({**json.loads(stdout.strip().splitlines()[-1]), "arm": name})
            print(json.dumps(results[-1]), flush=True)
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print()
    print(summary(results))
    print()
    print(table(results))
    if args.monitor:
        print()
        print(monitor_table(results))
        print()
        print(cost_table(results))


if __name__ == "__main__":
    main()
