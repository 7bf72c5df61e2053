"""Checklists that evolve during training (`checklist.refresh_every: K` in `charter train grpo|rloo`).

Every K steps the highest- and lowest-rewarded rollouts of the last `refresh_window` steps (from the reward store)
are shown to a proposer model (where they differ: rollouts that all score alike have nothing to contrast, and the
proposer is not paid for), which is asked for yes/no items that catch what the high ones exploit: length
padding, sycophancy, format tricks. The items it writes are read as a checklist (a bad reply is a recorded refresh
that accepted nothing, never a made-up item); those whose ids are new, up to `max_new_items`, are accepted as the next
version of the checklist (`charter.checklist.ChecklistBook`), added to every prompt's checklist from the next reward
on. The request and the reading of its reply are `charter.checklist.author`'s (the rollouts fenced). Each refresh
(its step, the version, the items, the rollouts compared) is kept in the reward store's meta `checklist_versions`,
in metrics.json and on the card; every reward names the version it used (`RewardChecklist.version`).
"""

from __future__ import annotations

import json
from typing import Any

from charter.checklist.author import PROPOSER_SCHEMA, Refresh, proposer_request, read_proposed
from charter.checklist.items import ChecklistBook
from charter.errors import FatalProviderError, ProviderError
from charter.online.config import ChecklistReward
from charter.providers import ManagedModel
from charter.providers.base import SamplingParams
from charter.records import RewardRecord
from charter.records.base import user
from charter.reward.checklisted import CHECKLIST
from charter.reward.function import JudgeReward
from charter.runs.rewards import rewards

#: The store's meta key of the refreshes.
VERSIONS_KEY = "checklist_versions"


def recent(reward: JudgeReward, step: int, window: int) -> list[RewardRecord]:
    """The scored checklist rewards of steps `step - window + 1` to `step` in the reward store."""
    return [
        r
        for r in rewards(reward.store)
        if r.reward is not None
        and r.scoring == CHECKLIST.name
        and r.step is not None
        and step - window < r.step <= step
    ]


def refresh_checklist(
    reward: JudgeReward, section: ChecklistReward, proposer: ManagedModel, step: int, book: ChecklistBook
) -> Refresh:
    """Compare the highest- and lowest-rewarded recent rollouts, ask the proposer for items, and accept the new ones
    into `book` (a new version); the refresh is recorded in the store's meta either way."""
    scored = sorted(recent(reward, step, section.refresh_window), key=lambda r: r.reward or 0.0)
    common = {"step": step, "proposer": proposer.model_id}
    if len(scored) < 2:
        return _kept(reward, Refresh(version=book.version, note="fewer than 2 scored rollouts to compare", **common))
    k = min(section.refresh_pairs, len(scored) // 2)
    high, low = scored[::-1][:k], scored[:k]
    compared = {"high": [r.reward or 0.0 for r in high], "low": [r.reward or 0.0 for r in low]}
    if compared["high"][0] == compared["low"][0]:  # every rollout shown scores the same: nothing to contrast
        note = f"no contrast: the rollouts compared all score {compared['high'][0]:g}; the proposer was not asked"
        return _kept(reward, Refresh(version=book.version, compared=compared, note=note, **common))
    in_use = sorted({i for r in scored if r.checklist for i in r.checklist.verdicts})
    text = proposer_request(high, low, in_use, section.max_new_items)
    params = SamplingParams(temperature=0.0, max_tokens=1024, seed=step, json_schema=PROPOSER_SCHEMA)
    try:
        [reply] = reward.session.run(proposer.generate([[user(text)]], params))
    except FatalProviderError:
        raise
    except ProviderError as exc:
        note = f"the proposer failed: {exc}"
        return _kept(reward, Refresh(version=book.version, compared=compared, note=note, **common))
    items = read_proposed(reply.text)
    if isinstance(items, str):
        return _kept(reward, Refresh(version=book.version, compared=compared, note=items, **common))
    known = set(in_use) | {i.id for i in book.added}
    fresh = [item for item in items if item.id not in known][: section.max_new_items]
    version = book.accept(fresh)
    note = None if fresh else "no item with a new id was proposed"
    return _kept(reward, Refresh(version=version, accepted=fresh, compared=compared, note=note, **common))


def _kept(reward: JudgeReward, refresh: Refresh) -> Refresh:
    done = reward.store.meta(VERSIONS_KEY, [])
    reward.store.set_meta(**{VERSIONS_KEY: [*done, json.loads(refresh.model_dump_json())]})
    return refresh


def refresh_callback(reward: JudgeReward, section: ChecklistReward, proposer: ManagedModel) -> Any:
    """A TrainerCallback that refreshes the checklist every `section.refresh_every` steps."""
    from transformers import TrainerCallback

    every = section.refresh_every
    assert every is not None

    class ChecklistRefresh(TrainerCallback):
        def __init__(self) -> None:
            self.refreshes: list[Refresh] = []

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            if state.global_step % every == 0:
                book = reward.options.book
                self.refreshes.append(refresh_checklist(reward, section, proposer, state.global_step, book))
            return control

    return ChecklistRefresh()


def refreshes(store: Any) -> list[dict[str, Any]]:
    """The refreshes a reward store records (its meta `checklist_versions`), oldest first."""
    return list(store.meta(VERSIONS_KEY, []))


def refresh_steps(store: Any) -> list[int]:
    """The steps after which a refresh made a new checklist version (the next step's rewards use it), oldest first:
    what a gold monitor reads, during training or after, to attribute a change of its gap to each refresh."""
    steps, version = [], 1
    for refresh in refreshes(store):
        if refresh["version"] > version:
            steps.append(int(refresh["step"]))
            version = refresh["version"]
    return steps


__all__ = [
    "VERSIONS_KEY",
    "Refresh",
    "recent",
    "refresh_callback",
    "refresh_checklist",
    "refresh_steps",
    "refreshes",
]
