"""The spot-check sample and the human labels, kept in the run store.

Labels are stored in the pair's own terms: 'a' means the pair's response `a` is better, whatever order
the annotator saw the two responses in (`shown_order` 'ab': a was shown first, 'ba': b first).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from charter.errors import CharterError, RunStoreError
from charter.pipeline.store import RunStore, open_store

SCHEMA = """
CREATE TABLE IF NOT EXISTS spot_sample (
  pair_id TEXT PRIMARY KEY, principle_id TEXT, confidence_bucket TEXT, shown_order TEXT,
  position INTEGER, seed INTEGER, created_at REAL);
CREATE TABLE IF NOT EXISTS human_labels (
  pair_id TEXT, annotator TEXT, label TEXT CHECK (label IN ('a', 'b', 'tie', 'skip')), shown_order TEXT,
  created_at REAL, replaced_count INTEGER DEFAULT 0, PRIMARY KEY (pair_id, annotator));
CREATE TABLE IF NOT EXISTS label_events (
  id INTEGER PRIMARY KEY AUTOINCREMENT, pair_id TEXT, annotator TEXT, action TEXT, label TEXT,
  previous TEXT, source TEXT, created_at REAL);
"""

LABELS = ("a", "b", "tie", "skip")
ANNOTATOR_RE = re.compile(r"^[\w .@+-]{1,64}$")


class LabelError(CharterError):
    """A label cannot be stored (unknown pair, bad value, bad annotator name)."""


@dataclass(frozen=True)
class JudgedPair:
    """A pair joined with its successful judgment."""

    pair: dict
    judgment: dict

    @property
    def pair_id(self) -> str:
        return self.pair["pair_id"]

    @property
    def p_a(self) -> float:
        return float(self.judgment["p_a"])


def open_labels(run_dir: str | Path) -> RunStore:
    """Open a run's store with the agreement tables in place."""
    store = open_store(run_dir)
    store.ensure(SCHEMA)
    return store


def judged_pairs(store: RunStore) -> dict[str, JudgedPair]:
    """pair_id -> JudgedPair for every pair whose judgment succeeded, in pair order."""
    rows = store.execute(
        "SELECT p.record, j.record FROM pairs p JOIN judgments j ON p.pair_id = j.pair_id"
        " WHERE j.status = 'ok' ORDER BY p.rowid"
    )
    out: dict[str, JudgedPair] = {}
    for pair_json, judgment_json in rows:
        pair, judgment = json.loads(pair_json), json.loads(judgment_json)
        if judgment.get("p_a") is not None:
            out[pair["pair_id"]] = JudgedPair(pair, judgment)
    return out


def require_judged(store: RunStore) -> dict[str, JudgedPair]:
    """Judged pairs, or a clear error when the run has none yet."""
    pairs = judged_pairs(store)
    if not pairs:
        raise RunStoreError(
            f"{store.run_dir}: no judged pairs yet (pairs: {store.count('pairs')}, ok judgments: "
            f"{store.count('judgments', 'status = ?', ('ok',))}); run the judge stage first"
        )
    return pairs


def sample_rows(store: RunStore) -> list[dict[str, Any]]:
    """The spot-check sample in labeling order."""
    cols = ("pair_id", "principle_id", "confidence_bucket", "shown_order", "position", "seed")
    rows = store.execute(f"SELECT {', '.join(cols)} FROM spot_sample ORDER BY position")
    return [dict(zip(cols, r)) for r in rows]


def label_rows(store: RunStore, annotator: str | None = None) -> list[dict[str, Any]]:
    """Stored labels (all annotators, or one), oldest first."""
    cols = ("pair_id", "annotator", "label", "shown_order", "created_at", "replaced_count")
    where, params = ("WHERE annotator = ?", (annotator,)) if annotator else ("", ())
    rows = store.execute(f"SELECT {', '.join(cols)} FROM human_labels {where} ORDER BY created_at, rowid", params)
    return [dict(zip(cols, r)) for r in rows]


def check_annotator(name: str) -> str:
    """A valid annotator name (letters, digits, space, . @ + - _; at most 64)."""
    if not ANNOTATOR_RE.match(name or ""):
        raise LabelError(f"annotator name {name!r}: use 1-64 letters, digits, spaces or . @ + - _")
    return name.strip()


@dataclass(frozen=True)
class NewLabel:
    """One label to store, in pair terms."""

    pair_id: str
    annotator: str
    label: str
    shown_order: str


def validate_labels(store: RunStore, labels: list[NewLabel], where: list[str] | None = None) -> None:
    """Refuse the whole batch if any label names an unknown pair or has a bad value; `where` names each item."""
    known = store.keys("pairs", "pair_id")
    sampled = store.keys("spot_sample", "pair_id")
    for i, item in enumerate(labels):
        at = f"{where[i]}: " if where else ""
        if item.pair_id not in known:
            raise LabelError(f"{at}pair '{item.pair_id}' does not exist in {store.run_dir}")
        if item.pair_id not in sampled:
            raise LabelError(f"{at}pair '{item.pair_id}' is not in the spot-check sample (run charter spotcheck)")
        if item.label not in LABELS:
            raise LabelError(f"{at}label {item.label!r} is not one of {', '.join(LABELS)}")
        if item.shown_order not in ("ab", "ba"):
            raise LabelError(f"{at}shown order {item.shown_order!r} is not 'ab' or 'ba'")
        check_annotator(item.annotator)


def put_labels(store: RunStore, labels: list[NewLabel], source: str = "web") -> None:
    """Store labels in one transaction; a second label by an annotator replaces the first, and is logged."""
    validate_labels(store, labels)
    now = time.time()
    with store._lock:  # one transaction over reads and writes
        db = store.db
        db.execute("BEGIN IMMEDIATE")
        try:
            for item in labels:
                _put_one(db, item, source, now)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")


def _put_one(db: Any, item: NewLabel, source: str, now: float) -> None:
    old = db.execute(
        "SELECT label FROM human_labels WHERE pair_id = ? AND annotator = ?", (item.pair_id, item.annotator)
    ).fetchone()
    db.execute(
        "INSERT INTO human_labels (pair_id, annotator, label, shown_order, created_at, replaced_count)"
        " VALUES (?, ?, ?, ?, ?, 0) ON CONFLICT (pair_id, annotator) DO UPDATE SET label = excluded.label,"
        " shown_order = excluded.shown_order, created_at = excluded.created_at, replaced_count = replaced_count + 1",
        (item.pair_id, item.annotator, item.label, item.shown_order, now),
    )
    db.execute(
        "INSERT INTO label_events (pair_id, annotator, action, label, previous, source, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (item.pair_id, item.annotator, "replace" if old else "label", item.label, old[0] if old else None, source, now),
    )


def put_label(store: RunStore, pair_id: str, annotator: str, label: str, shown_order: str, source: str = "web") -> None:
    """Store one label at once (see put_labels)."""
    put_labels(store, [NewLabel(pair_id, check_annotator(annotator), label, shown_order)], source)


def undo_last(store: RunStore, annotator: str) -> str | None:
    """Remove the annotator's most recent label; returns its pair_id (None when there is nothing to undo)."""
    with store._lock:
        db = store.db
        db.execute("BEGIN IMMEDIATE")
        try:
            row = db.execute(
                "SELECT pair_id, label FROM human_labels WHERE annotator = ? ORDER BY created_at DESC, rowid DESC"
                " LIMIT 1", (annotator,)
            ).fetchone()
            if row:
                db.execute("DELETE FROM human_labels WHERE pair_id = ? AND annotator = ?", (row[0], annotator))
                db.execute(
                    "INSERT INTO label_events (pair_id, annotator, action, label, previous, source, created_at)"
                    " VALUES (?, ?, 'undo', NULL, ?, 'undo', ?)", (row[0], annotator, row[1], time.time())
                )
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
    return row[0] if row else None


def to_pair_terms(position_label: str, shown_order: str) -> str:
    """'first'/'second' on screen (or A/B as displayed) -> 'a'/'b' of the pair."""
    first, second = ("a", "b") if shown_order == "ab" else ("b", "a")
    return {"first": first, "second": second}.get(position_label, position_label)


def to_screen_terms(label: str, shown_order: str) -> str:
    """'a'/'b' of the pair -> 'first'/'second' as shown; tie and skip unchanged."""
    if label not in ("a", "b"):
        return label
    return "first" if (label == "a") == (shown_order == "ab") else "second"
