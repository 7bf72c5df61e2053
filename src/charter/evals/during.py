"""The win rate judged during training (`WinRateCallback`) as metrics.json records it and the model card and the run
report show it: a table of the win rate per evaluation step with its interval. Free of transformers, so that the
report renders without the train extra. With people's labels on some comparisons, the human-corrected (PPI) win rate
beside it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NotRequired, TypedDict


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
    human_n: NotRequired[int]
    """With human labels: the labels that match a comparison judged at this step."""
    ppi: NotRequired[float | None]
    """With human labels: the prediction-powered win rate (the judge's P(policy better) on every comparison,
    corrected by the labelled ones); None with fewer than 10 matched labels."""
    ppi_low: NotRequired[float | None]
    """The lower end of its 95% interval."""
    ppi_high: NotRequired[float | None]
    """The upper end."""
    human: NotRequired[float | None]
    """With human labels: the win rate from the matched labels alone; None with fewer than 10."""
    labels_note: NotRequired[str | None]
    """Why labels did not match, or why there is no human-corrected rate."""


def human_fields(found: Mapping[str, Any] | None) -> dict[str, Any]:
    """The human-corrected columns of an evaluation's row from its `HumanWinrate` ({} without labels)."""
    if found is None:
        return {}
    ppi, alone = found.get("ppi") or {}, found.get("human") or {}
    return {
        "human_n": int(found["matched"]),
        "ppi": ppi.get("value"),
        "ppi_low": ppi.get("low"),
        "ppi_high": ppi.get("high"),
        "human": alone.get("value"),
        "labels_note": found.get("note"),
    }


def human_columns(found: Mapping[str, Any] | None) -> dict[str, Any]:
    """The logged keys' suffixes (`_ppi`, `_ppi_low`, `_ppi_high`, `_human`, `_human_n`) and values."""
    fields = human_fields(found)
    return {f"_{k}": v for k, v in fields.items() if k != "labels_note"}


#: What the card and the report say under the table of win rates judged during training.
JUDGE_NOTE = (
    "Judged by an AI judge against the constitution, both orders, against the same reference answers each time; a "
    "failed judgment is counted, never a tie. How far people agree with this judge is not measured by the callback "
    "(`charter agreement` measures it on human labels)."
)
#: What they say instead where people labelled some of the comparisons.
LABELS_NOTE = (
    "Judged by an AI judge against the constitution, both orders, against the same reference answers each time; a "
    "failed judgment is counted, never a tie. Human-corrected: the judge's P(policy better) on every comparison, "
    "corrected by people's labels on the matched ones (prediction-powered inference, 95% interval); none where fewer "
    "than 10 labels match."
)


def evaluation_lines(rows: Sequence[Mapping[str, Any]], heading: str = "##") -> list[str]:
    """Markdown: a table of the win rate per evaluation step with its interval, and the judge note ([] for none)."""
    if not rows:
        return []

    def num(value: Any) -> str:
        return "-" if value is None else f"{value:.3f}"

    labelled = any("human_n" in r for r in rows)
    extra_head, extra_rule = (
        " human-corrected (PPI) | its 95% interval | labels matched | people only |",
        "---:|---|---:|---:|",
    )
    lines = [
        f"{heading} Win rate during training",
        "",
        "| step | win rate | 95% interval (Wilson) | judged | failed | length-controlled |"
        + (extra_head if labelled else ""),
        "|---:|---:|---|---:|---:|---:|" + (extra_rule if labelled else ""),
    ]
    notes = []
    for r in rows:
        interval = "-" if r.get("low") is None else f"{num(r['low'])} – {num(r['high'])}"
        line = (
            f"| {r['step']} | {num(r.get('win_rate'))} | {interval} | {r['n']} | {r['failures']} | {num(r.get('lc'))} |"
        )
        if labelled:
            ppi = "-" if r.get("ppi_low") is None else f"{num(r['ppi_low'])} – {num(r['ppi_high'])}"
            line += f" {num(r.get('ppi'))} | {ppi} | {r.get('human_n', 0)} | {num(r.get('human'))} |"
            notes += [f"Step {r['step']}: {r['labels_note']}."] if r.get("labels_note") else []
        lines.append(line)
    return [*lines, "", LABELS_NOTE if labelled else JUDGE_NOTE, *notes, ""]
