"""charter's constitutional judgment in Hugging Face's OpenEnv (0.10): a rubric in RFC 004's form, and an environment
server whose step reward is the judgment.

`CharterRubric` is an OpenEnv `Rubric`: `rubric(action, observation)` returns the judge's reward in 0..1, so it
composes with `WeightedSum`, `Gate`, `Sequential` and the other containers. A failed judgment is NaN, the float that
stands for no reward: `WeightedSum` and `Gate` carry it through (never a 0), TRL counts it as a missing reward, and
`rubric.last_failure` says why.

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
    from openenv.core.rubrics import Rubric
except ImportError as exc:  # pragma: no cover - the extra is missing
    from charter.errors import MissingExtra

    raise MissingExtra("openenv", "openenv") from exc

from pydantic import Field

from charter.errors import ConfigError
from charter.prompts import bundled_prompts_path
from charter.reward.combine import Asked, score

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
