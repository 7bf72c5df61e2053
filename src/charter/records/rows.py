"""The rows that leave the pipeline: a preference row (TRL's conversational format, the judge's soft label) or an
SFT row, each with its provenance."""

from __future__ import annotations

import json
from typing import Any, ClassVar, Literal

import orjson
from pydantic import Field

from charter.records.base import GENERATOR, Message, Record, ToolCall
from charter.records.items import ChecklistSide, StepFinding


class Provenance(Record):
    """Where a row came from; every row charter writes carries these columns."""

    run_id: str
    """The run that made the row."""
    created_at: str
    """When the run started (ISO 8601, UTC)."""
    constitution_name: str
    """The constitution's name."""
    constitution_hash: str
    """sha256 of the constitution's parsed content."""
    policy_model: str | None = None
    """Model id of the policy."""
    critic_model: str | None = None
    """Model id of the critic."""
    settings_fingerprint: str
    """Fingerprint of every setting that shaped the dataset (critique, samples, judge, pairs, filters)."""
    synthetic: bool = True
    """Always true for charter rows; human rows mixed in with `charter.mix` carry false."""
    generator: str = GENERATOR
    """`charter <version>`."""

    LEADING: ClassVar[tuple[str, ...]] = ()
    JSON_COLUMNS: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def columns(cls) -> list[str]:
        """The file columns in reading order: the leading ones, the row's own, then provenance."""
        cached = cls.__dict__.get("_columns")
        if cached is None:
            own = [k for k in cls.model_fields if k not in cls.LEADING and k not in Provenance.model_fields]
            cached = [*cls.LEADING, *own, *Provenance.model_fields]
            cls._columns = cached
        return cached

    def to_row(self) -> dict[str, Any]:
        """The row as written to parquet/JSONL: columns in reading order, nested values as JSON strings."""
        data = self.model_dump(mode="json")
        for key, value in data.items():  # conversations in TRL's conversational format, tool calls kept
            if isinstance(value, list) and any(isinstance(m, dict) and m.get("tool_calls") for m in value):
                data[key] = [
                    {**m, "tool_calls": [ToolCall.model_validate(c).to_trl() for c in m["tool_calls"]]}
                    if isinstance(m, dict) and m.get("tool_calls")
                    else m
                    for m in value
                ]
        for column in self.JSON_COLUMNS:
            data[column] = orjson.dumps(data[column]).decode()
        return {k: data[k] for k in self.columns()}

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Any:
        """A record from a row read back from parquet/JSONL."""
        return cls.model_validate({k: _json_column(v) if k in cls.JSON_COLUMNS else v for k, v in row.items()})


class ChosenVote(Record):
    """A principle's vote in the terms of the row: probabilities that `chosen` is better."""

    principle_id: str
    """The principle."""
    p_chosen: float
    """P(chosen better) under this principle."""
    p_chosen_ab: float
    """P(chosen better) with the pair's `a` shown first."""
    p_chosen_ba: float | None = None
    """P(chosen better) with the pair's `a` shown second; null with one order."""
    consistent: bool | None = None
    """Both orders picked the same winner."""
    score_chosen: float | None = None
    """Judge mode `score`: `chosen`'s rubric score under this principle; null in the comparison modes."""
    score_rejected: float | None = None
    """Judge mode `score`: `rejected`'s rubric score under this principle."""
    judge: str | None = None
    """A panel's vote: the member model that cast it (null for a single judge)."""


class OrderProbs(Record):
    """P(chosen better) per presentation order of the pair."""

    ab: float
    """With the pair's `a` shown first."""
    ba: float | None = None
    """With the pair's `a` shown second; null with one order."""


def _json_column(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


class PreferenceRow(Provenance):
    """One row of data/preferences.*: TRL's conversational preference format, the judge's soft label, provenance."""

    prompt: list[Message]
    """The conversation before the response."""
    chosen: list[Message]
    """The preferred response, as one assistant message."""
    rejected: list[Message]
    """The other response, as one assistant message."""
    p_chosen: float = Field(ge=0.5, le=1.0)
    """The judge's probability that `chosen` is better (>= 0.5). Judge mode `score` gives no probability: there it
    is 0.5 plus half the normalised score gap, (score_chosen - score_rejected) / (2 (scale - 1)), so 0.5 is a tie and
    1 the widest gap."""
    p_chosen_calibrated: float | None = Field(default=None, ge=0.0, le=1.0)
    """`p_chosen` mapped through the calibration fitted to human labels; null where none applies."""
    margin: float
    """2 * p_chosen - 1."""
    pair_id: str
    """The pair's id."""
    prompt_id: str | None
    """The prompt's id."""
    pair_kind: str
    """revision, samples or custom."""
    chosen_source: str
    """Where `chosen` came from (initial, revision, sample:N)."""
    rejected_source: str
    """Where `rejected` came from."""
    principle_ids: list[str]
    """The principles the judge compared against."""
    per_principle: list[ChosenVote]
    """Each principle's vote in chosen terms (a JSON string in the files)."""
    per_order: OrderProbs
    """P(chosen better) per presentation order (a JSON string in the files)."""
    position_consistent: bool | None
    """Both orders picked the same winner; null with one order."""
    judge_model: str
    """Model id of the judge."""
    judge_mode: str
    """logprobs, cot, verdict or score."""
    judge_fingerprint: str
    """Fingerprint of the judge settings that labeled the row."""
    chosen_verified: bool | None = None
    """Whether `chosen` passed the prompt's verifier (charter.verify); null when the prompt has none."""
    rejected_verified: bool | None = None
    """Whether `rejected` passed the prompt's verifier; null when the prompt has none."""
    score_chosen: float | None = None
    """Judge mode `score`: `chosen`'s rubric score, the mean over the principles; null in the comparison modes."""
    score_rejected: float | None = None
    """Judge mode `score`: `rejected`'s rubric score, the mean over the principles."""
    checklist: list[dict[str, Any]] | None = None
    """The prompt's checklist (a run config's `checklist:` section): its items, as a `checklist` dataset column
    takes them back; null without one."""
    checklist_chosen: ChecklistSide | None = None
    """Judge mode `checklist`: `chosen`'s item verdicts (each with its reason), score and overall score."""
    checklist_rejected: ChecklistSide | None = None
    """Judge mode `checklist`: `rejected`'s."""
    first_violation_chosen: StepFinding | None = None
    """Judge mode `stepwise`: the first step of `chosen`'s trajectory (the prompt's turns, then `chosen`) that
    violates a principle, with the principle and the judge's reason; null where none does, and in the other modes."""
    first_violation_rejected: StepFinding | None = None
    """Judge mode `stepwise`: the same for `rejected`."""
    policy_actions: Literal["proposed"] | None = None
    """Where a response calls tools (a multi-turn policy offered the prompt's `tools`): `proposed`, the calls are
    actions the policy proposes, judged as actions but not run in an environment (no tool result follows them);
    null where neither response calls a tool."""

    JSON_COLUMNS: ClassVar[tuple[str, ...]] = (
        "per_principle",
        "per_order",
        "checklist",
        "checklist_chosen",
        "checklist_rejected",
        "first_violation_chosen",
        "first_violation_rejected",
    )
    LEADING: ClassVar[tuple[str, ...]] = ("prompt", "chosen", "rejected", "p_chosen", "p_chosen_calibrated", "margin")

    @property
    def p_effective(self) -> float:
        """The calibrated probability where there is one, else the judge's."""
        return self.p_chosen if self.p_chosen_calibrated is None else self.p_chosen_calibrated


class SFTRow(Provenance):
    """One row of data/sft.*: the prompt and the final revision, for supervised fine-tuning (SL-CAI)."""

    messages: list[Message]
    """The prompt messages and the final revision as the last assistant turn."""
    prompt_id: str
    """The prompt's id."""
    principle_ids: list[str]
    """The principles of the critique rounds."""
    rounds: int
    """How many critique-revision rounds."""
    verified: bool | None = None
    """Whether the final revision passed the prompt's verifier (charter.verify); null when the prompt has none."""
    checklist: list[dict[str, Any]] | None = None
    """The prompt's checklist (a run config's `checklist:` section), as a `checklist` dataset column takes it back;
    null without one."""

    JSON_COLUMNS: ClassVar[tuple[str, ...]] = ("checklist",)
    LEADING: ClassVar[tuple[str, ...]] = ("messages",)
