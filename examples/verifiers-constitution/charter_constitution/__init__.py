"""Constitution-following on charter's bundled prompts (or a prompts file of your own), judged by charter (a verifiers
environment package).

A prompts file is JSON lines as charter's prompt sets are: `id`, `prompt` (or `messages`), and optionally `category`,
`reference` (the answer `reference` and `verify` scorings read: `answer_field = "reference"`) and `checklist` (the
prompt's checklist items, which `checklist` scoring reads)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import verifiers.v1 as vf
from pydantic import Field

from charter.integrations.verifiers import CharterJudge, CharterJudgeConfig
from charter.prompts import bundled_prompts_path

ENV_ID = "charter-constitution"


class ConstitutionData(vf.TaskData):
    category: str = ""
    """The prompt's category in charter's prompt set (a red-team topic or an ordinary task)."""
    reference: str | None = None
    """A reference answer, where the prompts file gives one (`reference` and `verify` scorings)."""
    checklist: list[dict[str, Any]] | str | None = None
    """The prompt's checklist, where the prompts file gives one (`checklist` scoring)."""


def _default_judges() -> list[vf.JudgeConfig]:
    return [CharterJudgeConfig(id=ENV_ID, name="constitution")]


class ConstitutionTaskConfig(vf.TaskConfig):
    judges: vf.Judges = Field(default_factory=_default_judges)
    """charter's judge, plugged by default (override its model, constitution and store here)."""


class ConstitutionTask(vf.Task[ConstitutionData, vf.State, ConstitutionTaskConfig]):
    """One prompt; the reward is charter's judgment of the reply."""


class ConstitutionTasksetConfig(vf.TasksetConfig):
    task: ConstitutionTaskConfig = ConstitutionTaskConfig()
    categories: list[str] = Field(default_factory=list)
    """Only these categories (empty: all)."""
    prompts: str = ""
    """A JSON-lines prompts file (empty: charter's bundled prompts)."""


class ConstitutionTaskset(vf.Taskset[ConstitutionTask, ConstitutionTasksetConfig]):
    """charter's bundled prompts (`charter/data/prompts.jsonl`) or the `prompts` file, one task each."""

    def load(self) -> Iterator[ConstitutionTask]:
        path = Path(self.config.prompts) if self.config.prompts else bundled_prompts_path()
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            row = json.loads(line)
            if self.config.categories and row.get("category") not in self.config.categories:
                continue
            data = ConstitutionData(
                id=row["id"],
                prompt=row.get("prompt") or row.get("messages"),
                category=row.get("category", ""),
                reference=row.get("reference"),
                checklist=row.get("checklist"),
            )
            yield ConstitutionTask(data, self.config.task)


def load_environment(**taskset: Any) -> vf.Env:
    """The environment, as verifiers environments are loaded: `taskset` sets `ConstitutionTasksetConfig` fields."""
    return vf.load_environment(vf.resolve_env_config({"taskset": {"id": ENV_ID, **taskset}}))


__all__ = ["CharterJudge", "ConstitutionTask", "ConstitutionTaskset", "load_environment"]
