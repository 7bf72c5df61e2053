"""Diverse selection: `filters.diversity` keeps, of the rows the other filters kept, `size` chosen to cover the
embedding space of one field (greedy k-center or the greedy Vendi maximiser, below), instead of the first `size`.

The choice depends only on the kept rows' texts (in pair-id order), the settings and the seed, so the same rows give
the same choice; the settings are part of the filters' fingerprint, so a change rebuilds the dataset. For a dataset
being written the texts go to a scratch SQLite file as the rows pass and are embedded a block at a time: memory
holds the n x d embeddings (1.5 KB a row for MiniLM) and nothing else per row.

**Covering subsets.** Greedy k-center and a greedy Vendi maximiser, and the coverage radius
they are judged by.

Both take n unit vectors (rows) and return the positions of `size` of them in the order picked. The first pick is
seeded; each later pick is a maximum (k-center) or minimum (Vendi) over the rows, compared at `DIGITS` decimals so
that the last bits of a matrix product (which differ between machines and BLAS builds) never decide, and ties go to
the lowest position. Cost: O(n · size · d) time (one n x d matrix-vector product a pick), O(n) memory beside the
vectors.
"""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from charter.preference.config import DiversityFilter, FiltersConfig
from charter.providers.embeddings import embedder
from charter.records import Message, PreferenceRow
from charter.stats.diversity import unit_rows

#: texts embedded at once
BLOCK = 4096


def _content(message: Any) -> tuple[str, str]:
    if isinstance(message, Message):
        return message.role, message.content
    content = message.get("content") if isinstance(message, Mapping) else None
    if not isinstance(message, Mapping) or not isinstance(content, str | None):
        raise ValueError("expected text or a list of {role, content} messages")
    return str(message.get("role", "")), content or ""


def field_text(value: Any, field: str) -> str:
    """The text of one field of a row: a string as it is; of messages, the user messages' content for a prompt
    (joined by blank lines; every message's where there is no user message) and the last message's otherwise.
    Anything else is a `ValueError`."""
    if isinstance(value, str):
        return value
    if not isinstance(value, Sequence):
        raise ValueError(f"expected text or a list of messages, got {type(value).__name__}")
    if not value:
        return ""
    messages = [_content(m) for m in value]
    if field != "prompt":
        return messages[-1][1]
    user = [content for role, content in messages if role == "user"]
    return "\n\n".join(user or [content for _, content in messages])


def _picked(count: int, texts: Iterable[str], config: DiversityFilter) -> list[int]:
    """Positions (ascending) of the `config.size` of `count` texts the method picks; all where there are no more."""
    if count <= config.size:
        return list(range(count))
    embed = embedder(config.embedding_model)
    vectors: np.ndarray | None = None
    batch: list[str] = []
    done = 0
    for text in itertools.chain(texts, [None]):
        if text is not None:
            batch.append(text)
        if batch and (len(batch) == BLOCK or text is None):
            block = np.asarray(embed(batch), dtype=np.float32)
            if vectors is None:
                vectors = np.empty((count, block.shape[1]), dtype=np.float32)
            vectors[done : done + len(batch)] = block
            done, batch = done + len(batch), []
    return sorted(METHODS[config.method](vectors, config.size, config.seed))


def _recount(counts: dict[str, int], before: int, chosen: int, calibrated: int) -> None:
    counts["dropped_diversity"] = before - chosen
    counts["preferences"] = chosen
    counts["calibrated"] = calibrated


def choose_rows(rows: list[PreferenceRow], config: DiversityFilter, counts: dict[str, int]) -> list[PreferenceRow]:
    """`filters.diversity` over rows in memory (in pair-id order); `counts` gets `dropped_diversity` and the new
    `preferences` and `calibrated`."""
    picked = [
        rows[i] for i in _picked(len(rows), (field_text(getattr(r, config.field), config.field) for r in rows), config)
    ]
    _recount(counts, len(rows), len(picked), sum(r.p_chosen_calibrated is not None for r in picked))
    return picked


class DiverseSelection:
    """`filters.diversity` for a dataset being written: `add` records each row's text of the field (in a scratch
    SQLite file) as the rows pass; `choose` picks among the positions the other filters kept."""

    def __init__(self, path: Path, config: DiversityFilter) -> None:
        self.config, self.path = config, path
        path.unlink(missing_ok=True)  # left by a run that was killed while building
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=OFF")
        self.db.execute("PRAGMA synchronous=OFF")
        self.db.execute("CREATE TABLE t (position INTEGER PRIMARY KEY, text TEXT, calibrated INTEGER)")
        self.db.execute("CREATE TABLE kept (position INTEGER PRIMARY KEY)")
        self.db.execute("BEGIN")
        self.total = 0

    def add(self, row: PreferenceRow) -> PreferenceRow:
        """Record the row's text; returns the row (so rows pass through on their way to the file)."""
        text = field_text(getattr(row, self.config.field), self.config.field)
        self.db.execute("INSERT INTO t VALUES (?, ?, ?)", (self.total, text, row.p_chosen_calibrated is not None))
        self.total += 1
        return row

    def _texts(self) -> Iterator[str]:
        last = -1
        while window := self.db.execute(
            "SELECT t.position, text FROM t JOIN kept USING (position) WHERE t.position > ? ORDER BY t.position"
            " LIMIT ?",
            (last, BLOCK),
        ).fetchall():
            last = window[-1][0]
            yield from (text for _, text in window)

    def choose(self, kept: Iterable[int] | None, counts: dict[str, int]) -> list[int] | None:
        """The positions to keep (ascending) of those the other filters kept (`kept`; None: every row), or None
        for all rows; `counts` gets `dropped_diversity` and the new `preferences` and `calibrated`."""
        db = self.db
        positions = range(self.total) if kept is None else kept
        db.executemany("INSERT INTO kept VALUES (?)", ((p,) for p in positions))
        db.execute("COMMIT")
        before = db.execute("SELECT COUNT(*) FROM kept").fetchone()[0]
        order = np.fromiter((p for (p,) in db.execute("SELECT position FROM kept ORDER BY position")), np.int64, before)
        chosen = [int(order[i]) for i in _picked(before, self._texts(), self.config)]
        db.execute("BEGIN")
        db.execute("CREATE TABLE chosen (position INTEGER PRIMARY KEY)")
        db.executemany("INSERT INTO chosen VALUES (?)", ((p,) for p in chosen))
        db.execute("COMMIT")
        (calibrated,) = db.execute("SELECT COUNT(*) FROM t JOIN chosen USING (position) WHERE calibrated").fetchone()
        _recount(counts, before, len(chosen), calibrated)
        return None if len(chosen) == self.total else chosen

    def close(self) -> None:
        self.db.close()
        self.path.unlink(missing_ok=True)


def diverse_selection(data_dir: Path, filters: FiltersConfig) -> DiverseSelection | None:
    """The selection of `filters.diversity` for a dataset written into `data_dir` (its scratch file there); None
    without it."""
    return None if filters.diversity is None else DiverseSelection(data_dir / ".diversity.sqlite", filters.diversity)


#: decimals at which distances and similarities are compared
DIGITS = 5
#: rows per block of the coverage radius (bounds its memory to RADIUS_BLOCK x size floats)
RADIUS_BLOCK = 4096


def _unit32(vectors: Any) -> np.ndarray:
    """Unit rows in float32 (half the memory and time of float64; picks compare at `DIGITS` decimals)."""
    return np.ascontiguousarray(unit_rows(vectors, np.float32))


def first_pick(n: int, seed: int) -> int:
    """The seeded first pick of n rows."""
    return int(np.random.default_rng(seed).integers(n))


def _greedy(
    x: np.ndarray, size: int, seed: int, start: float, fold: Callable[[np.ndarray, np.ndarray], None], best: Any
) -> list[int]:
    """Picks `size` rows: the seeded first, then at each step the row whose score (`best`: argmax or argmin over
    the rounded scores of the rows not picked, the first on a tie) is best. Scores start at `start`, and
    `fold(scores, similarities)` folds each pick's cosine similarities into them."""
    n = len(x)
    size = min(size, n)
    if not size:
        return []
    picked = [first_pick(n, seed)]
    score = np.full(n, start)
    taken = np.zeros(n, dtype=bool)
    while True:
        last = picked[-1]
        taken[last] = True
        fold(score, x @ x[last])
        if len(picked) == size:
            return picked
        rounded = np.round(score, DIGITS)
        rounded[taken] = np.nan
        picked.append(int(best(rounded)))


def k_center(vectors: Any, size: int, seed: int = 0) -> list[int]:
    """Greedy k-center (Gonzalez 1985): after a seeded first row, the row farthest (cosine distance 1 - cos) from
    its nearest row picked so far. Its covering radius is at most twice the best possible for `size` rows."""

    def fold(nearest: np.ndarray, similarity: np.ndarray) -> None:
        np.minimum(nearest, 1.0 - similarity, out=nearest)

    return _greedy(_unit32(vectors), size, seed, np.inf, fold, np.nanargmax)


def vendi_greedy(vectors: Any, size: int, seed: int = 0) -> list[int]:
    """Greedy maximiser of the Vendi score of order 2 (Pasarkar & Dieng 2023: exp of the Rényi entropy of order 2
    of K/n's eigenvalues, = n² / Σ K_ij²): after a seeded first row, the row whose picked set has the largest such
    score, i.e. the smallest sum of squared cosines with the rows picked so far. That step is exact and O(n d); the
    order-1 score (the Vendi score reported) is not greedy-separable, and rises with it."""

    def fold(squares: np.ndarray, similarity: np.ndarray) -> None:
        squares += similarity**2

    return _greedy(_unit32(vectors), size, seed, 0.0, fold, np.nanargmin)


def coverage_radius(vectors: Any, picked: list[int]) -> float | None:
    """The largest cosine distance from a row to its nearest picked row (lower covers better); None without
    picks. O(n · |picked| · d) time, in blocks of `RADIUS_BLOCK` rows."""
    if not picked:
        return None
    x = _unit32(vectors)
    centers = x[picked]
    radius = 0.0
    for start in range(0, len(x), RADIUS_BLOCK):
        nearest = 1.0 - (x[start : start + RADIUS_BLOCK] @ centers.T).max(axis=1)
        radius = max(radius, float(nearest.max()))
    return radius


METHODS: dict[str, Callable[[Any, int, int], list[int]]] = {"k_center": k_center, "vendi": vendi_greedy}
