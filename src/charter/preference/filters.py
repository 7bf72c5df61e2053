"""The dataset's filters, each written once: what a filter looks at in a preference row (`Candidate`), the filters
in the order they apply (`Waterfall`), best-vs-worst among a prompt's samples, and the length balance; and the one
engine that runs them (`Selection`): a preference dataset of any size, or a list of rows, is filtered in SQLite, a
window of rows at a time, in the order of the report's waterfall.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import math
import sqlite3
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson

from charter.preference.config import FiltersConfig
from charter.preference.selection import choose_rows
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


_FIELDS = [f.name for f in dataclasses.fields(Candidate)]
_COLUMNS = ", ".join(f'"{f}"' for f in _FIELDS)  # "index" is a keyword in SQL


def _stored(row: tuple) -> Candidate:
    """A candidate read back from SQLite, which keeps booleans as 0 and 1."""
    flags = {
        f: None if row[i] is None else bool(row[i])
        for i, f in enumerate(_FIELDS)
        if f in ("position_consistent", "chosen_verified", "chosen_longer")
    }
    return dataclasses.replace(Candidate(*row), **flags)


class Selection:
    """The filters' one engine, for a dataset of any size: the candidates go into SQLite as the rows are written
    (a scratch file, or memory for rows already in a list: `select`), best-vs-worst and the look-back filters run
    over it a window at a time, and the kept positions stream out. Nothing per row stays in Python, so with a file
    memory is flat from a thousand rows to millions."""

    def __init__(self, path: Path | None, waterfall: Waterfall, strategy: str, window: int = 5000) -> None:
        self.waterfall, self.strategy, self.window = waterfall, strategy, window
        self.path = path
        if path is not None:
            path.unlink(missing_ok=True)  # left by a run that was killed while building
        self.db = sqlite3.connect(":memory:" if path is None else path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=OFF")
        self.db.execute("PRAGMA synchronous=OFF")
        # alone: the drop by a filter that looks at the row alone, applied after best-vs-worst as `reason`
        self.db.execute(f'CREATE TABLE c ({_COLUMNS}, alone TEXT, reason TEXT, PRIMARY KEY ("index"))')
        self.db.execute("CREATE TABLE seen (digest BLOB PRIMARY KEY) WITHOUT ROWID")
        self.db.execute("BEGIN")
        self.pending: list[tuple] = []
        self.total = 0
        self.verified = False

    def add(self, row: PreferenceRow) -> PreferenceRow:
        """Record the row's candidate; returns the row (so rows pass through on their way to the file)."""
        self.add_candidate(Candidate.of(row, self.total))
        return row

    def add_candidate(self, candidate: Candidate) -> None:
        """Record the next candidate (its `index` is its position)."""
        self.total += 1
        self.verified |= candidate.chosen_verified is not None
        self.pending.append((*(getattr(candidate, f) for f in _FIELDS), self.waterfall.alone(candidate), None))
        if len(self.pending) >= self.window:
            self._insert()

    def _insert(self) -> None:
        self.db.executemany(f"INSERT INTO c VALUES ({', '.join('?' * (len(_FIELDS) + 2))})", self.pending)
        self.pending = []

    def _windows(self, columns: str, where: str = "") -> Iterator[list[tuple]]:
        """The rows not dropped yet (and matching `where`), `window` at a time in position order (`columns` start
        with "index"); no read stays open between windows, so each window's decisions are written before the
        next is read."""
        last = -1
        while window := self.db.execute(
            f'SELECT {columns} FROM c WHERE reason IS NULL{where} AND "index" > ? ORDER BY "index" LIMIT ?',
            (last, self.window),
        ).fetchall():
            last = window[-1][0]
            yield window

    def run(self) -> dict[str, int]:
        """Apply the filters; returns how many rows each filter dropped, and how many are kept (`preferences`)."""
        db, waterfall = self.db, self.waterfall
        self._insert()
        db.execute("COMMIT")
        band = waterfall.filters.length_balance
        counts = first_counts(self.verified, self.strategy, self.total, band is not None)
        if self.strategy == "best_vs_worst":
            self._best_vs_worst()
        db.execute("UPDATE c SET reason = alone WHERE reason IS NULL")
        if waterfall.looks_back:
            # only rows whose texts recur can be duplicates; without a cap, only they can be dropped at all
            db.execute("CREATE TABLE recurring (digest BLOB PRIMARY KEY) WITHOUT ROWID")
            db.execute(
                "INSERT INTO recurring SELECT digest FROM c WHERE reason IS NULL GROUP BY digest HAVING COUNT(*) > 1"
            )
            where = "" if waterfall.filters.max_per_principle else " AND digest IN recurring"
            for window in self._windows('"index", first_principle, digest, digest IN recurring', where):
                digests = [digest for *_, digest, recurs in window if recurs]
                seen = {
                    d
                    for (d,) in db.execute(
                        f"SELECT digest FROM seen WHERE digest IN ({','.join('?' * len(digests))})", digests
                    )
                }
                dropped, kept = [], []
                for index, principle, digest, recurs in window:
                    reason = waterfall.after(principle, digest in seen)
                    if reason:
                        dropped.append((reason, index))
                    elif recurs:
                        seen.add(digest)
                        kept.append((digest,))
                db.execute("BEGIN")
                db.executemany("INSERT OR IGNORE INTO seen VALUES (?)", kept)
                db.executemany('UPDATE c SET reason = ? WHERE "index" = ?', dropped)
                db.execute("COMMIT")
        if band is not None:
            self._balance_lengths(band)
        for reason, n in db.execute("SELECT reason, COUNT(*) FROM c WHERE reason IS NOT NULL GROUP BY reason"):
            counts[reason] += n
        counts["preferences"], counts["calibrated"] = db.execute(
            "SELECT COUNT(*), COUNT(p_chosen_calibrated) FROM c WHERE reason IS NULL"
        ).fetchone()
        return counts

    def _balance_lengths(self, band: tuple[float, float]) -> None:
        """`length_balance` over the kept rows, in SQL: the thinned side's least confident rows are dropped."""
        db = self.db
        longer, shorter = db.execute(
            "SELECT COALESCE(SUM(chosen_longer = 1), 0), COALESCE(SUM(chosen_longer = 0), 0) FROM c"
            " WHERE reason IS NULL"
        ).fetchone()
        side, k = length_balance_drops(longer, shorter, band)
        if side is None or not k:
            return
        db.execute("BEGIN")
        db.execute(
            'UPDATE c SET reason = \'dropped_length_balance\' WHERE "index" IN (SELECT "index" FROM c WHERE'
            ' reason IS NULL AND chosen_longer = ? ORDER BY p_chosen, "index" LIMIT ?)',
            (int(side), k),
        )
        db.execute("COMMIT")

    def _best_vs_worst(self) -> None:
        """Per prompt, only the judged pair of the best sample against the worst stays."""
        db = self.db
        db.execute('CREATE TABLE not_best ("index" INTEGER PRIMARY KEY)')
        db.execute("BEGIN")
        cursor = db.execute(f"SELECT {_COLUMNS} FROM c WHERE pair_kind = 'samples' ORDER BY prompt_id, \"index\"")
        for _, group in itertools.groupby(map(_stored, cursor), key=lambda c: c.prompt_id):
            rows = list(group)
            best = {row.index for row in best_vs_worst(rows)}
            db.executemany("INSERT INTO not_best VALUES (?)", [(row.index,) for row in rows if row.index not in best])
        db.execute(
            'UPDATE c SET reason = \'dropped_not_best_vs_worst\' WHERE "index" IN (SELECT "index" FROM not_best)'
        )
        db.execute("COMMIT")

    def kept(self) -> Iterator[int]:
        """The kept rows' positions, ascending."""
        for (index,) in self.db.execute('SELECT "index" FROM c WHERE reason IS NULL ORDER BY "index"'):
            yield index

    def close(self) -> None:
        self.db.close()
        if self.path is not None:
            self.path.unlink(missing_ok=True)


def select(
    rows: Iterable[Candidate],
    filters: FiltersConfig,
    strategy: str = "all",
    calibrated_min_confidence: float | None = None,
) -> tuple[list[int], dict[str, int]]:
    """The indices of the rows the filters keep, in order, and how many each filter dropped (see `Waterfall`); the
    rows' indices are their positions."""
    selection = Selection(None, Waterfall(filters, calibrated_min_confidence), strategy)
    try:
        for row in rows:
            selection.add_candidate(row)
        counts = selection.run()
        return list(selection.kept()), counts
    finally:
        selection.close()


def apply_filters(
    rows: list[PreferenceRow],
    filters: FiltersConfig,
    strategy: str = "all",
    calibrated_min_confidence: float | None = None,
) -> tuple[list[PreferenceRow], dict[str, int]]:
    """Filter preference rows; returns the kept rows and how many each filter dropped (see `select`)."""
    kept, counts = select(
        (Candidate.of(row, i) for i, row in enumerate(rows)), filters, strategy, calibrated_min_confidence
    )
    if filters.diversity is not None:
        return choose_rows([rows[i] for i in kept], filters.diversity, counts), counts
    return [rows[i] for i in kept], counts
