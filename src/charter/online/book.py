"""The items a checklist reward adds to every prompt's checklist during training, and the version they make.

Training with `checklist.refresh_every` (`online.refresh`) accepts new items as it goes; each accepted batch of
items raises the version by one. Every reward names the version its checklist had (`RewardChecklist.version`), and
the fingerprint of a prompt's checklist changes with it, so that a reward given under an older version is never
reused for a newer one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from charter.checklist.check import Aggregation
from charter.checklist.items import Checklist, ChecklistItem


@dataclass
class ChecklistBook:
    """The items added during training, by version (version 1 has none)."""

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


__all__ = ["Aggregation", "ChecklistBook"]
