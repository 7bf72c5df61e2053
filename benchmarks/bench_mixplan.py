"""Mixing sources per target in a simulated transfer world: the held-out gain per target subtask of the `micro`,
`macro` and `all` mixes that `charter.mix_plan` chooses from noisy probe scores.

The world (one per seed): S sources and T target subtasks, each source with a true gain per target.
- one specialist per target: gain U(0.6, 1.0) on its own target, N(0, 0.05) on the others;
- `generalists` sources: N(0.35, 0.05) on every target (the best on average, second best on each);
- the rest: N(0.05, 0.15) on every target (some of it negative transfer).
A probe observes each gain with noise N(0, sigma) (a small training run and evaluation per source); the plan is
made from the observed table, the mix is scored on the true gains (held out: the probe's noise is not in them).

Two models of a mix's gain on target t, with normalised weights w:
- linear: sum_s w_s G[s,t], the weighted mean of the true gains (a source counts in proportion to its share);
- saturating: sum_s G[s,t] * (1 - exp(-w_s / tau)) / (1 - exp(-1 / tau)), tau = 0.1: each source gives its full
  gain at a full share and most of it at a small share (diminishing returns of more of the same data), gains add
  across sources, negative ones too.

Mixes: `micro` (top N per target, union, weights by the targets that chose each), `macro` (top N by mean, uniform),
`macro` at the size of micro's union (the same number of sources), `all` (uniform), and micro on the true gains
(what a noiseless probe would choose). Each figure is the mean over seeds with its 95% interval (mean +- 1.96 sd /
sqrt(seeds); seeds are independent worlds); "micro wins" is the share of worlds where micro's figure beats macro's
at the same size, with its Wilson interval.

    PYTHONPATH=src python benchmarks/bench_mixplan.py
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

from charter.mixing.plan import mix_plan
from charter.stats.intervals import wilson_interval

TAU = 0.1


def world(rng: np.random.Generator, sources: int, targets: int, generalists: int) -> np.ndarray:
    """True gains, sources x targets: a specialist per target, generalists, the rest."""
    gains = np.empty((sources, targets))
    for t in range(targets):
        gains[t] = rng.normal(0.0, 0.05, targets)
        gains[t, t] = rng.uniform(0.6, 1.0)
    gains[targets : targets + generalists] = rng.normal(0.35, 0.05, (generalists, targets))
    gains[targets + generalists :] = rng.normal(0.05, 0.15, (sources - targets - generalists, targets))
    return gains


def table(observed: np.ndarray) -> dict[str, dict[str, float]]:
    return {f"s{s:02d}": {f"t{t}": float(v) for t, v in enumerate(row)} for s, row in enumerate(observed)}


def weights(scores: np.ndarray, strategy: str, top_n: int) -> np.ndarray:
    """The mix `charter.mix_plan` chooses, as a weight per source."""
    manifest = mix_plan(table(scores), strategy=strategy, top_n=top_n)  # type: ignore[arg-type]
    w = np.zeros(len(scores))
    for source in manifest.sources:
        w[int(source.name[1:])] = source.weight
    return w / w.sum()


def mix_gain(gains: np.ndarray, w: np.ndarray, model: str) -> np.ndarray:
    """The mix's true gain on each target."""
    if model == "linear":
        return w @ gains
    share = (1 - np.exp(-w / TAU)) / (1 - math.exp(-1 / TAU))
    return share @ gains


def run(seeds: int, sources: int, targets: int, generalists: int, sigma: float, top_n: int) -> dict:
    """Per mix and model: the mean gain over targets and the worst target's, one value per seed."""
    out: dict = {}
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        gains = world(rng, sources, targets, generalists)
        observed = gains + rng.normal(0.0, sigma, gains.shape)
        micro = weights(observed, "micro", top_n)
        mixes = {
            "micro": micro,
            f"macro top {top_n}": weights(observed, "macro", top_n),
            "macro, micro's size": weights(observed, "macro", int((micro > 0).sum())),
            "all": weights(observed, "all", 1),
            "micro on true gains": weights(gains, "micro", top_n),
        }
        for name, w in mixes.items():
            for model in ("linear", "saturating"):
                per_target = mix_gain(gains, w, model)
                cell = out.setdefault((name, model), {"mean": [], "worst": [], "sources": []})
                cell["mean"].append(per_target.mean())
                cell["worst"].append(per_target.min())
                cell["sources"].append(int((w > 0).sum()))
    return out


def interval(values: list[float]) -> str:
    a = np.asarray(values)
    half = 1.96 * a.std(ddof=1) / math.sqrt(len(a))
    return f"{a.mean():.3f} [{a.mean() - half:.3f}, {a.mean() + half:.3f}]"


def wins(a: list[float], b: list[float]) -> str:
    k = int(sum(x > y for x, y in zip(a, b)))
    low, high = wilson_interval(k, len(a))
    return f"{k / len(a):.2f} [{low:.2f}, {high:.2f}]"


def report(results: dict, label: str) -> None:
    print(f"\n### {label}\n")
    print("| mix | sources | linear: mean over targets | linear: worst target | saturating: mean | saturating: worst |")
    print("|---|---|---|---|---|---|")
    for name in dict.fromkeys(name for name, _ in results):
        linear, saturating = results[(name, "linear")], results[(name, "saturating")]
        cells = [interval(c[k]) for c in (linear, saturating) for k in ("mean", "worst")]
        print(f"| {name} | {np.mean(linear['sources']):.1f} | " + " | ".join(cells) + " |")
    print("\nmicro beats macro at the same number of sources, share of worlds:")
    for model in ("linear", "saturating"):
        micro, macro = results[("micro", model)], results[("macro, micro's size", model)]
        mean, worst = wins(micro["mean"], macro["mean"]), wins(micro["worst"], macro["worst"])
        print(f"- {model}: {mean} on the mean, {worst} on the worst target")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=300)
    parser.add_argument("--sources", type=int, default=24)
    parser.add_argument("--targets", type=int, default=8)
    parser.add_argument("--top-n", type=int, default=2)
    parser.add_argument(
        "--worlds",
        nargs="+",
        default=["4:0.1", "4:0.2", "0:0.1"],
        help="GENERALISTS:SIGMA per world (generalist sources; the probe's noise sd)",
    )
    args = parser.parse_args()
    for spec in args.worlds:
        generalists, sigma = int(spec.split(":")[0]), float(spec.split(":")[1])
        start = time.perf_counter()
        results = run(args.seeds, args.sources, args.targets, generalists, sigma, args.top_n)
        label = (
            f"{args.sources} sources ({generalists} generalists), {args.targets} targets, probe noise sd {sigma}, "
            f"top {args.top_n}, {args.seeds} seeds ({time.perf_counter() - start:.1f} s)"
        )
        report(results, label)


if __name__ == "__main__":
    main()
