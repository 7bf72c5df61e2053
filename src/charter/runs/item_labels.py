"""People's verdicts on single checklist items of spot-checked pairs, as the run store keeps them (the one reader and
writer of the `item_labels` table): one verdict (yes, no or n/a) an annotator gives one item about one response of a
pair (`side`: the pair's `a` or `b`, whatever order the page showed them in). A later verdict on the same item and
response replaces the earlier one."""

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


def put_item_label(store: RunStore, label: ItemLabel) -> None:
    """Store a verdict (replacing this annotator's earlier one on the same item and response)."""
    store.write(
        "INSERT OR REPLACE INTO item_labels (pair_id, item_id, side, annotator, verdict, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        [(label.pair_id, label.item_id, label.side, label.annotator, label.verdict, time.time())],
    )


def item_labels(store: RunStore, annotator: str | None = None, pair_id: str | None = None) -> list[ItemLabel]:
    """The stored item verdicts (of one annotator, of one pair, where given), oldest first."""
    where, params = [], []
    for column, value in (("annotator", annotator), ("pair_id", pair_id)):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    rows = store.execute(
        f"SELECT pair_id, item_id, side, annotator, verdict FROM item_labels{clause} ORDER BY created_at", params
    )
    return [ItemLabel(*row) for row in rows]


__all__ = ["ITEM_VERDICTS", "ItemLabel", "item_labels", "put_item_label"]
