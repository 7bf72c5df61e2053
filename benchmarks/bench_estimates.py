"""Human-corrected estimates by simulation: PPI++ against people-only and judge-only intervals, active against
uniform spot checks, and the length-controlled win rate against the raw one.

    .venv/bin/python benchmarks/bench_estimates.py [--seeds 1000]

Numpy worlds, seeded; the same worlds as tests/agreement/test_ppi.py and tests/dpo/test_length_control.py, which
hold the bars these figures clear. N = 2,000 items the judge labels, n = 100 that people label; the truth is the
population share (0.5).
  biased     people prefer A half the time; the judge is right 80% of the time and every error says A.
  uncertain  a calibrated judge, sure of 70% of the items (p 0.02 or 0.98), unsure of the rest (p in 0.3..0.7);
             active selection draws with probability proportional to sqrt(p (1 - p)), 10% spread evenly.
  padded     400 prompts; the candidate's answer is the base's padded by about 500 characters (sd 300); the judge's
             P(longer better) = sigmoid(2.2 tanh(length difference / 300)).
Prints a markdown table.
"""

from __future__ import annotations

import argparse
import math

import numpy as np

from charter.evals.winrate import length_controlled
from charter.stats.ppi import inclusion_probabilities, judge_mean, poisson_sample, ppi_mean

N, n, TRUTH = 2000, 100, 0.5


def biased(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    people = (rng.random(N) < 0.5).astype(float)
    return people, np.where(people == 1, 1.0, (rng.random(N) < 0.4).astype(float))


def uncertain(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    sure = rng.random(N) < 0.7
    p = np.where(sure, np.where(rng.random(N) < 0.5, 0.02, 0.98), rng.uniform(0.3, 0.7, N))
    return (rng.random(N) < p).astype(float), p


def ppi_rows(seeds: int) -> list[tuple[str, float, float]]:
    """(estimate, coverage, mean width) over the biased world."""
    found: dict[str, list[tuple[bool, float]]] = {"PPI++": [], "people only": [], "judge only": []}
    for seed in range(seeds):
        people, judge = biased(seed)
        labelled = np.random.default_rng(10_000 + seed).choice(N, n, replace=False)
        for name, e in (
            ("PPI++", ppi_mean(judge, judge[labelled], people[labelled])),
            ("people only", ppi_mean(judge, judge[labelled], people[labelled], method="human")),
            ("judge only", judge_mean(judge)),
        ):
            found[name].append((e.low <= TRUTH <= e.high, e.width))
    return [(k, float(np.mean([c for c, _ in v])), float(np.mean([w for _, w in v]))) for k, v in found.items()]


def active_rows(seeds: int) -> list[tuple[str, float, float, float]]:
    """(design, coverage, mean width, mean labels) over the uncertain world."""
    found: dict[str, list[tuple[bool, float, int]]] = {"uniform": [], "active": []}
    for seed in range(seeds):
        people, p = uncertain(seed)
        rng = np.random.default_rng(20_000 + seed)
        labelled = rng.choice(N, n, replace=False)
        uniform = ppi_mean(p, p[labelled], people[labelled])
        pi = inclusion_probabilities(np.sqrt(p * (1 - p)), n)
        drawn = poisson_sample(pi, rng.random(N))
        active = ppi_mean(p, p[drawn], people[drawn], weights=1 / pi[drawn])
        found["uniform"].append((uniform.low <= TRUTH <= uniform.high, uniform.width, n))
        found["active"].append((active.low <= TRUTH <= active.high, active.width, drawn.size))
    return [
        (
            k,
            float(np.mean([c for c, _, _ in v])),
            float(np.mean([w for _, w, _ in v])),
            float(np.mean([s for *_, s in v])),
        )
        for k, v in found.items()
    ]


def length_rows(seeds: int) -> list[tuple[str, float, float]]:
    """(judge, mean raw mean P(candidate), mean length-controlled rate) for padded and length-neutral worlds."""
    out = []
    for name, padding in (("length-loving judge, padded candidate", 500), ("length-neutral judge", 0)):
        raws, controlled = [], []
        for seed in range(seeds):
            rng = np.random.default_rng(seed)
            base = ["b" * int(k) for k in rng.integers(300, 900, 400)]
            cand = ["c" * max(1, int(len(b) + d)) for b, d in zip(base, rng.normal(padding, 300, 400))]
            if padding:
                p = [1 / (1 + math.exp(-2.2 * math.tanh((len(c) - len(b)) / 300))) for c, b in zip(cand, base)]
            else:
                p = list(np.clip(np.random.default_rng(100 + seed).normal(0.65, 0.15, 400), 0.01, 0.99))
            found = length_controlled(p, cand, base, bootstrap=20, seed=seed)
            raws.append(found["raw"])
            controlled.append(found["win_rate"])
        out.append((name, float(np.mean(raws)), float(np.mean(controlled))))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=1000)
    args = parser.parse_args()
    print(f"PPI, biased judge ({args.seeds} seeds):\n")
    print("| estimate | coverage of 95% intervals | mean width |\n|---|---:|---:|")
    for name, coverage, width in ppi_rows(args.seeds):
        print(f"| {name} | {coverage:.3f} | {width:.3f} |")
    print(f"\nActive against uniform spot checks, uncertain judge ({args.seeds} seeds):\n")
    print("| design | coverage | mean width | mean labels |\n|---|---:|---:|---:|")
    for name, coverage, width, labels in active_rows(args.seeds):
        print(f"| {name} | {coverage:.3f} | {width:.3f} | {labels:.1f} |")
    print("\nLength-controlled win rate (20 seeds):\n")
    print("| world | raw mean P(candidate) | length-controlled |\n|---|---:|---:|")
    for name, raw, controlled in length_rows(20):
        print(f"| {name} | {raw:.3f} | {controlled:.3f} |")


if __name__ == "__main__":
    main()
