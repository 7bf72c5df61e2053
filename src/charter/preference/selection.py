"""The one engine of the dataset's filters (charter.preference.filters): a preference dataset of any size, or a
list of rows, is filtered in SQLite, a window of rows at a time, in the order of the report's waterfall."""

from __future__ import annotations

import dataclasses
import itertools
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path

from charter.preference.config import FiltersConfig
from charter.preference.diverse import choose_rows
from charter.preference.filters import Candidate, Waterfall, best_vs_worst, first_counts, length_balance_drops
from charter.records import PreferenceRow

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
