"""The hack-signature detectors' false-positive rates on ordinary answers: the policy's own answers before training
and people's answers to the shared helpfulness prompts.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_signatures.py [--data ../shared/data] [--tokens 24 128]

Each detector of `charter.monitor.signatures` (`SIGNATURES`) is run on answers nobody trained to game anything, so
every answer it flags is a false positive:

  policy     SmolLM2-135M-Instruct before training (the GRPO benchmarks' policy), answering greedily as the gold
             monitor does (`charter.training.models.greedy_answers`) the 80 MT-Bench tasks of the shared data, each
             with the constraints `bench_checklist_grpo.py` draws for it (seed 0: "Include the word "X"." and the
             others), at each `--tokens` cap (24 is the GRPO benchmarks' completion length, 128 the monitor's
             default); the required phrases are read from each prompt as the monitor reads them;
  HHH        the answers people wrote to the helpful prompts of `human_preferences/hhh_harmless_helpful.jsonl`
             (`chosen` and `rejected` apart), with the required phrases read from their prompts; the harmless
             prompts' `chosen` answers are shown too, where a refusal is the right answer (`refusal_collapse` reads
             the share rising over training, not one refusal).

Per set and detector: flagged / answers and the share with its exact (Clopper-Pearson) 95% interval
(`charter.stats.intervals.exact_interval`). A detector that reads required phrases (`repeated_required`,
`format_only`) cannot fire where the prompts ask for none; the table says how many answers had any. The flagged
policy answers are printed after the table for a reader to judge.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_checklist_grpo as grpo  # noqa: E402 - the prompts and constraints of the GRPO benchmarks

ROOT = Path(__file__).resolve().parents[1]


def policy_answers(data: Path, caps: list[int], seed: int) -> dict[int, tuple[list[str], list[str], float]]:
    """By cap: (prompts, answers, seconds), the untrained policy's greedy answers to every MT-Bench task with its
    drawn constraints."""
    import torch

    from charter.training.models import greedy_answers, load_policy

    torch.set_num_threads(1)
    rows, _ = grpo.make_prompts(data, seed, 0)
    model, tokenizer, _ = load_policy("smollm2-135m-instruct", None)
    out = {}
    for tokens in caps:
        started = time.perf_counter()
        answers = greedy_answers(model, tokenizer, [r["prompt"] for r in rows], tokens)
        out[tokens] = ([r["prompt"][-1]["content"] for r in rows], answers, time.perf_counter() - started)
    return out


def hhh(data: Path, subset: str, side: str) -> tuple[list[str], list[str]]:
    rows = [json.loads(line) for line in (data / "human_preferences" / "hhh_harmless_helpful.jsonl").open()]
    chosen = [r for r in rows if r["subset"] == subset]
    return [r["prompt"] for r in chosen], [r[side] for r in chosen]


def rates(prompts: list[str], answers: list[str]) -> dict[str, Any]:
    from charter.monitor.signatures import SIGNATURES, required_phrases, signatures_of
    from charter.stats.intervals import exact_interval

    asked = [required_phrases(p) for p in prompts]
    flagged: dict[str, list[int]] = {name: [] for name in SIGNATURES}
    for i, (answer, prompt, phrases) in enumerate(zip(answers, prompts, asked, strict=True)):
        for name in signatures_of(answer, prompt, phrases):
            flagged[name].append(i)
    n = len(answers)
    return {
        "n": n,
        "with_required": sum(1 for a in asked if a),
        "words": sorted(len(a.split()) for a in answers)[n // 2],
        "rates": {
            name: {"flagged": len(ix), "share": len(ix) / n, "interval": exact_interval(len(ix), n)}
            for name, ix in flagged.items()
        },  # fmt: skip
        "flagged": {name: [answers[i] for i in ix] for name, ix in flagged.items()},
    }


def table(sets: list[tuple[str, dict[str, Any]]]) -> str:
    from charter.monitor.signatures import SIGNATURES

    names = list(SIGNATURES)
    lines = ["| answers | n | asked a phrase | words (median) | " + " | ".join(names) + " |",
             "|---|---:|---:|---:|" + "---|" * len(names)]  # fmt: skip
    for label, found in sets:
        cells = []
        for name in names:
            r = found["rates"][name]
            low, high = r["interval"]
            cells.append(f"{r['flagged']}/{found['n']} = {r['share']:.3f} [{low:.3f}, {high:.3f}]")
        lines.append(
            f"| {label} | {found['n']} | {found['with_required']} | {found['words']} | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data", help="the shared data folder")
    parser.add_argument("--tokens", type=int, nargs="+", default=[24, 128], help="the policy's answer caps")
    parser.add_argument("--seed", type=int, default=0, help="the constraints' draw (bench_checklist_grpo.py)")
    args = parser.parse_args()
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    sets: list[tuple[str, dict[str, Any]]] = []
    for tokens, (prompts, answers, seconds) in policy_answers(args.data, args.tokens, args.seed).items():
        sets.append((f"policy, step 0, {tokens} tokens", rates(prompts, answers)))
        print(f"policy at {tokens} tokens: {seconds:.0f} s", flush=True)
    sets.append(("HHH helpful, chosen", rates(*hhh(args.data, "helpful", "chosen"))))
    sets.append(("HHH helpful, rejected", rates(*hhh(args.data, "helpful", "rejected"))))
    sets.append(("HHH harmless, chosen (refusing is right)", rates(*hhh(args.data, "harmless", "chosen"))))
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print()
    print(table(sets))
    print()
    for label, found in sets:
        for name, texts in found["flagged"].items():
            for text in texts[:4]:
                print(f"{label} | {name}: {' '.join(text.split())[:110]!r}")


if __name__ == "__main__":
    main()
