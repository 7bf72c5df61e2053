"""Typed records: everything that crosses a stage boundary, and its row form in the data files.

Stages take and return these records, the run store keeps them as JSON, and the data files hold
their row form (`to_row` / `from_row`, the one place where records become parquet/JSONL rows).
docs/reference/formats.md is generated from the field docstrings here (`python -m charter.formats`).
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Annotated, Any, ClassVar, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, model_validator

from charter._version import __version__

GENERATOR = f"charter {__version__}"
Role = Literal["system", "user", "assistant"]
Probability = Annotated[float, Field(ge=0.0, le=1.0)]


def fingerprint(settings: Any) -> str:
    """A short stable hash of settings (canonical JSON): equal settings, equal fingerprint."""
    blob = json.dumps(settings, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def fingerprint_strings(strings: Iterable[str]) -> str:
    """`fingerprint(list(strings))`, streamed: the same value without holding the list (a million prompt ids
    were ~170 MB as a Python list)."""
    digest, strings, separator = hashlib.sha256(b"["), iter(strings), ""
    while chunk := list(itertools.islice(strings, 4096)):
        digest.update((separator + ",".join(json.dumps(s, ensure_ascii=False) for s in chunk)).encode())
        separator = ","
    digest.update(b"]")
    return digest.hexdigest()[:16]


class Record(BaseModel):
    """Base of every record: unknown fields are errors, field docstrings are the schema descriptions."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)


# -- conversations ----------------------------------------------------------------------------------------


class Message(Record):
    """One chat message."""

    role: Role
    """Who speaks: system, user or assistant."""
    content: str
    """What is said."""


def as_dicts(messages: Sequence[Message]) -> list[dict[str, str]]:
    """Messages as the `{role, content}` dicts the providers' wire formats (and the call cache's keys) use."""
    return [{"role": m.role, "content": m.content} for m in messages]


def as_records(messages: Sequence[Message | Mapping[str, str]]) -> list[Message]:
    """A chat request as Message records; `{role, content}` dicts are accepted (as the vendors' SDKs take them)."""
    return [m if isinstance(m, Message) else Message.model_validate(dict(m)) for m in messages]


class Prompt(Record):
    """A prompt of a run, fixed in the run store when the run starts."""

    prompt_id: str
    """Stable id: a hash of the messages."""
    messages: list[Message]
    """The conversation to answer (ends with a user turn)."""
    source: str
    """Where it came from: a file path, `inline`, `bundled` or `hf:NAME`."""
    category: str | None = None
    """The source's `category` column, when it has one (synthesis balances by it)."""
    reference: str | None = None
    """The source's `reference` column: a known right answer, checked by the prompt's verifier."""
    verifier: str | None = None
    """The source's `verifier` column: how a response is checked (see charter.verify); with a reference and no
    verifier, the run's `filters.verifier` (default `number`)."""
    checklist: Any = None
    """The source's `checklist` column as read (a list of items, or its JSON text): the prompt's checklist where the
    run config's `checklist.source` is `column` (read by `charter.checklist.checklist_from_rows`)."""


# -- SL-CAI ----------------------------------------------------------------------------------------------


class CritiqueRound(Record):
    """One critique-and-revision round of a chain."""

    principle_id: str
    """The principle this round critiqued against."""
    critique: str
    """The critic's critique (a leading 'Critique:' label removed)."""
    revision: str
    """The revised response (the previous response when the critic's reply held no revision, only a label such as
    "Revision:"; a reply with no text at all fails the chain)."""
    empty_revision: bool = False
    """True when the critic's reply held no revision (only a label) and the previous response was kept."""


class Chain(Record):
    """One prompt's SL-CAI chain: initial response, every round's critique and revision, the final text."""

    prompt_id: str
    """The prompt's id."""
    prompt: list[Message]
    """The prompt conversation."""
    initial: str
    """The policy's first response."""
    rounds: list[CritiqueRound]
    """Critique-revision rounds, in order."""
    final: str
    """The response after the last round."""
    policy_model: str
    """Model id of the policy (`provider:name`; a local model in bfloat16 adds `@bfloat16`)."""
    critic_model: str
    """Model id of the critic."""
    prompt_tokens: int = 0
    """Prompt tokens of every call in the chain (cache hits included)."""
    completion_tokens: int = 0
    """Completion tokens of every call in the chain."""
    fingerprint: str
    """Fingerprint of the critique settings that made this chain."""

    @property
    def principle_ids(self) -> list[str]:
        return [r.principle_id for r in self.rounds]


class Sample(Record):
    """One of k policy samples for a prompt (for `samples` pairs)."""

    prompt_id: str
    """The prompt's id."""
    sample_idx: int
    """0..k-1; the sampling seed is the base seed plus this."""
    text: str
    """The sampled response."""
    model: str
    """Model id of the policy."""
    prompt_tokens: int = 0
    """Prompt tokens of the call."""
    completion_tokens: int = 0
    """Completion tokens of the call."""
    fingerprint: str
    """Fingerprint of the sample settings (model, params, k, temperature)."""


class Pair(Record):
    """Two responses to one prompt for the judge to compare. `a`/`b` is a seeded order with no meaning."""

    pair_id: str
    """Stable id: prompt id, kind and a hash of the two texts (same texts, same id)."""
    prompt_id: str | None = None
    """The prompt's id (none for pairs given directly to the API)."""
    kind: Literal["revision", "samples", "custom"] = "custom"
    """`revision`: initial vs final revision; `samples`: two policy samples; `custom`: given by the caller."""
    prompt: list[Message]
    """The conversation both responses answer."""
    a: str
    """Response a."""
    b: str
    """Response b."""
    a_source: str = "a"
    """Where `a` came from: `initial`, `revision`, `sample:N` or the caller's label."""
    b_source: str = "b"
    """Where `b` came from."""
    a_model: str | None = None
    """Model id that wrote `a`."""
    b_model: str | None = None
    """Model id that wrote `b`."""
    principle_ids: list[str] = Field(default_factory=list)
    """Critique principles behind a revision pair (empty for other kinds)."""
    source_fingerprint: str | None = None
    """Fingerprint of the chain or sample settings the pair was built from."""


# -- judging ---------------------------------------------------------------------------------------------


class Vote(Record):
    """The judge's answer under one principle. Probabilities are always of response `a` being better."""

    principle_id: str
    """The principle compared against."""
    p_a: Probability
    """P(a better): the mean of the orders asked."""
    p_a_ab: Probability
    """P(a better) with `a` shown first."""
    p_a_ba: float | None = Field(default=None, ge=0.0, le=1.0)
    """P(a better) with `a` shown second; null when only one order was asked."""
    consistent: bool | None = None
    """Both orders picked the same winner; null with one order."""
    rationale_ab: str | None = None
    """The judge's text for order ab (cot and verdict modes)."""
    rationale_ba: str | None = None
    """The judge's text for order ba."""
    score_a: float | None = None
    """Judge mode `score`: `a`'s rubric score under this principle (1 to the scale's top; an expected value when
    read from log-probabilities); null in the comparison modes."""
    score_b: float | None = None
    """Judge mode `score`: `b`'s rubric score under this principle."""
    judge: str | None = None
    """A panel's vote: the member model that cast it (null for a single judge, whose model the judgment names)."""


#: A checklist item's verdict: met, not met, not applicable, or a recorded failure to read one.
Verdict = Literal["yes", "no", "n/a", "failed"]
#: Who gave a checklist item's verdict.
VerdictBy = Literal["judge", "verifier"]


class ItemVerdict(Record):
    """One checklist item's verdict on one response."""

    item_id: str
    """The item answered."""
    verdict: Verdict
    """yes, no, n/a, or failed (the judge's answer could not be read, or the call failed)."""
    reason: str | None = None
    """The judge's short reason, written before its verdict (None from a verifier)."""
    p_yes: float | None = Field(default=None, ge=0, le=1)
    """P(yes) from the judge's log-probabilities, where the provider gives them."""
    by: VerdictBy = "judge"
    """Who answered: the judge, or a verifier program (`charter.verify`)."""
    error: str | None = None
    """Why the verdict failed (status `failed` only)."""


class ChecklistScore(Record):
    """A response's checklist score and how it was made (`charter.checklist.aggregate`)."""

    score: float | None
    """0..1, gates applied; None when no item could be counted (status `failed` or `not_applicable`)."""
    status: Literal["ok", "failed", "not_applicable"]
    """ok (a score), failed (every applicable item's verdict failed) or not_applicable (every item n.a.)."""
    expected: float | None = None
    """The score with each counted item's P(yes) in place of its verdict, where every counted item has one."""
    cap: float | None = None
    """The cap a failed gate put on the score (None: no gate failed)."""
    gates_failed: list[str] = []
    """Gated items the response failed."""
    counted: list[str] = []
    """Items answered yes or no: those the score counts."""
    not_applicable: list[str] = []
    """Items answered n/a: left out of the sum and the denominator."""
    failed: list[str] = []
    """Items whose verdict failed: left out of the sum and the denominator."""
    failed_share: float = 0.0
    """The share of the applicable weight (failed and counted items' |weight|) left out because its items failed."""
    gates_unread: list[str] = []
    """Gated items whose verdict failed: they could not cap the score."""
    checklist_fingerprint: str = ""
    """The checklist scored against."""
    checklist_version: int = 1
    """Its version."""


class ChecklistSide(Record):
    """One response's checklist judgment: its items' verdicts, its score, and the judge's overall score."""

    verdicts: list[ItemVerdict]
    """Each item's verdict, in the checklist's order (verifier items checked by code)."""
    score: ChecklistScore
    """The explicit aggregation: weights with gates over the verdicts."""
    overall: int | None = None
    """Aggregation `implicit`: the judge's overall score 1..10 given the checklist (None when it gave none)."""


class ChecklistJudgment(Record):
    """What judge mode `checklist` adds to a judgment: the checklist it used and each response's side."""

    checklist_fingerprint: str
    """The checklist's fingerprint (its source, version and items)."""
    checklist_version: int
    """The checklist's version."""
    source: str
    """Where its items came from: model, column or criteria."""
    aggregation: Literal["explicit", "implicit"]
    """How the two sides became the preference: weights with gates, or the judge's overall score."""
    a: ChecklistSide
    """Response a."""
    b: ChecklistSide
    """Response b."""
    from_probabilities: bool = False
    """Whether the expected scores (from the items' P(yes)) were compared."""


class Failure(Record):
    """Why an item failed: recorded instead of a made-up value."""

    kind: str
    """A short class of failure, e.g. `unparseable` or `provider`."""
    message: str
    """One line, secrets redacted."""
    raw: str | None = None
    """The raw model text that could not be used, where there was one."""
    attempts: int = 1
    """How many times it was tried."""


class Judgment(Record):
    """The judge's verdict on one pair under its settings: votes per principle and order, or a failure."""

    pair_id: str
    """The pair judged."""
    fingerprint: str
    """Fingerprint of the judge settings (model, mode, orders, principles, clamp, params, prompt format)."""
    status: Literal["ok", "failed"]
    """`ok` with probabilities, or `failed` with a failure and no probabilities."""
    mode: str
    """How the judge answered, a name in the table of judge modes: comparing the two (logprobs, cot, verdict) or
    rating each on a rubric (score)."""
    orders: Literal["both", "one"]
    """Whether each comparison was asked in both presentation orders (`one` for scores: a rating shows one
    response)."""
    judge_model: str
    """Model id of the judge."""
    principle_ids: list[str]
    """The principles of the ensemble."""
    p_a: float | None = Field(default=None, ge=0.0, le=1.0)
    """P(a better), the mean over principles; null on failure."""
    p_a_ab: float | None = Field(default=None, ge=0.0, le=1.0)
    """P(a better) with `a` shown first, mean over principles."""
    p_a_ba: float | None = Field(default=None, ge=0.0, le=1.0)
    """P(a better) with `a` shown second; null with one order or on failure."""
    position_consistent: bool | None = None
    """Both orders picked the same winner (after averaging principles); null with one order."""
    principles: list[Vote] = Field(default_factory=list)
    """One vote per principle."""
    prompt_tokens: int = 0
    """Prompt tokens of the judge calls."""
    completion_tokens: int = 0
    """Completion tokens of the judge calls."""
    failure: Failure | None = None
    """Why it failed (status `failed` only)."""
    checklist: ChecklistJudgment | None = None
    """Judge mode `checklist`: the checklist used, each response's item verdicts (with reasons) and scores; null in
    the other modes. A failed judgment keeps it where the call was read (every item failed)."""

    @model_validator(mode="after")
    def _nothing_made_up(self) -> Judgment:
        if self.status == "ok" and (
            self.p_a is None or self.p_a_ab is None or not self.principles or self.failure is not None
        ):
            raise ValueError("an ok judgment needs p_a, p_a_ab and votes, and no failure")
        if self.status == "failed" and (self.failure is None or self.p_a is not None or self.principles):
            raise ValueError("a failed judgment carries a failure and no probabilities")
        return self


# -- rows that leave the pipeline ---------------------------------------------------------------------------


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

    JSON_COLUMNS: ClassVar[tuple[str, ...]] = (
        "per_principle",
        "per_order",
        "checklist",
        "checklist_chosen",
        "checklist_rejected",
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


# -- online training ------------------------------------------------------------------------------------------


class RewardRecord(Record):
    """One reward the judge gave a completion during online training (GRPO, RLOO), or one pair it compared for
    online DPO: the reward store's row."""

    key: str
    """What the reward depends on, hashed: settings, prompt, completion (and for `group` the other completions of
    its group, for `reference` the reference): a repeated key is answered from the store."""
    step: int | None
    """The training step the rewarded completions train, as TRL's log counts (1 for the first); None outside a
    trainer."""
    rank: int
    """The process that computed it (0 without distributed training)."""
    scoring: Literal["score", "group", "reference", "rank", "pair"]
    """`score`: the rubric score; `group`: the win rate in its group; `reference`: P(better than the reference);
    `rank`: the expected win rate in its group under a Plackett–Luce fit of the judge's orderings; `pair` (online
    DPO): P(the completion is better than the other of its pair, the `reference` field)."""
    prompt: list[Message]
    """The prompt."""
    completion: str
    """The completion rewarded."""
    reward: float | None
    """The reward in 0..1, or None when the judgment failed (TRL then gives the completion no reward)."""
    principle_ids: list[str]
    """The principles judged against."""
    scores: dict[str, float] | None = None
    """`score`: each principle's rubric score (1..scale)."""
    scale: int | None = None
    """`score`: the top of the rubric's scale."""
    comparisons: int | None = None
    """`group`, `reference` and `pair`: the pairwise judgments the reward rests on (0 for a pair of identical
    completions, which needs none); `rank`: the orderings of its group."""
    reference: str | None = None
    """`reference`: the reference answer compared with; `pair`: the other completion of the pair."""
    judge_model: str
    """Model id of the judge."""
    fingerprint: str
    """Fingerprint of the reward settings (judge, constitution, scoring, mode, scale, principles)."""
    cached: bool = False
    """Every judge call of this reward was answered from the call cache (nothing was paid)."""
    failure: Failure | None = None
    """Why there is no reward (reward None only)."""
    masked: Literal["failed", "undecided"] | None = None
    """`pair` (online DPO): why the pair was left out of the loss (its judgment failed, or the orders disagreed or
    its confidence was below `min_confidence`); null for a pair trained on and for the other scorings."""
    judge_p: float | None = None
    """`pair` with a reward model beside the judge: the judge's own P(first better); `reward` is then its weighted
    mean with `reward_model_p`."""
    reward_model_p: float | None = None
    """`pair` with a reward model: its P(first better), sigmoid(r_first - r_second); with the reward model alone it
    is `reward`."""


# -- people, money, calibration -------------------------------------------------------------------------------


class HumanLabel(Record):
    """One annotator's label on a spot-checked pair, in the pair's own terms."""

    pair_id: str
    """The pair labeled."""
    annotator: str
    """Who labeled it."""
    label: Literal["a", "b", "tie", "skip"]
    """`a`: the pair's response a is better, whatever order it was shown in."""
    shown_order: Literal["ab", "ba"]
    """`ab`: a was shown first on the page; `ba`: b first."""
    created_at: float
    """When (seconds since the epoch)."""
    replaced_count: int = 0
    """How many earlier labels by this annotator on this pair it replaced."""


class LabelRow(Record):
    """A human label as published (the `human_labels` configuration): the label with the pair it labels."""

    pair_id: str
    """The pair labeled."""
    annotator: str
    """Who labeled it."""
    label: Literal["a", "b", "tie"]
    """The better response in the pair's terms (skips are not published)."""
    shown_order: Literal["ab", "ba"]
    """The order the pair was shown in."""
    created_at: str
    """When (ISO 8601, UTC)."""
    prompt: list[Message]
    """The pair's conversation."""
    response_a: str
    """The pair's response a."""
    response_b: str
    """The pair's response b."""
    run_id: str
    """The run the pair came from."""
    synthetic: bool = False
    """Always false: a person wrote this label."""


class UsageRow(Record):
    """Tokens and cost for one (role, model)."""

    role: str
    """policy, critic, judge, ..."""
    model: str
    """Model id."""
    calls: int = 0
    """Calls answered by the model."""
    cached: int = 0
    """Calls answered from the call cache (free)."""
    prompt_tokens: int = 0
    """Prompt tokens of the answered calls."""
    completion_tokens: int = 0
    """Completion tokens of the answered calls."""
    cost_usd: float = 0.0
    """Priced cost of the answered calls."""
    estimated: int = 0
    """Answered calls whose reply carried no usage: their tokens are estimated from characters."""
    retries: int = 0
    """Requests sent again after a failure worth retrying (429, 5xx, a timeout, a dropped connection, a malformed
    reply; a failed request of a provider batch sent in the next round)."""
    cache_read_tokens: int = 0
    """Prompt tokens (of `prompt_tokens`) the provider read from its prompt cache, billed at `cached_input`."""
    cache_write_tokens: int = 0
    """Prompt tokens (of `prompt_tokens`) the provider wrote to its prompt cache, billed at `cache_write`."""
    cache_saved_usd: float = 0.0
    """What the provider's prompt cache saved against pricing every prompt token at the input price."""


#: How a judge's probabilities are mapped to calibrated ones.
CalibrationMethod = Literal["platt", "temperature", "isotonic"]


class CalibrationMap(Record):
    """A map from the judge's P(a) to a calibrated P(a), fitted to human labels by `charter agreement`.

    It applies to judgments of the judge settings it was fitted on (`judge_fingerprint`) only, and is
    joined into the dataset whenever the dataset is written, so no re-run loses it.
    """

    method: CalibrationMethod
    """How it was fitted."""
    judge_fingerprint: str
    """The judge settings whose probabilities it maps."""
    temperature: float | None = None
    """temperature: sigmoid(logit(p) / T)."""
    slope: float | None = None
    """platt: sigmoid(slope * logit(p) + intercept)."""
    intercept: float | None = None
    """platt: the intercept."""
    x: list[float] = Field(default_factory=list)
    """isotonic: increasing thresholds of p."""
    y: list[float] = Field(default_factory=list)
    """isotonic: the calibrated value at each threshold (linear in between, clipped outside)."""
    min_confidence: float = 0.0
    """Rows whose calibrated P(chosen) is below 0.5 + this are dropped from the dataset."""
    labels: int = 0
    """Decisive human labels it was fitted on."""
    fitted_at: str = ""
    """When (ISO 8601, UTC)."""

    def apply(self, p: float) -> float:
        """The calibrated P(a) for the judge's P(a)."""
        if self.method == "isotonic":
            return _interpolate(self.x, self.y, p)
        z = _logit(p)
        if self.method == "temperature":
            return _sigmoid(z / float(self.temperature or 1.0))
        return _sigmoid(float(self.slope or 0.0) * z + float(self.intercept or 0.0))


def _logit(p: float, eps: float = 1e-6) -> float:
    p = min(max(p, eps), 1 - eps)
    return math.log(p / (1 - p))


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))


def _interpolate(xs: list[float], ys: list[float], p: float) -> float:
    if not xs:
        raise ValueError("an isotonic calibration map needs thresholds")
    if p <= xs[0]:
        return ys[0]
    if p >= xs[-1]:
        return ys[-1]
    i = bisect.bisect_right(xs, p)
    x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]
    return y0 if x1 == x0 else y0 + (y1 - y0) * (p - x0) / (x1 - x0)


class Fingerprints(Record):
    """The fingerprints of the settings in effect: items stored under others are older and left out."""

    critique: str | None = None
    """Chains (null when the run makes no revision pairs)."""
    samples: str | None = None
    """Policy samples (null when the run makes no sample pairs)."""
    judge: str
    """Judgments."""
    dataset: str
    """Everything that shapes the dataset: the three above, pair kinds and strategy, filters."""
    checklist: str | None = None
    """Checklists (null when the run config has no `checklist:` section)."""

    def sources(self) -> list[str]:
        """The chain and sample fingerprints in effect (what current pairs are built from)."""
        return [fp for fp in (self.critique, self.samples) if fp]


#: Every record that has a row or store form, in the order docs/reference/formats.md lists them.
DOCUMENTED: tuple[type[Record], ...] = (
    Message,
    Prompt,
    Chain,
    CritiqueRound,
    Sample,
    Pair,
    Judgment,
    Vote,
    Failure,
    PreferenceRow,
    ChosenVote,
    OrderProbs,
    SFTRow,
    Provenance,
    HumanLabel,
    LabelRow,
    UsageRow,
    CalibrationMap,
    Fingerprints,
)
