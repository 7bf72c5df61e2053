"""charter's constitutional judgment as a judge of Prime Intellect's `verifiers` (the `verifiers.v1` API, 0.4).

`CharterJudge` is a verifiers judge plugin: plug it into any task config (`judges = [{id = "...", ...}]`, or
`TaskConfig(judges=[CharterJudgeConfig(...)])`) and verifiers' own `Task.score` calls it after the task's rewards,
records its reward under the judge's name with the config's `weight`, and its per-principle scores as metrics
(`<name>/<principle>`). The rollouts of a group are judged in shared batches of one reward function per process
(its store, call cache, usage meter, budget and failure limit).

A failed judgment raises `JudgmentFailed`: verifiers then leaves the reward unscored (`None`, as it seeds every
expected reward) and records the error with its reason on the trace (the reason is also in `trace.info["charter"]`),
so the rollout is never scored on a made-up value. verifiers is an optional extra (`pip install verifiers`).
"""

from __future__ import annotations

from typing import Any, Literal

try:
    import verifiers.v1 as vf
    from verifiers.v1.judge import judge_question, judge_response
except ImportError as exc:  # pragma: no cover - the extra is missing
    from charter.errors import MissingExtra

    raise MissingExtra("verifiers", "verifiers") from exc

from pydantic import Field

from charter.integrations.judging import JudgmentFailed, failure_text, shared
from charter.online.reward import DEFAULT_CACHE


class CharterJudgeConfig(vf.JudgeConfig):
    """Where and how charter judges (the verifiers `judges` entry of a task config)."""

    judge: str | dict[str, Any] = "local:smollm2-135m-instruct"
    """charter's judge: a model string (`openai:gpt-4o-mini`, `anthropic:...`, `local:...`) or a role config's fields
    (`model`, `limits` for the provider's rate limits, `options`, ...)."""
    constitution: str = "harmless"
    """A bundled constitution's name or a YAML path."""
    scoring: Literal["score", "reference"] = "score"
    """`score`: the rubric score of each rollout's reply; `reference`: P(better than the task's `answer_field`)."""
    answer_field: str = ""
    """`reference` scoring: the task field that holds the reference answer."""
    view: vf.JudgeView = "last_reply"
    """What the judge reads of the rollout: its last reply, or the whole transcript."""
    settings: dict[str, Any] = Field(default_factory=dict)
    """charter judge settings (`mode`, `rating`, `principles`, `principles_per_pair`, ...)."""
    store: str = "charter-rewards"
    """The run directory of the reward store."""
    cache: str | None = DEFAULT_CACHE
    """The call cache (null: none)."""
    max_failures: float = 0.1
    """Failed judgments allowed before `TooManyFailures` stops the run: a count (>= 1) or a share (< 1)."""
    concurrency: int = 64
    """Judge calls in flight at once."""


class CharterJudge(vf.Judge[float, CharterJudgeConfig]):
    """charter's constitutional judge as a verifiers judge plugin (see the module's docstring)."""

    @property
    def reward_name(self) -> str:
        return self.config.name or self.config.id or "charter"

    def _arguments(self) -> dict[str, Any]:
        c = self.config
        return {
            "judge": c.judge,
            "constitution": c.constitution,
            "scoring": c.scoring,
            "store": c.store,
            "cache": c.cache,
            "max_failures": c.max_failures,
            "concurrency": c.concurrency,
            **c.settings,
        }

    def _reference(self, task: vf.TaskData) -> Any:
        if self.config.scoring != "reference":
            return None
        return getattr(task, self.config.answer_field, None) if self.config.answer_field else None

    async def score(self, task: vf.TaskData, trace: vf.Trace) -> float:
        prompt = judge_question(task, "")
        reply = judge_response(trace, self.config.view)
        record = await shared(self._arguments()).aone(prompt, reply, self._reference(task))
        trace.info.setdefault("charter", []).append(
            {
                "key": record.key,
                "reward": record.reward,
                "failure": None if record.failure is None else failure_text(record),
            }
        )
        if record.reward is None:
            raise JudgmentFailed(failure_text(record))
        for principle, value in (record.scores or {}).items():
            trace.record_metric(f"{self.reward_name}/{principle}", value)
        return record.reward


__all__ = ["CharterJudge", "CharterJudgeConfig"]
