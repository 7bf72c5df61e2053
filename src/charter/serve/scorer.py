"""The rewards of one request: the reward function's records, the verifiable reward, and the store."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from charter.online.reward import JudgeReward
from charter.records import RewardRecord
from charter.serve.config import ServeConfig
from charter.serve.rm import RewardModel
from charter.verify import check, verifier_name


@dataclass
class Scored:
    """One completion's reward (None: the judgment failed, `failure` says why) and what it rests on."""

    reward: float | None
    judge: float | None
    verified: float | None
    reward_model: float | None
    scores: dict[str, float] | None
    failure: dict[str, str] | None
    checklist: dict[str, Any] | None = None
    """`checklist` scoring: the checklist's version and fingerprint, each item's verdict, the failed items and their
    share of the weight."""


class Scorer:
    """Scores batches with the reward function of `charter train grpo` in the server's event loop, and with the
    reward model (when configured) in a worker thread beside it."""

    def __init__(self, config: ServeConfig, reward: JudgeReward, model: RewardModel | None = None) -> None:
        self.config, self.reward, self.model = config, reward, model

    async def score(
        self,
        prompts: list[Any],
        completions: list[Any],
        labels: list[str | None],
        checklists: list[Any] | None = None,
    ) -> list[Scored]:
        """The rewards of a batch; `checklists`: each completion's checklist (`checklist` scoring; None: the
        constitution's criteria or the writer's)."""
        references = labels if self.config.scoring == "reference" else None
        judged = self.reward.rewards(prompts, completions, None, references, checklists)
        if self.model is None:
            records, rm = await judged, [None] * len(completions)
        else:
            records, rm = await asyncio.gather(judged, asyncio.to_thread(self.model.scores, prompts, completions))
        await self.reward.session.afinish(records, None)  # no failure limit: the server answers each failure
        return [self._one(*args) for args in zip(records, prompts, labels, rm)]

    def _one(self, record: RewardRecord, prompt: Any, label: str | None, rm: float | None) -> Scored:
        """The weighted sum TRL takes in training: judge, verifier and reward model, each times its weight."""
        verified = self._verified(record.completion, prompt, label)
        failure = None if record.failure is None else {"kind": record.failure.kind, "message": record.failure.message}
        reward = None
        if record.reward is not None:
            reward = self.config.judge_weight * record.reward
            if verified is not None and self.config.verify is not None:
                reward += self.config.verify.weight * verified
            if rm is not None:
                reward += self.config.reward_model_weight * rm
        checklist = None if record.checklist is None else record.checklist.model_dump(mode="json")
        return Scored(reward, record.reward, verified, rm, record.scores, failure, checklist)

    def _verified(self, text: str, prompt: Any, label: str | None) -> float | None:
        verify = self.config.verify
        if verify is None:
            return None
        name = verifier_name(None, label or None, verify.verifier)
        if name is None:
            return None
        asked = prompt if isinstance(prompt, str) else str(prompt[-1].get("content", ""))
        return float(check(text, name, label, asked))
