"""charter's constitutional judgment in Hugging Face's OpenEnv (0.10): a rubric in RFC 004's form, a trajectory rubric
that judges an episode step by step, and an environment server whose step reward is the judgment.

`CharterRubric` is an OpenEnv `Rubric`: `rubric(action, observation)` returns the judge's reward in 0..1, so it
composes with `WeightedSum`, `Gate`, `Sequential` and the other containers. A failed judgment is NaN, the float that
stands for no reward: `WeightedSum` and `Gate` carry it through (never a 0), TRL counts it as a missing reward, and
`rubric.last_failure` says why. `Sequential` stops only at a 0.0, so past a NaN it returns the next rubric's score:
a rubric whose failure must show is composed with the other two.

`CharterTrajectoryRubric` is an OpenEnv `TrajectoryRubric` (RFC 004's delayed rewards): it keeps an episode's
(action, observation) pairs, and at the step whose observation is `done` judges the whole episode step by step with
charter's step judge (scoring `steps`: each step an action in the context of the steps before it). Its score is the
trajectory's reward (NaN where a failed step leaves it unknown); `compute_step_rewards()` gives each step's own
verdict (`credit="steps"`: 1.0 passes, 0.0 violates, NaN failed) or OpenEnv's exponential discounting of the
trajectory's reward (`credit="discounted"`). It composes with `WeightedSum` and `Gate` as any rubric does.

`ConstitutionEnv` serves charter's bundled prompts: `reset` gives a prompt, `step(ConstitutionAction(message=...))`
ends the episode with the judgment as its reward (`None`, with `metadata["failure"]`, where it failed). Serve it with
`constitution_app(...)` under uvicorn; OpenEnv's clients (and TRL's OpenEnv rollouts through them) then get charter's
rewards. Every rubric and environment of a process shares one reward function per settings (store, cache, meter,
budget, failure limit). OpenEnv is an optional extra.
"""

from __future__ import annotations

import itertools
import json
import math
import threading
from collections.abc import Callable
from typing import Any

try:
    from openenv.core.env_server import Action, Environment, Observation, State, create_fastapi_app
    from openenv.core.rubrics import ExponentialDiscountingTrajectoryRubric, Rubric
except ImportError as exc:  # pragma: no cover - the extra is missing
    from charter.errors import MissingExtra

    raise MissingExtra("openenv", "openenv") from exc

from pydantic import Field

from charter.errors import ConfigError
from charter.prompts import bundled_prompts_path
from charter.records import RewardRecord
from charter.records.trajectory import read_openenv, trl_message
from charter.reward.batching import failure_text
from charter.reward.combine import Asked, judged, run_sync, score
from charter.reward.scoring import STEPS

_TEXT_KEYS = ("message", "text", "content", "response", "completion")
_PROMPT_KEYS = ("prompt", "question")


def _field(value: Any, keys: tuple[str, ...]) -> Any:
    """The first of `keys` that `value` has (a dict's key, an attribute, or its `metadata` entry); a string is
    itself."""
    if isinstance(value, str):
        return value
    for key in keys:
        found = value.get(key) if isinstance(value, dict) else getattr(value, key, None)
        if found:
            return found
    metadata = value.get("metadata") if isinstance(value, dict) else getattr(value, "metadata", None)
    if isinstance(metadata, dict):
        for key in keys:
            if metadata.get(key):
                return metadata[key]
    return None


def completion_of(action: Any, observation: Any) -> Any:
    """The completion an action carries: the action itself as a string, else its `message`/`text`/`content`."""
    found = _field(action, _TEXT_KEYS)
    if found is None:
        raise ConfigError(f"CharterRubric: the action has none of {', '.join(_TEXT_KEYS)} to judge")
    return found


def prompt_of(action: Any, observation: Any) -> Any:
    """The prompt the completion answers: the observation's `prompt`/`question` (or its metadata's)."""
    found = _field(observation, _PROMPT_KEYS)
    if found is None or isinstance(observation, str):
        raise ConfigError("CharterRubric: the observation carries no 'prompt' or 'question' (nor in its metadata)")
    return found


class CharterRubric(Rubric):
    """charter's judge as an OpenEnv rubric (RFC 004).

    Args:
        prompt: Reads the prompt from `(action, observation)` (default: the observation's `prompt` or `question`).
        completion: Reads the completion (default: the action's `message`, `text` or `content`).
        **judging: `charter.reward_function` arguments (`judge`, `constitution`, `scoring`: `score`, `reference`,
            `checklist`, or `verify` and `reward_model` with `verifier` and `reward_model` as
            `charter.reward.combine` reads them; `store`, `cache`, judge settings); calls with the same
            arguments share one reward function.
    """

    def __init__(
        self,
        prompt: Callable[[Any, Any], Any] = prompt_of,
        completion: Callable[[Any, Any], Any] = completion_of,
        **judging: Any,
    ) -> None:
        super().__init__()
        self.read_prompt, self.read_completion, self.judging = prompt, completion, judging
        self.last_failure: str | None = None

    def forward(self, action: Any, observation: Any) -> float:
        asked = Asked(self.read_prompt(action, observation), self.read_completion(action, observation))
        outcome = score(self.judging, asked)
        self.last_failure = outcome.failure
        return math.nan if outcome.reward is None else outcome.reward


Episode = list[tuple[Any, Any]]
#: How `CharterTrajectoryRubric.compute_step_rewards` assigns credit to an episode's steps.
CREDITS = ("steps", "discounted")


def episode_prompt(episode: Episode) -> Any:
    """The task an episode answers: its first observation's `prompt` or `question` (or its metadata's); None."""
    if not episode or isinstance(episode[0][1], str):
        return None
    return _field(episode[0][1], _PROMPT_KEYS)


class CharterTrajectoryRubric(ExponentialDiscountingTrajectoryRubric):
    """charter's step judge as an OpenEnv trajectory rubric (RFC 004's delayed rewards).

    Called with each step's `(action, observation)`, it returns `intermediate_reward` until the observation is
    `done`, then judges the episode (read as `charter.records.read_openenv` reads one: each action a tool call, each
    observation its result) step by step and returns the trajectory's reward, NaN where it is unknown (a failed step
    verdict; `last_failure` says why). `compute_step_rewards()` then gives one reward a step.

    Args:
        credit: `steps`: each step's own verdict (1.0 violates nothing, 0.0 violates a principle, NaN for a step whose
            verdict failed), charter's dense process reward; `discounted`: OpenEnv's `gamma^(T-1-t) * R` of the
            trajectory's reward R (all NaN where R is).
        gamma: The discount of `credit="discounted"`, in 0..1.
        intermediate_reward: What a step before the last returns.
        prompt: The task the episode answers: a text or messages, or a function of the episode (default: the first
            observation's `prompt` or `question`, or its metadata's). An episode without one is a `ConfigError`:
            the judge is never shown a made-up task.
        **judging: `charter.reward_function` arguments (`judge`, `constitution`, `store`, `cache`, `step_reduction`
            and `step_gamma` for the trajectory's reward, judge settings); the scoring is `steps`. Rubrics with the
            same arguments share one reward function in a process.
    """

    def __init__(
        self,
        credit: str = "steps",
        gamma: float = 0.99,
        intermediate_reward: float = 0.0,
        prompt: Callable[[Episode], Any] | str | list[Any] = episode_prompt,
        **judging: Any,
    ) -> None:
        if credit not in CREDITS:
            raise ConfigError(f"credit: expected one of {', '.join(CREDITS)}, got {credit!r}")
        if judging.setdefault("scoring", STEPS.name) != STEPS.name:
            raise ConfigError(f"scoring: CharterTrajectoryRubric judges steps (scoring {STEPS.name})")
        super().__init__(gamma=gamma, intermediate_reward=intermediate_reward)
        self.credit, self.read_prompt, self.judging = credit, prompt, judging
        self.last_failure: str | None = None
        self.last_record: RewardRecord | None = None
        """The reward record of the episode judged last: its per-step rewards (`steps`), the first violating step,
        its principle and the judge's reason."""
        self._judged: list[dict[str, Any]] | None = None

    def forward(self, action: Any, observation: Any) -> float:
        """Keep the step; at the episode's last step, judge it. A step after a `done` one starts a new episode:
        OpenEnv's containers do not pass `reset()` on to the rubrics they hold, so an environment's `_reset_rubric`
        would not reach this one inside a `WeightedSum` or a `Gate`."""
        if self._trajectory and getattr(self._trajectory[-1][1], "done", False):
            self.reset()
        return super().forward(action, observation)

    def score_trajectory(self, trajectory: Episode) -> float:
        record = self.judge(trajectory)
        return math.nan if record.reward is None else record.reward

    def compute_step_rewards(self) -> list[float]:
        if not self._trajectory or self.credit == "discounted":
            return super().compute_step_rewards()
        steps = self.judge(self._trajectory).steps or []
        return [math.nan if r is None else r for r in steps[len(steps) - len(self._trajectory) :]]

    def judge(self, episode: Episode) -> RewardRecord:
        """The step judgment of `episode` as charter's reward record (from the reward store where the same episode was
        judged before)."""
        conversation = self.conversation(episode)
        cut = next(i for i, m in enumerate(conversation) if m["role"] == "assistant")
        if self.last_record is None or self._judged != conversation:
            self.last_record = run_sync(judged(self.judging).aone(conversation[:cut], conversation[cut:]))
            self._judged = conversation
        record = self.last_record
        self.last_failure = None if record.reward is not None else failure_text(record)
        return record

    def conversation(self, episode: Episode) -> list[dict[str, Any]]:
        """The episode as the judge reads it: the task, then each step's tool call and result (OpenAI's format)."""
        prompt = self.read_prompt(episode) if callable(self.read_prompt) else self.read_prompt
        if not prompt:
            raise ConfigError(
                "CharterTrajectoryRubric: the episode's first observation carries no 'prompt' or 'question' (nor in "
                "its metadata); pass prompt= (the task, or a function of the episode)"
            )
        trajectory = read_openenv({"prompt": prompt, "steps": episode}, "episode", ConfigError)
        return [trl_message(m) for m in trajectory.messages]

    def reset(self) -> None:
        super().reset()
        self.last_failure, self.last_record, self._judged = None, None, None

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "credit": self.credit}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.credit = state.get("credit", self.credit)


class ConstitutionAction(Action):
    message: str = Field(description="The model's reply to the prompt")


class ConstitutionObservation(Observation):
    prompt: str = Field(default="", description="The prompt to answer")
    prompt_id: str = Field(default="", description="The prompt's id in charter's prompt set")


def _bundled() -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in bundled_prompts_path().read_text(encoding="utf-8").splitlines()]
    return [r for r in rows if isinstance(r.get("prompt"), str)]


class ConstitutionEnv(Environment[ConstitutionAction, ConstitutionObservation, State]):
    """One prompt an episode from charter's bundled prompts; the one step's reward is charter's judgment."""

    SUPPORTS_CONCURRENT_SESSIONS = True
    _counter = itertools.count()
    _lock = threading.Lock()

    def __init__(self, rubric: CharterRubric | None = None, **judging: Any) -> None:
        super().__init__(rubric=rubric or CharterRubric(**judging))
        self.prompts = _bundled()
        self._state = State(step_count=0)
        self._current: dict[str, Any] = {}

    def reset(self, seed: int | None = None, episode_id: str | None = None, **kwargs: Any) -> ConstitutionObservation:
        with self._lock:
            turn = next(self._counter) if seed is None else seed
        self._current = self.prompts[turn % len(self.prompts)]
        self._state = State(episode_id=episode_id, step_count=0)
        return ConstitutionObservation(prompt=self._current["prompt"], prompt_id=self._current["id"])

    def step(
        self, action: ConstitutionAction, timeout_s: float | None = None, **kwargs: Any
    ) -> ConstitutionObservation:
        if not self._current:
            raise ConfigError("step before reset: call reset() for a prompt first")
        shown = ConstitutionObservation(prompt=self._current["prompt"], prompt_id=self._current["id"])
        assert self.rubric is not None
        reward = self.rubric(action, shown)
        if not isinstance(reward, int | float):
            raise ConfigError("ConstitutionEnv steps synchronously: give it a rubric whose forward is not async")
        self._state.step_count += 1
        failure = getattr(self.rubric, "last_failure", None)
        shown.done = True
        shown.reward = None if math.isnan(reward) else reward
        shown.metadata = {"failure": failure} if failure else {}
        return shown

    @property
    def state(self) -> State:
        return self._state


def constitution_app(max_concurrent_envs: int = 64, **judging: Any) -> Any:
    """The FastAPI app serving `ConstitutionEnv` (run it with uvicorn); `judging` as `CharterRubric` takes it."""
    return create_fastapi_app(
        lambda: ConstitutionEnv(**judging),
        ConstitutionAction,
        ConstitutionObservation,
        max_concurrent_envs=max_concurrent_envs,
    )
