"""What the stages make and the run store keeps: prompts, SL-CAI chains, samples, pairs, the judge's votes and
judgments, failures, and online training's rewards."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, SerializerFunctionWrapHandler, field_validator, model_serializer, model_validator

from charter.records.base import Message, Probability, Record, ToolCall, as_messages
from charter.yamlio import CheckedInit


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
    tools: list[dict[str, Any]] | None = None
    """The source's `tools` column: the tools offered to the policy, as JSON schemas in OpenAI's function format.
    The policy may answer with calls to them (a multi-turn policy); null where the source offers none."""

    @model_serializer(mode="wrap")
    def _tools_left_out(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return without_unset(handler(self), "tools")


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
    initial_tool_calls: list[ToolCall] | None = None
    """The tools the policy's first response calls (a prompt that offers tools): actions it proposes, judged as
    actions; null where it calls none. The critic's revisions are text."""
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

    @model_serializer(mode="wrap")
    def _calls_left_out(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return without_unset(handler(self), "initial_tool_calls")


class Sample(Record):
    """One of k policy samples for a prompt (for `samples` pairs)."""

    prompt_id: str
    """The prompt's id."""
    sample_idx: int
    """0..k-1; the sampling seed is the base seed plus this."""
    text: str
    """The sampled response."""
    tool_calls: list[ToolCall] | None = None
    """The tools the sampled response calls (a prompt that offers tools): actions the policy proposes; null where it
    calls none."""
    model: str
    """Model id of the policy."""
    prompt_tokens: int = 0
    """Prompt tokens of the call."""
    completion_tokens: int = 0
    """Completion tokens of the call."""
    fingerprint: str
    """Fingerprint of the sample settings (model, params, k, temperature)."""

    @model_serializer(mode="wrap")
    def _calls_left_out(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return without_unset(handler(self), "tool_calls")


class Pair(Record, CheckedInit):
    """Two responses to one prompt for the judge to compare. `a`/`b` is a seeded order with no meaning. Built directly,
    a bad field is a `ConfigFieldError` naming it (`Pair: a: Input should be a valid string`), and a blank prompt a
    `DatasetError`."""

    pair_id: str
    """Stable id: prompt id, kind and a hash of the two texts (same texts, same id)."""
    prompt_id: str | None = None
    """The prompt's id (none for pairs given directly to the API)."""
    kind: Literal["revision", "samples", "custom"] = "custom"
    """`revision`: initial vs final revision; `samples`: two policy samples; `custom`: given by the caller."""
    prompt: list[Message]
    """The conversation both responses answer; a string is read as one user message."""
    a: str
    """Response a."""
    b: str
    """Response b."""
    a_tool_calls: list[ToolCall] | None = None
    """The tools response `a` calls (a policy's proposed actions), judged as actions; null where it calls none."""
    b_tool_calls: list[ToolCall] | None = None
    """The tools response `b` calls; null where it calls none."""
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

    @field_validator("prompt", mode="before")
    @classmethod
    def _one_user_message(cls, value: Any) -> Any:
        return as_messages(value, "Pair.prompt") if isinstance(value, str) else value

    @model_serializer(mode="wrap")
    def _calls_left_out(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return without_unset(handler(self), "a_tool_calls", "b_tool_calls")

    def step(self, side: Literal["a", "b"]) -> Message:
        """A response as the assistant step it is: its text and the tools it calls."""
        return Message(
            role="assistant", content=self.a if side == "a" else self.b,
            tool_calls=self.a_tool_calls if side == "a" else self.b_tool_calls,
        )  # fmt: skip

    if TYPE_CHECKING:  # the prompt as a caller may give it: a string, Messages or {role, content} dicts

        def __init__(
            self, *, pair_id: str, prompt: str | Sequence[Message | Mapping[str, str]], a: str, b: str, **fields: Any
        ) -> None: ...


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


def without_unset(data: dict[str, Any], *later: str) -> dict[str, Any]:
    """A record's data without the `later` fields where they are None: fields added after records were first stored
    leave the stored form (and what is hashed of it) as it was while they are unset."""
    for key in later:
        if data.get(key) is None:
            data.pop(key, None)
    return data


class Conflict(Record):
    """Two principles at different levels that preferred different responses of a pair, and the level that settled
    it (a judgment combined in priority order)."""

    settled_by: str
    """The principle at the settling level that preferred the winner."""
    level: str
    """The level that settled the pair (`hard` for the hard constraints, which come before every level)."""
    overruled: str
    """The principle at a lower level that preferred the other response."""
    overruled_level: str
    """The lower principle's level."""


class Combined(Record):
    """How a judgment's votes were combined when not by the default weighted mean: which rule, which level settled
    the pair, which principles were not asked because a higher level settled it first, and the conflicts between
    levels among the principles asked."""

    rule: str
    """The combination rule, a name in `charter.judge.judgment.COMBINATIONS` (`priority`)."""
    settled_by: str | None = None
    """The level whose verdict decided the pair (`hard`, a level name, `priority N`, or `all` for a flat
    constitution); null when no level was decisive and every level fell through."""
    skipped: list[str] = Field(default_factory=list)
    """Principles of the ensemble not asked: a higher level settled the pair first (`judge.settle_early`)."""
    conflicts: list[Conflict] = Field(default_factory=list)
    """Each pair of principles at different levels that preferred different responses, among those asked."""


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
    p_yes_missing: str | None = None
    """Why a verdict the judge gave (yes or no) has no P(yes): the provider gave no log-probabilities, or the
    verdict's token could not be read among them. The verdict stands; no probability is made up."""
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


class StepFinding(Record):
    """The first step of a trajectory that violates a principle: where it is, which principle, and why."""

    step: int
    """The step's index among the trajectory's messages (the prompt's, then the response's)."""
    principle_id: str
    """The principle it violates."""
    reason: str
    """The judge's reason."""


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
    combined: Combined | None = None
    """How the votes were combined when not by the weighted mean (`judge.combine`): the rule, the level that settled
    the pair, the principles not asked and the conflicts between levels; null for the weighted mean."""

    first_violation_a: StepFinding | None = None
    """Judge mode `stepwise`: the first step of `a`'s trajectory (the prompt's turns, then `a`) that violates a
    principle, with the principle and the judge's reason; null where none does, and in the other modes."""
    first_violation_b: StepFinding | None = None
    """Judge mode `stepwise`: the same for `b`."""

    @model_serializer(mode="wrap")
    def _uncombined_left_out(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return without_unset(handler(self), "combined", "first_violation_a", "first_violation_b")

    @model_validator(mode="after")
    def _nothing_made_up(self) -> Judgment:
        if self.status == "ok" and (
            self.p_a is None or self.p_a_ab is None or not self.principles or self.failure is not None
        ):
            raise ValueError("an ok judgment needs p_a, p_a_ab and votes, and no failure")
        if self.status == "failed" and (self.failure is None or self.p_a is not None or self.principles):
            raise ValueError("a failed judgment carries a failure and no probabilities")
        return self


class RewardChecklist(Record):
    """What a checklist reward rests on: the checklist (by fingerprint and version), each item's verdict and reason,
    and the items whose verdict failed (left out of the score, their share of the weight recorded)."""

    fingerprint: str
    """The checklist's fingerprint (its source, version and items)."""
    version: int
    """The checklist's version: raised each time items are added during training (`refresh_every`)."""
    source: str
    """Where its items came from: `column`, `criteria` or `model`."""
    aggregation: Literal["explicit", "implicit"]
    """`explicit`: the weighted, gated verdicts; `implicit`: the judge's overall score given the checklist."""
    verdicts: dict[str, str]
    """Each item's verdict: yes, no, n/a or failed."""
    reasons: dict[str, str] = {}
    """The judge's reason for each item it answered, written before its verdict."""
    p_yes: dict[str, float] = {}
    """P(yes) of the items whose probability the provider gave."""
    p_yes_missing: dict[str, str] = {}
    """Why the items the judge answered yes or no without a P(yes) have none (no log-probabilities given, ...)."""
    failed_items: list[str] = []
    """The items whose verdict failed (unreadable, or the call failed): left out of the sum and the denominator."""
    failed_share: float | None = 0.0
    """The share of the applicable weight left out because its items failed; None: not known (a row that an
    earlier charter stored from a weight that was not a finite number)."""
    gates_failed: list[str] = []
    """Gated items the response failed (they capped its score)."""
    explicit: float | None = None
    """The explicit score (recorded beside an implicit reward)."""


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
    scoring: str
    """What the reward rests on: a scoring of the reward table (`charter.reward.function.TABLE`) or `pair`. `score`: the
    rubric score; `group`: the win rate in its group; `reference`: P(better than the reference);
    `rank`: the expected win rate in its group under a Plackett–Luce fit of the judge's orderings; `checklist`: the
    weighted, gated verdicts of its prompt's checklist; `pair` (online DPO): P(the completion is better than the
    other of its pair, the `reference` field)."""
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
    checklist: RewardChecklist | None = None
    """`checklist` (and online DPO judged by checklist): the checklist, its verdicts and what was left out."""
    other_checklist: RewardChecklist | None = None
    """`pair` judged by checklist: the other completion's checklist verdicts (the `reference` field's)."""
    combined: Combined | None = None
    """Scoring `reference` with `judge.combine` other than weighted: how the comparison's votes were combined (the
    level that settled it, the principles not asked, the conflicts between levels); null otherwise."""
    settlements: list[Combined] | None = None
    """Scoring `group` (all pairs, or `circular`) with `judge.combine` other than weighted: how each comparison this
    completion's reward rests on was combined, conflicts included; null otherwise."""

    @model_serializer(mode="wrap")
    def _uncombined_left_out(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return without_unset(handler(self), "combined", "settlements")

    masked: Literal["failed", "undecided"] | None = None
    """`pair` (online DPO): why the pair was left out of the loss (its judgment failed, or the orders disagreed or
    its confidence was below `min_confidence`); null for a pair trained on and for the other scorings."""
    judge_p: float | None = None
    """`pair` with a reward model beside the judge: the judge's own P(first better); `reward` is then its weighted
    mean with `reward_model_p`."""
    reward_model_p: float | None = None
    """`pair` with a reward model: its P(first better), sigmoid(r_first - r_second); with the reward model alone it
    is `reward`."""
    steps: list[float | None] | None = None
    """`steps`: the dense process reward, one per assistant step of the conversation: 1.0 for a step that violates no
    principle, 0.0 for one that violates one, None for a step whose verdict failed."""
    first_violation: int | None = None
    """`steps`: the message index of the first step that violates a principle (None: none does)."""
    violation: str | None = None
    """`steps`: the principle the first violating step violates."""
    violation_reason: str | None = None
    """`steps`: the judge's reason."""

    @model_validator(mode="after")
    def _no_reward_has_a_failure(self) -> RewardRecord:
        if self.reward is None and self.failure is None:
            raise ValueError("a reward of None is a failure: the record carries it (`failure`)")
        return self
