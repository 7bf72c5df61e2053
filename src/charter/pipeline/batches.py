"""A run's provider batches: list them, cancel them (`charter batches list|cancel RUN_DIR`)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from charter.errors import ConfigError
from charter.pipeline.config import RunConfig
from charter.providers.batch import cancel_batches
from charter.runs.batches import BatchState, set_batch_state, stored_batches
from charter.runs.store import open_store


def run_batches(run_dir: str | Path, open_only: bool = False) -> list[BatchState]:
    """The batches a run submitted, oldest first (open: not yet ended at the provider, as last seen)."""
    store = open_store(run_dir)
    try:
        return stored_batches(store, open_only=open_only)
    finally:
        store.close()


def open_batches_note(run_dir: str | Path) -> str | None:
    """What to tell a user who interrupts a run with batches still running at the provider, if it has any."""
    try:
        count = len(run_batches(run_dir, open_only=True))
    except Exception:  # noqa: BLE001 - no store yet: nothing was submitted
        return None
    if not count:
        return None
    return (
        f"{count} provider batch{'es' if count > 1 else ''} still running; the same command collects "
        f"{'them' if count > 1 else 'it'} (nothing is submitted twice); `charter batches cancel {run_dir}` "
        "cancels them"
    )


def cancel_run_batches(run_dir: str | Path) -> dict[str, str]:
    """Cancel a run's open batches at their providers; returns each batch's state after the request."""
    store = open_store(run_dir)
    try:
        config = RunConfig.model_validate(store.run_config())
        pending = stored_batches(store, open_only=True)
        by_model: dict[str, list[str]] = {}
        for batch in pending:
            by_model.setdefault(batch["model"], []).append(batch["batch_id"])
        states: dict[str, str] = {}
        for model_id, ids in by_model.items():
            states.update(asyncio.run(cancel_batches(_backend(config, model_id), ids)))
        for batch_id, state in states.items():
            set_batch_state(store, batch_id, state)
        return states
    finally:
        store.close()


def _backend(config: RunConfig, model_id: str) -> Any:
    """The backend of the run's role that uses this model (its key, base URL and limits)."""
    for role in config.model_roles:
        backend = role.backend()
        if backend.model_id == model_id:
            return backend
    raise ConfigError(f"no role of the run's config uses {model_id}; cannot cancel its batches")
