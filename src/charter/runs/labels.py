"""The spot-check sample and the human labels, as the run store keeps them (the one reader and writer).

Labels are stored in the pair's own terms: 'a' means the pair's response `a` is better, whatever order
the annotator saw the two responses in (`shown_order` 'ab': a was shown first, 'ba': b first). A second
label by an annotator replaces the first; `label_events` keeps every action.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any, Literal

from charter.records import HumanLabel, Record
from charter.runs.store import RunStore


class SpotSample(Record):
    """One pair of the spot-check sample."""

    pair_id: str
    """The sampled pair."""
    principle_id: str
    """The principle the annotator judges it by."""
    confidence_bucket: str
    """The judge's confidence bucket when sampled, e.g. 0.60-0.70."""
    shown_order: Literal["ab", "ba"]
    """Which response the labeling page shows first."""
    position: int
    """Labeling order."""
    seed: int
    """The sampling seed."""
    inclusion_probability: float | None = None
    """The probability the pair had of being drawn, under the sample's current design (active sampling: it grows
    as the sample does); None for a stratified sample."""


#: The `spot_sample` columns a `SpotSample` is read from and written to (its fields, by name).
_SAMPLE_COLUMNS = tuple(SpotSample.model_fields)


def sample(store: RunStore) -> list[SpotSample]:
    """The spot-check sample in labeling order."""
    rows = store.execute(f"SELECT {', '.join(_SAMPLE_COLUMNS)} FROM spot_sample ORDER BY position")
    return [SpotSample(**dict(zip(_SAMPLE_COLUMNS, r))) for r in rows]


def add_to_sample(store: RunStore, rows: Iterable[SpotSample]) -> None:
    now = time.time()
    marks = ", ".join("?" * (len(_SAMPLE_COLUMNS) + 1))
    store.write(
        f"INSERT INTO spot_sample ({', '.join(_SAMPLE_COLUMNS)}, created_at) VALUES ({marks})",
        ((*(getattr(r, c) for c in _SAMPLE_COLUMNS), now) for r in rows),
    )


def set_inclusion_probabilities(store: RunStore, probabilities: dict[str, float]) -> None:
    """Record the sampled pairs' inclusion probabilities under the sample's new design (an active sample grown)."""
    store.write(
        "UPDATE spot_sample SET inclusion_probability = ? WHERE pair_id = ?",
        ((p, pair_id) for pair_id, p in probabilities.items()),
    )


def labels(store: RunStore, annotator: str | None = None) -> list[HumanLabel]:
    """Stored labels (all annotators, or one), oldest first."""
    cols = tuple(HumanLabel.model_fields)
    where, params = ("WHERE annotator = ?", (annotator,)) if annotator else ("", ())
    rows = store.execute(f"SELECT {', '.join(cols)} FROM human_labels {where} ORDER BY created_at, rowid", params)
    return [HumanLabel(**dict(zip(cols, r))) for r in rows]


def put_labels(store: RunStore, new: list[HumanLabel], source: str) -> None:
    """Store labels in one transaction; a second label by an annotator replaces the first, and is logged."""

    def work(db: Any) -> None:
        for label in new:
            _put_one(db, label, source)

    store.transaction(work)


def _put_one(db: Any, item: HumanLabel, source: str) -> None:
    old = db.execute(
        "SELECT label FROM human_labels WHERE pair_id = ? AND annotator = ?", (item.pair_id, item.annotator)
    ).fetchone()
    db.execute(
        "INSERT INTO human_labels (pair_id, annotator, label, shown_order, created_at, replaced_count)"
        " VALUES (?, ?, ?, ?, ?, 0) ON CONFLICT (pair_id, annotator) DO UPDATE SET label = excluded.label,"
        " shown_order = excluded.shown_order, created_at = excluded.created_at, replaced_count = replaced_count + 1",
        (item.pair_id, item.annotator, item.label, item.shown_order, item.created_at),
    )
    db.execute(
        "INSERT INTO label_events (pair_id, annotator, action, label, previous, source, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            item.pair_id,
            item.annotator,
            "replace" if old else "label",
            item.label,
            old[0] if old else None,
            source,
            item.created_at,
        ),
    )


def undo_last(store: RunStore, annotator: str) -> str | None:
    """Remove the annotator's most recent label; returns its pair_id (None when there is nothing to undo)."""

    def work(db: Any) -> str | None:
        row = db.execute(
            "SELECT pair_id, label FROM human_labels WHERE annotator = ? ORDER BY created_at DESC, rowid DESC LIMIT 1",
            (annotator,),
        ).fetchone()
        if row:
            db.execute("DELETE FROM human_labels WHERE pair_id = ? AND annotator = ?", (row[0], annotator))
            db.execute(
                "INSERT INTO label_events (pair_id, annotator, action, label, previous, source, created_at)"
                " VALUES (?, ?, 'undo', NULL, ?, 'undo', ?)",
                (row[0], annotator, row[1], time.time()),
            )
        return row[0] if row else None

    return store.transaction(work)
