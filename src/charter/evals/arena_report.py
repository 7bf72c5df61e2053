"""The arena's files: arena.json, arena.md and arena.svg (scores with their 95% intervals)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from charter.training.output import write_json


def write_report(out: Path, summary: dict[str, Any]) -> None:
    """Write OUT/arena.json, OUT/arena.md and OUT/arena.svg."""
    write_json(out / "arena.json", summary)
    (out / "arena.md").write_text(markdown(summary), encoding="utf-8")
    plot(summary, out / "arena.svg")


def _f(value: Any) -> str:
    return "n/a" if value is None else f"{value:+.2f}"


def markdown(summary: dict[str, Any]) -> str:
    """The ranking as a markdown table, with the design and what an overlapping rank range means."""
    d = summary["design"]
    lines = [
        "## Arena",
        "",
        f"{len(summary['models'])} models on {summary['prompts_used']} prompts from `{summary['prompts']}`, judged "
        f"by `{summary['judge']}` in both orders. Design: {d['kind']}, each pair on {d['per_pair']} prompts "
        f"({d['comparisons']} comparisons, {summary['calls']} judge calls; all pairs on every prompt would be "
        f"{d['all_pairs_comparisons']} comparisons, {d['all_pairs_calls']} calls). {summary['failures']} failed "
        "judgments left out.",
        "",
        f"Scores are Bradley–Terry log-odds of beating `{summary['reference']}` (score 0 by definition), with 95% "
        f"intervals ({summary['ci_method']}). Models whose rank ranges overlap are not told apart by this arena.",
        "",
        "| rank (range) | model | score | 95% CI | LC score | W / L / T | mean length |",
        "|---|---|---|---|---|---|---|",
    ]
    for m in summary["models"]:
        if m["rank"] is None:
            lines.append(
                f"| unranked | `{m['model']}` | no decided comparison | | | 0 / 0 / 0 | {m['mean_length']:.0f} |"
            )
            continue
        interval = "reference" if m["ci_low"] is None else f"{_f(m['ci_low'])} – {_f(m['ci_high'])}"
        lines.append(
            f"| {m['rank']} ({m['rank_low']}–{m['rank_high']}) | `{m['model']}` | {_f(m['score'])} | {interval} | "
            f"{_f(m['lc_score'])} | {m['wins']} / {m['losses']} / {m['ties']} | {m['mean_length']:.0f} |"
        )
    for h in summary.get("human_labels") or []:
        if h["ppi"] and h["human"]:
            ppi, alone = h["ppi"], h["human"]
            lines += ["", f"`{h['model']}` against `{h['against']}` with people's labels on {h['matched']} "
                      f"comparisons: win rate {ppi['value']:.3f} [{ppi['low']:.3f}, {ppi['high']:.3f}] "
                      f"prediction-powered, {alone['value']:.3f} [{alone['low']:.3f}, {alone['high']:.3f}] from "
                      "the labels alone."]  # fmt: skip
    if not summary.get("human_labels"):
        lines += [
            "",
            "How far people agree with this judge is not measured here: label some comparisons "
            "(`--human-labels`) or spot-check the judge before reading these scores as people's preferences.",
        ]
    lines += ["", "![scores with 95% intervals](arena.svg)", ""]
    return "\n".join(lines)


def plot(summary: dict[str, Any], path: Path) -> None:
    """Scores with their 95% intervals, best at the top (matplotlib SVG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [m for m in reversed(summary["models"]) if m["score"] is not None]
    fig, ax = plt.subplots(figsize=(6, 0.5 * len(rows) + 1.2))
    try:
        y = list(range(len(rows)))
        scores = [m["score"] for m in rows]
        err = [  # the reference has no interval: its score is 0 by definition
            [0.0 if m["ci_low"] is None else m["score"] - m["ci_low"] for m in rows],
            [0.0 if m["ci_high"] is None else m["ci_high"] - m["score"] for m in rows],
        ]
        ax.errorbar(scores, y, xerr=err, fmt="o", capsize=3)
        ax.axvline(0, color="grey", linewidth=0.8)
        ax.set_yticks(y, [m["model"] for m in rows])
        ax.set_xlabel(f"Bradley–Terry score (log-odds against {summary['reference']})")
        fig.tight_layout()
        fig.savefig(path, format="svg")
    finally:
        plt.close(fig)
