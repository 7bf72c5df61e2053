"""One completion's reward from its parts, for the reward server and every framework adapter: one combiner.

The parts of a reward are the judge's scorings (through the process's shared `Judging`), a verifiable reward
(`verify`: 1.0 or 0.0 from `charter.verify` against the reference answer) and a trained reward model's score (its
logit, as TRL gives it; the model loaded once per process, the calls that arrive together scored in batches). Each
part's outcome is its value, or None with the reason.

`combine` adds the parts up with their weights, as TRL weighs a judge beside a verifier and a reward model, under one
failure rule: a part that failed makes the reward None, with every failure recorded (never a partial sum, never a
made-up value). `weighted` is the async path; `weighted_sync` runs it for synchronous callers.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from charter.errors import ConfigError, TrainingError
from charter.records import RewardRecord
from charter.reward.batching import Judging, Window, failure_text, hand_out, shared
from charter.reward.function import SCORE, TABLE
from charter.training.models import short_error
from charter.verify import check
from charter.yamlio import TableName

T = TypeVar("T")


class RewardModel:
    """A sequence-classification reward model and its tokenizer (`RewardScorer`), loaded once; scores in bounded
    batches on CPU, one batch at a time (call `scores` from a worker thread: it blocks)."""

    def __init__(self, source: str, batch_size: int = 16) -> None:
        from charter.reward_model.scorer import RewardScorer

        self.source, self.batch_size = source, batch_size
        try:
            self.scorer = RewardScorer.load(source, device="cpu", batch_size=batch_size)
        except TrainingError as exc:
            raise ConfigError(str(exc)) from None
        self._lock = threading.Lock()

    def text(self, prompt: Any, completion: Any) -> str:
        """The conversation the model reads: prompt + completion as an assistant turn through the chat template
        when the tokenizer has one, else the prompt's text followed by the completion's."""
        return self.scorer.text(_messages(prompt, "user") + _messages(completion, "assistant"))

    def scores(self, prompts: list[Any], completions: list[Any]) -> list[float]:
        """One score (the model's logit) per completion."""
        conversations = [_messages(p, "user") + _messages(c, "assistant") for p, c in zip(prompts, completions)]
        with self._lock:
            try:
                return self.scorer.score(conversations)
            except (RuntimeError, IndexError, ValueError) as exc:  # e.g. a text past the model's length
                raise ConfigError(f"reward_model could not score the batch ({short_error(exc)})") from None


def _messages(value: Any, role: str) -> list[dict[str, Any]]:
    return [{"role": role, "content": value}] if isinstance(value, str) else list(value)


#: The reward parts beside the judge's scorings: a verifiable reward and a trained reward model's score.
VERIFY, REWARD_MODEL = "verify", "reward_model"


def adapter_scorings() -> tuple[str, ...]:
    """Every scoring an adapter offers, in the order the docs list them: the table's, then the other parts."""
    return (*TABLE, VERIFY, REWARD_MODEL)


#: A scoring's name as an adapter's config takes it: the table's, `verify` or `reward_model`.
AdapterScoring = Annotated[str, TableName(adapter_scorings)]


def reads_references(scoring: str) -> bool:
    """Whether `scoring` reads a completion's reference answer (`verify` and the table's entries that say so)."""
    entry = TABLE.get(scoring)
    return scoring == VERIFY or (entry is not None and entry.reads_references)


def reads_checklists(scoring: str) -> bool:
    """Whether `scoring` reads a prompt's checklist (its entry in the table says so)."""
    entry = TABLE.get(scoring)
    return entry is not None and entry.reads_checklists


def grouped(scoring: str) -> bool:
    """Whether `scoring` judges a prompt's completions together (its entry in the table says so)."""
    entry = TABLE.get(scoring)
    return entry is not None and entry.grouped


#: Settings the adapters read themselves; every other one is a `charter.reward_function` argument.
ADAPTER_KEYS = ("verifier", "reward_model", "reward_model_batch_size", "group_size", "weights")


@dataclass(frozen=True)
class Asked:
    """What a framework gives for one completion."""

    prompt: Any
    """A string or `{role, content}` messages."""
    completion: Any
    """A string or messages."""
    reference: Any = None
    """The reference answer (`reference`, `verify`)."""
    checklist: Any = None
    """The prompt's checklist (`checklist`: a list of items or its JSON text; None: the constitution's criteria or the
    writer's)."""
    group: str | None = None
    """Group scorings: the key every completion of one group shares (a task's or prompt's id)."""
    group_size: int = 0
    """Group scorings: how many completions the group has."""


@dataclass(frozen=True)
class Outcome:
    """One completion's reward, or None and why."""

    reward: float | None
    failure: str | None = None
    scores: dict[str, float] | None = None
    """The judge's per-principle scores (`score`), where it gave them."""
    key: str | None = None
    """The reward store's key of a judged reward."""

    @classmethod
    def of(cls, record: RewardRecord) -> Outcome:
        failure = None if record.reward is not None else failure_text(record)
        return cls(record.reward, failure, record.scores, record.key)

    def note(self, scoring: str) -> dict[str, Any]:
        """What a framework's trace keeps of it (`trace.info`, verl's extra columns)."""
        return {"scoring": scoring, "key": self.key, "reward": self.reward, "failure": self.failure}


def _scoring(settings: Mapping[str, Any]) -> str:
    scoring = str(settings.get("scoring", SCORE.name))
    if scoring not in adapter_scorings():
        raise ConfigError(f"scoring: expected one of {', '.join(adapter_scorings())}, got {scoring!r}")
    return scoring


def judged(settings: Mapping[str, Any]) -> Judging:
    """The process's shared `Judging` for these settings (the adapters' own keys left out)."""
    return shared({k: v for k, v in settings.items() if k not in ADAPTER_KEYS})


def _group_size(settings: Mapping[str, Any], asked: Asked) -> int:
    size = asked.group_size or int(settings.get("group_size") or 0)
    if size < 2:
        raise ConfigError(
            f"group_size: scoring {settings.get('scoring')!r} compares a group of completions; set group_size to the "
            "completions a prompt gets (2 or more)"
        )
    return size


def _prompt_text(prompt: Any) -> str:
    if isinstance(prompt, str):
        return prompt
    users = [m for m in prompt if isinstance(m, Mapping) and m.get("role") == "user"]
    return str((users or [{}])[-1].get("content") or "")


def _completion_text(completion: Any) -> str:
    if isinstance(completion, str):
        return completion
    return "".join(str(m.get("content") or "") for m in completion if isinstance(m, Mapping))


def verified(settings: Mapping[str, Any], asked: Asked) -> Outcome:
    """`verify`: 1.0 where the completion passes the verifier, 0.0 where it does not; None where it cannot be checked
    (no reference for a verifier that needs one)."""
    name = str(settings.get("verifier") or "number")
    reference = None if asked.reference is None else str(asked.reference)
    try:
        passed = check(_completion_text(asked.completion), name, reference, _prompt_text(asked.prompt))
    except ConfigError as exc:
        if "needs a reference" in str(exc):
            return Outcome(None, f"no_reference: {exc}")
        raise  # an unknown or broken verifier: the user's settings
    return Outcome(1.0 if passed else 0.0)


@dataclass
class _Conversation:
    prompt: Any
    completion: Any
    done: Future[Outcome] | asyncio.Future[Outcome]


class ModelBatches:
    """A reward model's calls, gathered as they arrive into batches of its batch size and scored one batch at a time
    in a worker thread (the model scores on CPU and blocks)."""

    def __init__(self, model: RewardModel, window_s: float = 0.005) -> None:
        self.model = model
        self.window: Window[_Conversation] = Window(window_s, model.batch_size, self._send)
        self.batches = 0
        """Batches sent to the model."""

    async def scored(self, prompt: Any, completion: Any) -> Outcome:
        """The outcome of one conversation, scored in a batch with those that arrive with it."""
        done: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self.window.add(_Conversation(prompt, completion, done))
        return await done

    def _send(self, batch: list[_Conversation]) -> None:
        self.batches += 1
        threading.Thread(target=self._score, args=(batch,), daemon=True).start()

    def _score(self, batch: list[_Conversation]) -> None:
        try:
            outcomes = self._outcomes(batch)
        except BaseException as exc:  # noqa: BLE001 - handed to each caller, who raises it
            hand_out([item.done for item in batch], exc)
            return
        hand_out([item.done for item in batch], outcomes)

    def _outcomes(self, batch: list[_Conversation]) -> list[Outcome]:
        try:
            values = self.model.scores([c.prompt for c in batch], [c.completion for c in batch])
            return [Outcome(float(v)) for v in values]
        except ConfigError:  # one conversation the model cannot take (past its length): each alone, so it fails alone
            return [self._alone(c) for c in batch]

    def _alone(self, conversation: _Conversation) -> Outcome:
        try:
            [value] = self.model.scores([conversation.prompt], [conversation.completion])
        except ConfigError as exc:
            return Outcome(None, f"reward_model: {exc}")
        return Outcome(float(value))


_MODELS: dict[tuple[str, int], ModelBatches] = {}
_MODELS_LOCK = threading.Lock()


def reward_model(settings: Mapping[str, Any]) -> ModelBatches:
    """The process's reward model for `settings["reward_model"]` (loaded on first use), with its batches."""
    source = settings.get("reward_model")
    if not source:
        raise ConfigError("reward_model: scoring 'reward_model' needs the model (a folder or hub id)")
    key = (str(source), int(settings.get("reward_model_batch_size") or 16))
    with _MODELS_LOCK:
        if key not in _MODELS:
            _MODELS[key] = ModelBatches(RewardModel(*key))
        return _MODELS[key]


def score(settings: Mapping[str, Any], asked: Asked) -> Outcome:
    """`ascore` from synchronous code (blocks; the judge works on its own event loop)."""
    return run_sync(ascore(settings, asked))


async def ascore(settings: Mapping[str, Any], asked: Asked) -> Outcome:
    """One completion's outcome under `settings["scoring"]`, awaited on the caller's event loop (the judge works on
    its session's)."""
    scoring = _scoring(settings)
    if scoring == VERIFY:
        return verified(settings, asked)
    if scoring == REWARD_MODEL:
        batches = await asyncio.to_thread(reward_model, settings)  # loading the model blocks, once
        return await batches.scored(asked.prompt, asked.completion)
    judging = judged(settings)
    if grouped(scoring):
        size = _group_size(settings, asked)
        return Outcome.of(await judging.ain_group(_key(asked), size, *_judge_args(asked)))
    return Outcome.of(await judging.aone(*_judge_args(asked)))


def _key(asked: Asked) -> str:
    if not asked.group:
        raise ConfigError("a group scoring needs each completion's group (the task's or prompt's id)")
    return asked.group


def _judge_args(asked: Asked) -> tuple[Any, Any, Any, Any]:
    return asked.prompt, asked.completion, asked.reference, asked.checklist


def weights_of(settings: Mapping[str, Any]) -> dict[str, float]:
    """`settings["weights"]` (scoring -> weight) checked, or the one scoring at weight 1."""
    raw = settings.get("weights") or {_scoring(settings): 1.0}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"weights: expected a mapping of scoring to weight, got {type(raw).__name__}")
    weights = {}
    for name, weight in raw.items():
        _scoring({"scoring": name})
        try:
            weights[str(name)] = float(weight)
        except (TypeError, ValueError):
            raise ConfigError(f"weights.{name}: expected a number, got {weight!r}") from None
    return weights


class _ThreadLoop:
    """An event loop of a synchronous caller's thread, kept from one call to the next (a new loop a call costs more
    than a verifier's check) and closed with the thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()

    def __del__(self) -> None:
        self.loop.close()


_LOOPS = threading.local()


def run_sync(work: Coroutine[Any, Any, T]) -> T:
    """Run `work` to its end from synchronous code: on this thread's own event loop, or in a thread of its own where
    this thread already runs a loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        loop = getattr(_LOOPS, "loop", None)
        if loop is None:
            loop = _LOOPS.loop = _ThreadLoop()
        return loop.loop.run_until_complete(work)
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, work).result()


def combine(weights: Mapping[str, float], outcomes: Mapping[str, Outcome]) -> float | None:
    """The reward of one completion from its parts: each part's reward times its weight, added up. The one failure
    rule: a part without a reward (its outcome says why) makes the whole reward None, never a partial sum nor a
    made-up value."""
    if any(outcomes[name].reward is None for name in weights):
        return None
    return sum(weight * (outcomes[name].reward or 0.0) for name, weight in weights.items())


async def weighted(settings: Mapping[str, Any], asked: Asked) -> tuple[float | None, dict[str, Outcome]]:
    """The combined reward of `weights_of(settings)`'s scorings for one completion (`combine`), with each scoring's
    outcome."""
    weights = weights_of(settings)
    names = list(weights)
    if len(names) == 1:  # awaited in place: a task of its own would cost each call a turn of the caller's loop
        outcomes = [await ascore({**settings, "scoring": names[0]}, asked)]
    else:
        outcomes = await asyncio.gather(*(ascore({**settings, "scoring": name}, asked) for name in names))
    by_name = dict(zip(names, outcomes))
    return combine(weights, by_name), by_name


def weighted_sync(settings: Mapping[str, Any], asked: Asked) -> tuple[float | None, dict[str, Outcome]]:
    """`weighted` from synchronous code."""
    return run_sync(weighted(settings, asked))


def failure_of(outcomes: Mapping[str, Outcome]) -> str:
    """One line naming why a weighted reward has no value: each failed scoring and its reason."""
    return "; ".join(f"{name}: {o.failure}" for name, o in outcomes.items() if o.reward is None)
