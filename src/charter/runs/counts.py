"""The counts a run keeps per stage, and their labels: one wording for status, report and dataset card."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypedDict

#: count keys in the order status, report and card show them, with their labels
COUNT_LABELS: dict[str, str] = {
    "prompts_total": "prompts read",
    "prompts_empty": "prompts skipped: empty",
    "prompts_duplicate": "prompts skipped: duplicate",
    "prompts_too_long": "prompts over the length limit",
    "prompts_skipped_too_long": "prompts skipped: too long",
    "prompts_truncated": "prompts truncated to the length limit",
    "prompts_used": "prompts used",
    "chains": "critique chains",
    "chains_unrevised": "revisions equal to the first answer (no pair)",
    "samples": "prompts with policy samples",
    "pairs": "response pairs",
    "judged": "pairs judged",
    "judge_failures": "judge failures",
    "failures": "failures (all stages)",
    "preferences_before_filters": "preference rows before filters",
    "preferences": "preference rows written",
    "calibrated": "rows with a calibrated probability",
    "sft": "SFT rows written",
    "sft_failed_verification": "SFT rows whose revision failed verification",
}

#: filters in the order the dataset builder applies them (charter.preference.filters.Waterfall);
#: each row is dropped by at most one, so the rows left after each step add up
FILTER_LABELS: dict[str, str] = {
    "dropped_not_best_vs_worst": "not the best-vs-worst pair of a prompt's samples",
    "dropped_failed_verification": "chosen response failed the prompt's verifier",
    "dropped_ties": "ties",
    "dropped_low_confidence_calibrated": "calibrated confidence below the threshold",
    "dropped_low_confidence": "judge confidence below the threshold",
    "dropped_inconsistent": "the two presentation orders disagreed",
    "dropped_duplicates": "exact duplicates",
    "dropped_principle_cap": "over the per-principle cap",
    "dropped_length_balance": "over the length balance (chosen the longer too often, or too rarely)",
    "dropped_diversity": "not picked to cover the embedding space (diversity selection)",
}


def ordered_counts(counts: dict[str, Any]) -> list[tuple[str, int]]:
    """(label, value) rows: the known counts in pipeline order, then any others by name; filters left out."""
    known = [(label, counts[key]) for key, label in COUNT_LABELS.items() if key in counts]
    extra = sorted(
        (key.replace("_", " "), value)
        for key, value in counts.items()
        if key not in COUNT_LABELS
        and not key.startswith("dropped_")
        and isinstance(value, (int, float))
        and not isinstance(value, bool)
    )
    return known + extra


class FilterStep(TypedDict):
    """One step of the dataset filters' waterfall."""

    step: str
    """The filter's label ("before filters" for the first row)."""
    dropped: int | None
    """Rows it dropped (None on the first row)."""
    remaining: int
    """Rows left after it."""


def filter_steps(counts: Mapping[str, Any]) -> list[FilterStep]:
    """The dataset filters as a waterfall: rows dropped by each filter and the rows left after it."""
    left = counts.get("preferences_before_filters")
    if left is None:
        return []
    steps = [FilterStep(step="before filters", dropped=None, remaining=left)]
    others = sorted(k for k in counts if k.startswith("dropped_") and k not in FILTER_LABELS)
    for key in [*FILTER_LABELS, *others]:
        if key in counts:
            left -= counts[key]
            label = FILTER_LABELS.get(key) or key.removeprefix("dropped_").replace("_", " ")
            steps.append(FilterStep(step=label, dropped=counts[key], remaining=left))
    return steps
