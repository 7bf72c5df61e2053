"""The win rate judged during training (`WinRateCallback`) as the model card and the run report show it: a table of
the win rate per evaluation step with its interval. Free of transformers, so that the report renders without the
train extra."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

#: What the card and the report say under the table of win rates judged during training.
JUDGE_NOTE = (
    "Judged by an AI judge against the constitution, both orders, against the same reference answers each time; a "
    "failed judgment is counted, never a tie. How far people agree with this judge is not measured by the callback "
    "(`charter agreement` measures it on human labels)."
)


def evaluation_lines(rows: Sequence[Mapping[str, Any]], heading: str = "##") -> list[str]:
    """Markdown: a table of the win rate per evaluation step with its interval, and the judge note ([] for none)."""
    if not rows:
        return []

    def num(value: Any) -> str:
        return "-" if value is None else f"{value:.3f}"

    lines = [
        f"{heading} Win rate during training",
        "",
        "| step | win rate | 95% interval (Wilson) | judged | failed | length-controlled |",
        "|---:|---:|---|---:|---:|---:|",
    ]
    for r in rows:
        interval = "-" if r.get("low") is None else f"{num(r['low'])} – {num(r['high'])}"
        lines.append(
            f"| {r['step']} | {num(r.get('win_rate'))} | {interval} | {r['n']} | {r['failures']} | {num(r.get('lc'))} |"
        )
    return [*lines, "", JUDGE_NOTE, ""]
