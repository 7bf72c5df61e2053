"""The dataset's filters, each written once: what a filter looks at in a preference row (`Candidate`), the filters
in the order they apply (`Waterfall`), best-vs-worst among a prompt's samples, and the length balance. The one
engine that runs them over any number of rows is charter.preference.selection."""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from dataclasses import dataclass

import orjson

from charter.preference.config import FiltersConfig
from charter.records import PreferenceRow, as_dicts


@dataclass(frozen=True, slots=True)
class Candidate:
    """What the filters look at in a preference row: a few fields and a digest of its texts. Small, so that
    a dataset of any size is filtered without holding its rows."""

    index: int
    prompt_id: str | None
    pair_kind: str
    chosen_source: str
    rejected_source: str
    p_chosen: float
    p_chosen_calibrated: float | None
    position_consistent: bool | None
    first_principle: str
    digest: bytes
    chosen_verified: bool | None = None
    chosen_longer: bool | None = None
    """The chosen response is the longer one (characters); None when both are as long."""

    @classmethod
    def of(cls, row: PreferenceRow, index: int) -> Candidate:
        text = orjson.dumps([as_dicts(row.prompt), as_dicts(row.chosen), as_dicts(row.rejected)])
        chosen, rejected = len(row.chosen[-1].content), len(row.rejected[-1].content)
        return cls(
            index,
            row.prompt_id,
            row.pair_kind,
            row.chosen_source,
            row.rejected_source,
            row.p_chosen,
            row.p_chosen_calibrated,
            row.position_consistent,
            row.principle_ids[0] if row.principle_ids else "",
            hashlib.sha256(text).digest(),
            row.chosen_verified,
            None if chosen == rejected else chosen > rejected,
        )


def best_vs_worst(rows: list[Candidate]) -> list[Candidate]:
    """Per prompt, keep only the judged pair of the best sample against the worst one."""
    by_prompt: dict[str | None, list[Candidate]] = defaultdict(list)
    kept = [r for r in rows if r.pair_kind != "samples"]
    for row in rows:
        if row.pair_kind == "samples":
            by_prompt[row.prompt_id].append(row)
    for group in by_prompt.values():
        score: dict[str, list[float]] = defaultdict(list)
        for row in group:
            score[row.chosen_source].append(row.p_chosen)
            score[row.rejected_source].append(1 - row.p_chosen)
        mean = {s: sum(v) / len(v) for s, v in score.items()}
        best, worst = max(mean, key=mean.get), min(mean, key=mean.get)  # type: ignore[arg-type]
        kept += [r for r in group if {r.chosen_source, r.rejected_source} == {best, worst}]
    return kept


FILTER_COUNTS = (
    "dropped_ties",
    "dropped_low_confidence_calibrated",
    "dropped_low_confidence",
    "dropped_inconsistent",
    "dropped_duplicates",
    "dropped_principle_cap",
)
EPS = 1e-9  # 0.6 - 0.5 is 0.0999...: a margin equal to the threshold is not below it


class Waterfall:
    """The filters, in the order they apply to each row after best-vs-worst (the report's waterfall): first those
    that look at the row alone, then dedupe and the per-principle cap, which look at the rows kept before it.

    A row with a calibrated probability is held to the calibration's threshold (a row whose calibrated side
    flips is always dropped); others to `filters.min_confidence` on the judge's probability."""

    def __init__(self, filters: FiltersConfig, calibrated_min_confidence: float | None = None) -> None:
        self.filters = filters
        self.cal_min = filters.min_confidence if calibrated_min_confidence is None else calibrated_min_confidence
        self.per_principle: dict[str, int] = defaultdict(int)

    def alone(self, row: Candidate) -> str | None:
        """The count that drops the row for what it is, or None."""
        f = self.filters
        if f.verify == "drop" and row.chosen_verified is False:
            return "dropped_failed_verification"
        if f.drop_ties and abs(row.p_chosen - 0.5) < EPS:
            return "dropped_ties"
        if row.p_chosen_calibrated is not None and row.p_chosen_calibrated < 0.5 + self.cal_min - EPS:
            return "dropped_low_confidence_calibrated"
        if row.p_chosen_calibrated is None and row.p_chosen - 0.5 < f.min_confidence - EPS:
            return "dropped_low_confidence"
        if f.drop_inconsistent and row.position_consistent is False:
            return "dropped_inconsistent"
        return None

    @property
    def looks_back(self) -> bool:
        """Whether a row's fate depends on the rows kept before it."""
        return self.filters.dedupe or bool(self.filters.max_per_principle)

    def after(self, first_principle: str, duplicate: bool) -> str | None:
        """For a row that passed `alone`: the count that drops it given whether its texts were kept already, or
        None (then it is kept, and counted against its principle's cap)."""
        if self.filters.dedupe and duplicate:
            return "dropped_duplicates"
        cap = self.filters.max_per_principle
        if cap and self.per_principle[first_principle] >= cap:
            return "dropped_principle_cap"
        self.per_principle[first_principle] += 1
        return None


def length_balance_drops(longer: int, shorter: int, band: tuple[float, float]) -> tuple[bool | None, int]:
    """Which side to thin and by how many rows so that longer / (longer + shorter) lies in [low, high]: (True,
    k) drops k rows whose chosen is the longer, (False, k) k whose chosen is the shorter, (None, 0) none."""
    low, high = band
    total = longer + shorter
    if not total:
        return None, 0
    if longer / total > high + EPS:
        keep = math.floor(high * shorter / (1 - high) + EPS) if high < 1 else longer
        return True, max(longer - keep, 0)
    if longer / total < low - EPS:
        keep = math.floor(longer * (1 - low) / low + EPS) if low > 0 else shorter
        return False, max(shorter - keep, 0)
    return None, 0


def first_counts(rows_verified: bool, strategy: str, total: int, balanced: bool = False) -> dict[str, int]:
    """The counts of the waterfall before any row is looked at: each filter that can act at 0."""
    counts = {name: 0 for name in FILTER_COUNTS}
    counts["preferences_before_filters"] = total
    if balanced:
        counts["dropped_length_balance"] = 0
    if rows_verified:  # a step of the waterfall only where it can act
        counts["dropped_failed_verification"] = 0
    if strategy == "best_vs_worst":
        counts["dropped_not_best_vs_worst"] = 0
    return counts
