"""charter's constitutional judgment as a judge of Prime Intellect's `verifiers` (the `verifiers.v1` API, 0.4).

`CharterJudge` is a verifiers judge plugin: plug it into any task config (`judges = [{id = "...", ...}]`, or
`TaskConfig(judges=[CharterJudgeConfig(...)])`) and verifiers' own `Task.score` calls it after the task's rewards and
records its reward under the judge's name with the entry's `weight`. Each entry has one `scoring`, any of charter's:

- `score`: the judge's rubric score of the reply (its per-principle scores as metrics `<name>/<principle>`);
- `reference`: P(the reply is better than the task's `answer_field`);
- `checklist`: the reply checked against the prompt's checklist: the task's `checklist_field`, else the
  constitution's criteria, or one written by `checklist_writer` on first sight (one cached call a prompt);
- `group`, `rank`: the rollouts of one task compared together (pairwise win rates, or the judge's listwise
  orderings): verifiers scores each rollout on its own and has no hook over a task's independent rollouts, so the
  judge gathers the `group_size` rollouts that share the task's key into one charter group call (after
  `group_wait_s` it judges those that came);
- `verify`: 1.0 or 0.0 from a charter verifier (`verifier`) against the task's `answer_field`;
- `reward_model`: a trained reward model's score (`reward_model`: a folder or hub id).

Several entries give a weighted reward, each with verifiers' own `weight`. An environment whose episode holds several
agents' attempts at one task (best-of-n) judges them as one group in verifiers' own cross-agent hook, `Env.finalize`,
with `await judge_episode(task, episode, config)`. The judged rollouts of a process share one
reward function per settings (its store, call cache, usage meter, budget and failure limit).

A failed reward raises `JudgmentFailed`: verifiers then leaves the reward unscored (`None`, as it seeds every expected
reward) and records the error with its reason on the trace (the reason is also in `trace.info["charter"]`), so the
rollout is never scored on a made-up value. verifiers is an optional extra (`pip install verifiers`).
"""

from __future__ import annotations

import asyncio
from typing import Any

try:
    import verifiers.v1 as vf
    from verifiers.v1.judge import judge_question, judge_response
except ImportError as exc:  # pragma: no cover - the extra is missing
    from charter.errors import MissingExtra

    raise MissingExtra("verifiers", "verifiers") from exc

from pydantic import Field, model_validator

from charter.reward.combine import (
    REWARD_MODEL,
    VERIFY,
    AdapterScoring,
    Asked,
    Outcome,
    ascore,
    grouped,
    judged,
    reads_checklists,
    reads_references,
)
from charter.reward.function import DEFAULT_CACHE, SCORE
from charter.reward.scoring import JudgmentFailed


class CharterJudgeConfig(vf.JudgeConfig):
    """Where and how charter judges (the verifiers `judges` entry of a task config)."""

    judge: str | dict[str, Any] = "local:smollm2-135m-instruct"
    """charter's judge: a model string (`openai:gpt-4o-mini`, `anthropic:...`, `local:...`) or a role config's fields
    (`model`, `limits` for the provider's rate limits, `options`, ...)."""
    constitution: str = "harmless"
    """A bundled constitution's name or a YAML path."""
    scoring: AdapterScoring = SCORE.name
    """`score`, `reference`, `checklist`, `group`, `rank`, `verify` or `reward_model` (see the module's docstring)."""
    answer_field: str = ""
    """`reference` and `verify`: the task field that holds the reference answer."""
    checklist_field: str = "checklist"
    """`checklist`: the task field with the prompt's checklist (a list of items or its JSON text); a task without it
    takes the constitution's criteria, or `checklist_writer`'s."""
    group_size: int = 0
    """`group` and `rank`: the rollouts a task gets (the run's rollouts per example)."""
    group_wait_s: float = 300.0
    """`group` and `rank`: how long a task's group waits for its last rollout before those that came are judged."""
    verifier: str = "number"
    """`verify`: `number`, `exact`, `contains`, `regex:PATTERN`, a registered name or `module:function`."""
    reward_model: str = ""
    """`reward_model`: the reward model (a folder, as `charter train reward` writes it, or a hub id)."""
    view: vf.JudgeView = "last_reply"
    """What the judge reads of the rollout: its last reply, or the whole transcript."""
    settings: dict[str, Any] = Field(default_factory=dict)
    """charter judge settings and `reward_function` arguments (`mode`, `rating`, `principles`, `aggregation`,
    `checklist_writer`, `group_strategy`, `rank_orders`, ...)."""
    store: str = "charter-rewards"
    """The run directory of the reward store."""
    cache: str | None = DEFAULT_CACHE
    """The call cache (null: none)."""
    max_failures: float = 0.1
    """Failed judgments allowed before `TooManyFailures` stops the run: a count (>= 1) or a share (< 1)."""
    concurrency: int = 64
    """Judge calls in flight at once."""

    @model_validator(mode="after")
    def _needs(self) -> CharterJudgeConfig:
        if grouped(self.scoring) and self.group_size < 2:
            raise ValueError(f"scoring {self.scoring!r} compares a task's rollouts: set group_size (2 or more)")
        if self.scoring == REWARD_MODEL and not self.reward_model:
            raise ValueError("scoring 'reward_model' needs reward_model (a folder or hub id)")
        return self


class CharterJudge(vf.Judge[float, CharterJudgeConfig]):
    """charter's constitutional judge as a verifiers judge plugin (see the module's docstring)."""

    @property
    def reward_name(self) -> str:
        return self.config.name or self.config.id or "charter"

    def arguments(self) -> dict[str, Any]:
        """The settings `charter.reward.combine` reads for this entry."""
        c = self.config
        found: dict[str, Any] = {"scoring": c.scoring}
        if c.scoring == VERIFY:
            return found | {"verifier": c.verifier}
        if c.scoring == REWARD_MODEL:
            return found | {REWARD_MODEL: c.reward_model}
        found |= {"judge": c.judge, "constitution": c.constitution, "store": c.store, "cache": c.cache}
        found |= {"max_failures": c.max_failures, "concurrency": c.concurrency, **c.settings}
        if grouped(c.scoring):
            found |= {"group_size": c.group_size, "group_wait_s": c.group_wait_s}
        return found

    def _field(self, task: vf.TaskData, name: str) -> Any:
        return getattr(task, name, None) if name else None

    def asked(self, task: vf.TaskData, trace: vf.Trace) -> Asked:
        """What charter is asked about this rollout."""
        c = self.config
        reference = self._field(task, c.answer_field) if reads_references(c.scoring) else None
        checklist = self._field(task, c.checklist_field) if reads_checklists(c.scoring) else None
        group = trace.task.key or trace.task.hash or judge_question(task, "")
        return Asked(judge_question(task, ""), judge_response(trace, c.view), reference, checklist, group, c.group_size)

    def noted(self, trace: vf.Trace, outcome: Outcome) -> None:
        """The outcome kept on the trace: `trace.info["charter"]`, and the judge's per-principle scores as metrics."""
        trace.info.setdefault("charter", []).append({"judge": self.reward_name, **outcome.note(self.config.scoring)})
        for principle, value in (outcome.scores or {}).items():
            trace.record_metric(f"{self.reward_name}/{principle}", value)

    async def score(self, task: vf.TaskData, trace: vf.Trace) -> float:
        outcome = await ascore(self.arguments(), self.asked(task, trace))
        self.noted(trace, outcome)
        if outcome.reward is None:
            raise JudgmentFailed(outcome.failure or "no reward")
        return outcome.reward


async def judge_episode(task: vf.Task, episode: vf.Episode, config: CharterJudgeConfig) -> None:
    """Judge an episode's traces (its agents' attempts at `task`) in verifiers' `Env.finalize`: a group scoring
    compares them as one group in one call (the episode is the group; `group_size` is not waited for), the other
    scorings judge each. Each trace's reward is recorded under the entry's name with its `weight`; a failed one is left
    unscored (`None`) with its reason in `trace.info["charter"]`, and the episode goes on."""
    judge = CharterJudge(config)
    traces = list(episode.traces)
    asked = [judge.asked(task.data, trace) for trace in traces]
    settings = judge.arguments()
    if grouped(config.scoring):
        refs = [a.reference for a in asked] if any(a.reference is not None for a in asked) else None
        lists = [a.checklist for a in asked] if any(a.checklist is not None for a in asked) else None
        prompts, completions = [a.prompt for a in asked], [a.completion for a in asked]
        records = await judged(settings).ajudge(prompts, completions, references=refs, checklists=lists)
        outcomes = [Outcome.of(record) for record in records]
    else:
        outcomes = list(await asyncio.gather(*(ascore(settings, a) for a in asked)))
    for trace, outcome in zip(traces, outcomes):
        judge.noted(trace, outcome)
        if outcome.reward is None:
            trace.rewards[judge.reward_name] = None
        else:
            trace.record_reward(judge.reward_name, outcome.reward, config.weight)


__all__ = ["CharterJudge", "CharterJudgeConfig", "judge_episode"]
