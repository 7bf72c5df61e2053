"""Each prompt's checklist in a run: the run config's `checklist:` section (where it comes from: written by a model,
the prompts' `checklist` column, or the constitution's criteria), the fingerprint of the settings that make it, and
the run store's `checklists` table (this module is its one reader and writer), where it is kept with its provenance
(source, the model that wrote it, the writing prompt's format, the checklist's version and fingerprint).

A checklist is made once a prompt and read back on a resume under the same settings (no new call). A prompt whose
checklist could not be written has no row (its failure is in the failures table), so a later run writes it again.
`charter run`'s checklists and those a reward's writer writes (`reward_function(scoring="checklist",
checklist_writer=...)`, in the reward store) both go through here, so a resumed run or a restarted trainer asks no
writer twice. The checklist itself is kept as its JSON (`Checklist`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import Field, model_validator

from charter.checklist.aggregate import Aggregation
from charter.checklist.author import WRITER_FORMAT, ItemBounds, write_for_prompt
from charter.checklist.items import Checklist, Source, checklist_from_criteria, checklist_from_rows
from charter.constitutions import Constitution
from charter.errors import ConfigError, DatasetError, JudgeParseError
from charter.providers import ManagedModel
from charter.providers.base import ChatModel, SamplingParams
from charter.providers.config import RoleConfig
from charter.records import Failure, Message, Prompt, fingerprint
from charter.runs.store import RunStore
from charter.yamlio import ConfigModel, LocatedValueError, former_name


class ChecklistConfig(ConfigModel):
    """A checklist for each prompt: written by a model, given by the prompts' `checklist` column, or the
    constitution's criteria."""

    source: Source
    """`model`: a model writes 3 to `max_items` yes/no items for each prompt, grounded in the prompt and its sampled
    principles (one cached call a prompt); `column`: the prompts' `checklist` column (a list of items, or its JSON
    text); `criteria`: the constitution's criteria (every principle's), the same checklist for each prompt."""
    model: RoleConfig | None = None
    """Source `model`: the model that writes the checklists (a plain string is taken as its `model`)."""
    min_items: int = Field(default=3, ge=1)
    """Source `model`: the fewest items a written checklist may have; a reply with fewer is asked again, then
    recorded as the prompt's failure."""
    max_items: int = Field(default=8, ge=1)
    """Source `model`: the most items a written checklist may have (the first `max_items` are kept)."""
    max_reasks: int = Field(default=2, ge=0)
    """Source `model`: re-asks (with a new seed) of a reply that is no readable checklist, before the prompt's
    checklist is recorded as failed; the writer's retries of a failed call are `model.limits.max_retries`. Formerly
    `max_retries`, still read as this with a warning."""
    aggregation: Aggregation = "explicit"
    """Judge mode `checklist`: `explicit` scores a response by its items' weights with gates (a failed gate caps the
    score); `implicit` by the judge's overall score 1..10 given the checklist, asked in the same call."""

    @model_validator(mode="before")
    @classmethod
    def _former_names(cls, data: Any) -> Any:
        meaning = "re-asks of a reply that is no readable checklist; the writer's retries of a failed call are "
        return former_name(data, "checklist", "max_retries", "max_reasks", meaning + "model.limits.max_retries")

    @model_validator(mode="after")
    def _writer_for_model(self) -> ChecklistConfig:
        if self.source == "model" and self.model is None:
            raise LocatedValueError(
                "source model needs a model to write the checklists: set checklist.model", ("model",)
            )
        if self.source != "model" and self.model is not None:
            raise LocatedValueError(f"a model writes checklists only for source model, not {self.source}", ("model",))
        if self.min_items > self.max_items:
            raise LocatedValueError(f"min_items {self.min_items} is over max_items {self.max_items}", ("min_items",))
        return self


class PrincipleDraw(Protocol):
    """How the judge draws each pair's principles (`JudgeSettings`): fixed ids, or how many are sampled."""

    @property
    def principles(self) -> list[str] | None: ...
    @property
    def principles_per_pair(self) -> int: ...


def checklists_fingerprint(
    config: ChecklistConfig, constitution: Constitution, writer: str | None, judge: PrincipleDraw, seed: int
) -> str:
    """The fingerprint of what makes the checklists: the source, the writer's model, sampling, item bounds and prompt
    format (source model), the constitution, and the principles each prompt's checklist is grounded in."""
    data: dict[str, Any] = {"stage": "checklist", "source": config.source, "constitution": constitution.hash}
    if config.source == "model":
        assert config.model is not None
        data.update(
            writer=writer,
            params=config.model.params.model_dump(mode="json"),
            items=[config.min_items, config.max_items],
            max_retries=config.max_reasks,  # the setting's former name: fingerprints made under it stay
            writer_format=WRITER_FORMAT,
            principles=judge.principles or judge.principles_per_pair,
            seed=seed,
        )
    return fingerprint(data)


def check_checklist_config(config: Any, constitution: Constitution) -> None:
    """What a run's `checklist:` section needs of the constitution, checked before any call: source `criteria` needs
    one with criteria. One ConfigError naming the key."""
    section: ChecklistConfig | None = config.checklist
    if section is not None and section.source == "criteria":
        try:
            checklist_from_criteria(constitution)
        except ConfigError as exc:
            raise ConfigError(f"checklist.source: criteria: {exc}") from None


def check_prompt_checklist(section: ChecklistConfig | None, prompt: Prompt) -> None:
    """A prompt's `checklist` column, where the source is `column`: present and readable (a DatasetError of one
    line naming the prompt, the item and the key)."""
    if section is None or section.source != "column":
        return
    where = f"prompts ({prompt.source}) prompt {prompt.prompt_id}: checklist"
    if prompt.checklist is None:
        raise DatasetError(f"{where}: no `checklist` column value (checklist.source is column)")
    checklist_from_rows(prompt.checklist, where)


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


class Checklists:
    """Each prompt's checklist for one run session: from the store where it is there, else made and stored.
    `principles` gives the principle ids a prompt's written checklist is grounded in (the judge's draw for it)."""

    def __init__(
        self,
        section: ChecklistConfig,
        constitution: Constitution,
        principles: Callable[[str], list[str]],
        store: RunStore,
        fp: str,
        writer: ManagedModel | None,
    ) -> None:
        self.section, self.constitution, self.principles = section, constitution, principles
        self.store, self.fp, self.writer = store, fp, writer
        self.made = 0
        """Checklists made by this run (not read from the store)."""

    async def get(self, prompt: Prompt) -> Checklist:
        """The prompt's checklist. Raises JudgeParseError or ProviderError where a model could not write one (the
        caller records the prompt's failure); a bad `checklist` column value is a DatasetError."""
        found = kept_checklist(self.store, prompt.prompt_id, self.fp)
        if found is not None:
            return found
        checklist, model = await self._make(prompt)
        keep_checklist(self.store, prompt.prompt_id, self.fp, checklist, model)
        self.made += 1
        return checklist

    async def _make(self, prompt: Prompt) -> tuple[Checklist, str | None]:
        source = self.section.source
        if source == "criteria":
            return checklist_from_criteria(self.constitution), None
        if source == "column":
            return checklist_from_rows(prompt.checklist, f"prompt {prompt.prompt_id}: checklist"), None
        assert self.writer is not None and self.section.model is not None
        ids = self.principles(prompt.prompt_id)
        principles = [(pid, self.constitution.principle(pid).description) for pid in ids]
        written = await write_for_prompt(
            self.writer, prompt.messages, principles, self.section, self.section.model.params
        )
        return written.checklist, self.writer.model_id


def checklist_failure(error: JudgeParseError) -> Failure:
    """The recorded failure of a prompt whose checklist could not be written."""
    return Failure(kind=f"checklist_{error.kind}", message=str(error), raw=error.raw, attempts=error.attempts)


__all__ = [
    "ChecklistConfig",
    "Checklists",
    "PrincipleDraw",
    "StoredChecklist",
    "check_checklist_config",
    "check_prompt_checklist",
    "checklist_failure",
    "checklist_ids",
    "checklist_record",
    "checklists_fingerprint",
    "count_checklists",
    "keep_checklist",
    "kept_checklist",
    "put_checklist",
    "stored_checklist",
    "stored_or_written",
    "writing_fingerprint",
]
