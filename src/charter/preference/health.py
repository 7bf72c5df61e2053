"""What a reader must see first about a run's data, in one sentence each: a judge whose preferences cannot be told
from chance, items that failed, and a dataset that kept few of its pairs (or none), with the reasons.

The report, `charter status`, the dataset card and the Croissant file put these sentences first, so that a user who
reads one screen knows whether the rows mean anything.

**A judge at chance.** Among the pairs judged in both orders (identical responses left out: no judge can decide
them), a pair is *decisive* when its two readings, one an order, each pooled over the principles and panel members,
pick the same response, neither at exactly 0.5. A judge that ignores the responses, whose readings depend on the
position shown and on noise, picks the same response in both orders only when its two readings pick different
positions: at most half the time (2q(1 - q) <= 1/2 for a first-position rate q), and never for a judge that always
picks A. The preferences are said to be indistinguishable from chance unless the exact (Clopper-Pearson) 95%
interval of the decisive share lies above 1/2: a one-sided test at 2.5% against the best a judge at chance can do,
valid at any n (the Wilson interval's would reject a coin's 4 of 4 at 6.25%). A judge position-inconsistent on most
pairs fails it, as does one whose probabilities sit at 0.5 (each order's reading on the other side of 0.5 from the
other's). A run judged in one order has no such test (nothing separates the response from its position).

**Few rows.** A run whose preference rows number less than half of its response pairs (`KEPT_SHARE`) says where
the others went: prompts that made no pair, failed judgments, pairs not judged yet, and each filter's drops.
"""

from __future__ import annotations

from collections.abc import Mapping

from charter.preference.stats import JudgeStats
from charter.runs.counts import FILTER_LABELS
from charter.stats.intervals import exact_interval

#: below this share of its response pairs kept as rows, a dataset says where the rest went
KEPT_SHARE = 0.5

#: the unit of each stage's items, in the failure sentence
_UNITS = {"judge": "judgments", "critique": "critique chains", "samples": "policy samples", "checklists": "checklists"}


def _pct(part: float, whole: float) -> str:
    return f"{100 * part / whole:.1f}%"


def chance_sentence(stats: JudgeStats) -> str | None:
    """The sentence that says the judge's preferences cannot be told from chance; None where they can, or where
    nothing was judged in both orders."""
    n = stats.position_checked - min(stats.identical, stats.position_checked)
    if n <= 0:
        return None
    low, high = exact_interval(stats.decisive, n)
    if low > 0.5:
        return None
    inconsistent = (
        f"; {stats.position_inconsistent} of {stats.position_checked} pairs "
        f"({_pct(stats.position_inconsistent, stats.position_checked)}) were position-inconsistent"
        if stats.position_inconsistent
        else ""
    )
    few = stats.decisive > n / 2  # more than half, but too few pairs to exclude half
    return (
        f"These preferences cannot{' yet' if few else ''} be told from chance: the judge picked the same response "
        f"in both orders in {stats.decisive} of {n} pairs ({_pct(stats.decisive, n)}, 95% "
        f"CI {100 * low:.1f}-{100 * high:.1f}%), where a judge that ignores the responses does so in at most half"
        f"{'; too few pairs to tell the two apart' if few else ''}{inconsistent}."
    )


def failure_sentence(by_kind: Mapping[str, Mapping[str, int]], counts: Mapping[str, int]) -> str | None:
    """The sentence that counts the items still failing, by stage and kind; None without failures."""
    parts = []
    for stage, kinds in by_kind.items():
        failed = sum(kinds.values())
        if not failed:
            continue
        of = {"judge": counts.get("pairs"), "critique": counts.get("prompts_used")}.get(stage)
        whole = f" of {of}" if of else ""
        shown = ", ".join(f"{kind}: {n}" for kind, n in kinds.items())
        parts.append(f"{failed}{whole} {_UNITS.get(stage, stage + ' items')} ({shown})")
    if not parts:
        return None
    listed = parts[0] if len(parts) == 1 else f"{', '.join(parts[:-1])} and {parts[-1]}"
    return f"{listed} failed; a failed item makes no row."


def lost_parts(counts: Mapping[str, int], stats: JudgeStats | None = None) -> list[str]:
    """Where the response pairs (and the prompts before them) went, each with its count: prompts that made no pair,
    failed judgments, pairs not judged, and each filter's drops."""
    parts = []
    used, pairs = counts.get("prompts_used"), counts.get("pairs") or 0
    if used and pairs < used and not counts.get("samples"):
        unrevised = counts.get("chains_unrevised") or 0
        why = f" ({unrevised} revisions repeat their first answer)" if unrevised else ""
        parts.append(f"{used - pairs} of {used} prompts made no response pair{why}")
    failed, judged = counts.get("judge_failures") or 0, counts.get("judged") or 0
    if failed:
        parts.append(f"{failed} judgments failed")
    unjudged = pairs - judged - failed
    if unjudged > 0 and "preferences_before_filters" in counts:
        parts.append(f"{unjudged} pairs were not judged")
    for key, label in FILTER_LABELS.items():
        dropped = counts.get(key) or 0
        if not dropped:
            continue
        part = f"{dropped} dropped by the filter '{label}'"
        if key == "dropped_ties" and stats is not None and stats.identical:
            part += (
                f" ({stats.identical} of the pairs judged compare two identical responses: revisions that repeat "
                "their first answer)"
            )
        parts.append(part)
    return parts


def rows_sentence(counts: Mapping[str, int], stats: JudgeStats | None = None) -> str | None:
    """The sentence that says why a written dataset has no rows, or fewer than `KEPT_SHARE` of its response pairs;
    None where it kept enough, or where no dataset was written."""
    rows, pairs = counts.get("preferences"), counts.get("pairs") or 0
    if rows is None or (pairs and rows >= KEPT_SHARE * pairs):
        return None
    if rows and not pairs:
        return None
    why = "; ".join(lost_parts(counts, stats)) or "no prompt was used"
    if rows == 0:
        return f"No preference rows: {why}."
    return f"Only {rows} preference rows from {pairs} response pairs ({_pct(rows, pairs)}): {why}."


def headline(
    stats: JudgeStats | None, counts: Mapping[str, int], by_kind: Mapping[str, Mapping[str, int]]
) -> list[str]:
    """The sentences to put first: a judge at chance, failures, few rows (those that apply, in that order)."""
    found = [
        chance_sentence(stats) if stats is not None else None,
        failure_sentence(by_kind, counts),
        rows_sentence(counts, stats),
    ]
    return [sentence for sentence in found if sentence]
