"""The win rate judged during training (`WinRateCallback`) as metrics.json records it and the model card and the run
report show it: a table of the win rate per evaluation step with its interval. Free of transformers, so that the
report renders without the train extra."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypedDict


class WinRateEval(TypedDict):
    """One evaluation of `WinRateCallback`, as metrics.json (`winrate_eval`), the report and the card show it."""

    step: int
    """The optimizer step it was made at."""
    win_rate: float | None
    """The policy's win rate against the references (ties count half); None when every judgment failed."""
    low: float | None
    """The lower end of its Wilson 95% interval."""
    high: float | None
    """The upper end."""
    n: int
    """Prompts judged (failures left out)."""
    failures: int
    """Prompts whose judgment failed: counted, never a tie."""
    lc: float | None
    """The length-controlled win rate (None where it cannot be fitted)."""


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
