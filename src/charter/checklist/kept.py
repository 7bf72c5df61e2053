"""Each prompt's checklist kept in a run store with its provenance (source, the model that wrote it, the writing
prompt's format, the checklist's version and fingerprint): read back where it is there under the same settings, else
made once and stored. `charter run`'s checklists (a run config's `checklist:` section) and the checklists a reward's
writer writes (`reward_function(scoring="checklist", checklist_writer=...)`, in the reward store) both go through
here, so a resumed run or a restarted trainer asks no writer twice."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from charter.checklist.author import WRITER_FORMAT, ItemBounds, write_for_prompt
from charter.checklist.items import Checklist
from charter.providers.base import ChatModel, SamplingParams
from charter.records import Message, fingerprint
from charter.runs.checklists import StoredChecklist, put_checklist, stored_checklist
from charter.runs.store import RunStore


def kept_checklist(store: RunStore, prompt_id: str, settings: str) -> Checklist | None:
    """The checklist stored for this prompt under these settings (their fingerprint), if any."""
    found = stored_checklist(store, prompt_id, settings)
    return None if found is None else Checklist.model_validate_json(found.record)


def keep_checklist(store: RunStore, prompt_id: str, settings: str, checklist: Checklist, model: str | None) -> None:
    """Store a prompt's checklist with its provenance (`model`: the model that wrote it, None for a column's or the
    constitution's)."""
    put_checklist(
        store,
        StoredChecklist(
            prompt_id=prompt_id,
            fingerprint=settings,
            source=checklist.source,
            model=model,
            prompt_format=WRITER_FORMAT if model else None,
            version=checklist.version,
            checklist_fingerprint=checklist.fingerprint,
            record=checklist.model_dump_json(),
        ),
    )


def writing_fingerprint(
    writer: str, params: SamplingParams, bounds: ItemBounds, constitution: str, principle_ids: Sequence[str]
) -> str:
    """The fingerprint of the settings a writer writes one prompt's checklist under: the writer's served id, its
    sampling, the item bounds, the writing prompt's format, the constitution's hash and the principles shown."""
    data: dict[str, Any] = {
        "stage": "checklist",
        "source": "model",
        "constitution": constitution,
        "writer": writer,
        "params": params.model_dump(mode="json"),
        "items": [bounds.min_items, bounds.max_items],
        "max_retries": bounds.max_reasks,  # the setting's former name: fingerprints made under it stay
        "writer_format": WRITER_FORMAT,
        "principles": list(principle_ids),
    }
    return fingerprint(data)


async def stored_or_written(
    store: RunStore,
    prompt_id: str,
    settings: str,
    model: ChatModel,
    prompt: list[Message],
    principles: Sequence[tuple[str, str]],
    bounds: ItemBounds,
    params: SamplingParams,
) -> Checklist:
    """The prompt's checklist from the store, else written by `model` (`charter.checklist.author.write_for_prompt`:
    one call through its call cache, re-asked while unreadable) and stored. Raises JudgeParseError or ProviderError
    where no checklist could be written (nothing is stored: a later call writes it again)."""
    found = kept_checklist(store, prompt_id, settings)
    if found is not None:
        return found
    written = await write_for_prompt(model, prompt, principles, bounds, params)
    keep_checklist(store, prompt_id, settings, written.checklist, model.model_id)
    return written.checklist


__all__ = ["keep_checklist", "kept_checklist", "stored_or_written", "writing_fingerprint"]
