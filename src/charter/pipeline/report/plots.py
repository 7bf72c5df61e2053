"""The run report's plots (PNG files beside it): the judge's P(chosen) histogram, win rates per principle and the
rewards of an online training."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from charter.pipeline.report.examples import float_batches
from charter.preference.stats import JudgeStats, judge_p_values
from charter.records import Fingerprints
from charter.runs.files import RunFiles
from charter.runs.rewards import StepRewards
from charter.runs.store import RunStore


def _figure(height: float = 3.6, left: float = 0.1):
    """A figure with fixed margins (a layout engine costs more than the plot at these sizes)."""
    from matplotlib.figure import Figure  # the object API: no pyplot global state, Agg canvas for savefig

    fig = Figure(figsize=(6.4, height), dpi=100)
    fig.subplots_adjust(left=left, right=0.97, bottom=0.55 / height, top=1 - 0.4 / height)
    return fig


#: The probability histogram's bins: 20 of width 0.05 over [0, 1].
P_BINS = 20


def p_counts(batches: Iterable[Any]) -> Any:
    """Counts of probabilities (numpy batches, NaN skipped) in the histogram's bins, tallied batch by batch."""
    import numpy as np

    edges = np.linspace(0, 1, P_BINS + 1)
    counts = np.zeros(P_BINS, dtype=np.int64)
    for values in batches:
        counts += np.histogram(values[~np.isnan(values)], bins=edges)[0]
    return counts


def plot_p_histogram(judged: Any, chosen: Any, path: Path) -> Path:
    """Histogram of the judge's p_a (and of the dataset's p_chosen where there is a dataset), from bin counts."""
    import numpy as np
    from matplotlib.ticker import MaxNLocator

    fig = _figure()
    ax = fig.add_subplot()
    bins = np.linspace(0, 1, P_BINS + 1)
    edges = bins.tolist()
    ax.hist(
        bins[:-1],
        bins=edges,
        weights=judged,
        alpha=0.6,
        label=f"judge p_a (n={int(judged.sum())})",
        color="#4c72b0",
    )
    if chosen.sum():
        ax.hist(
            bins[:-1],
            bins=edges,
            weights=chosen,
            alpha=0.6,
            color="#dd8452",
            label=f"dataset p_chosen (n={int(chosen.sum())})",
        )
    ax.axvline(0.5, color="grey", linewidth=0.8, linestyle="--")
    ax.set(xlabel="probability", ylabel="pairs", xlim=(0, 1), title="Judge probabilities")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylim(0, ax.get_ylim()[1] * 1.25)  # head-room so the legend never covers a bar
    ax.legend(loc="upper center", ncols=2, fontsize="small", frameon=False)
    fig.savefig(path, format="png")
    return path


def plot_principle_win_rates(per_principle: dict[str, Any], path: Path) -> Path | None:
    """Bar chart: per judge principle, how often the revision beat the initial response."""
    rows = [
        (pid, f.revision_win_rate, f.revision_pairs)
        for pid, f in per_principle.items()
        if f.revision_win_rate is not None
    ]
    if not rows:
        return None
    names = [f"{pid} (n={n})" for pid, _, n in rows][::-1]
    widest = max(len(name) for name in names)
    fig = _figure(height=max(2.0, 0.3 * len(rows) + 1.0), left=min(0.6, 0.04 + 0.0125 * widest))
    ax = fig.add_subplot()
    ax.barh(names, [rate for _, rate, _ in rows][::-1], color="#55a868")
    ax.axvline(0.5, color="grey", linewidth=0.8, linestyle="--")
    ax.set(xlim=(0, 1), xlabel="revision beat the initial response (win rate)")
    ax.set_title("Revision win rate per judge principle", loc="right")
    fig.savefig(path, format="png")
    return path


def plot_rewards(steps: list[StepRewards], path: Path) -> Path | None:
    """Line plot: the judge's mean reward per training step (online training), with its spread and failures."""
    # (step, mean, sd, failed) of the steps with a step number and at least one reward
    points = [
        (s["step"], s["mean"], s["std"] or 0.0, s["failed"])
        for s in steps
        if s["step"] is not None and s["mean"] is not None
    ]
    if not points:
        return None
    x, mean, spread, _ = (list(column) for column in zip(*points))
    fig = _figure()
    ax = fig.add_subplot()
    low, high = [m - d for m, d in zip(mean, spread)], [m + d for m, d in zip(mean, spread)]
    ax.fill_between(x, low, high, alpha=0.2, color="#4c72b0")
    ax.plot(x, mean, "-o", markersize=3, color="#4c72b0", label="mean reward (band: ±1 sd)")
    failed = [(step, m) for step, m, _, n in points if n]
    if failed:
        ax.plot(*zip(*failed), "x", color="#c44e52", label="step with failures")
    ax.set(xlabel="training step", ylabel="judge reward", ylim=(-0.05, 1.05), title="Judge rewards per step")
    ax.legend(loc="lower right", fontsize="small", frameon=False)
    fig.savefig(path, format="png")
    return path


def make_plots(
    store: RunStore, fp: Fingerprints | None, stats: JudgeStats, out: Path, rewards: Sequence[StepRewards] = ()
) -> tuple[list[dict], str | None]:
    """Write the PNG plots into `out`; returns [{title, file}] and a note if plotting was impossible."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return [], "Plots need matplotlib (a dependency of charter): pip install matplotlib."
    plots = []
    if rewards and plot_rewards(list(rewards), out / "rewards.png"):
        plots.append({"title": "Judge rewards per training step", "file": "rewards.png"})
    if fp is None:
        return plots, None
    judged = p_counts(judge_p_values(store, fp))
    if judged.sum():
        chosen = p_counts(float_batches(RunFiles(store.run_dir), "p_chosen")())
        plot_p_histogram(judged, chosen, out / "judge_p.png")
        plots.append({"title": "Judge probabilities", "file": "judge_p.png"})
    if plot_principle_win_rates(stats.per_principle, out / "principle_win_rates.png"):
        plots.append({"title": "Revision win rate per principle", "file": "principle_win_rates.png"})
    return plots, None
