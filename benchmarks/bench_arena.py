"""The arena's Bradley–Terry fit in a simulated world: coverage of its 95% intervals on score differences, and
the interval width of the sparse design against all pairs per judge call.

    PYTHONPATH=src python benchmarks/bench_arena.py
"""

from __future__ import annotations

import math

import numpy as np

from charter.stats.bradley_terry import Comparison, fit

STRENGTHS = np.array([0.0, 0.7, 1.4, 2.1])


def simulate(rng, n_prompts: int, per_pair: int, prompt_sd: float) -> list[Comparison]:
    """A judge following the strengths (both orders per comparison), each pair on per_pair of the prompts in
    rotation; `prompt_sd` shifts each model per prompt (prompts on which a model does better)."""
    n, out = len(STRENGTHS), []
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    step = n_prompts // per_pair
    for k in range(n_prompts):
        shift = rng.normal(0, prompt_sd, n)
        for idx, (i, j) in enumerate(pairs):
            if (k + idx) % step:
                continue
            p = 1 / (1 + math.exp(-(STRENGTHS[i] + shift[i] - STRENGTHS[j] - shift[j])))
            out.append(Comparison(k, i, j, ((rng.random() < p) + (rng.random() < p)) / 2))
    return out


def coverage(seeds: int = 100, n_prompts: int = 80) -> float:
    rng, hits, total = np.random.default_rng(1), 0, 0
    for seed in range(seeds):
        draws = np.array(fit(4, simulate(rng, n_prompts, n_prompts, 0.0), bootstrap=200, seed=seed)["draws"])
        for i in range(1, 4):
            low, high = np.percentile(draws[:, i], [2.5, 97.5])
            hits += low <= STRENGTHS[i] - STRENGTHS[0] <= high
            total += 1
    return hits / total


def width(n_prompts: int, per_pair: int, reps: int = 20) -> tuple[int, float]:
    rng, widths, calls = np.random.default_rng(2), [], 0
    for r in range(reps):
        comps = simulate(rng, n_prompts, per_pair, 1.0)
        calls = 2 * len(comps)
        draws = np.array(fit(4, comps, bootstrap=100, seed=r)["draws"])
        widths += [float(np.subtract(*np.percentile(draws[:, i], [97.5, 2.5]))) for i in range(1, 4)]
    return calls, float(np.mean(widths))


if __name__ == "__main__":
    print(f"coverage of 95% intervals on score differences, 100 seeds x 3 differences: {coverage():.3f}")
    print("| design | prompts | prompts per pair | judge calls | mean 95% CI width |")
    print("|---|---|---|---|---|")
    for n_prompts, per_pair in [(40, 40), (50, 50), (60, 60), (120, 40), (150, 50)]:
        calls, w = width(n_prompts, per_pair)
        kind = "all pairs" if per_pair == n_prompts else "sparse"
        print(f"| {kind} | {n_prompts} | {per_pair} | {calls} | {w:.3f} |")
