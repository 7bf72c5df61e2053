"""The constitution schema: principles a policy is critiqued against and a judge compares with."""

from __future__ import annotations

import hashlib
import json
import string

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from charter.records import Message
from charter.yamlio import LocatedValueError

#: Variables a principle's templates may use, filled in by the critique and judge stages.
TEMPLATE_VARIABLES = frozenset({"prompt", "response", "critique", "principle"})


def template_fields(template: str) -> set[str]:
    """The `{variable}` names used by a str.format-style template."""
    return {name.split(".")[0].split("[")[0] for _, name, _, _ in string.Formatter().parse(template) if name}


class Principle(BaseModel):
    """One principle: how to critique against it, how to revise, how to compare two responses."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    """Stable identifier (lowercase, digits, `-`, `_`, `.`); recorded in every row it touched."""
    description: str
    """What the principle asks for, in one or two sentences."""
    critique_request: str
    """Asked of the critic after the response: how the response falls short of the principle."""
    revision_request: str
    """Asked of the critic after its critique: rewrite the response to meet the principle."""
    comparison: str
    """The judge's multiple-choice question, e.g. 'Which response is less harmful?'."""
    rating: str | None = None
    """The judge's question when it rates one response on the rubric's scale (judge mode `score`), e.g. 'How
    harmless is the response?'; default: how well the response meets the principle."""
    weight: float = Field(default=1.0, gt=0)
    """Relative chance of being sampled for a critique round or a judge ensemble."""
    tags: list[str] = Field(default_factory=list)
    """Free-form labels (harm area, helpfulness, honesty...) for filtering and reports."""

    @field_validator("critique_request", "revision_request", "comparison")
    @classmethod
    def _known_variables(cls, value: str) -> str:
        try:
            unknown = template_fields(value) - TEMPLATE_VARIABLES
        except ValueError as exc:  # unbalanced braces
            raise ValueError(f"invalid template: {exc}") from None
        if unknown:
            allowed = ", ".join(sorted(TEMPLATE_VARIABLES))
            raise ValueError(f"unknown template variable {{{sorted(unknown)[0]}}} (allowed: {allowed})")
        return value


class FewShotExample(BaseModel):
    """A worked example shown before each critique: a conversation, its critique and revision."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)
    conversation: list[Message] = Field(min_length=2)
    """The exchange, ending with the assistant response being critiqued."""
    principle: str | None = None
    """The principle id the critique applies (optional)."""
    critique: str
    """The worked critique."""
    revision: str
    """The worked revision."""

    @model_validator(mode="after")
    def _ends_with_assistant(self) -> FewShotExample:
        if self.conversation[-1].role != "assistant":
            raise ValueError("conversation must end with an assistant message")
        return self


class Constitution(BaseModel):
    """A named, versioned set of principles."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)
    name: str
    """Short name, used in reports, cards and provenance columns."""
    version: str = "1"
    """The constitution's own version string."""
    description: str = ""
    """What the constitution is for."""
    system_prompt: str | None = None
    """Optional system message for the policy."""
    principles: list[Principle] = Field(min_length=1)
    """The principles; at least one."""
    examples: list[FewShotExample] = Field(default_factory=list)
    """Few-shot critique/revision examples placed before each critique."""
    rubric: str | None = None
    """What the scores of judge mode `score` mean, `{scale}` standing for the top score; default: 1 plainly fails
    the principle, the top score meets it fully, the scores between grade how far it falls short."""

    @field_validator("version", mode="before")
    @classmethod
    def _version_as_text(cls, value: object) -> object:
        return str(value) if isinstance(value, (int, float)) else value

    @model_validator(mode="after")
    def _unique_ids(self) -> Constitution:
        seen: set[str] = set()
        for index, principle in enumerate(self.principles):
            if principle.id in seen:
                raise LocatedValueError(f"duplicate principle id '{principle.id}'", ("principles", index, "id"))
            seen.add(principle.id)
        ids = seen
        for index, example in enumerate(self.examples):
            if example.principle and example.principle not in ids:
                where = ("examples", index, "principle")
                raise LocatedValueError(f"example names unknown principle '{example.principle}'", where)
        return self

    @property
    def hash(self) -> str:
        """sha256 of the canonical JSON of the parsed constitution: formatting and key order don't matter."""
        data = self.model_dump(mode="json")
        _drop_unset_rating_fields(data)  # a constitution without them hashes as it did before they existed
        canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    @property
    def short_hash(self) -> str:
        """The first 12 hex digits of `hash`, for display."""
        return self.hash[:12]

    def rating_question(self, principle_id: str) -> str:
        """The judge's question when it rates one response under this principle."""
        return self.principle(principle_id).rating or "How well does the response meet this principle?"

    def principle(self, principle_id: str) -> Principle:
        """The principle with this id."""
        for principle in self.principles:
            if principle.id == principle_id:
                return principle
        raise KeyError(principle_id)

    @property
    def principle_ids(self) -> list[str]:
        """All principle ids, in order."""
        return [p.id for p in self.principles]


def _drop_unset_rating_fields(data: dict) -> None:
    if data.get("rubric") is None:
        data.pop("rubric", None)
    for principle in data.get("principles", []):
        if principle.get("rating") is None:
            principle.pop("rating", None)
