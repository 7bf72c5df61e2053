"""Judge diagnostics over a run's current judgments, for the run report and the dataset card alike.

The figures read single JSON fields with SQLite's json functions instead of decoding every record: at
10,000 pairs that is the difference between a fraction of a second and seconds.

What a reader must see first about a run's data, in one sentence each: a judge whose preferences cannot be told
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

import itertools
import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from pydantic import Field

from charter.records import Fingerprints, PreferenceRow, Record
from charter.runs.counts import FILTER_LABELS
from charter.runs.store import RunStore
from charter.stats.intervals import exact_interval


class JudgeFigures(Record):
    """Judge figures over a set of judged pairs."""

    judged: int = 0
    """Pairs judged successfully."""
    position_inconsistency_rate: float | None = None
    """Among pairs judged in both orders, the share whose two orders picked different winners."""
    revision_pairs: int = 0
    """Revision pairs among them."""
    revision_win_rate: float | None = None
    """How often the revision beat the initial response (a tie counts half)."""
    mean_p_revision: float | None = None
    """Mean probability that the revision is better."""


class JudgeStats(JudgeFigures):
    """Judge diagnostics of a run: overall, per judge principle and per critique principle."""

    failed: int = 0
    """Judgments that failed (no usable answer after retries)."""
    position_checked: int = 0
    """Pairs judged in both orders."""
    position_inconsistent: int = 0
    """Of those, pairs whose orders picked different winners."""
    decisive: int = 0
    """Of the pairs judged in both orders, those whose two readings (one an order, each pooled over the principles
    and panel members) picked the same response, neither at exactly 0.5: the test of a judge at chance
    (`charter.preference.stats`)."""
    identical: int = 0
    """Pairs judged whose two responses are the same text (a revision that repeats its first answer): a tie."""
    longer_wins_rate: float | None = None
    """Among decided pairs of unequal length, how often the longer response won."""
    longer_decided: int = 0
    """Decided pairs of unequal length."""
    per_principle: dict[str, JudgeFigures] = Field(default_factory=dict)
    """The figures from each judge principle's own probabilities."""
    per_critique_principle: dict[str, JudgeFigures] = Field(default_factory=dict)
    """Revision win rates grouped by the principles used in the critique rounds."""


class _Tally:
    def __init__(self) -> None:
        self.judged = self.checked = self.inconsistent = self.revision_pairs = 0
        self.revision_wins = self.p_revision_sum = 0.0

    def add(self, p_a: float, consistent: bool | None, side: str | None) -> None:
        self.judged += 1
        if consistent is not None:
            self.checked += 1
            self.inconsistent += not consistent
        if side is not None:
            p_revision = p_a if side == "a" else 1.0 - p_a
            self.revision_pairs += 1
            self.revision_wins += 1.0 if p_revision > 0.5 else 0.5 if p_revision == 0.5 else 0.0
            self.p_revision_sum += p_revision

    def figures(self) -> JudgeFigures:
        return JudgeFigures(
            judged=self.judged,
            position_inconsistency_rate=rate(self.inconsistent, self.checked),
            revision_pairs=self.revision_pairs,
            revision_win_rate=rate(self.revision_wins, self.revision_pairs),
            mean_p_revision=rate(self.p_revision_sum, self.revision_pairs),
        )


def rate(part: float, whole: float) -> float | None:
    return part / whole if whole else None


def revision_side(kind: str | None, a_source: str | None, b_source: str | None) -> str | None:
    """Which side ('a' or 'b') of a revision pair holds the revision; None for other pairs."""
    if kind != "revision":
        return None
    if a_source == "initial" and b_source != "initial":
        return "b"
    if b_source == "initial" and a_source != "initial":
        return "a"
    return None


def _bool(value: Any) -> bool | None:
    return None if value is None else bool(value)  # json_extract gives JSON true/false as 1/0


def _marks(values: list) -> str:
    return ",".join("?" * len(values)) or "NULL"


def _ordered(tallies: dict[str, _Tally], order: Iterable[str]) -> dict[str, JudgeFigures]:
    known = [p for p in order if p in tallies]
    return {p: tallies[p].figures() for p in known + sorted(set(tallies) - set(known))}


def _by_principle(votes: list[list[Any]]) -> list[tuple[str, float, bool | None]]:
    """A judgment's votes, one per principle: a panel's members' votes under a principle are pooled (their mean,
    consistent when the mean of each order picks the same winner), so a principle counts once per pair."""
    grouped: dict[str, list[list[Any]]] = {}
    for vote in votes:
        grouped.setdefault(vote[0], []).append(vote)
    out = []
    for principle_id, group in grouped.items():
        if len(group) == 1:
            out.append((principle_id, group[0][1], _bool(group[0][2])))
            continue
        p_ab = sum(v[3] for v in group) / len(group)
        both = all(v[4] is not None for v in group)
        p_ba = sum(v[4] for v in group) / len(group) if both else None
        consistent = None if p_ba is None else (p_ab > 0.5) == (p_ba > 0.5)
        out.append((principle_id, sum(v[1] for v in group) / len(group), consistent))
    return out


#: 1 where a judgment `j` is decisive: judged in both orders, its two readings (p_a_ab and p_a_ba, each pooled over
#: the principles and panel members) on one side of 0.5, neither at 0.5 (charter.preference.stats)
DECISIVE = (
    "((json_extract(j.record, '$.p_a_ab') > 0.5 AND json_extract(j.record, '$.p_a_ba') > 0.5)"
    " OR (json_extract(j.record, '$.p_a_ab') < 0.5 AND json_extract(j.record, '$.p_a_ba') < 0.5))"
)
#: 1 where the pair `p` of a judgment compares two identical responses: the same text, calling the same tools (or
#: none: a pair without calls has neither key)
IDENTICAL = (
    "(json_extract(p.record, '$.a') = json_extract(p.record, '$.b')"
    " AND json_extract(p.record, '$.a_tool_calls') IS json_extract(p.record, '$.b_tool_calls'))"
)


def chance_stats(store: RunStore, fp: Fingerprints) -> JudgeStats:
    """The figures of the test of a judge at chance alone (judged, failed, position checked and inconsistent,
    decisive, identical), in one aggregate query: what `charter status` needs, without `judge_stats`' pass over
    every judgment's principles and critique rounds."""
    sources = fp.sources()
    row = store.execute(
        "SELECT COUNT(*) FILTER (WHERE j.status = 'ok'), COUNT(*) FILTER (WHERE j.status != 'ok'),"
        " COUNT(json_extract(j.record, '$.position_consistent')) FILTER (WHERE j.status = 'ok'),"
        " SUM(json_extract(j.record, '$.position_consistent') = 0) FILTER (WHERE j.status = 'ok'),"
        f" SUM({DECISIVE}) FILTER (WHERE j.status = 'ok'), SUM({IDENTICAL}) FILTER (WHERE j.status = 'ok')"
        " FROM judgments j JOIN pairs p ON p.pair_id = j.pair_id"
        f" WHERE j.fingerprint = ? AND p.source_fingerprint IN ({_marks(sources)})",
        (fp.judge, *sources),
    )[0]
    judged, failed, checked, inconsistent, decisive, identical = (value or 0 for value in row)
    return JudgeStats(
        judged=judged,
        failed=failed,
        position_checked=checked,
        position_inconsistent=inconsistent,
        position_inconsistency_rate=rate(inconsistent, checked),
        decisive=decisive,
        identical=identical,
    )


def judge_stats(store: RunStore, fp: Fingerprints, principle_order: Iterable[str] = ()) -> JudgeStats:
    """Judge diagnostics over the current pairs' successful judgments (current judge settings).

    One query streams each judgment with its pair's facts, its per-principle votes and its prompt's critique
    principles, so memory stays flat however many pairs there are (a million pairs held as dicts took GBs)."""
    sources = fp.sources()
    overall, per_principle, per_critique = _Tally(), {}, {}
    longer = decided = failed = decisive = identical = 0
    sql = (
        "SELECT j.status, json_extract(j.record, '$.p_a'), json_extract(j.record, '$.position_consistent'), p.kind,"
        " json_extract(p.record, '$.a_source'), json_extract(p.record, '$.b_source'),"
        " length(json_extract(p.record, '$.a')), length(json_extract(p.record, '$.b')),"
        f" {IDENTICAL}, {DECISIVE},"
        " (SELECT json_group_array(json_array(json_extract(v.value, '$.principle_id'),"
        "  json_extract(v.value, '$.p_a'), json_extract(v.value, '$.consistent'),"
        "  json_extract(v.value, '$.p_a_ab'), json_extract(v.value, '$.p_a_ba')))"
        "  FROM json_each(j.record, '$.principles') v),"
        " (SELECT json_group_array(json_extract(r.value, '$.principle_id')) FROM chains c,"
        "  json_each(c.record, '$.rounds') r WHERE c.prompt_id = p.prompt_id AND c.fingerprint IS ?)"
        " FROM judgments j JOIN pairs p ON p.pair_id = j.pair_id"
        f" WHERE j.fingerprint = ? AND p.source_fingerprint IN ({_marks(sources)}) ORDER BY j.rowid"
    )
    for status, p_a, consistent, kind, a_source, b_source, len_a, len_b, same, sure, votes, rounds in store.stream(
        sql, (fp.critique, fp.judge, *sources)
    ):
        if status != "ok":
            failed += 1
            continue
        side = revision_side(kind, a_source, b_source)
        overall.add(p_a, _bool(consistent), side)
        identical += bool(same)
        decisive += bool(sure)
        for principle_id, p, principle_consistent in _by_principle(json.loads(votes or "[]")):
            per_principle.setdefault(principle_id, _Tally()).add(p, principle_consistent, side)
        if side is not None:
            for principle_id in {r for r in json.loads(rounds or "[]") if r is not None}:
                per_critique.setdefault(principle_id, _Tally()).add(p_a, None, side)
        if p_a != 0.5 and len_a is not None and len_a != len_b:
            decided += 1
            longer += (p_a > 0.5) == (len_a > len_b)
    order = list(principle_order)
    return JudgeStats(
        **overall.figures().model_dump(),
        failed=failed,
        position_checked=overall.checked,
        position_inconsistent=overall.inconsistent,
        decisive=decisive,
        identical=identical,
        longer_wins_rate=rate(longer, decided),
        longer_decided=decided,
        per_principle=_ordered(per_principle, order),
        per_critique_principle=_ordered(per_critique, order),
    )


def judge_p_values(store: RunStore, fp: Fingerprints, chunk: int = 65536) -> Iterator[Any]:
    """p_a of every current successful judgment (for the histogram), as numpy arrays of up to `chunk` values:
    the caller tallies them, so nothing per judgment is held however many there are."""
    import numpy as np

    sources = fp.sources()
    rows = store.stream(
        "SELECT json_extract(j.record, '$.p_a') FROM judgments j JOIN pairs p ON p.pair_id = j.pair_id"
        f" WHERE j.fingerprint = ? AND j.status = 'ok' AND p.source_fingerprint IN ({_marks(sources)})"
        " AND json_extract(j.record, '$.p_a') IS NOT NULL",
        (fp.judge, *sources),
        size=5000,
    )
    while len(values := np.fromiter((p for (p,) in itertools.islice(rows, chunk)), dtype=float)):
        yield values


def chosen_longer_rate(rows: Iterable[PreferenceRow]) -> tuple[float | None, int]:
    """Among rows whose two responses differ in length, how often `chosen` is the longer; and how many."""
    flags = [
        len(r.chosen[-1].content) > len(r.rejected[-1].content)
        for r in rows
        if len(r.chosen[-1].content) != len(r.rejected[-1].content)
    ]
    return rate(sum(flags), len(flags)), len(flags)


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
