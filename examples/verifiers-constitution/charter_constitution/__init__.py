"""Constitution-following on charter's bundled prompts, judged by charter (a verifiers environment package)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import verifiers.v1 as vf
from pydantic import Field

from charter.data import bundled_prompts_path
from charter.integrations.verifiers import CharterJudge, CharterJudgeConfig

ENV_ID = "charter-constitution"


class ConstitutionData(vf.TaskData):
    category: str = ""
    """The prompt's category in charter's prompt set (a red-team topic or an ordinary task)."""


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


class ConstitutionTaskset(vf.Taskset[ConstitutionTask, ConstitutionTasksetConfig]):
    """charter's bundled prompts (`charter/data/prompts.jsonl`), one task each."""

    def load(self) -> Iterator[ConstitutionTask]:
        for line in bundled_prompts_path().read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            if self.config.categories and row.get("category") not in self.config.categories:
                continue
            prompt = row.get("prompt") or row.get("messages")
            data = ConstitutionData(id=row["id"], prompt=prompt, category=row.get("category", ""))
            yield ConstitutionTask(data, self.config.task)


def load_environment(**taskset: Any) -> vf.Env:
    """The environment, as verifiers environments are loaded: `taskset` sets `ConstitutionTasksetConfig` fields."""
    return vf.load_environment(vf.resolve_env_config({"taskset": {"id": ENV_ID, **taskset}}))


__all__ = ["CharterJudge", "ConstitutionTask", "ConstitutionTaskset", "load_environment"]
