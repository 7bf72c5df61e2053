"""Judge diagnostics over a run's current judgments, for the run report and the dataset card alike.

The figures read single JSON fields with SQLite's json functions instead of decoding every record: at
10,000 pairs that is the difference between a fraction of a second and seconds.
"""

from __future__ import annotations

from typing import Any, Iterable

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
        return Figures(judged=self.judged, position_inconsistency_rate=rate(self.inconsistent, self.checked),
                       revision_pairs=self.revision_pairs, revision_win_rate=rate(self.revision_wins, self.revision_pairs),
                       mean_p_revision=rate(self.p_revision_sum, self.revision_pairs))


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


def _pair_facts(store: RunStore, fp: Fingerprints) -> dict[str, dict]:
    """pair_id -> kind, sources, prompt id and the two responses' lengths in characters (current pairs)."""
    sources = fp.sources()
    rows = store.execute(
        "SELECT pair_id, prompt_id, kind, json_extract(record, '$.a_source'), json_extract(record, '$.b_source'),"
        f" length(json_extract(record, '$.a')), length(json_extract(record, '$.b')) FROM pairs"
        f" WHERE source_fingerprint IN ({_marks(sources)})", sources)
    keys = ("prompt_id", "kind", "a_source", "b_source", "len_a", "len_b")
    return {row[0]: dict(zip(keys, row[1:])) for row in rows}


def _critique_principles(store: RunStore, fp: Fingerprints) -> dict[str, set[str]]:
    """prompt_id -> the principle ids used in its critique rounds."""
    found: dict[str, set[str]] = {}
    for prompt_id, principle_id in store.execute(
        "SELECT c.prompt_id, json_extract(r.value, '$.principle_id') FROM chains c, json_each(c.record, '$.rounds') r"
        " WHERE c.fingerprint = ?", (fp.critique,)
    ):
        if principle_id is not None:
            found.setdefault(prompt_id, set()).add(principle_id)
    return found


def _judge_principles(store: RunStore, fp: Fingerprints) -> dict[str, list[tuple]]:
    """pair_id -> [(principle_id, p_a, consistent)] from each successful judgment's votes."""
    found: dict[str, list[tuple]] = {}
    for pair_id, *entry in store.execute(
        "SELECT j.pair_id, json_extract(p.value, '$.principle_id'), json_extract(p.value, '$.p_a'),"
        " json_extract(p.value, '$.consistent') FROM judgments j, json_each(j.record, '$.principles') p"
        " WHERE j.fingerprint = ? AND j.status = 'ok'", (fp.judge,)
    ):
        found.setdefault(pair_id, []).append(tuple(entry))
    return found


def _ordered(tallies: dict[str, _Tally], order: Iterable[str]) -> dict[str, Figures]:
    known = [p for p in order if p in tallies]
    return {p: tallies[p].figures() for p in known + sorted(set(tallies) - set(known))}


def judge_stats(store: RunStore, fp: Fingerprints, principle_order: Iterable[str] = ()) -> JudgeStats:
    """Judge diagnostics over the current pairs' successful judgments (current judge settings)."""
    pairs, rounds, per_judge = _pair_facts(store, fp), _critique_principles(store, fp), _judge_principles(store, fp)
    overall, per_principle, per_critique = _Tally(), {}, {}
    longer = decided = failed = 0
    for pair_id, status, p_a, consistent in store.execute(
        "SELECT pair_id, status, json_extract(record, '$.p_a'), json_extract(record, '$.position_consistent')"
        " FROM judgments WHERE fingerprint = ? ORDER BY rowid", (fp.judge,)
    ):
        pair = pairs.get(pair_id)
        if pair is None:
            continue  # a pair of older chains or samples
        if status != "ok":
            failed += 1
            continue
        side = revision_side(pair["kind"], pair["a_source"], pair["b_source"])
        overall.add(p_a, _bool(consistent), side)
        for principle_id, p, principle_consistent in per_judge.get(pair_id, ()):
            per_principle.setdefault(principle_id, _Tally()).add(p, _bool(principle_consistent), side)
        if side is not None:
            for principle_id in rounds.get(pair["prompt_id"], ()):
                per_critique.setdefault(principle_id, _Tally()).add(p_a, None, side)
        if p_a != 0.5 and pair["len_a"] is not None and pair["len_a"] != pair["len_b"]:
            decided += 1
            longer += (p_a > 0.5) == (pair["len_a"] > pair["len_b"])
    order = list(principle_order)
    return JudgeStats(
        **overall.figures().model_dump(), failed=failed, position_checked=overall.checked,
        position_inconsistent=overall.inconsistent, longer_wins_rate=rate(longer, decided), longer_decided=decided,
        per_principle=_ordered(per_principle, order), per_critique_principle=_ordered(per_critique, order),
    )


def judge_p_values(store: RunStore, fp: Fingerprints) -> list[float]:
    """p_a of every current successful judgment (for the histogram)."""
    sources = fp.sources()
    rows = store.execute(
        "SELECT json_extract(j.record, '$.p_a') FROM judgments j JOIN pairs p ON p.pair_id = j.pair_id"
        f" WHERE j.fingerprint = ? AND j.status = 'ok' AND p.source_fingerprint IN ({_marks(sources)})",
        (fp.judge, *sources))
    return [p for (p,) in rows if p is not None]


def chosen_longer_rate(rows: Iterable[PreferenceRow]) -> tuple[float | None, int]:
    """Among rows whose two responses differ in length, how often `chosen` is the longer; and how many."""
    flags = [len(r.chosen[-1].content) > len(r.rejected[-1].content) for r in rows
             if len(r.chosen[-1].content) != len(r.rejected[-1].content)]
    return rate(sum(flags), len(flags)), len(flags)
