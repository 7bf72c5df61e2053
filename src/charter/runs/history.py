"""The run's settings over its starts, as the run store keeps them: the config of each start and what changed
(`config_history`), and the items made under settings no longer in effect.

    config_history(id, changed_at, changes, fingerprints)
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from charter.records import Fingerprints, Record
from charter.runs.store import RunStore


class ConfigChange(Record):
    """One change of a run's config between two starts."""

    changed_at: float
    """When the run started with the new config (seconds since the epoch)."""
    changes: list[dict[str, Any]]
    """`{key, old, new}` per changed setting (dotted keys)."""
    fingerprints: Fingerprints
    """The fingerprints in effect from then on."""


def record_config(store: RunStore, config: dict[str, Any], fingerprints: Fingerprints) -> list[dict[str, Any]]:
    """Store the config a run starts with; returns (and keeps in the history) what changed since the last start."""
    previous = store.meta("config")
    changes = diff_settings(previous, config) if previous is not None else []
    if changes:
        store.write(
            "INSERT INTO config_history (changed_at, changes, fingerprints) VALUES (?, ?, ?)",
            [(time.time(), json.dumps(changes, ensure_ascii=False), fingerprints.model_dump_json())],
        )
    store.set_meta(config=config, fingerprints=fingerprints)
    return changes


def config_history(store: RunStore) -> list[ConfigChange]:
    """Each change of the config between two starts, oldest first."""
    rows = store.execute("SELECT changed_at, changes, fingerprints FROM config_history ORDER BY id")
    return [
        ConfigChange(changed_at=at, changes=json.loads(changes), fingerprints=Fingerprints.model_validate_json(fp))
        for at, changes, fp in rows
    ]


def rename_fingerprints(store: RunStore, renamed: Mapping[str, str]) -> dict[str, int]:
    """Move the items stored under each old fingerprint to its new one, in one transaction (a run made by an
    earlier release whose fingerprints name its settings differently). Returns the rows moved per table."""
    moves = (
        ("chains", "fingerprint", "$.fingerprint"),
        ("samples", "fingerprint", "$.fingerprint"),
        ("judgments", "fingerprint", "$.fingerprint"),
        ("pairs", "source_fingerprint", "$.source_fingerprint"),
        ("failures", "fingerprint", None),
    )

    def work(db: Any) -> dict[str, int]:
        moved: dict[str, int] = {}
        for old, new in renamed.items():
            for table, column, path in moves:
                record = f", record = json_set(record, '{path}', :new)" if path else ""
                cursor = db.execute(
                    f"UPDATE {table} SET {column} = :new{record} WHERE {column} = :old", {"old": old, "new": new}
                )
                moved[table] = moved.get(table, 0) + cursor.rowcount
        return moved

    return store.transaction(work)


def older_items(store: RunStore, fingerprints: Fingerprints) -> dict[str, int]:
    """How many chains, samples and judgments were made under settings no longer in effect."""
    return {
        "chains": store.count("chains", "fingerprint IS NOT ?", (fingerprints.critique,)),
        "samples": store.execute(
            "SELECT COUNT(DISTINCT prompt_id || fingerprint) FROM samples WHERE fingerprint IS NOT ?",
            (fingerprints.samples,),
        )[0][0],
        "judgments": store.count("judgments", "fingerprint != ?", (fingerprints.judge,)),
    }


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out or ({prefix: {}} if prefix else {})
    return {prefix: value}


def diff_settings(old: dict[str, Any], new: dict[str, Any]) -> list[dict[str, Any]]:
    """`{key, old, new}` for every dotted key whose value differs between two config dicts."""
    before, after = _flatten(old), _flatten(new)
    return [
        {"key": key, "old": before.get(key), "new": after.get(key)}
        for key in sorted(set(before) | set(after))
        if before.get(key) != after.get(key)
    ]
