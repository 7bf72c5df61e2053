"""One completion's reward by any charter scoring, for every framework adapter (verifiers, verl, OpenEnv): one copy of
the dispatch.

- the judge's scorings (`score`, `reference`, `checklist`; the group scorings `group` and `rank`) go through the
  process's shared `Judging` for the settings (one reward function: store, cache, meter, budget, failure limit), a
  group scoring gathering the completions of one group (`Asked.group`, `Asked.group_size`) into one call;
- `verify`: a verifiable reward, 1.0 or 0.0, from `charter.verify` (`number`, `exact`, `contains`, `regex:...`, a
  registered name or `module:function`) against the reference answer;
- `reward_model`: a trained reward model's score of the conversation (its logit, as `charter serve reward` and TRL
  give it), the model loaded once per process from `reward_model` (a folder or hub id), the calls that arrive together
  scored in batches of `reward_model_batch_size`.

Every outcome is the reward or `None` with the reason: never a made-up value. `weighted` adds several scorings up, as
`charter serve reward` and TRL weigh a judge beside a verifier and a reward model.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

from charter.errors import ConfigError
from charter.integrations.judging import GROUPED, POINTWISE, Judging, failure_text, shared
from charter.integrations.window import Window, hand_out
from charter.records import RewardRecord
from charter.serve.rm import RewardModel
from charter.verify import check

AdapterScoring = Literal["score", "reference", "checklist", "group", "rank", "verify", "reward_model"]
#: Every scoring an adapter offers, in the order the docs list them.
SCORINGS: tuple[str, ...] = (*POINTWISE, *GROUPED, "verify", "reward_model")
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
    scoring = str(settings.get("scoring", "score"))
    if scoring not in SCORINGS:
        raise ConfigError(f"scoring: expected one of {', '.join(SCORINGS)}, got {scoring!r}")
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

    def submit(self, prompt: Any, completion: Any) -> Future[Outcome]:
        """The outcome of one conversation, scored in a batch with those that arrive with it."""
        done: Future[Outcome] = Future()
        self.window.add(_Conversation(prompt, completion, done))
        return done

    async def scored(self, prompt: Any, completion: Any) -> Outcome:
        """`submit`'s outcome for a caller on its own event loop."""
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
    """One completion's outcome under `settings["scoring"]` (blocks; the judge works on its own event loop)."""
    scoring = _scoring(settings)
    if scoring == "verify":
        return verified(settings, asked)
    if scoring == "reward_model":
        return reward_model(settings).submit(asked.prompt, asked.completion).result()
    judging = judged(settings)
    if scoring in GROUPED:
        size = _group_size(settings, asked)
        return Outcome.of(judging.in_group(_key(asked), size, *_judge_args(asked)))
    return Outcome.of(judging.one(*_judge_args(asked)))


async def ascore(settings: Mapping[str, Any], asked: Asked) -> Outcome:
    """`score` for a caller on its own event loop."""
    scoring = _scoring(settings)
    if scoring == "verify":
        return verified(settings, asked)
    if scoring == "reward_model":
        batches = await asyncio.to_thread(reward_model, settings)  # loading the model blocks, once
        return await batches.scored(asked.prompt, asked.completion)
    judging = judged(settings)
    if scoring in GROUPED:
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


async def weighted(settings: Mapping[str, Any], asked: Asked) -> tuple[float | None, dict[str, Outcome]]:
    """The weighted sum of `weights_of(settings)`'s scorings for one completion, with each scoring's outcome; the sum
    is None (never a partial sum) where any of them failed."""
    weights = weights_of(settings)
    names = list(weights)
    if len(names) == 1:  # awaited in place: a task of its own would cost each call a turn of the caller's loop
        outcomes = [await ascore({**settings, "scoring": names[0]}, asked)]
    else:
        outcomes = await asyncio.gather(*(ascore({**settings, "scoring": name}, asked) for name in names))
    by_name = dict(zip(names, outcomes))
    if any(o.reward is None for o in outcomes):
        return None, by_name
    return sum(weights[n] * (by_name[n].reward or 0.0) for n in names), by_name


def weighted_sync(settings: Mapping[str, Any], asked: Asked) -> tuple[float | None, dict[str, Outcome]]:
    """`weighted` from synchronous code (each scoring in its own thread, so a group's members still meet)."""
    weights = weights_of(settings)
    names = list(weights)
    if len(names) == 1:
        outcomes = [score({**settings, "scoring": names[0]}, asked)]
    else:
        with ThreadPoolExecutor(len(names)) as pool:
            outcomes = list(pool.map(lambda n: score({**settings, "scoring": n}, asked), names))
    by_name = dict(zip(names, outcomes))
    if any(o.reward is None for o in outcomes):
        return None, by_name
    return sum(weights[n] * (by_name[n].reward or 0.0) for n in names), by_name


def failure_of(outcomes: Mapping[str, Outcome]) -> str:
    """One line naming why a weighted reward has no value: each failed scoring and its reason."""
    return "; ".join(f"{name}: {o.failure}" for name, o in outcomes.items() if o.reward is None)
