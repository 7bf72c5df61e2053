"""The arena's fit in a world whose truth is known: coverage of its 95% intervals, and judge calls against interval
width for the all-pairs and the sparse design.

    .venv/bin/python benchmarks/bench_arena.py [--reps 200] [--models 6] [--prompts 60]

Each repetition draws verdicts from a Bradley–Terry model with known strengths (evenly spaced, 0.4 apart; the
first model is the reference): a comparison of models i and j on a prompt is won by i with probability
sigmoid(s_i - s_j). The arena's fit (`charter.stats.ranking.ranked_bootstrap`, 200 resamples of the prompts) then
gives each score against the reference a 95% interval; coverage is the share of intervals that hold the true
difference. Designs, as `charter.evals.arena.design` builds them: all pairs on every prompt, and the sparse default
(each pair on 2P/(N-1) prompts), on P prompts and on more prompts at the same or fewer calls. Calls count both
orders of each comparison.
"""

from __future__ import annotations

import argparse
import math

import numpy as np

from charter.evals.arena import design
from charter.stats.ranking import ranked_bootstrap


def simulate(models: int, prompts: int, per_pair: int | None, reps: int, samples: int) -> dict[str, float]:
    truth = np.arange(models) * 0.4
    truth = truth - truth[0]
    names = [f"m{k}" for k in range(models)]
    covered = total = 0
    widths, calls = [], 0
    for rep in range(reps):
        rng = np.random.default_rng(rep)
        ids = [f"r{rep}-p{k}" for k in range(prompts)]
        planned = design(ids, names, per_pair)
        calls = 2 * len(planned)
        outcomes = [(i, j, float(rng.random() < 1 / (1 + math.exp(truth[j] - truth[i])))) for _, i, j in planned]
        fit = ranked_bootstrap(models, outcomes, [p for p, _, _ in planned], 0, samples, rep)
        for k in range(1, models):
            total += 1
            covered += fit["ci_low"][k] <= truth[k] <= fit["ci_high"][k]
            widths.append(fit["ci_high"][k] - fit["ci_low"][k])
    return {"coverage": covered / total, "intervals": total, "width": float(np.mean(widths)), "calls": calls}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=200)
    parser.add_argument("--models", type=int, default=6)
    parser.add_argument("--prompts", type=int, default=60)
    parser.add_argument("--samples", type=int, default=200)
    args = parser.parse_args()
    n, p = args.models, args.prompts
    sparse = math.ceil(2 * p / (n - 1))
    rows = [
        ("all pairs", p, None),
        ("sparse (default)", p, sparse),
        ("sparse, 2x prompts", 2 * p, math.ceil(2 * 2 * p / (n - 1))),
        ("sparse, 2.5x prompts", int(2.5 * p), math.ceil(2 * 2.5 * p / (n - 1))),
    ]
    print(
        f"| design ({n} models, {args.reps} repetitions) | prompts | prompts per pair | judge calls | "
        "mean 95% width | coverage |"
    )
    print("|---|---|---|---|---|---|")
    for name, prompts, per_pair in rows:
        found = simulate(n, prompts, per_pair, args.reps, args.samples)
        print(
            f"| {name} | {prompts} | {per_pair or prompts} | {found['calls']} | {found['width']:.3f} | "
            f"{found['coverage']:.3f} ({found['intervals']} intervals) |"
        )


if __name__ == "__main__":
    main()
