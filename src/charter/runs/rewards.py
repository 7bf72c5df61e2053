"""The reward store of online training, as the run store keeps it (the one reader and writer): every reward the
judge gave during GRPO or RLOO, with what it rests on, so that rewards are auditable and a repeated completion is
answered from the store.

A row's status is `ok` (a reward), `failed` (none), or `superseded`: a row of a step that a resumed training takes
again (it restarts from its checkpoint, or from step 0 without one). A superseded row stays in the table, and its
reward still answers the same completion, but no count, sum or listing includes it: each step is the training's
own, counted once."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from typing import NotRequired, TypedDict

from pydantic import ValidationError

from charter.records import Failure, RewardRecord
from charter.runs.store import RunStore

#: The scoring name online DPO stores its judged pairs under (a pair's P, not one completion's reward).
PAIR_SCORING = "pair"


def put_rewards(store: RunStore, rows: Iterable[RewardRecord]) -> None:
    """Store rewards in one transaction."""
    now = time.time()
    store.write(
        "INSERT INTO rewards (key, step, rank, scoring, reward, status, record, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            (
                r.key,
                r.step,
                r.rank,
                r.scoring,
                r.reward,
                "ok" if r.reward is not None else "failed",
                r.model_dump_json(),
                now,
            )
            for r in rows
        ),
    )


#: The status of a row whose step a resumed training took again (`supersede_from`).
SUPERSEDED = "superseded"
#: The rows in effect: every count and listing reads these.
IN_EFFECT = f"status != '{SUPERSEDED}'"


def supersede_from(store: RunStore, step: int) -> int:
    """Mark the rows of steps `step` and later superseded (a training resumed at `step` takes them again); returns
    how many."""
    sql = f"UPDATE rewards SET status = '{SUPERSEDED}' WHERE step >= ? AND {IN_EFFECT}"
    return store.transaction(lambda db: db.execute(sql, (step,)).rowcount)


def stored_rewards(store: RunStore, keys: Iterable[str]) -> dict[str, RewardRecord]:
    """The latest successful reward stored under each of these keys, superseded rows included (absent keys are left
    out)."""
    wanted = list(dict.fromkeys(keys))
    found: dict[str, RewardRecord] = {}
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        marks = ", ".join("?" * len(chunk))
        for (record,) in store.execute(
            f"SELECT record FROM rewards WHERE reward IS NOT NULL AND key IN ({marks}) ORDER BY id", chunk
        ):
            row = read_reward(record)
            found[row.key] = row
    return found


def rewards(store: RunStore) -> Iterator[RewardRecord]:
    """Every stored reward in effect (not superseded), oldest first."""
    for (record,) in store.stream(f"SELECT record FROM rewards WHERE {IN_EFFECT} ORDER BY id"):
        yield read_reward(record)


#: The failure a stored row with neither a reward nor a failure reads with (an earlier charter stored such rows
#: from a reward that was not a finite number, e.g. a checklist with a NaN weight).
UNKNOWN_FAILURE = Failure(
    kind="unknown",
    message="stored with no reward and no failure (an earlier charter's row, from a reward that was not a finite "
    "number): a failure of unknown cause",
)


def unexplained(store: RunStore) -> int:
    """How many rows in effect have neither a reward nor a failure (they read with `UNKNOWN_FAILURE`)."""
    sql = (
        f"SELECT COUNT(*) FROM rewards WHERE {IN_EFFECT} AND reward IS NULL"
        " AND json_extract(record, '$.failure') IS NULL"
    )
    return store.execute(sql)[0][0]


def read_reward(record: str) -> RewardRecord:
    """A stored reward row. One that an earlier charter stored with neither a reward nor a failure reads as a failure
    of unknown cause (`UNKNOWN_FAILURE`); a missing share of failed checklist weight reads as unknown (None)."""
    try:
        return RewardRecord.model_validate_json(record)
    except ValidationError:
        data = json.loads(record)
        if not isinstance(data, dict) or data.get("reward") is not None or data.get("failure") is not None:
            raise
        data["failure"] = UNKNOWN_FAILURE.model_dump()
        return RewardRecord.model_validate(data)


class StepRewards(TypedDict):
    """The rewards of one training step."""

    step: int | None
    """The training step (1 for the first, as TRL's log counts)."""
    n: int
    """Rewards asked for."""
    failed: int
    """Of them, failed judgments (reward None)."""
    mean: float | None
    """Mean reward of the successful ones; None when all failed."""
    std: float | None
    """Their standard deviation; None with fewer than two."""
    cached: int
    """Rewards whose judge calls were all answered from the cache or the store."""


def per_step(store: RunStore) -> list[StepRewards]:
    """Reward mean, spread, failures and cache hits per training step, in step order (GRPO, RLOO; online DPO's
    pairs are `pair_steps`)."""
    rows = store.execute(
        "SELECT step, COUNT(*), SUM(reward IS NULL), AVG(reward), AVG(reward * reward), COUNT(reward), "
        "SUM(json_extract(record, '$.cached')) FROM rewards WHERE scoring != ? AND "
        f"{IN_EFFECT} GROUP BY step ORDER BY step",
        (PAIR_SCORING,),
    )
    out: list[StepRewards] = []
    for step, n, failed, mean, mean_sq, ok, cached in rows:
        std = (max(mean_sq - mean * mean, 0.0) * ok / (ok - 1)) ** 0.5 if ok and ok > 1 else None
        out.append(StepRewards(step=step, n=n, failed=failed or 0, mean=mean, std=std, cached=int(cached or 0)))
    return out


class StepPairs(TypedDict):
    """Online DPO's pairs of one training step."""

    step: int | None
    """The training step (1 for the first, as TRL's log counts)."""
    pairs: int
    """Pairs judged (one per prompt of the step's batch)."""
    trained: int
    """Pairs the judge decided: in the loss."""
    failed: int
    """Pairs masked because their judgment failed."""
    undecided: int
    """Pairs masked because the orders disagreed or the confidence was below min_confidence."""
    from_store: int
    """Pairs whose judgment was all answered from the call cache or the store."""
    calls: NotRequired[int]
    """Judge calls answered during the step (metrics.json only: as the main process counted them)."""
    cached_calls: NotRequired[int]
    """Of them, from the call cache (metrics.json only)."""
    cost_usd: NotRequired[float]
    """Their cost (metrics.json only)."""
    skipped: NotRequired[bool]
    """No pair trained: the step was skipped, no optimizer step (metrics.json only)."""


def pair_steps(store: RunStore) -> list[StepPairs]:
    """Online DPO's pairs per training step: judged, trained on, masked by reason (failed, undecided)."""
    rows = store.execute(
        "SELECT step, COUNT(*), SUM(json_extract(record, '$.masked') IS NULL),"
        " SUM(json_extract(record, '$.masked') = 'failed'), SUM(json_extract(record, '$.masked') = 'undecided'),"
        " SUM(json_extract(record, '$.cached')) FROM rewards WHERE scoring = ? AND "
        f"{IN_EFFECT} GROUP BY step ORDER BY step",
        (PAIR_SCORING,),
    )
    return [
        StepPairs(
            step=step, pairs=n, trained=int(t or 0), failed=int(f or 0), undecided=int(u or 0), from_store=int(c or 0)
        )  # fmt: skip
        for step, n, t, f, u, c in rows
    ]
