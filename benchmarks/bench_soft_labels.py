"""Soft labels in offline DPO under label noise: hard labels against global smoothing against per-row soft labels.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_soft_labels.py [--noise 0.2 0.4] [--seeds 0 1 ... 9]
        [--arms hard cdpo-global cdpo-per_row robust-global robust-per_row] [--pairs 96] [--steps 48]

The truth is known: tests/support/tiny_models.py `preference_rows` pairs a polite answer (truly better) with a rude
one. Each training row gets a judge confidence p (the judge's P(stated chosen is better)) drawn as
p = 0.5 + 0.5 * u, u ~ Beta(2 * (1 - 2 * noise), 2 * 2 * noise), so that the mean of 1 - p is `noise`; the row's
label is then flipped (polite becomes rejected) with chance 1 - p. The judge is calibrated by construction (a row
shown with confidence p is right with chance p), and flipped rows get lower confidence on average than clean ones.
Training topics and held-out topics are disjoint.

Each arm trains the tiny random Llama of the test suite (2 layers, hidden 32, word-level tokenizer) through
`charter.train_dpo` on the same rows, seed and steps:

- hard: `loss_type: sigmoid`, `label_smoothing: 0` (plain DPO; the robust loss at 0 is the same loss);
- cdpo-global / cdpo-per_row: `loss_type: sigmoid` (conservative DPO) with `label_smoothing: judge` (1 - mean p of
  the training rows, the mean noise the judge expects) or `per_row` (each row's own 1 - p);
- robust-global / robust-per_row: `loss_type: robust` with the same two smoothings.

Measured after training: on held-out pairs with their TRUE labels (every held-out topic with every polite and every
rude answer), the share where the implicit reward beta * (log pi(y|x) - log pi_ref(y|x)) of the polite answer is
above the rude one's, with its exact (Clopper-Pearson) interval, and the mean implicit-reward margin. Prints one JSON
line per run and a markdown table per noise level.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

#: arm: (loss_type, label_smoothing)
ARMS = {
    "hard": ("sigmoid", 0.0),
    "cdpo-global": ("sigmoid", "judge"),
    "cdpo-per_row": ("sigmoid", "per_row"),
    "robust-global": ("robust", "judge"),
    "robust-per_row": ("robust", "per_row"),
}
TRAIN_TOPICS = 12  # the first 12 of tiny_models.TOPICS train; the other 4 are held out


def noisy_rows(n: int, noise: float, seed: int) -> tuple[list[dict[str, Any]], float]:
    """`n` training pairs whose labels a calibrated judge with mean error `noise` gave; the realised flip share."""
    from tests.support.tiny_models import TOPICS, preference_rows

    rng = random.Random(1000 + seed)
    rows, flipped = [], 0
    for row in preference_rows(n, seed=seed, topics=TOPICS[:TRAIN_TOPICS]):
        p = 0.5 + 0.5 * rng.betavariate(2 * (1 - 2 * noise), 2 * 2 * noise)
        if rng.random() > p:
            row["chosen"], row["rejected"] = row["rejected"], row["chosen"]
            flipped += 1
        row["p_chosen"] = round(p, 4)
        rows.append(row)
    return rows, flipped / n


def held_out_pairs() -> list[tuple[str, str, str]]:
    """(prompt, polite, rude) for every held-out topic with every polite and rude answer."""
    from tests.support.tiny_models import POLITE, RUDE, TOPICS

    return [
        (f"Can you help me with the {t} please", good.format(t=t), bad.format(t=t))
        for t in TOPICS[TRAIN_TOPICS:]
        for good in POLITE
        for bad in RUDE
    ]


def completion_logps(folder: Path, pairs: list[tuple[str, str, str]]) -> list[tuple[float, float]]:
    """Summed log-probs of the polite and the rude answer given the prompt, per pair (chat template applied)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()

    def logp(prompt: str, answer: str) -> float:
        text = tok.apply_chat_template(
            [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False
        )
        head = tok(text, add_special_tokens=False)["input_ids"]
        tail = tok(answer + tok.eos_token, add_special_tokens=False)["input_ids"]
        ids = torch.tensor([head + tail])
        with torch.no_grad():
            logits = model(ids).logits[0, :-1].log_softmax(-1)
        picked = logits.gather(1, ids[0, 1:, None])[:, 0]
        return float(picked[len(head) - 1 :].sum())

    return [(logp(p, good), logp(p, bad)) for p, good, bad in pairs]


def held_out_accuracy(policy: Path, reference: list[tuple[float, float]], beta: float) -> dict[str, Any]:
    """Held-out preference accuracy of the implicit reward on the true labels, with its exact interval."""
    from charter.stats.intervals import exact_interval

    pairs = held_out_pairs()
    margins = [
        beta * ((good - ref_good) - (bad - ref_bad))
        for (good, bad), (ref_good, ref_bad) in zip(completion_logps(policy, pairs), reference)
    ]
    right = sum(m > 0 for m in margins)
    low, high = exact_interval(right, len(margins))
    return {"right": right, "n": len(margins), "accuracy": right / len(margins), "interval": [low, high],
            "margin": sum(margins) / len(margins)}  # fmt: skip


def run_arm(arm: str, data: Path, model: Path, out: Path, args: argparse.Namespace, seed: int) -> dict[str, Any]:
    from charter import train_dpo

    trl = {"max_steps": args.steps, "learning_rate": args.lr, "beta": args.beta, "per_device_train_batch_size": 8,
           "save_strategy": "no", "logging_steps": 1000, "report_to": [], "max_length": 64}  # fmt: skip
    started = time.perf_counter()
    metrics = train_dpo({"dataset": str(data), "model": str(model), "output_dir": str(out), "device": "cpu",
                         "loss_type": ARMS[arm][0], "label_smoothing": ARMS[arm][1], "probe_pairs": 0, "seed": seed,
                         "resume": False, "trl": trl})  # fmt: skip
    return {"label_smoothing": metrics["label_smoothing"], "seconds": round(time.perf_counter() - started, 1)}


def table(noise: float, runs: list[dict[str, Any]], arms: list[str]) -> str:
    from charter.stats.intervals import exact_interval

    flips = ", ".join(f"{r['flipped']:.2f}" for r in runs if r["arm"] == "hard")
    lines = [f"noise {noise:.0%} (realised flip share per seed: {flips})", "",
             "| arm | loss | label smoothing | held-out accuracy (true labels), pooled | 95% exact | per-seed range "
             "| seeds above / below hard | mean margin |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    hard = {r["seed"]: r["right"] for r in runs if r["arm"] == "hard"}
    for arm in arms:
        mine = [r for r in runs if r["arm"] == arm]
        right, n = sum(r["right"] for r in mine), sum(r["n"] for r in mine)
        low, high = exact_interval(right, n)
        smoothing = (
            "per row" if ARMS[arm][1] == "per_row" else f"{sum(r['label_smoothing'] for r in mine) / len(mine):.3f}"
        )
        seeds = f"{min(r['accuracy'] for r in mine):.3f}-{max(r['accuracy'] for r in mine):.3f}"
        above = sum(r["right"] > hard[r["seed"]] for r in mine)
        below = sum(r["right"] < hard[r["seed"]] for r in mine)
        margin = sum(r["margin"] for r in mine) / len(mine)
        lines.append(f"| {arm} | {ARMS[arm][0]} | {smoothing} | {right}/{n} = {right / n:.3f} "
                     f"| {low:.3f}-{high:.3f} | {seeds} | {above} / {below} | {margin:+.3f} |")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--noise", type=float, nargs="+", default=[0.2, 0.4])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    parser.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(ARMS), help="hard is always run")
    parser.add_argument("--pairs", type=int, default=96)
    parser.add_argument("--steps", type=int, default=48)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--beta", type=float, default=0.1)
    args = parser.parse_args()

    from tests.support.tiny_models import tiny_llama, write_jsonl

    arms = ["hard", *[arm for arm in args.arms if arm != "hard"]]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model = tiny_llama(root / "tiny")
        reference = completion_logps(model, held_out_pairs())
        for noise in args.noise:
            runs = []
            for seed in args.seeds:
                rows, flipped = noisy_rows(args.pairs, noise, seed)
                data = write_jsonl(root / f"prefs-{noise}-{seed}.jsonl", rows)
                for arm in arms:
                    out = root / f"dpo-{noise}-{seed}-{arm}"
                    run = {"noise": noise, "seed": seed, "arm": arm, "flipped": flipped, "loss": ARMS[arm][0],
                           **run_arm(arm, data, model, out, args, seed),
                           **held_out_accuracy(out, reference, args.beta)}  # fmt: skip
                    print(json.dumps(run), flush=True)
                    runs.append(run)
            print("\n" + table(noise, runs, arms) + "\n", flush=True)


if __name__ == "__main__":
    main()
