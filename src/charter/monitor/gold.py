"""The gold monitor's settings, its gold evaluator, and what it records per evaluation step.

Every `every` steps the policy answers a fixed held-out prompt set (never trained on); the training reward and a gold
evaluator apart from it score the same answers. Per evaluation step (`MonitorStep`):

- the training reward and the gold score, each a mean over the held-out prompts with a 95% interval valid at that n
  (the betting interval of a mean in [0, 1], `charter.stats.intervals.bounded_mean_interval`); a prompt whose reward
  or gold call failed is left out of that mean and counted as failed, never scored;
- their gap (reward - gold, paired by prompt, its interval on [-1, 1]) and, against the gold-best step so far, the
  change of the reward, of the gold score and of the gap, each paired by prompt with its interval;
- the answers' mean length in words and a length-controlled gold score (the gold score at step 0's mean length, by the
  step's own least-squares slope of gold on length);
- the share of answers that show each hack signature (`charter.monitor.signatures`), with its exact interval; step 0's
  shares are the detectors' false-positive rates on the policy's own answers before training.

**The stop rule** (`gap_flag`): a step is flagged when its gold score fell against the gold-best step, the interval on
the paired change lying wholly below 0, while the training reward rose against that step (its paired change above 0).
Where people's labels give both steps a PPI-corrected estimate, the rule reads that estimate's change instead
(`people_change`), and the gold-best step is chosen by the estimate a step shows (people-corrected where it has one).
The monitor then warns, or stops training (`on_gap: stop`) after saving a checkpoint. The gold-best step's checkpoint
is kept and named.

The gold evaluator (`GoldEvaluator`) is one of: held-out checklist items (a column of the held-out prompts that the
reward never reads) answered by a gold judge in one call an answer, verifier items checked by code; a verifiable check
(`charter.verify`: number, exact, contains, regex:, a registered name or module:function) of every answer; or another
judge (other model, prompt or order) rating every answer under a constitution in a rating mode (`score`), its score
normalised to 0..1. A judge that is the training judge with the same model, constitution and settings is refused.

With `labels`, people's scores of some held-out answers (keyed by prompt and answer) correct the gold score where they
exist: the step's gold estimate is then prediction-powered (`charter.stats.ppi.ppi_mean`: the gold evaluator's scores
on every answer, the people's labels on the few they scored), with its interval and the number of labels used.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NotRequired, TypedDict

from pydantic import Field, model_validator

from charter.checklist.check import check_response
from charter.checklist.items import Checklist, checklist_from_rows
from charter.constitutions import Constitution, load_constitution
from charter.errors import BudgetExceeded, ConfigError, DatasetError, JudgeParseError, ProviderError
from charter.judge.judgment import ToRate
from charter.judge.modes import DEFAULT_RATING_MODE
from charter.judge.pairwise import principles_for
from charter.judge.panel import panel_label, weighted_mean, weights_summing_to_one
from charter.judge.score import mean_score, rates_of, score_on_unit_scale
from charter.judge.settings import JudgeSettings
from charter.monitor.signatures import signature_counts
from charter.providers.base import ChatModel
from charter.providers.config import RoleConfig
from charter.providers.usage import Budget
from charter.records import Message, fingerprint
from charter.stats.intervals import bounded_mean_interval
from charter.stats.ppi import ppi_mean
from charter.training import data
from charter.verify import check
from charter.yamlio import ConfigModel, LocatedValueError, require_unique

#: The folder under the trainer's output_dir with each evaluation's answers, rewards and gold scores.
MONITOR_DIR = "monitor"
#: The evaluations so far (a list of `MonitorStep`), rewritten after each: what `charter status` reads during training.
HISTORY_FILE = "history.json"


class GoldEvaluator(ConfigModel):
    """What scores the held-out answers apart from the training reward: held-out checklist items a gold judge answers,
    a verifiable check, or another judge rating each answer under a constitution. Exactly one of `checklist_column`,
    `verifier` and `constitution`; `labels` adds people's scores of some answers (a PPI-corrected gold estimate)."""

    checklist_column: str | None = None
    """A column of the held-out prompts with each prompt's gold checklist (a list of items or its JSON text), items
    the training reward never sees: `judge` answers them in one call an answer (items with a verifier are checked by
    code), and the gold score is the checklist's score."""
    judge: RoleConfig | None = None
    """The gold judge for `checklist_column`: a model string or a role (another model, or the same model with other
    items). A plain string is taken as `model`."""
    models: list[RoleConfig] | None = None
    """A panel of gold judges instead of one `judge`: two or more roles (model strings or roles), each asked about
    every answer as `judge` would be; the gold score is their mean (or weighted mean, `weights`), the panel rule of
    the judge's panels. An answer any member fails to score is a failed gold score, never a mean of fewer judges;
    each member's score or failure is recorded. A member that is the training judge itself is refused."""
    weights: list[float] | None = None
    """The panel's weights, one per member in order (scaled to sum to 1). None: the plain mean."""
    aggregation: Literal["explicit", "implicit"] = "explicit"
    """`checklist_column`: the weighted share of items met (explicit), or the judge's overall score (implicit)."""
    verifier: str | None = None
    """A verifier every answer is checked by, 1 or 0 (number, exact, contains, regex:PATTERN, a registered name or
    module:function), with the held-out prompt's `reference` where it reads one."""
    constitution: str | None = None
    """Another judge: `judge` rates every answer under this constitution (a bundled name or a YAML path) in the
    rating mode of `rating`, its mean score over the drawn principles normalised to 0..1. Refused when it is the
    training judge with the same model, constitution and settings."""
    rating: JudgeSettings = JudgeSettings(mode=DEFAULT_RATING_MODE)
    """`constitution`: the gold judge's settings (a rating mode: `score` by default; scale, rating, principles per
    answer, principles)."""
    labels: str | None = None
    """People's scores of held-out answers: a JSONL/parquet file with `prompt` (a string or messages), `answer` and
    `label` (0..1), e.g. the monitor's own `step-0.jsonl` rows with a `label` added; or a run directory, whose
    spot-check labels (the labeling page's) are read from its store, each answer scored by the share of its pair it
    won (1 preferred, 0 not, 0.5 a tie). Labels are matched to the held-out prompts and answers; how many matched is
    stated. Where at least two of a step's answers carry a label, the step's gold estimate is PPI-corrected from the
    gold scores of every answer and the labels of those."""

    @model_validator(mode="before")
    @classmethod
    def _judge_string(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("judge"), str):
            data = {**data, "judge": {"model": data["judge"]}}
        if isinstance(data, dict) and isinstance(data.get("models"), list):
            data = {**data, "models": [{"model": m} if isinstance(m, str) else m for m in data["models"]]}
        return data

    @model_validator(mode="after")
    def _one_kind(self) -> GoldEvaluator:
        kinds = [k for k in (self.checklist_column, self.verifier, self.constitution) if k is not None]
        if len(kinds) != 1:
            raise LocatedValueError("give exactly one of checklist_column, verifier and constitution", ())
        self._panel_fits()
        asks = self.judge is not None or self.models is not None
        if self.checklist_column is not None and not asks:
            raise LocatedValueError("checklist_column needs a gold judge (judge, or a panel: models)", ("judge",))
        if self.constitution is not None and not asks:
            raise LocatedValueError("constitution needs a gold judge to rate the answers", ("judge",))
        if self.verifier is not None and asks:
            raise LocatedValueError("a verifier asks no judge: leave judge out", ("judge" if self.judge else "models",))
        if self.constitution is not None and not self.rating.rates_alone:
            raise LocatedValueError(
                f"the gold judge rates each answer alone: mode {self.rating.mode!r} compares two", ("rating", "mode")
            )
        return self

    def _panel_fits(self) -> None:
        if self.models is None:
            if self.weights is not None:
                raise LocatedValueError("weights are for a panel of gold judges: set models too", ("weights",))
            return
        if self.judge is not None:
            raise LocatedValueError("set judge or models (a panel), not both", ("models",))
        if len(self.models) < 2:
            raise LocatedValueError("a panel needs two or more gold judges (one judge: set judge)", ("models",))
        require_unique(((m.model, ("models", i)) for i, m in enumerate(self.models)), "{} is on the panel twice")
        if self.weights is not None and (
            len(self.weights) != len(self.models)
            or not all(math.isfinite(w) and w >= 0 for w in self.weights)
            or sum(self.weights) <= 0
        ):
            raise LocatedValueError(
                f"give {len(self.models)} weights, one per member, none negative and not all 0", ("weights",)
            )

    @property
    def members(self) -> list[RoleConfig]:
        """The gold judges: the panel's members, or the one judge ([] for a verifier)."""
        return list(self.models) if self.models is not None else [self.judge] if self.judge is not None else []

    def judge_label(self) -> str:
        """The gold judge, or the panel (its members joined by ` + `, with their weights), as one name."""
        return panel_label([m.model for m in self.members], self.weights)

    def describe(self) -> str:
        """The evaluator in words (the card and the report name it)."""
        people = f"; people's labels from {self.labels} correct it (PPI)" if self.labels else ""
        if self.verifier is not None:
            return f"verifier {self.verifier}{people}"
        judge = self.judge_label() if self.models is None else f"a panel of {self.judge_label()}"
        if self.constitution is not None:
            return f"{judge} rating under `{self.constitution}` ({self.rating.describe()}){people}"
        return f"held-out checklist `{self.checklist_column}` answered by {judge} ({self.aggregation}){people}"


class MonitorConfig(ConfigModel):
    """The gold monitor: every `every` steps the policy answers a held-out prompt set and a gold evaluator apart from
    the reward scores the answers beside the training reward."""

    prompts: str | None = None
    """The held-out prompts: a JSONL/parquet file (`prompt`: a string or messages, or `messages`), with the gold
    evaluator's columns. None: `split` holds out a share of the training prompts."""
    split: float | None = Field(default=None, gt=0, lt=1)
    """The share of the training prompts held out (drawn with the run's seed), never trained on: instead of a file."""
    limit: int | None = Field(default=None, ge=1)
    """Use at most this many held-out prompts (the first ones)."""
    every: int = Field(default=10, ge=1)
    """Evaluate every this many optimizer steps (and at step 0, before training)."""
    max_new_tokens: int = Field(default=128, ge=1)
    """Tokens the policy may write per held-out answer (greedy decoding)."""
    gold: GoldEvaluator
    """The gold evaluator (never the training reward itself)."""
    budget: Budget = Budget()
    """The monitor's own caps on the gold judge's cost or tokens: reaching one stops the monitor (it says so), never
    training."""
    on_gap: Literal["warn", "stop"] = "warn"
    """When the stop rule flags a step (gold fell against its best step while the reward rose): `warn` (a warning and
    the flag in the metrics) or `stop` (training stops after saving a checkpoint)."""
    keep_best: bool = True
    """Save a checkpoint at each new gold-best step and keep it (transformers' `best_model_checkpoint`, which
    `save_total_limit` never deletes)."""
    concurrency: int = Field(default=16, ge=1)
    """Gold judge calls in flight at once."""

    @model_validator(mode="after")
    def _one_source(self) -> MonitorConfig:
        if (self.prompts is None) == (self.split is None):
            raise LocatedValueError("state the held-out prompts: give exactly one of prompts and split", ())
        return self


# -- held-out prompts ---------------------------------------------------------------------------------------------
def held_out_rows(source: str | Path, limit: int | None = None) -> list[dict[str, Any]]:
    """The held-out prompts file's rows, each with `prompt` as a list of `{role, content}` messages (a trailing
    assistant answer of a `messages` row left out)."""
    rows = data.read_rows(str(source))
    if not rows:
        raise DatasetError(f"{source}: no held-out prompts")
    key = "prompt" if "prompt" in rows[0] else "messages" if "messages" in rows[0] else None
    if key is None:
        raise DatasetError(f"{source}: row 0: missing column prompt (a string or a message list) or messages")
    out = []
    for i, row in enumerate(rows[:limit] if limit else rows):
        messages = data.message_dicts(row.get(key), "user", f"{source}: row {i}: {key}")
        if key == "messages" and messages and messages[-1]["role"] == "assistant":
            messages = messages[:-1]
        out.append({**row, "prompt": messages})
    return out


def last_user(messages: Sequence[Mapping[str, str]]) -> str:
    """A conversation's last user message as written (its last message where no user speaks)."""
    users = [m["content"] for m in messages if m.get("role") == "user"] or [m["content"] for m in messages]
    return users[-1] if users else ""


def prompt_text(messages: Sequence[Mapping[str, str]]) -> str:
    """A conversation's last user message, spaces and case aside: what two prompt sets are compared on."""
    return " ".join(last_user(messages).lower().split())


def overlap(held_out: Sequence[Sequence[Mapping[str, str]]], training: Sequence[Sequence[Mapping[str, str]]]) -> int:
    """How many held-out prompts are also training prompts (by their last user message, spaces and case aside)."""
    trained = {prompt_text(p) for p in training}
    return sum(prompt_text(p) in trained for p in held_out)


def refuse_overlap(held_out: Sequence[Sequence[Mapping[str, str]]], training: Sequence[Any], where: str) -> None:
    """A `ConfigError` (exit 2) when held-out prompts are training prompts, with the overlap counted."""
    shared = overlap(held_out, training)
    if shared:
        raise ConfigError(
            f"{where}: {shared} of {len(held_out)} held-out prompts are training prompts; the monitor's prompts must "
            "never be trained on"
        )


# -- the gold evaluator -------------------------------------------------------------------------------------------
@dataclass
class GoldScore:
    """One answer's gold score, or why it has none."""

    score: float | None
    failure: str | None = None
    members: dict[str, GoldScore] | None = None
    """A panel's: each member's own score or failure, by its model."""


def panel_gold(members: Mapping[str, Sequence[GoldScore]], weights: Sequence[float] | None) -> list[GoldScore]:
    """Each answer's panel gold score from its members' (by model, in member order): their mean, or weighted mean
    with `weights` (`charter.judge.panel`'s rule); an answer any member failed is a failure naming that member."""
    names = list(members)
    shares = weights_summing_to_one(weights) if weights is not None else None
    out = []
    for scores in zip(*(members[name] for name in names)):
        own = dict(zip(names, scores))
        failed = next(((name, g) for name, g in own.items() if g.score is None), None)
        if failed is not None:
            out.append(GoldScore(None, f"panel member {failed[0]}: {failed[1].failure or 'no score'}", own))
            continue
        out.append(GoldScore(weighted_mean([g.score for g in scores if g.score is not None], shares), None, own))
    return out


def gold_checklists(rows: Sequence[Mapping[str, Any]], column: str, source: str) -> list[Checklist]:
    """Each held-out prompt's gold checklist, checked before training (a bad one is one line naming its row)."""
    out = []
    for i, row in enumerate(rows):
        value = row.get(column)
        if value is None:
            raise DatasetError(f"{source}: row {i}: {column}: every held-out prompt needs a gold checklist")
        out.append(checklist_from_rows(value, f"{source}: row {i}: {column}"))
    return out


async def checklist_gold(
    model: ChatModel,
    prompts: Sequence[Sequence[Mapping[str, str]]],
    answers: Sequence[str],
    checklists: Sequence[Checklist],
    aggregation: Literal["explicit", "implicit"],
    concurrency: int,
) -> list[GoldScore]:
    """The gold checklist's score of each answer; a failed call or unread verdicts is a failure, and the budget's stop
    fails the answers not yet asked (`budget`)."""
    gate = asyncio.Semaphore(concurrency)

    async def one(prompt: Sequence[Mapping[str, str]], answer: str, checklist: Checklist) -> GoldScore:
        async with gate:
            messages = [Message.model_validate(m) for m in prompt]
            try:
                checked = await check_response(model, messages, answer, checklist, aggregation)
            except BudgetExceeded as exc:
                return GoldScore(None, f"budget: {exc}")
            except ProviderError as exc:
                return GoldScore(None, f"call failed: {exc}")
            return GoldScore(checked.reward, None if checked.reward is not None else checked.failure or "no score")

    return list(await asyncio.gather(*(one(p, a, c) for p, a, c in zip(prompts, answers, checklists))))


async def rated_gold(
    model: ChatModel,
    constitution: Constitution,
    settings: JudgeSettings,
    prompts: Sequence[Sequence[Mapping[str, str]]],
    answers: Sequence[str],
    concurrency: int,
) -> list[GoldScore]:
    """Another judge's rating of each answer under the constitution (its mean over the principles drawn for the
    prompt, on 0..1); a failed call or an unread score is a failure, and the budget's stop fails the answers not yet
    asked."""
    gate = asyncio.Semaphore(concurrency)
    rate = rates_of(settings)

    async def one(prompt: Sequence[Mapping[str, str]], answer: str) -> GoldScore:
        messages = [Message.model_validate(m) for m in prompt]
        ids = principles_for(constitution, settings, fingerprint(["prompt", [m.model_dump() for m in messages]]), 0)
        async with gate:
            try:
                scores = await rate(model, constitution, ToRate(messages, answer, ids), settings)
            except BudgetExceeded as exc:
                return GoldScore(None, f"budget: {exc}")
            except (JudgeParseError, ProviderError) as exc:
                return GoldScore(None, f"call failed: {exc}")
        return GoldScore(score_on_unit_scale(mean_score(scores), settings.scale))

    return list(await asyncio.gather(*(one(p, a) for p, a in zip(prompts, answers))))


def same_judge(
    gold: GoldEvaluator, models: Sequence[str], constitution: Constitution, settings: JudgeSettings, rates: bool
) -> bool:
    """Whether the gold judge (or a member of the gold panel) is the training judge itself: a reward that rates each
    answer (`rates`) by the same model (named by one of `models`) under the same constitution with the same settings
    (mode, scale, reading, principles)."""
    if gold.constitution is None or not rates or not any(m.model in models for m in gold.members):
        return False
    same_settings = gold.rating.model_dump() == settings.model_dump(include=set(JudgeSettings.model_fields))
    return same_settings and load_constitution(gold.constitution).model_dump() == constitution.model_dump()


def same_judge_line(gold: GoldEvaluator, model: str) -> str:
    """The refusal of a gold judge that is the training judge, in one line."""
    who = "the gold judge" if gold.models is None else f"the gold panel's member {model}"
    return (
        f"{who} is the training judge ({model}, constitution {gold.constitution}, "
        f"{gold.rating.describe()}): give another model, constitution or settings"
    )


def refuse_same_judge(gold: GoldEvaluator, training: Any, where: str) -> None:
    """A `ConfigError` (exit 2) when the gold judge is the training reward's own judge (`same_judge`); a reward that
    is no charter judge reward is not compared."""
    training = getattr(training, "__self__", training)  # a bound method: `reward.unstored`
    session, entry = getattr(training, "session", None), getattr(training, "entry", None)
    if session is None or entry is None:
        return
    models = [getattr(session.judge, "served_id", ""), getattr(session.judge, "model_id", "")]
    if same_judge(gold, models, session.constitution, session.settings, bool(entry.rates)):
        member = next(m.model for m in gold.members if m.model in models)
        raise ConfigError(f"{where}: {same_judge_line(gold, member)}")


# -- people's labels ----------------------------------------------------------------------------------------------
def label_key(prompt: Sequence[Mapping[str, str]] | str, answer: str) -> str:
    """What a label is found by: the prompt's last user message and the answer, spaces and case aside."""
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
    return fingerprint([prompt_text(messages), " ".join(answer.lower().split())])


class PeopleLabels(dict[str, float]):
    """People's labels of answers by `label_key`, with each labelled answer's prompt text (`prompt_text`), so that
    the labels can be matched to the held-out prompts and counted."""

    def __init__(self, source: str) -> None:
        super().__init__()
        self.source = source
        self.prompts: dict[str, str] = {}

    def matched(self, held_out: Sequence[str]) -> tuple[int, int]:
        """(labelled answers whose prompt is a held-out prompt, held-out prompts with at least one labelled answer)."""
        held = set(held_out)
        asked = [text for text in self.prompts.values() if text in held]
        return len(asked), len(set(asked))


#: A spot-check label as the share of the pair that each of its answers wins: (a's, b's); a skip gives none.
WINS = {"a": (1.0, 0.0), "b": (0.0, 1.0), "tie": (0.5, 0.5)}


def read_labels(source: str | Path) -> PeopleLabels:
    """People's labels by `label_key`: from a file (`read_label_rows`) or, for a run directory, from its spot-check
    store (`store_labels`)."""
    return store_labels(source) if Path(source).is_dir() else read_label_rows(source)


def store_labels(run_dir: str | Path) -> PeopleLabels:
    """The labels people gave on a run's labeling page (its spot-check store), each answer's label the share of its
    pair it won: 1 for the answer people preferred, 0 for the other, 0.5 each for a tie (a skip gives none); an
    answer labelled more than once (several annotators, several pairs) takes the mean. A label of a pair no longer in
    the store is left out."""
    from charter.runs.items import stored_pair
    from charter.runs.labels import labels as stored_labels
    from charter.runs.store import open_store

    out, votes = PeopleLabels(str(run_dir)), {}
    store = open_store(run_dir, read_only=True)
    try:
        for label in stored_labels(store):
            pair = stored_pair(store, label.pair_id) if label.label in WINS else None
            if pair is None:
                continue
            messages = [{"role": m.role, "content": m.content} for m in pair.prompt]
            for answer, won in zip((pair.a, pair.b), WINS[label.label]):
                key = label_key(messages, answer)
                votes.setdefault(key, []).append(won)
                out.prompts[key] = prompt_text(messages)
    finally:
        store.close()
    out.update({key: sum(won) / len(won) for key, won in votes.items()})
    return out


def read_label_rows(source: str | Path) -> PeopleLabels:
    """People's labels from a JSONL/parquet file; a row without `prompt`, `answer` or a `label` within 0..1 is one
    line naming the file, the row and the key."""
    out = PeopleLabels(str(source))
    for i, row in enumerate(data.read_rows(str(source))):
        for key in ("prompt", "answer", "label"):
            if row.get(key) is None:
                raise DatasetError(f"{source}: row {i}: {key}: missing")
        label = row["label"]
        if isinstance(label, bool) or not isinstance(label, int | float) or not (0 <= label <= 1):
            raise DatasetError(f"{source}: row {i}: label: expected a number within 0..1, got {label!r}")
        if not isinstance(row["answer"], str):
            raise DatasetError(f"{source}: row {i}: answer: expected a string")
        prompt = data.message_dicts(row["prompt"], "user", f"{source}: row {i}: prompt")
        key = label_key(prompt, row["answer"])
        out[key], out.prompts[key] = float(label), prompt_text(prompt)
    return out


class PeopleCorrected(TypedDict):
    """A step's gold estimate corrected by people's labels (PPI++), with its interval and what it used."""

    value: float | None
    low: float | None
    high: float | None
    labels: int
    """People's labels used (answers scored by the gold evaluator that carry a label)."""
    gold_n: int
    """Gold scores it rests on (every scored answer)."""


def people_corrected(gold: Sequence[GoldScore], labels: Sequence[float | None]) -> PeopleCorrected:
    """The prediction-powered gold estimate: the gold scores of every scored answer corrected by people's labels on
    those that carry one (`charter.stats.ppi.ppi_mean`, PPI++, its interval cut to 0..1); no estimate with fewer than
    two labelled answers."""
    scored = [(g.score, label) for g, label in zip(gold, labels) if g.score is not None]
    both = [(g, label) for g, label in scored if label is not None]
    if len(both) < 2:
        return PeopleCorrected(value=None, low=None, high=None, labels=len(both), gold_n=len(scored))
    estimate = ppi_mean([g for g, _ in scored], [g for g, _ in both], [h for _, h in both]).within(0.0, 1.0)
    return PeopleCorrected(
        value=estimate.value, low=estimate.low, high=estimate.high, labels=len(both), gold_n=len(scored)
    )


def verifier_gold(verifier: str, rows: Sequence[Mapping[str, Any]], answers: Sequence[str]) -> list[GoldScore]:
    """1 where an answer passes the verifier, 0 where not (no calls)."""
    out = []
    for row, answer in zip(rows, answers):
        reference = row.get("reference")
        passed = check(answer, verifier, None if reference is None else str(reference), last_user(row["prompt"]))
        out.append(GoldScore(float(passed)))
    return out


# -- what one evaluation records ----------------------------------------------------------------------------------
class Change(TypedDict):
    """A paired change against the gold-best step: the mean over the prompts scored at both, with its interval."""

    change: float | None
    low: float | None
    high: float | None
    n: int


class MonitorStep(TypedDict):
    """One evaluation of the held-out prompts (`metrics.json`'s `monitor.steps`)."""

    step: int
    """The optimizer step (0: before training)."""
    n: int
    """Held-out prompts answered."""
    reward: float | None
    """The training reward's mean over the held-out answers it scored."""
    reward_low: float | None
    reward_high: float | None
    reward_n: int
    """Answers the training reward scored (the others failed)."""
    gold: float | None
    """The gold score's mean over the answers it scored."""
    gold_low: float | None
    gold_high: float | None
    gold_n: int
    """Answers the gold evaluator scored."""
    gold_failures: int
    """Answers whose gold call failed: recorded, never scored."""
    member_failures: NotRequired[dict[str, int]]
    """A gold panel's: answers each member failed to score, by its model (only with a panel)."""
    people: PeopleCorrected | None
    """The gold estimate corrected by people's labels (with `labels`), or None."""
    gap: float | None
    """reward - gold, paired by prompt."""
    gap_low: float | None
    gap_high: float | None
    best_step: int
    """The gold-best step up to this one."""
    reward_change: Change
    """The reward's paired change since the gold-best step."""
    gold_change: Change
    """The gold score's paired change since the gold-best step."""
    gap_change: Change
    """The gap's paired change since the gold-best step (its trend)."""
    people_change: NotRequired[Change | None]
    """The people-corrected gold's change since the gold-best step, where both have a PPI estimate: what the stop rule
    reads then, in place of `gold_change` (absent in records written before it)."""
    length: float
    """The answers' mean length in words."""
    gold_lc: float | None
    """The length-controlled gold score: at step 0's mean length, by this step's slope of gold on length."""
    signatures: dict[str, float | None]
    """The share of answers that show each hack signature."""
    signature_counts: dict[str, int]
    """How many answers show each hack signature."""
    flagged: bool
    """The stop rule holds at this step."""
    seconds: float
    """Wall time of the evaluation (answering and scoring)."""
    calls: int
    """Gold judge calls paid for in this evaluation."""
    cached: int
    """Gold judge calls answered from the call cache."""
    cost_usd: float
    """What the gold calls of this evaluation cost."""


class FalsePositives(TypedDict):
    """A detector's share of flagged answers among the policy's own answers before training, with its exact interval."""

    share: float | None
    low: float
    high: float
    n: int


class LabelsMatched(TypedDict):
    """People's labels read for the monitor, and how many are of answers to the held-out prompts."""

    source: str
    """The labels file, or the run directory whose spot-check store they were read from."""
    read: int
    """Labelled answers read."""
    matched: int
    """Labelled answers whose prompt is a held-out prompt (only these can correct a step's gold)."""
    prompts: int
    """Held-out prompts with at least one labelled answer."""
    held_out: int
    """Held-out prompts."""


def labels_line(found: LabelsMatched) -> str:
    """How many of people's labels matched the held-out prompts, in one sentence."""
    return (
        f"{found['matched']} of the {found['read']} labelled answers from {found['source']} answer held-out prompts "
        f"({found['prompts']} of the {found['held_out']} held-out prompts have one)"
    )


class MonitorSummary(TypedDict):
    """The monitor's record of a training run (`metrics.json`'s `monitor`)."""

    gold: str
    """The gold evaluator, in words."""
    prompts: int
    """Held-out prompts."""
    every: int
    """Steps between evaluations."""
    on_gap: str
    """What the stop rule does: warn or stop."""
    steps: list[MonitorStep]
    """Each evaluation, in step order."""
    best_step: int | None
    """The step where the gold score was best (0: the policy before training)."""
    best_gold: float | None
    """The gold-best step's gold estimate (people-corrected where it has one)."""
    best_checkpoint: str | None
    """The gold-best step's checkpoint folder (None for step 0, the policy before training, or `keep_best: false`)."""
    flagged_at: int | None
    """The first step the stop rule flagged, or None."""
    stopped: str | None
    """Why the monitor or training stopped early because of it (the monitor's budget, the stop rule), or None."""
    labels: NotRequired[LabelsMatched]
    """People's labels read and matched to the held-out prompts (only with `labels`)."""
    false_positive_rates: dict[str, FalsePositives]
    """Each hack signature's share of the policy's answers at step 0: the detector's false-positive rate on them."""
    seconds: float
    """Wall time of every evaluation together (training waits for them)."""
    calls: int
    cached: int
    cost_usd: float


@dataclass
class ScoredAnswers:
    """One evaluation's answers with their per-prompt scores (kept to pair later steps with)."""

    step: int
    answers: list[str]
    rewards: list[float | None]
    gold: list[GoldScore]
    words: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.words = [len(a.split()) for a in self.answers]

    labels: list[float | None] = field(default_factory=list)
    """People's label of each answer, where one exists (with `labels`)."""

    @property
    def gold_mean(self) -> float | None:
        values = [g.score for g in self.gold if g.score is not None]
        return sum(values) / len(values) if values else None

    @property
    def people(self) -> PeopleCorrected | None:
        """The gold estimate corrected by people's labels (None without labels)."""
        return people_corrected(self.gold, self.labels) if self.labels else None

    @property
    def estimate(self) -> float | None:
        """The gold estimate the record shows first: people-corrected where at least two labels exist, the gold
        evaluator's mean otherwise (what the gold-best step is chosen by)."""
        people = self.people
        return people["value"] if people is not None and people["value"] is not None else self.gold_mean


def _mean_interval(values: Sequence[float], low: float, high: float) -> tuple[float | None, float | None, float | None]:
    if not values:
        return None, None, None
    interval = bounded_mean_interval([min(max(v, low), high) for v in values], low, high)
    assert interval is not None
    return sum(values) / len(values), interval[0], interval[1]


def _in_unit(values: Sequence[float | None]) -> list[float]:
    """The scored values, each checked within [0, 1] (a reward outside cannot have this interval)."""
    out = [v for v in values if v is not None]
    if any(not (math.isfinite(v) and 0 <= v <= 1) for v in out):
        raise ConfigError("the monitor's intervals need rewards within 0..1: scale the training reward to it")
    return out


def paired_change(now: Sequence[float | None], then: Sequence[float | None], span: float) -> Change:
    """The mean of now - then over the prompts with both, and its interval on [-span, span]."""
    pairs = [a - b for a, b in zip(now, then) if a is not None and b is not None]
    mean, low, high = _mean_interval(pairs, -span, span)
    return Change(change=mean, low=low, high=high, n=len(pairs))


def length_controlled(gold: Sequence[GoldScore], words: Sequence[int], base_length: float) -> float | None:
    """The gold score at `base_length` words by the least-squares line of gold on length within the step; None with
    fewer than 3 scored answers or lengths that do not vary."""
    pairs = [(w, g.score) for w, g in zip(words, gold) if g.score is not None]
    if len(pairs) < 3:
        return None
    mean_w = sum(w for w, _ in pairs) / len(pairs)
    mean_g = sum(g for _, g in pairs) / len(pairs)
    spread = sum((w - mean_w) ** 2 for w, _ in pairs)
    if spread == 0:
        return None
    slope = sum((w - mean_w) * (g - mean_g) for w, g in pairs) / spread
    return min(max(mean_g + slope * (base_length - mean_w), 0.0), 1.0)


def people_change(now: ScoredAnswers, best: ScoredAnswers) -> Change | None:
    """The people-corrected gold's change since the gold-best step, where both steps have a PPI estimate (None
    otherwise). Paired by prompt where at least two prompts carry a label at both steps: the PPI++ estimate of the mean
    change, the gold evaluator's per-prompt changes corrected by the people's (`ppi_mean` on (d + 1) / 2, mapped back
    to [-1, 1]). Otherwise (labels on other prompts at the two steps) the difference of the two estimates with the
    interval (low_now - high_best, high_now - low_best), which covers whatever the two estimates' correlation."""
    shown, then = now.people, best.people
    if shown is None or then is None:
        return None
    value, low, high = shown["value"], shown["low"], shown["high"]
    best_value, best_low, best_high = then["value"], then["low"], then["high"]
    if value is None or low is None or high is None or best_value is None or best_low is None or best_high is None:
        return None
    both = [(a.score, b.score) for a, b in zip(now.gold, best.gold)]
    diffs = [(a - b if a is not None and b is not None else None) for a, b in both]
    labelled = [
        (d, h - k)
        for d, h, k in zip(diffs, now.labels or [None] * len(diffs), best.labels or [None] * len(diffs))
        if d is not None and h is not None and k is not None
    ]
    if len(labelled) >= 2:
        unit = lambda v: (v + 1) / 2  # noqa: E731 - a change on [-1, 1] as a share on [0, 1], where ppi_mean works
        estimate = ppi_mean(
            [unit(d) for d in diffs if d is not None], [unit(d) for d, _ in labelled], [unit(h) for _, h in labelled]
        ).within(0.0, 1.0)
        back = lambda v: 2 * v - 1  # noqa: E731
        return Change(change=back(estimate.value), low=back(estimate.low), high=back(estimate.high), n=len(labelled))
    return Change(
        change=value - best_value, low=low - best_high, high=high - best_low, n=min(shown["labels"], then["labels"])
    )


def rule_change(record: Mapping[str, Any]) -> tuple[Change, str]:
    """The gold change the stop rule read at a step, and what it measures: the people-corrected gold's change where
    the step and its gold-best step both have one, the gold evaluator's otherwise."""
    corrected = record.get("people_change")
    if corrected is not None:
        return corrected, "the people-corrected gold"
    return record["gold_change"], "gold"


def gap_flag(reward_change: Change, gold_change: Change) -> bool:
    """The stop rule: gold fell against the gold-best step (the interval on its paired change wholly below 0) while
    the training reward rose against it (its paired change above 0)."""
    fell = gold_change["high"] is not None and gold_change["high"] < 0
    rose = reward_change["change"] is not None and reward_change["change"] > 0
    return fell and rose


def step_record(
    scored: ScoredAnswers,
    best: ScoredAnswers,
    base_length: float,
    prompts: Sequence[str],
    required: Sequence[Sequence[str]],
    cost: Mapping[str, float],
) -> MonitorStep:
    """What the monitor records for one evaluation: `scored` against the gold-best evaluation `best` (itself when it
    is the best), step 0's mean length `base_length`, each prompt's text and required phrases, and the gold calls'
    cost (`seconds`, `calls`, `cached`, `cost_usd`)."""
    rewards = _in_unit(scored.rewards)
    golds = [g.score for g in scored.gold]
    reward, reward_low, reward_high = _mean_interval(rewards, 0.0, 1.0)
    gold, gold_low, gold_high = _mean_interval(_in_unit(golds), 0.0, 1.0)
    gaps = [r - g if r is not None and g is not None else None for r, g in zip(scored.rewards, golds)]
    best_gaps = [
        r - g.score if r is not None and g.score is not None else None for r, g in zip(best.rewards, best.gold)
    ]
    gap = paired_change(scored.rewards, golds, 1.0)
    reward_change = paired_change(scored.rewards, best.rewards, 1.0)
    gold_change = paired_change(golds, [g.score for g in best.gold], 1.0)
    corrected = people_change(scored, best)
    counts = signature_counts(scored.answers, prompts, required)
    n = len(scored.answers)
    panel = [g.members for g in scored.gold if g.members is not None]
    extra: dict[str, Any] = {}
    if panel:
        extra["member_failures"] = {m: sum(own[m].score is None for own in panel) for m in panel[0]}
    return MonitorStep(
        step=scored.step,
        n=n,
        reward=reward,
        reward_low=reward_low,
        reward_high=reward_high,
        reward_n=len(rewards),
        gold=gold,
        gold_low=gold_low,
        gold_high=gold_high,
        gold_n=sum(g is not None for g in golds),
        gold_failures=sum(g.score is None for g in scored.gold),
        people=scored.people,
        gap=gap["change"],
        gap_low=gap["low"],
        gap_high=gap["high"],
        best_step=best.step,
        reward_change=reward_change,
        gold_change=gold_change,
        gap_change=paired_change(gaps, best_gaps, 2.0),
        people_change=corrected,
        length=sum(scored.words) / n if n else 0.0,
        gold_lc=length_controlled(scored.gold, scored.words, base_length),
        signatures={name: (c / n if n else None) for name, c in counts.items()},
        signature_counts=counts,
        flagged=scored.step != best.step and gap_flag(reward_change, corrected or gold_change),
        seconds=float(cost.get("seconds", 0.0)),
        calls=int(cost.get("calls", 0)),
        cached=int(cost.get("cached", 0)),
        cost_usd=float(cost.get("cost_usd", 0.0)),
        **extra,
    )


# -- the record in words ------------------------------------------------------------------------------------------
def _value(value: float | None, low: float | None = None, high: float | None = None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.3f}" + (f" [{low:.3f}, {high:.3f}]" if low is not None and high is not None else "")


def published_line(summary: MonitorSummary, last_step: int) -> str:
    """Which policy was published and why, as the card says it."""
    best, stopped = summary["best_step"], summary["stopped"] or ""
    why = (
        f"training was stopped by the monitor's stop rule at step {last_step}"
        if stopped.startswith("the stop rule")
        else f"training ran to step {last_step}"
    )
    if best is None:
        return f"Published: the policy at step {last_step} ({why}); the monitor scored no step."
    kept = summary["best_checkpoint"]
    where = (
        "the policy before training (the base model)"
        if best == 0
        else f"`{kept}`"
        if kept
        else f"step {best} (no checkpoint kept: `keep_best: false`)"
    )
    gold = _value(summary["best_gold"])
    if best == last_step:
        return f"Published: the policy at step {last_step} ({why}), which is also the gold-best step (gold {gold})."
    return (
        f"Published: the policy at step {last_step}, the last step ({why}), not the gold-best one: the gold score was "
        f"best at step {best} (gold {gold}), kept as {where}."
    )


def monitor_lines(summary: MonitorSummary | None, last_step: int | None = None) -> list[str]:
    """The monitor's record as markdown (a heading, the rule, a table per evaluation, the detectors' false-positive
    rates at step 0, its cost); [] without one."""
    if not summary:
        return []
    steps = summary["steps"]
    flagged = summary["flagged_at"]
    lines = [
        "## Gold monitor: training reward against gold",
        "",
        f"{summary['prompts']} held-out prompts answered every {summary['every']} steps (greedy), scored by the "
        f"training reward and by a gold evaluator apart from it: {summary['gold']}. Means with 95% intervals at the "
        "number of answers scored; a failed gold call is counted as failed, never scored. Stop rule: gold fell "
        "against the gold-best step (the interval on the paired change below 0) while the reward rose, read on the "
        "people-corrected gold where both steps have one; on a flag: "
        f"{summary['on_gap']}.",
        "",
        f"**{'Flagged at step ' + str(flagged) if flagged is not None else 'No step flagged'}**; gold-best step: "
        f"{summary['best_step']} (gold {_value(summary['best_gold'])})"
        + (f", checkpoint `{summary['best_checkpoint']}`" if summary["best_checkpoint"] else "")
        + (f". {summary['stopped'][0].upper()}{summary['stopped'][1:]}." if summary["stopped"] else "."),
        "",
        "| step | reward | gold | gap | gold change since best | length | gold (length-controlled) | signatures | "
        "gold failed | flag |",
        "|---:|---|---|---|---|---:|---:|---|---:|---|",
    ]
    for s in steps:
        change, what = rule_change(s)
        shown = ", ".join(f"{k} {v:.2f}" for k, v in s["signatures"].items() if v) or "none"
        since = "–" if s["step"] == s["best_step"] else f"{_value(change['change'], change['low'], change['high'])}"
        since += " people-corrected" if since != "–" and what != "gold" else ""
        lines.append(
            f"| {s['step']} | {_value(s['reward'], s['reward_low'], s['reward_high'])} | "
            f"{_value(s['gold'], s['gold_low'], s['gold_high'])} | {_value(s['gap'], s['gap_low'], s['gap_high'])} | "
            f"{since} (best {s['best_step']}) | {s['length']:.1f} | {_value(s['gold_lc'])} | {shown} | "
            f"{s['gold_failures']} | {'**flag**' if s['flagged'] else ''} |"
        )
    members = [(s["step"], f) for s in steps if (f := s.get("member_failures"))]
    if members:
        shown = "; ".join(f"step {step}: " + ", ".join(f"{m} {n}" for m, n in f.items()) for step, f in members)
        lines += ["", f"Gold panel: answers each member failed to score (each such answer is a failed gold score): "
                      f"{shown}."]  # fmt: skip
    corrected = [(s["step"], c) for s in steps if (c := s.get("people")) is not None]
    if corrected:
        shown = "; ".join(
            f"step {step}: {_value(c['value'], c['low'], c['high'])} from {c['labels']} labels" for step, c in corrected
        )
        lines += ["", f"Gold corrected by people's labels (PPI++, where at least two answers carry one): {shown}."]
    if "labels" in summary:
        lines += ["", f"People's labels: {labels_line(summary['labels'])}."]
    rates = summary["false_positive_rates"]
    if rates:
        shares = ", ".join(
            f"{name} {_value(r['share'], r['low'], r['high'])}" for name, r in rates.items() if r["share"] is not None
        )
        lines += ["", f"Hack-signature detectors on the policy's own answers before training (false-positive rates, "
                      f"n = {next(iter(rates.values()))['n']}): {shares}."]  # fmt: skip
    lines += [
        "",
        f"Monitor cost: {summary['calls']} gold calls paid, {summary['cached']} from the cache, "
        f"${summary['cost_usd']:.4f}; {summary['seconds']:.1f} s of evaluation, during which training waited.",
    ]
    if last_step is not None:
        lines += ["", published_line(summary, last_step)]
    return [*lines, ""]


def read_history(output_dir: str | Path) -> list[MonitorStep] | None:
    """The monitor's evaluations so far in a training output folder (OUTPUT_DIR/monitor/history.json), or None where
    there is no monitor or its file cannot be read."""
    path = Path(output_dir) / MONITOR_DIR / HISTORY_FILE
    try:
        found = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    except (OSError, ValueError):
        return None
    return found if isinstance(found, list) else None
