"""The constitution schema: principles a policy is critiqued against and a judge compares with; a constitution
loaded from its YAML file or the bundled library."""

from __future__ import annotations

import hashlib
import json
import re
import string
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from charter.api_args import public
from charter.errors import ConfigError, ConstitutionError
from charter.records import Message, Number, Weight
from charter.verify import check as verify_check
from charter.verify import resolve as resolve_verifier
from charter.yamlio import LocatedValueError, load_yaml, model_from_data, require_unique

#: The models' config: unknown keys are errors, and a number is finite (NaN and infinity are refused).
SCHEMA = ConfigDict(extra="forbid", use_attribute_docstrings=True, allow_inf_nan=False)
#: Variables a principle's templates may use, filled in by the critique and judge stages.
TEMPLATE_VARIABLES = frozenset({"prompt", "response", "critique", "principle"})


def template_fields(template: str) -> set[str]:
    """The `{variable}` names used by a str.format-style template."""
    return {name.split(".")[0].split("[")[0] for _, name, _, _ in string.Formatter().parse(template) if name}


#: A criterion's category, and the weight each stands for when the criterion gives no weight of its own. A pitfall's
#: weight is negative: a "yes" (the response falls into it) takes from the score.
Category = Literal["essential", "important", "optional", "pitfall"]
CATEGORY_WEIGHTS: dict[str, float] = {"essential": 1.0, "important": 0.7, "optional": 0.3, "pitfall": -0.9}
#: The category of a criterion that names neither a weight nor a category.
DEFAULT_CATEGORY = "important"
#: The score a failed gate caps a response at (0..1) when neither the gate nor the constitution names a cap.
DEFAULT_GATE_CAP = 0.0
#: The key of the judge's overall score in a checklist reply (the `implicit` aggregation), beside the items' ids.
OVERALL_KEY = "overall"
#: Ids no criterion or checklist item may take: the checklist reply's own keys, which an item's answer would collide
#: with (its schema property replaced, its verdict never read).
RESERVED_ITEM_IDS = frozenset({OVERALL_KEY})


def check_item_id(value: str) -> str:
    """A criterion's or checklist item's id, refused where the checklist reply reserves it (`RESERVED_ITEM_IDS`)."""
    if value in RESERVED_ITEM_IDS:
        raise ValueError(f"the id {value!r} is reserved: the checklist judge's reply uses it for its overall score")
    return value


class Gate(BaseModel):
    """A criterion that caps the response's score when it is failed (a "no", or a "yes" for a pitfall)."""

    model_config = SCHEMA
    cap: Number | None = Field(default=None, ge=0, le=1)
    """The most a response that fails the criterion can score, on the checklist's 0..1 scale; default: the
    constitution's `gate_cap` (itself 0 by default)."""


class Criterion(BaseModel):
    """One yes/no criterion of a principle: a checklist item the judge (or a verifier program) answers."""

    model_config = SCHEMA
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    """Stable identifier, unique in the constitution (lowercase, digits, `-`, `_`, `.`)."""
    requirement: str = Field(min_length=1)
    """What a "yes" means, as one statement about the response, e.g. 'The response names a source for each
    figure.'; for a pitfall, what the response must not do."""
    weight: Weight | None = None
    """The criterion's weight in the checklist score: a finite number, not 0, at most 1e6 either way
    (negative for a pitfall); give this or `category`."""
    category: Category | None = None
    """essential (weight 1.0), important (0.7), optional (0.3) or pitfall (-0.9); give this or `weight`. With
    neither, the criterion is `important`."""
    gate: bool | Gate = False
    """A gate: failing the criterion caps the response's score (`true`: at the constitution's `gate_cap`; `{cap:
    0.3}`: at 0.3)."""
    verifier: str | None = None
    """A `charter.verify` check (`regex:PATTERN`, `number`, `exact`, `contains`, a registered name or
    `module:function`) that answers the criterion by code, never by the judge: a pass is "yes"."""
    reference: str | None = None
    """The reference answer the verifier compares with (`number`, `exact`, `contains`)."""

    _unreserved = field_validator("id")(check_item_id)

    @field_validator("weight")
    @classmethod
    def _nonzero(cls, value: float | None) -> float | None:
        if value is not None and value == 0:
            raise ValueError("a weight of 0 counts for nothing: leave the criterion out, or give it a weight")
        return value

    @field_validator("gate", mode="before")
    @classmethod
    def _gate_shape(cls, value: object) -> object:
        """One error for a bad gate, where pydantic would give one per member of `bool | Gate`."""
        if value is None or isinstance(value, bool | Gate):
            return bool(value) if not isinstance(value, Gate) else value
        if not isinstance(value, dict):
            raise ValueError(f"a gate is true, false or {{cap: N}} with N from 0 to 1, not {value!r:.40}")
        try:
            return Gate.model_validate(value)
        except ValidationError as exc:
            first = exc.errors()[0]
            msg = "unknown key (a gate takes a cap)" if first["type"] == "extra_forbidden" else first["msg"]
            raise LocatedValueError(msg, tuple(first["loc"])) from None

    @model_validator(mode="after")
    def _weight_or_category(self) -> Criterion:
        if self.weight is not None and self.category is not None:
            raise LocatedValueError("give a weight or a category, not both", ("weight",))
        if self.verifier is not None:
            check_verifier(self.verifier, self.reference)
        return self

    @property
    def effective_weight(self) -> float:
        """The weight the criterion counts with: its own, or its category's (`CATEGORY_WEIGHTS`)."""
        if self.weight is not None:
            return self.weight
        return CATEGORY_WEIGHTS[self.category or DEFAULT_CATEGORY]


def check_verifier(name: str, reference: str | None) -> None:
    """Raise LocatedValueError (at `verifier`) for a verifier that does not exist, or for a built-in one that needs a
    reference it lacks: an error when the file loads, not when a response is checked."""
    try:
        resolve_verifier(name)
        if ":" not in name or name.startswith("regex:"):  # built-in checks are pure: try one on an empty response
            verify_check("", name, reference, "")
    except ConfigError as exc:
        raise LocatedValueError(str(exc), ("verifier",)) from None


#: Who says a message in a spec's example conversation: the chat roles and the ones a chain of command adds.
SpecRole = Literal["system", "developer", "user", "assistant", "tool"]
#: How a spec's example reply is labelled: GOOD, BAD, or OK (acceptable, neither the best nor wrong).
ReplyLabel = Literal["good", "bad", "ok"]
#: Ids a principle, level or criterion may take.
ID_PATTERN = r"^[a-z0-9][a-z0-9_.-]*$"


class SpecMessage(BaseModel):
    """One message of a spec example's conversation, its role kept as the spec wrote it."""

    model_config = SCHEMA
    role: SpecRole
    """system, developer, user, assistant or tool."""
    content: str
    """The message's text, verbatim."""


class SpecReply(BaseModel):
    """One labelled assistant reply of a spec example."""

    model_config = SCHEMA
    label: ReplyLabel
    """good, bad or ok, as the spec labels the reply."""
    content: str
    """The reply's text, verbatim (its label comment removed)."""
    why: str | None = None
    """The spec's reason for the label, where it gives one."""


class SpecExample(BaseModel):
    """A spec's own example under a principle: a conversation and its labelled replies (the spec's `<comparison>`).
    The critic and the judge can show it as a few-shot example; each good reply against each bad one is a labelled
    pair (`charter constitutions import --from markdown` writes them)."""

    model_config = SCHEMA
    title: str | None = None
    """The example's title in the spec, where it has one."""
    conversation: list[SpecMessage] = Field(default_factory=list)
    """The messages before the replies, with their roles."""
    replies: list[SpecReply] = Field(min_length=1)
    """The labelled replies: at least one good one."""
    line: int | None = Field(default=None, ge=1)
    """The line of the spec where the example's comparison starts."""

    @model_validator(mode="after")
    def _has_good(self) -> SpecExample:
        if not any(reply.label == "good" for reply in self.replies):
            raise LocatedValueError("an example needs at least one good reply", ("replies",))
        return self


class Source(BaseModel):
    """Where a principle imported from a prose spec comes from, and how its questions were written."""

    model_config = SCHEMA
    file: str
    """The spec's file name."""
    line: int = Field(ge=1)
    """The line of the section's heading."""
    heading: str
    """The section's heading, as written (without its `{#id ...}` anchor)."""
    questions: Literal["verbatim", "model"] = "verbatim"
    """How the critique, revision and judge questions were written: `verbatim`, a fixed question naming the section,
    the section's text given to the critic and the judge as it stands (no paraphrase); `model`, written from the
    section's text by the model `questions_by` names, at the user's request (the text still follows each question)."""
    questions_by: str | None = None
    """The model that wrote the questions, where `questions` is `model`."""

    @model_validator(mode="after")
    def _writer_named(self) -> Source:
        if (self.questions == "model") != (self.questions_by is not None):
            raise LocatedValueError(
                "questions_by names the model where, and only where, questions: model", ("questions_by",)
            )
        return self


class SpecOrigin(BaseModel):
    """The prose spec a constitution was imported from: what a run's card and an evaluation's report name."""

    model_config = SCHEMA
    file: str
    """The spec's file name."""
    version: str
    """The spec's version: its front matter's `version` or `date` where it states one, else `sha256:` and the first
    12 hex digits of the file's hash."""
    sha256: str
    """The sha256 of the spec's file, as read."""
    sections: int = Field(ge=0)
    """How many sections (headings) the spec has."""
    skipped: int = Field(ge=0)
    """How many of them the import skipped (each reported with its reason)."""


class Principle(BaseModel):
    """One principle: how to critique against it, how to revise, how to compare two responses."""

    model_config = SCHEMA
    id: str = Field(pattern=ID_PATTERN)
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
    weight: Weight = Field(default=1.0, gt=0)
    """Relative chance of being sampled for a critique round or a judge ensemble (above 0, at most 1e6)."""
    tags: list[str] = Field(default_factory=list)
    """Free-form labels (harm area, helpfulness, honesty...) for filtering and reports."""
    criteria: list[Criterion] = Field(default_factory=list)
    """Yes/no criteria that spell the principle out as checklist items, weighted and optionally gated; none: the
    principle is judged as a whole, as it always is."""
    level: str | None = None
    """The principle's level, one of the constitution's `levels` (then every principle names one)."""
    priority: int | None = Field(default=None, ge=1)
    """The principle's rank where the constitution orders by number rather than by named levels: 1 comes first
    (then every principle gives one; not with `levels`)."""
    hard: bool = False
    """A hard constraint: a response that violates it loses, whatever the other principles say."""
    default: bool = False
    """A default: an instruction at one of the `overridable_by` levels may override it."""
    overridable_by: list[str] = Field(default_factory=list)
    """The levels whose instructions may override this default (levels of the constitution's `levels`)."""
    source: Source | None = None
    """Where the principle comes from, for one imported from a prose spec."""
    examples: list[SpecExample] = Field(default_factory=list)
    """The spec's own examples for this principle: conversations with good and bad replies."""

    def shown_examples(self, judged: Sequence[Any], limit: int) -> list[tuple[SpecExample, SpecReply, SpecReply]]:
        """Up to `limit` of the principle's own spec examples that have a good and a bad reply, as (example, good,
        bad), for the judge or the critic to see: never one whose conversation is `judged` (messages with `role` and
        `content`), so that the spec's labelled pairs stay unseen where they are what is judged."""
        asked = [(m.role, m.content) for m in judged]
        shown = []
        for example in self.examples:
            good = next((r for r in example.replies if r.label == "good"), None)
            bad = next((r for r in example.replies if r.label == "bad"), None)
            if good is None or bad is None or [(m.role, m.content) for m in example.conversation] == asked:
                continue
            shown.append((example, good, bad))
            if len(shown) >= limit:
                break
        return shown

    @property
    def ranked(self) -> bool:
        """Whether the principle sits in a chain of command (a level or a priority): the judge then sees who said
        what at which authority, system messages included."""
        return self.level is not None or self.priority is not None

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

    model_config = SCHEMA
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

    model_config = SCHEMA
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
    gate_cap: Number | None = Field(default=None, ge=0, le=1)
    """The score (0..1) a response that fails a gated criterion is capped at, where the gate names no cap of its
    own; default 0."""
    levels: list[str] = Field(default_factory=list)
    """Named levels in order, highest first (the Model Spec's `[root, system, developer, user, guideline]`); each
    principle then names its `level`. None: the principles are flat, or ordered by `priority`."""
    spec: SpecOrigin | None = None
    """The prose spec the constitution was imported from (`charter constitutions import --from markdown`)."""

    @field_validator("version", mode="before")
    @classmethod
    def _version_as_text(cls, value: object) -> object:
        return str(value) if isinstance(value, (int, float)) else value

    @model_validator(mode="after")
    def _unique_ids(self) -> Constitution:
        named = ((p.id, ("principles", i, "id")) for i, p in enumerate(self.principles))
        require_unique(named, "duplicate principle id '{}'")
        criteria = (
            (c.id, ("principles", i, "criteria", j, "id"))
            for i, p in enumerate(self.principles)
            for j, c in enumerate(p.criteria)
        )
        require_unique(criteria, "duplicate criterion id '{}'")
        check_levels(self)
        ids = set(self.principle_ids)
        for index, example in enumerate(self.examples):
            if example.principle and example.principle not in ids:
                where = ("examples", index, "principle")
                raise LocatedValueError(f"example names unknown principle '{example.principle}'", where)
        return self

    @property
    def hash(self) -> str:
        """sha256 of the canonical JSON of the parsed constitution: formatting and key order don't matter."""
        data = self.model_dump(mode="json")
        _drop_unset_fields(data)  # a constitution without them hashes as it did before they existed
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
        return {p.id: p for p in self.principles}[principle_id]

    @property
    def principle_ids(self) -> list[str]:
        """All principle ids, in order."""
        return [p.id for p in self.principles]

    @property
    def ordered(self) -> bool:
        """Whether the principles are ordered into levels (named, or by priority)."""
        return bool(self.levels) or any(p.priority is not None for p in self.principles)

    def level_order(self) -> list[tuple[str, list[Principle]]]:
        """The principles by level, highest first: (level name, or `priority N`, its principles). A flat
        constitution is one level named `all`."""
        if self.levels:
            return [(level, [p for p in self.principles if p.level == level]) for level in self.levels]
        ranks = sorted({p.priority for p in self.principles if p.priority is not None})
        if not ranks:
            return [("all", list(self.principles))]
        return [(f"priority {rank}", [p for p in self.principles if p.priority == rank]) for rank in ranks]

    @property
    def has_criteria(self) -> bool:
        """Whether any principle carries criteria."""
        return any(p.criteria for p in self.principles)

    def gate_cap_of(self, criterion: Criterion) -> float | None:
        """The cap a failed `criterion` puts on the score (None: it is no gate)."""
        if criterion.gate is False:
            return None
        own = criterion.gate.cap if isinstance(criterion.gate, Gate) else None
        if own is not None:
            return own
        return self.gate_cap if self.gate_cap is not None else DEFAULT_GATE_CAP


def check_levels(constitution: Constitution) -> None:
    """Raise LocatedValueError for an order of levels that does not hold: a level named twice (it would stand both
    above and below another), a principle at a level the order does not name, levels and priorities mixed, a
    default without the levels that may override it, or a hard constraint that is also a default."""
    levels = constitution.levels
    require_unique(((level, ("levels", i)) for i, level in enumerate(levels)), LEVEL_TWICE)
    for i, level in enumerate(levels):
        if not re.match(ID_PATTERN, level):
            raise LocatedValueError(f"level '{level}': lowercase letters, digits, '-', '_' and '.' only", ("levels", i))
    named = ", ".join(levels)
    ranked = [p.priority is not None for p in constitution.principles]
    for i, principle in enumerate(constitution.principles):
        where = ("principles", i)
        if principle.level is not None and not levels:
            raise LocatedValueError(
                f"level '{principle.level}', but the constitution names no levels (add levels: [...], highest first)",
                (*where, "level"),
            )
        if principle.level is not None and principle.level not in levels:
            raise LocatedValueError(f"unknown level '{principle.level}' (the order names: {named})", (*where, "level"))
        if levels and principle.level is None:
            raise LocatedValueError(f"no level: the constitution orders its principles into {named}", (*where, "id"))
        if levels and principle.priority is not None:
            raise LocatedValueError("give named levels or priorities, not both", (*where, "priority"))
        if any(ranked) and not ranked[i]:
            raise LocatedValueError("no priority: the other principles are ordered by priority", (*where, "id"))
        if principle.hard and principle.default:
            raise LocatedValueError(
                "a hard constraint cannot be a default that instructions override", (*where, "hard")
            )
        if principle.default and not principle.overridable_by:
            raise LocatedValueError("a default names the levels that may override it", (*where, "default"))
        if principle.overridable_by and not principle.default:
            raise LocatedValueError("only a default (default: true) is overridable", (*where, "overridable_by"))
        for j, level in enumerate(principle.overridable_by):
            if level not in levels:
                known = f"the order names: {named}" if levels else "the constitution names no levels"
                raise LocatedValueError(f"unknown level '{level}' ({known})", (*where, "overridable_by", j))


#: The message of a level named twice in an order.
LEVEL_TWICE = "level '{}' is named twice: the order would put it both above and below the levels between"
#: Keys of a principle that leave the canonical JSON (and a written file) when they hold their default.
UNSET_PRINCIPLE_KEYS = {
    "rating": None,
    "criteria": [],
    "level": None,
    "priority": None,
    "hard": False,
    "default": False,
    "overridable_by": [],
    "source": None,
    "examples": [],
}


def _drop_unset_fields(data: dict) -> None:
    """Fields added after the first constitutions were hashed leave the canonical JSON when unset."""
    for key in ("rubric", "gate_cap", "spec"):
        if data.get(key) is None:
            data.pop(key, None)
    if not data.get("levels"):
        data.pop("levels", None)
    for principle in data.get("principles", []):
        for key, unset in UNSET_PRINCIPLE_KEYS.items():
            if key in principle and principle[key] == unset:
                principle.pop(key)
        if principle.get("source") and principle["source"].get("questions_by") is None:
            principle["source"].pop("questions_by", None)


#: The folder of the bundled constitutions (data, not a package).
LIBRARY = resources.files("charter.constitutions").joinpath("library")


def builtin_names() -> list[str]:
    """Names of the bundled constitutions."""
    files = LIBRARY.iterdir()
    return sorted(f.name[: -len(".yaml")] for f in files if f.name.endswith(".yaml"))


def builtin_path(name: str) -> Path:
    """The file of a bundled constitution."""
    return Path(str(LIBRARY.joinpath(f"{name}.yaml")))


@public
def load_constitution(source: str | Path | Constitution) -> Constitution:
    """Load a constitution from a YAML file or the bundled library.

    Args:
        source: A constitution YAML file, the name of a bundled constitution (see `builtin_names()`; a file of
            that name takes precedence), or a `Constitution`, returned as it is.

    Returns:
        The validated constitution.

    Raises:
        ConstitutionError: `source` is neither a file nor a bundled name, or the file is unreadable, not valid YAML
            or not a valid constitution (one line per error, naming file:line:column and the key).
    """
    if isinstance(source, Constitution):
        return source
    path = Path(source)
    if not path.exists() and str(source) in builtin_names():
        path = builtin_path(str(source))
    elif not path.exists():
        known = ", ".join(builtin_names())
        raise ConstitutionError(f"{source}: no such file or bundled constitution (bundled: {known})")
    try:
        data, positions = load_yaml(path)
        return model_from_data(Constitution, data, str(path), positions)
    except ConfigError as exc:
        raise ConstitutionError(exc.lines) from None
