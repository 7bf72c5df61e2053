"""The `checklist:` section of a run config: where each prompt's checklist comes from, and how judge mode
`checklist` turns its verdicts into a preference."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from charter.checklist.items import Source
from charter.providers.config import RoleConfig
from charter.yamlio import ConfigModel, LocatedValueError, former_name

#: How a checklist's verdicts become a response's score: weights with gates, or the judge's overall score.
Aggregation = Literal["explicit", "implicit"]


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


__all__ = ["Aggregation", "ChecklistConfig"]
