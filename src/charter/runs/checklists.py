"""Each prompt's checklist, as the run store keeps it (the one reader and writer of the `checklists` table): keyed by
the prompt and the fingerprint of the checklist settings that made it, with its provenance (source, the model that
wrote it, the writing prompt's format, the checklist's version and fingerprint). A prompt whose checklist could not
be written has no row here (its failure is in the failures table), so a later run writes it again.

The checklist itself is kept as its JSON (`charter.checklist.Checklist`): the store sits below the checklist layer and
never parses it."""

from __future__ import annotations

import time
from dataclasses import dataclass

from charter.runs.store import RunStore


@dataclass(frozen=True)
class StoredChecklist:
    """A prompt's stored checklist: its JSON and its provenance."""

    prompt_id: str
    fingerprint: str
    """The fingerprint of the checklist settings that made it (`Fingerprints.checklist`)."""
    source: str
    """model, column or criteria."""
    model: str | None
    """The model that wrote it (source `model`)."""
    prompt_format: int | None
    """The writing prompt's format (source `model`)."""
    version: int
    checklist_fingerprint: str
    """The checklist's own fingerprint (its source, version and items)."""
    record: str
    """The checklist as JSON."""


def put_checklist(store: RunStore, row: StoredChecklist) -> None:
    """Store one prompt's checklist (replacing one of the same settings)."""
    store.write(
        "INSERT OR REPLACE INTO checklists (prompt_id, fingerprint, status, source, model, prompt_format, version,"
        " checklist_fingerprint, record, created_at) VALUES (?, ?, 'ok', ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                row.prompt_id,
                row.fingerprint,
                row.source,
                row.model,
                row.prompt_format,
                row.version,
                row.checklist_fingerprint,
                row.record,
                time.time(),
            )
        ],
    )


_COLUMNS = "prompt_id, fingerprint, source, model, prompt_format, version, checklist_fingerprint, record"


def stored_checklist(store: RunStore, prompt_id: str, fingerprint: str) -> StoredChecklist | None:
    """The checklist stored for this prompt under these settings, if any."""
    rows = store.execute(
        f"SELECT {_COLUMNS} FROM checklists WHERE prompt_id = ? AND fingerprint = ?", (prompt_id, fingerprint)
    )
    return StoredChecklist(*rows[0]) if rows else None


def checklist_record(store: RunStore, checklist_fingerprint: str) -> str | None:
    """The JSON of a stored checklist with this fingerprint of its own (any prompt's, any settings'), if any."""
    rows = store.execute(
        "SELECT record FROM checklists WHERE checklist_fingerprint = ? LIMIT 1", (checklist_fingerprint,)
    )
    return rows[0][0] if rows else None


def checklist_ids(store: RunStore, fingerprint: str) -> set[str]:
    """The prompts with a checklist stored under these settings."""
    return {pid for (pid,) in store.execute("SELECT prompt_id FROM checklists WHERE fingerprint = ?", (fingerprint,))}


def count_checklists(store: RunStore, fingerprint: str) -> int:
    """How many prompts have a checklist stored under these settings."""
    return store.count("checklists", "fingerprint = ?", (fingerprint,))


__all__ = [
    "StoredChecklist",
    "checklist_ids",
    "checklist_record",
    "count_checklists",
    "put_checklist",
    "stored_checklist",
]
