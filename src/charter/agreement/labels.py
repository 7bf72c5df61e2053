"""The judged pairs humans check, and checking and storing their labels (the store side is charter.runs.labels).

Labels are in the pair's own terms: 'a' means the pair's response `a` is better, whatever order the
annotator saw the two responses in (`shown_order` 'ab': a was shown first, 'ba': b first).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

from charter.errors import CharterError, RunStoreError
from charter.records import HumanLabel, Judgment, Pair
from charter.runs import labels as stored
from charter.runs.items import judged_pairs as stored_judged_pairs
from charter.runs.items import pair_ids
from charter.runs.labels import SpotSample
from charter.runs.store import RunStore, open_store

LABELS = ("a", "b", "tie", "skip")
ANNOTATOR_RE = re.compile(r"^[\w .@+-]{1,64}$")

__all__ = [
    "JudgedPair",
    "LabelError",
    "SpotSample",
    "check_annotator",
    "judged_pairs",
    "new_label",
    "open_labels",
    "put_label",
    "put_labels",
    "require_judged",
    "to_pair_terms",
    "to_screen_terms",
    "validate_labels",
]


class LabelError(CharterError):
    """A label cannot be stored (unknown pair, bad value, bad annotator name)."""


@dataclass(frozen=True)
class JudgedPair:
    """A pair joined with its successful judgment (under the judge settings in effect)."""

    pair: Pair
    judgment: Judgment

    @property
    def pair_id(self) -> str:
        return self.pair.pair_id

    @property
    def p_a(self) -> float:
        return float(self.judgment.p_a or 0.0)


def open_labels(run_dir: str | Path, read_only: bool | None = False) -> RunStore:
    """Open a run's store (its label tables are part of every store); `read_only` as `open_store` takes it."""
    return open_store(run_dir, read_only=read_only)


def judged_pairs(store: RunStore) -> dict[str, JudgedPair]:
    """pair_id -> JudgedPair for every current pair whose current judgment succeeded, in pair order."""
    fingerprints = store.fingerprints()
    if fingerprints is None:
        return {}
    return {pair.pair_id: JudgedPair(pair, judgment) for pair, judgment in stored_judged_pairs(store, fingerprints)}


def require_judged(store: RunStore) -> dict[str, JudgedPair]:
    """Judged pairs, or a clear error when the run has none yet."""
    pairs = judged_pairs(store)
    if not pairs:
        raise RunStoreError(
            f"{store.run_dir}: no judged pairs yet (pairs: {store.count('pairs')}, ok judgments: "
            f"{store.count('judgments', 'status = ?', ('ok',))}); run the judge stage first"
        )
    return pairs


def check_annotator(name: str) -> str:
    """A valid annotator name (letters, digits, space, . @ + - _; at most 64)."""
    if not ANNOTATOR_RE.match(name or ""):
        raise LabelError(f"annotator name {name!r}: use 1-64 letters, digits, spaces or . @ + - _")
    return name.strip()


def new_label(pair_id: str, annotator: str, label: str, shown_order: str) -> HumanLabel:
    """A label to store, checked for its values (one-line error)."""
    if label not in LABELS:
        raise LabelError(f"label {label!r} is not one of {', '.join(LABELS)}")
    if shown_order not in ("ab", "ba"):
        raise LabelError(f"shown order {shown_order!r} is not 'ab' or 'ba'")
    return HumanLabel(
        pair_id=pair_id,
        annotator=check_annotator(annotator),
        label=label,  # type: ignore[arg-type]
        shown_order=shown_order,
        created_at=time.time(),
    )  # type: ignore[arg-type]


def validate_labels(store: RunStore, labels: list[HumanLabel], where: list[str] | None = None) -> None:
    """Refuse the whole batch if any label names an unknown or unsampled pair; `where` names each item."""
    known = pair_ids(store)
    sampled = {s.pair_id for s in stored.sample(store)}
    for i, item in enumerate(labels):
        at = f"{where[i]}: " if where else ""
        if item.pair_id not in known:
            raise LabelError(f"{at}pair '{item.pair_id}' does not exist in {store.run_dir}")
        if item.pair_id not in sampled:
            raise LabelError(
                f"{at}pair '{item.pair_id}' is not in the spot-check sample (draw it with spotcheck first)"
            )
        check_annotator(item.annotator)


def put_labels(store: RunStore, labels: list[HumanLabel], source: str = "web") -> None:
    """Check, then store labels in one transaction; a second label by an annotator replaces the first."""
    validate_labels(store, labels)
    stored.put_labels(store, labels, source)


def put_label(store: RunStore, pair_id: str, annotator: str, label: str, shown_order: str, source: str = "web") -> None:
    """Store one label at once (see put_labels)."""
    put_labels(store, [new_label(pair_id, annotator, label, shown_order)], source)


def to_pair_terms(position_label: str, shown_order: str) -> str:
    """'first'/'second' on screen (or A/B as displayed) -> 'a'/'b' of the pair."""
    first, second = ("a", "b") if shown_order == "ab" else ("b", "a")
    return {"first": first, "second": second}.get(position_label, position_label)


def to_screen_terms(label: str, shown_order: str) -> str:
    """'a'/'b' of the pair -> 'first'/'second' as shown; tie and skip unchanged."""
    if label not in ("a", "b"):
        return label
    return "first" if (label == "a") == (shown_order == "ab") else "second"
