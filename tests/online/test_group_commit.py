"""`JudgeSession.afinish`: the batches of concurrent callers on one event loop (the reward server's requests) are
stored in one transaction, each caller returns once its records are committed, a failed write raises in every
caller of its group, and a cancelled caller leaves the others' commit alone."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import charter
from charter.providers.scripted import REFUSAL_OPENING
from charter.records import RewardRecord
from charter.reward.function import JudgeReward
from charter.runs.rewards import rewards
from charter.runs.store import STORE_FILE

SAFE = f"{REFUSAL_OPENING} ask a locksmith"


def _reward(tmp_path: Path) -> JudgeReward:
    return charter.reward_function(
        "scripted:cai", "harmless", store=tmp_path / "r", cache=None, rating="verdict"
    ).as_async()


async def _judged(fn: JudgeReward, n: int) -> list[list[RewardRecord]]:
    """n one-completion batches, judged but neither stored nor tallied."""
    return [await fn.rewards([f"How do I pick lock {i}?"], [SAFE], None) for i in range(n)]


def _commits(fn: JudgeReward) -> int:
    """The transactions the rewards went in (each stamps its rows with one time)."""
    return fn.store.execute("SELECT COUNT(DISTINCT created_at) FROM rewards")[0][0]


def test_batches_finished_together_are_committed_in_one_transaction(tmp_path: Path) -> None:
    fn = _reward(tmp_path)

    async def serve() -> None:
        batches = await _judged(fn, 8)
        await asyncio.gather(*(fn.session.afinish(b, None) for b in batches))
        assert len(list(rewards(fn.store))) == 8  # committed when the callers return
        await fn.session.afinish((await _judged(fn, 1))[0], None)  # a later batch: a commit of its own

    asyncio.run(serve())
    assert _commits(fn) == 2
    assert fn.tally.rewards == 9 and fn.tally.failed == 0
    fn.close()


def test_a_failed_commit_raises_in_every_caller_of_its_group(tmp_path: Path) -> None:
    fn = _reward(tmp_path)
    fn.store.db.execute("PRAGMA busy_timeout=0")  # fail at once rather than after 30 s
    other = sqlite3.connect(tmp_path / "r" / STORE_FILE, isolation_level=None)

    async def serve() -> list[BaseException | None]:
        batches = await _judged(fn, 3)
        other.execute("BEGIN IMMEDIATE")  # another process holds the store's write lock
        return await asyncio.gather(*(fn.session.afinish(b, None) for b in batches), return_exceptions=True)

    got = asyncio.run(serve())
    assert all(isinstance(e, sqlite3.OperationalError) and "locked" in str(e) for e in got), got
    other.execute("ROLLBACK")
    assert list(rewards(fn.store)) == [] and fn.tally.rewards == 0  # nothing half-stored, nothing tallied
    other.close()
    fn.close()


def test_a_cancelled_caller_leaves_its_groups_commit_to_the_others(tmp_path: Path) -> None:
    fn = _reward(tmp_path)

    async def serve() -> list[BaseException | None]:
        batches = await _judged(fn, 4)
        tasks = [asyncio.create_task(fn.session.afinish(b, None)) for b in batches]
        await asyncio.sleep(0)  # each has joined the group
        tasks[0].cancel()
        return await asyncio.gather(*tasks, return_exceptions=True)

    got = asyncio.run(serve())
    assert isinstance(got[0], asyncio.CancelledError) and got[1:] == [None, None, None]
    assert len(list(rewards(fn.store))) == 4 and _commits(fn) == 1  # the cancelled caller's batch went in too
    fn.close()
