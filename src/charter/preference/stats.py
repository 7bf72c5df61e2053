"""Judge diagnostics over a run's current judgments, for the run report and the dataset card alike.

The figures read single JSON fields with SQLite's json functions instead of decoding every record: at
10,000 pairs that is the difference between a fraction of a second and seconds.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Iterator
from typing import Any

from pydantic import Field

from charter.records import Fingerprints, PreferenceRow, Record
from charter.runs.store import RunStore


class Figures(Record):
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


class JudgeStats(Figures):
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
    (`charter.preference.health`)."""
    identical: int = 0
    """Pairs judged whose two responses are the same text (a revision that repeats its first answer): a tie."""
    longer_wins_rate: float | None = None
    """Among decided pairs of unequal length, how often the longer response won."""
    longer_decided: int = 0
    """Decided pairs of unequal length."""
    per_principle: dict[str, Figures] = Field(default_factory=dict)
    """The figures from each judge principle's own probabilities."""
    per_critique_principle: dict[str, Figures] = Field(default_factory=dict)
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

    def figures(self) -> Figures:
        return Figures(
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


def _ordered(tallies: dict[str, _Tally], order: Iterable[str]) -> dict[str, Figures]:
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
#: the principles and panel members) on one side of 0.5, neither at 0.5 (charter.preference.health)
DECISIVE = (
    "((json_extract(j.record, '$.p_a_ab') > 0.5 AND json_extract(j.record, '$.p_a_ba') > 0.5)"
    " OR (json_extract(j.record, '$.p_a_ab') < 0.5 AND json_extract(j.record, '$.p_a_ba') < 0.5))"
)
#: 1 where the pair `p` of a judgment compares two identical responses
IDENTICAL = "json_extract(p.record, '$.a') = json_extract(p.record, '$.b')"


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
