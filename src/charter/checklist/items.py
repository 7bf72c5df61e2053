"""Checklist items and checklists: what a response is checked against, item by item.

A checklist is a list of yes/no items, each with a weight (or a category standing for one), optionally a gate (a
failed gated item caps the response's score), a reference answer and a verifier (a `charter.verify` check that
answers the item by code, never the judge). It comes from one of three sources: a model that writes one per prompt
(`model`), a dataset column (`column`) or the constitution's criteria (`criteria`). Its fingerprint is the sha256 of
its canonical JSON (source, version and items), so a changed item is a changed checklist. A constitution's criteria
compiled into its checklist are also described here, in words and as data (`charter constitutions rubric`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import Field, ValidationError, computed_field, field_validator, model_validator

from charter.constitutions.schema import (
    CATEGORY_WEIGHTS,
    DEFAULT_CATEGORY,
    DEFAULT_GATE_CAP,
    Category,
    Constitution,
    Criterion,
    check_item_id,
    check_verifier,
)
from charter.errors import ConfigError, DatasetError
from charter.records import Number, Record, Weight
from charter.yamlio import LocatedValueError, dotted, require_unique

#: Where a checklist's items came from.
Source = Literal["model", "column", "criteria"]


class ChecklistItem(Record):
    """One yes/no item of a checklist."""

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    """The item's id, unique in its checklist."""
    requirement: str = Field(min_length=1)
    """What a "yes" means, as one statement about the response (for a pitfall: what the response must not do)."""
    principle_id: str | None = None
    """The constitution principle the item spells out (None for a dataset's item that names none)."""
    weight: Weight
    """Its weight in the score: positive for what a response should do, negative for a pitfall (a "yes" takes from
    the score). A finite number, never 0, at most 1e6 either way (so no sum of weights overflows)."""
    category: Category | None = None
    """The category the weight came from (essential, important, optional, pitfall), where it came from one."""
    gate_cap: Number | None = Field(default=None, ge=0, le=1)
    """A gate: a response that fails the item (a "no"; a "yes" for a pitfall) scores at most this (0..1). None: no
    gate."""
    reference: str | None = None
    """A reference answer: shown to the judge, and compared with by the verifier."""
    verifier: str | None = None
    """A `charter.verify` check that answers the item by code (a pass is "yes"); the judge is not asked."""

    _unreserved = field_validator("id")(check_item_id)

    @field_validator("weight")
    @classmethod
    def _nonzero(cls, value: float) -> float:
        if value == 0:
            raise ValueError("a weight of 0 counts for nothing: leave the item out, or give it a weight")
        return value

    @model_validator(mode="after")
    def _known_verifier(self) -> ChecklistItem:
        if self.verifier is not None:
            check_verifier(self.verifier, self.reference)
        return self

    @property
    def pitfall(self) -> bool:
        """Whether a "yes" takes from the score (a negative weight)."""
        return self.weight < 0


class Checklist(Record):
    """The items a response is checked against, where they came from, and the version of the checklist."""

    items: list[ChecklistItem] = Field(min_length=1)
    """The items, in the order the judge is asked them."""
    source: Source
    """model (written for the prompt), column (given by a dataset) or criteria (the constitution's)."""
    version: int = Field(default=1, ge=1)
    """Raised each time the checklist is revised; a reward names the version it used."""

    @model_validator(mode="before")
    @classmethod
    def _fingerprint_is_computed(cls, data: Any) -> Any:
        if isinstance(data, dict) and "fingerprint" in data:  # a dumped checklist loads back; the value is recomputed
            data = {k: v for k, v in data.items() if k != "fingerprint"}
        return data

    @model_validator(mode="after")
    def _unique_ids(self) -> Checklist:
        require_unique(((item.id, ("items", i, "id")) for i, item in enumerate(self.items)), "duplicate item id '{}'")
        return self

    @computed_field  # type: ignore[prop-decorator]
    @property
    def fingerprint(self) -> str:
        """sha256 of the canonical JSON of the source, the version and the items."""
        data = {
            "source": self.source,
            "version": self.version,
            "items": [i.model_dump(mode="json") for i in self.items],
        }
        return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()

    def item(self, item_id: str) -> ChecklistItem:
        """The item with this id."""
        return {item.id: item for item in self.items}[item_id]

    @property
    def judged(self) -> list[ChecklistItem]:
        """The items the judge answers (those without a verifier)."""
        return [i for i in self.items if i.verifier is None]


@dataclass
class ChecklistBook:
    """The items a checklist reward adds to every prompt's checklist during training (`checklist.refresh_every`),
    by version (version 1 has none). Each accepted batch of items raises the version by one; every reward names the
    version its checklist had, and the fingerprint of a prompt's checklist changes with it, so that a reward given
    under an older version is never reused for a newer one."""

    added: list[ChecklistItem] = field(default_factory=list)
    """Every item accepted so far, in the order they were accepted."""
    versions: dict[int, list[str]] = field(default_factory=dict)
    """The ids each version added (version 2 onwards), by version."""
    written: dict[str, Checklist] = field(default_factory=dict)
    """The checklists a writer model wrote, by prompt fingerprint (one call a prompt)."""

    @property
    def version(self) -> int:
        """The current version: 1, plus one for each refresh that accepted items."""
        return 1 + len(self.versions)

    def accept(self, items: list[ChecklistItem]) -> int:
        """Add `items` (ids not yet used) as a new version; returns the version (unchanged when none is new)."""
        known = {item.id for item in self.added}
        fresh = [item for item in items if item.id not in known]
        if fresh:
            self.added.extend(fresh)
            self.versions[self.version + 1] = [item.id for item in fresh]
        return self.version

    def extend(self, checklist: Checklist) -> Checklist:
        """A prompt's checklist with the added items after its own (an id it already has is kept as it is) and the
        book's version."""
        if not self.added:
            return checklist
        own = {item.id for item in checklist.items}
        items = [*checklist.items, *(item for item in self.added if item.id not in own)]
        return Checklist(items=items, source=checklist.source, version=checklist.version + len(self.versions))


def item_from_criterion(constitution: Constitution, principle_id: str, criterion: Criterion) -> ChecklistItem:
    """A constitution criterion as a checklist item: its weight (or its category's), its gate's cap."""
    return ChecklistItem(
        id=criterion.id,
        requirement=criterion.requirement,
        principle_id=principle_id,
        weight=criterion.effective_weight,
        category=criterion.category if criterion.weight is None else None,
        gate_cap=constitution.gate_cap_of(criterion),
        reference=criterion.reference,
        verifier=criterion.verifier,
    )


def checklist_from_criteria(constitution: Constitution, principle_ids: Sequence[str] | None = None) -> Checklist:
    """The checklist of a constitution's criteria (source `criteria`): every criterion of the principles named
    (default: all), in the constitution's order. ConfigError when none of them carries criteria."""
    wanted = constitution.principle_ids if principle_ids is None else list(principle_ids)
    for pid in wanted:
        if pid not in constitution.principle_ids:
            raise ConfigError(f"constitution {constitution.name}: no principle '{pid}'")
    items = [
        item_from_criterion(constitution, p.id, c)
        for p in constitution.principles
        if p.id in wanted
        for c in p.criteria
    ]
    if not items:
        named = "its principles" if principle_ids is None else ", ".join(wanted)
        raise ConfigError(f"constitution {constitution.name}: {named} carry no criteria (a principle's `criteria`)")
    return Checklist(items=items, source="criteria")


def item_from_data(data: Mapping[str, Any]) -> ChecklistItem:
    """An item from a plain mapping (a dataset's or a model's): `id`, `requirement`, and a `weight` or a
    `category` (default `important`), optional `principle_id`, `gate` (true, a cap 0..1, or `{cap: 0.3}`),
    `reference` and `verifier`. Raises pydantic's ValidationError or LocatedValueError (`checklist_from_rows` words
    them)."""
    fields = dict(data)
    category = fields.pop("category", None)
    weight = fields.get("weight")
    if weight is not None and category is not None:
        raise LocatedValueError("give a weight or a category, not both", ("weight",))
    if weight is None:
        if category is not None and category not in CATEGORY_WEIGHTS:
            known = ", ".join(CATEGORY_WEIGHTS)
            raise LocatedValueError(f"unknown category {category!r} (one of {known})", ("category",))
        category = category or DEFAULT_CATEGORY
        fields["weight"] = CATEGORY_WEIGHTS[category]
        fields["category"] = category
    gate = fields.pop("gate", None)
    if isinstance(gate, Mapping):  # {cap: 0.3}, as a constitution writes it
        unknown = set(gate) - {"cap"}
        if unknown:
            raise LocatedValueError(f"unknown key '{sorted(unknown)[0]}' (a gate takes a cap)", ("gate",))
        gate = gate.get("cap", True)
        gate = True if gate is None else gate
    if gate is not None and gate is not False:
        fields["gate_cap"] = DEFAULT_GATE_CAP if gate is True else gate
    return ChecklistItem.model_validate(fields)


def checklist_from_rows(rows: Any, where: str, source: Source = "column") -> Checklist:
    """A checklist from a dataset column's value: a list of item mappings (see `item_from_data`), or a JSON text
    of one. `where` names the row and column for errors (`data.jsonl:4: checklist`); a bad value is a DatasetError
    of one line naming the row, the item and the key."""
    if isinstance(rows, str):
        try:
            rows = json.loads(rows)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{where}: not a JSON list of checklist items ({exc.msg})") from None
    if not isinstance(rows, list):
        raise DatasetError(f"{where}: expected a non-empty list of checklist items, got {type(rows).__name__}")
    if not rows:
        raise DatasetError(f"{where}: the checklist is empty (give at least one item)")
    items = []
    for index, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise DatasetError(f"{where}[{index}]: expected a mapping with id and requirement, got {row!r:.60}")
        try:
            items.append(item_from_data(row))
        except ValidationError as exc:
            loc, msg = _first_error(exc)
            raise DatasetError(f"{where}[{index}].{dotted(loc)}: {msg}") from None
        except LocatedValueError as exc:
            raise DatasetError(f"{where}[{index}].{dotted(exc.loc)}: {exc}") from None
    try:
        return Checklist(items=items, source=source)
    except ValidationError as exc:
        loc, msg = _first_error(exc)
        raise DatasetError(f"{where}: {dotted(loc)}: {msg}") from None


def _first_error(exc: ValidationError) -> tuple[tuple, str]:
    """The first error of a validation: its key path (a validator's own location included) and its message."""
    first = exc.errors()[0]
    loc = tuple(first["loc"]) + tuple(getattr((first.get("ctx") or {}).get("error"), "loc", ()))
    if first["type"] == "missing":
        return loc, "required key is missing"
    if first["type"] == "extra_forbidden":
        return loc, "unknown key"
    return loc, first["msg"].removeprefix("Value error, ")


#: How a checklist's verdicts become a score, in one paragraph (the rules are `charter.checklist.aggregate`'s).
SCORING = (
    "score = (sum of the weights of the items answered yes + the pitfalls' total |weight|) / (the positive weights + "
    "the pitfalls' |weight|), over the items answered yes or no, on 0..1; n/a and failed items are left out of both "
    "sums (the failed share is recorded; all failed: no score); a failed gate (a no, or a yes for a pitfall) caps "
    "the score at its cap."
)


def compiled_rubric(constitution: Constitution) -> Checklist | None:
    """The checklist of the constitution's criteria, or None when no principle carries any."""
    return checklist_from_criteria(constitution) if constitution.has_criteria else None


def rubric_data(constitution: Constitution) -> dict[str, Any]:
    """The compiled rubric as JSON data: the constitution, its checklist (null without criteria), the principles
    judged as a whole, and the scoring rule."""
    checklist = compiled_rubric(constitution)
    return {
        "constitution": constitution.name,
        "constitution_hash": constitution.hash,
        "checklist": None if checklist is None else checklist.model_dump(mode="json"),
        "judged_whole": [p.id for p in constitution.principles if not p.criteria],
        "scoring": SCORING,
    }


def rubric_lines(constitution: Constitution) -> list[str]:
    """The compiled rubric, a line per criterion under its principle."""
    checklist = compiled_rubric(constitution)
    lines = [f"{constitution.name} version {constitution.version}, sha256 {constitution.short_hash}"]
    if checklist is None:
        return [*lines, "no principle carries criteria: each principle is judged as a whole"]
    lines.append(f"checklist fingerprint {checklist.fingerprint[:12]}, {len(checklist.items)} items")
    for principle in constitution.principles:
        if not principle.criteria:
            lines.append(f"{principle.id}: no criteria (judged as a whole)")
            continue
        lines.append(f"{principle.id}:")
        for item in (i for i in checklist.items if i.principle_id == principle.id):
            kind = f"{item.category} " if item.category else ""
            gate = f", gate: caps at {item.gate_cap:g}" if item.gate_cap is not None else ""
            checked = f", checked by verifier {item.verifier}" if item.verifier else ""
            lines.append(f"  [{kind}{item.weight:+g}{gate}{checked}] {item.id}: {item.requirement}")
    lines.append(f"scoring: {SCORING}")
    return lines


__all__ = [
    "SCORING",
    "Checklist",
    "ChecklistBook",
    "ChecklistItem",
    "Source",
    "checklist_from_criteria",
    "checklist_from_rows",
    "compiled_rubric",
    "item_from_criterion",
    "item_from_data",
    "rubric_data",
    "rubric_lines",
]
