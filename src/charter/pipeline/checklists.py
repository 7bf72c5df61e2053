"""Each prompt's checklist in `charter run` (a run config's `checklist:` section): made once a prompt from its source
(written by a model, the prompts' `checklist` column, or the constitution's criteria), kept in the run store with its
provenance, and reused from there on a resume (no new call)."""

from __future__ import annotations

from typing import Any

from charter.checklist import Checklist, checklist_from_criteria, checklist_from_rows
from charter.checklist.author import WRITER_FORMAT, write_for_prompt
from charter.checklist.config import ChecklistConfig
from charter.checklist.kept import keep_checklist, kept_checklist
from charter.constitutions import Constitution
from charter.errors import ConfigError, DatasetError, JudgeParseError
from charter.judge.pairwise import principles_for
from charter.judge.settings import JudgeSettings
from charter.preference.manifest import DatasetSettings
from charter.providers import ManagedModel
from charter.records import Failure, Prompt, fingerprint
from charter.runs.checklists import count_checklists
from charter.runs.store import RunStore


def checklists_fingerprint(
    config: ChecklistConfig, constitution: Constitution, writer: str | None, judge: JudgeSettings, seed: int
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


class Checklists:
    """Each prompt's checklist for one run session: from the store where it is there, else made and stored."""

    def __init__(
        self,
        section: ChecklistConfig,
        constitution: Constitution,
        judge: JudgeSettings,
        seed: int,
        store: RunStore,
        fp: str,
        writer: ManagedModel | None,
    ) -> None:
        self.section, self.constitution, self.judge, self.seed = section, constitution, judge, seed
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
        ids = principles_for(self.constitution, self.judge, prompt.prompt_id, self.seed)
        principles = [(pid, self.constitution.principle(pid).description) for pid in ids]
        written = await write_for_prompt(
            self.writer, prompt.messages, principles, self.section, self.section.model.params
        )
        return written.checklist, self.writer.model_id


def checklist_lines(store: RunStore, settings: DatasetSettings | None) -> list[str]:
    """The report's line on the run's checklists: source, writer, how many are stored, the aggregation."""
    section = None if settings is None else settings.checklist
    fp = None if settings is None else settings.fingerprints.checklist
    if section is None or fp is None:
        return []
    writer = f" written by {settings.models.get('checklist')}" if settings and section.source == "model" else ""
    mode = (
        f", judged item by item ({section.aggregation} aggregation)"
        if settings and settings.judge.mode_entry.needs_context
        else ""
    )
    return [f"Checklists: source {section.source}{writer}, {count_checklists(store, fp)} stored{mode}"]


def checklist_failure(error: JudgeParseError) -> Failure:
    """The recorded failure of a prompt whose checklist could not be written."""
    return Failure(kind=f"checklist_{error.kind}", message=str(error), raw=error.raw, attempts=error.attempts)


__all__ = [
    "Checklists",
    "check_checklist_config",
    "check_prompt_checklist",
    "checklist_failure",
    "checklist_lines",
    "checklists_fingerprint",
]
