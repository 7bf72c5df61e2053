"""The table of scorings: one entry a scoring (its name and how it scores a batch; `online.judging.ScoringEntry`).

A new scoring is a function over a judge session and a batch, and one entry here."""

from __future__ import annotations

from typing import Literal

from charter.errors import ConfigError
from charter.online.checklisted import CHECKLIST
from charter.online.groupwise import GROUP, RANK
from charter.online.judging import ScoringEntry
from charter.online.pointwise import REFERENCE, SCORE

Scoring = Literal["score", "group", "reference", "rank", "checklist"]
#: Every scoring by name, in the order the docs and errors list them.
TABLE: dict[str, ScoringEntry] = {entry.name: entry for entry in (SCORE, GROUP, REFERENCE, RANK, CHECKLIST)}
SCORINGS: tuple[Scoring, ...] = tuple(TABLE)  # type: ignore[assignment] - the table's names are the Literal's


def scoring_entry(name: str) -> ScoringEntry:
    """The table's entry for `name`; an unknown name is a `ConfigError` listing the scorings."""
    entry = TABLE.get(name)
    if entry is None:
        raise ConfigError(f"scoring: expected one of {', '.join(SCORINGS)}, got {name!r}")
    return entry
