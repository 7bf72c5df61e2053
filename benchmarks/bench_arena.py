"""The arena's Bradley–Terry fit in a simulated world: coverage of its 95% intervals (as shown, and the bootstrap's
alone) on a handful of prompts and on many, and the interval width of the sparse design against all pairs per judge
call.

    PYTHONPATH=src python benchmarks/bench_arena.py
"""

from __future__ import annotations

import math

import numpy as np

from charter.stats.bradley_terry import Comparison, fit

STRENGTHS = np.array([0.0, 0.7, 1.4, 2.1])


def simulate(rng, strengths, n_prompts: int, per_pair: int, prompt_sd: float) -> list[Comparison]:
    """A judge following the strengths (both orders per comparison), each pair on per_pair of the prompts in
    rotation; `prompt_sd` shifts each model per prompt (prompts on which a model does better)."""
    n, out = len(strengths), []
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    step = n_prompts // per_pair
    for k in range(n_prompts):
        shift = rng.normal(0, prompt_sd, n)
        for idx, (i, j) in enumerate(pairs):
            if (k + idx) % step:
                continue
            p = 1 / (1 + math.exp(-(strengths[i] + shift[i] - strengths[j] - shift[j])))
            out.append(Comparison(k, i, j, ((rng.random() < p) + (rng.random() < p)) / 2))
    return out


def coverage(strengths, n_prompts: int, seeds: int, bootstrap: int, prompt_sd: float = 0.0) -> tuple[float, ...]:
    """Coverage of the shown intervals and of the bootstrap's alone on the differences to the reference, the shown
    intervals' mean width, and the share of fits whose rank ranges hold every true rank."""
    rng, shown, alone, widths, ranks = np.random.default_rng(1), 0, 0, [], 0
    n = len(strengths)
    true_rank = [1 + sum(s > t for s in strengths) for t in strengths]
    for seed in range(seeds):
        result = fit(n, simulate(rng, strengths, n_prompts, n_prompts, prompt_sd), bootstrap=bootstrap, seed=seed)
        draws = np.array(result["draws"])
        for i in range(1, n):
            truth = strengths[i] - strengths[0]
            shown += result["ci_low"][i] <= truth <= result["ci_high"][i]
            low, high = np.percentile(draws[:, i], [2.5, 97.5])
            alone += low <= truth <= high
            widths.append(result["ci_high"][i] - result["ci_low"][i])
        ranks += all(result["rank_low"][m] <= true_rank[m] <= result["rank_high"][m] for m in range(n))
    total = seeds * (n - 1)
    return shown / total, alone / total, float(np.mean(widths)), ranks / seeds


def width(n_prompts: int, per_pair: int, reps: int = 20) -> tuple[int, float]:
    rng, widths, calls = np.random.default_rng(2), [], 0
    for r in range(reps):
        comps = simulate(rng, STRENGTHS, n_prompts, per_pair, 1.0)
        calls = 2 * len(comps)
        result = fit(4, comps, bootstrap=100, seed=r)
        widths += [result["ci_high"][i] - result["ci_low"][i] for i in range(1, 4)]
    return calls, float(np.mean(widths))


if __name__ == "__main__":
    print("| world | prompts | seeds | coverage, shown | coverage, bootstrap alone | mean width | rank ranges hold |")
    print("|---|---|---|---|---|---|---|")
    for name, strengths, n_prompts, seeds, sd in [
        ("3 models 0, 0.7, 1.4", STRENGTHS[:3], 8, 200, 0.0),
        ("3 models 0, 0.7, 1.4, prompt sd 1", STRENGTHS[:3], 8, 200, 1.0),
        ("3 models 0, 0, 0", np.zeros(3), 8, 200, 0.0),
        ("4 models 0, 0.7, 1.4, 2.1", STRENGTHS, 80, 100, 0.0),
    ]:
        shown, alone, w, held = coverage(strengths, n_prompts, seeds, 200, sd)
        print(f"| {name} | {n_prompts} | {seeds} | {shown:.3f} | {alone:.3f} | {w:.2f} | {held:.3f} |")
    print()
    print("| design | prompts | prompts per pair | judge calls | mean 95% CI width |")
    print("|---|---|---|---|---|")
    for n_prompts, per_pair in [(40, 40), (50, 50), (60, 60), (120, 40), (150, 50)]:
        calls, w = width(n_prompts, per_pair)
        kind = "all pairs" if per_pair == n_prompts else "sparse"
        print(f"| {kind} | {n_prompts} | {per_pair} | {calls} | {w:.3f} |")
