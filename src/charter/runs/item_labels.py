"""People's verdicts on single checklist items of spot-checked pairs, as the run store keeps them (the one reader and
writer of the `item_labels` table): one verdict (yes, no or n/a) an annotator gives one item about one response of a
pair (`side`: the pair's `a` or `b`, whatever order the page showed them in). A later verdict on the same item and
response replaces the earlier one.

People's step labels too (the one reader and writer of the `step_labels` table): the first step of a pair's
trajectory (the prompt's turns, then the response of `side`) that an annotator says violates a principle, by its
index among the trajectory's messages, or None where they say no step does. A later label on the same side and
principle replaces the earlier one."""

from __future__ import annotations

import time
from dataclasses import dataclass

from charter.runs.store import RunStore

#: The verdicts a person may give an item.
ITEM_VERDICTS = ("yes", "no", "n/a")


@dataclass(frozen=True)
class ItemLabel:
    """One person's verdict on one checklist item about one response."""

    pair_id: str
    item_id: str
    side: str
    """`a` or `b`: the pair's response the verdict is about."""
    annotator: str
    verdict: str
    """yes, no or n/a."""


def _where(annotator: str | None, pair_id: str | None) -> tuple[str, list[str]]:
    """A WHERE clause keeping one annotator's and one pair's rows, where given, and its parameters."""
    given = [(column, value) for column, value in (("annotator", annotator), ("pair_id", pair_id)) if value is not None]
    clause = " AND ".join(f"{column} = ?" for column, _ in given)
    return (f" WHERE {clause}" if clause else ""), [value for _, value in given]


def put_item_label(store: RunStore, label: ItemLabel) -> None:
    """Store a verdict (replacing this annotator's earlier one on the same item and response)."""
    store.write(
        "INSERT OR REPLACE INTO item_labels (pair_id, item_id, side, annotator, verdict, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        [(label.pair_id, label.item_id, label.side, label.annotator, label.verdict, time.time())],
    )


def item_labels(store: RunStore, annotator: str | None = None, pair_id: str | None = None) -> list[ItemLabel]:
    """The stored item verdicts (of one annotator, of one pair, where given), oldest first."""
    clause, params = _where(annotator, pair_id)
    rows = store.execute(
        f"SELECT pair_id, item_id, side, annotator, verdict FROM item_labels{clause} ORDER BY created_at", params
    )
    return [ItemLabel(*row) for row in rows]


@dataclass(frozen=True)
class StepLabel:
    """One person's first violating step of one side's trajectory, for one principle."""

    pair_id: str
    side: str
    """`a` or `b`: the trajectory is the pair's prompt turns, then this response."""
    principle_id: str
    annotator: str
    step: int | None
    """The first violating step's index among the trajectory's messages; None: no step violates the principle."""


def put_step_label(store: RunStore, label: StepLabel) -> None:
    """Store a step label (replacing this annotator's earlier one on the same side and principle)."""
    store.write(
        "INSERT OR REPLACE INTO step_labels (pair_id, side, principle_id, annotator, step, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        [(label.pair_id, label.side, label.principle_id, label.annotator, label.step, time.time())],
    )


def step_labels(store: RunStore, annotator: str | None = None, pair_id: str | None = None) -> list[StepLabel]:
    """The stored step labels (of one annotator, of one pair, where given), oldest first."""
    clause, params = _where(annotator, pair_id)
    rows = store.execute(
        f"SELECT pair_id, side, principle_id, annotator, step FROM step_labels{clause} ORDER BY created_at", params
    )
    return [StepLabel(*row) for row in rows]


__all__ = ["ITEM_VERDICTS", "ItemLabel", "StepLabel", "item_labels", "put_item_label", "put_step_label", "step_labels"]
