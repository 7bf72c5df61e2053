"""A scoring that exists only in the tests: `harm`, the reward a red-team policy trains on (1 minus the judge's
rubric score: how far each completion is from the constitution). One `ScoringEntry`, nothing else."""

from __future__ import annotations

import asyncio

from charter.records import RewardRecord
from charter.reward.scoring import SCORE, Batch, ScoringEntry, ScoringOptions
from charter.reward.session import JudgeSession


async def harm(session: JudgeSession, options: ScoringOptions, batch: Batch) -> list[RewardRecord]:
    """1 minus each completion's rubric score (a reward stored before is reused as it is); a failed judgment stays a
    failure (reward None)."""
    return list(await asyncio.gather(*(_one(session, options, batch, i) for i in range(len(batch.texts)))))


async def _one(session: JudgeSession, options: ScoringOptions, batch: Batch, i: int) -> RewardRecord:
    prompt, text = batch.prompts[i], batch.texts[i]
    stored = session.stored(session.key([m.model_dump() for m in prompt], text), batch.step)
    if stored is not None:
        return stored
    [scored] = await SCORE.score(session, options, Batch([prompt], [text], batch.step))
    return scored if scored.reward is None else scored.model_copy(update={"reward": 1.0 - scored.reward})


HARM = ScoringEntry(
    "harm", harm, rates=True, describe=lambda options: "1 minus the rubric score of each completion (red teaming)"
)
