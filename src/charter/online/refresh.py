"""Checklists that evolve during training (`checklist.refresh_every: K` in `charter train grpo|rloo`).

Every K steps the highest- and lowest-rewarded rollouts of the last `refresh_window` steps (from the reward store)
are shown to a proposer model (where they differ: rollouts that all score alike have nothing to contrast, and the
proposer is not paid for), which is asked for yes/no items that catch what the high ones exploit: length
padding, sycophancy, format tricks. The items it writes are read as a checklist (a bad reply is a recorded refresh
that accepted nothing, never a made-up item); those whose ids are new, up to `max_new_items`, are accepted as the next
version of the checklist (`online.book`), added to every prompt's checklist from the next reward on. Each refresh
(its step, the version, the items, the rollouts compared) is kept in the reward store's meta `checklist_versions`,
in metrics.json and on the card; every reward names the version it used (`RewardChecklist.version`).
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import Field

from charter.checklist.author import items_schema
from charter.checklist.items import ChecklistItem, checklist_from_rows
from charter.errors import DatasetError, FatalProviderError, ProviderError
from charter.judge_prompt import agreed, reply_readings
from charter.online.book import ChecklistBook
from charter.online.config import ChecklistReward
from charter.online.reward import JudgeReward
from charter.providers import ManagedModel
from charter.providers.base import SamplingParams
from charter.records import Record, RewardRecord
from charter.records.base import render_conversation, user
from charter.runs.rewards import rewards

#: The store's meta key of the refreshes.
VERSIONS_KEY = "checklist_versions"
PROPOSER_REQUEST = (
    "A policy is being trained with the reward of a checklist. Below are its highest- and lowest-rewarded recent "
    "responses. Find what the high ones do to score well without being better (padding their length, flattering "
    "the user, format tricks, restating the question, ...), and write up to {most} new yes/no checklist items that "
    "would catch it: each a statement about a response, with an id (letters, digits, _ or -) not among the ids in "
    "use, and a category (pitfall for what a response must not do; essential, important or optional otherwise).\n\n"
    "Items in use: {ids}\n\nHighest-rewarded:\n{high}\n\nLowest-rewarded:\n{low}\n\n"
    'Answer with a JSON object and nothing else: {{"items": [{{"id": "...", "requirement": "...", "category": '
    '"..."}}]}} (an empty list when nothing is exploited).'
)
PROPOSER_SCHEMA = items_schema()


class Refresh(Record):
    """One refresh of the checklist: when, what it compared, what it accepted."""

    step: int
    """The training step after which it ran."""
    version: int
    """The checklist's version after it (unchanged when it accepted nothing)."""
    accepted: list[ChecklistItem] = []
    """The items it added."""
    compared: dict[str, list[float]] = Field(default_factory=dict)
    """The rewards of the rollouts shown: `high` and `low`."""
    proposer: str
    """The proposer's model id."""
    note: str | None = None
    """Why nothing was accepted (too few scored rollouts, an unreadable reply, no new id), where nothing was."""


def recent(reward: JudgeReward, step: int, window: int) -> list[RewardRecord]:
    """The scored checklist rewards of steps `step - window + 1` to `step` in the reward store."""
    return [
        r
        for r in rewards(reward.store)
        if r.reward is not None and r.scoring == "checklist" and r.step is not None and step - window < r.step <= step
    ]


def _shown(records: list[RewardRecord]) -> str:
    return "\n\n".join(
        f"[reward {r.reward:.3f}] {render_conversation(r.prompt)}\nResponse: {r.completion}" for r in records
    )


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
    text = PROPOSER_REQUEST.format(
        most=section.max_new_items, ids=", ".join(in_use) or "none", high=_shown(high), low=_shown(low)
    )
    params = SamplingParams(temperature=0.0, max_tokens=1024, seed=step, json_schema=PROPOSER_SCHEMA)
    try:
        [reply] = reward.session.run(proposer.generate([[user(text)]], params))
    except FatalProviderError:
        raise
    except ProviderError as exc:
        note = f"the proposer failed: {exc}"
        return _kept(reward, Refresh(version=book.version, compared=compared, note=note, **common))
    items = _proposed(reply.text)
    if isinstance(items, str):
        return _kept(reward, Refresh(version=book.version, compared=compared, note=items, **common))
    known = set(in_use) | {i.id for i in book.added}
    fresh = [item for item in items if item.id not in known][: section.max_new_items]
    version = book.accept(fresh)
    note = None if fresh else "no item with a new id was proposed"
    return _kept(reward, Refresh(version=version, accepted=fresh, compared=compared, note=note, **common))


def _proposed(text: str) -> list[ChecklistItem] | str:
    """The items of a proposer's reply, or why there are none (an empty list is an answer: nothing exploited)."""
    rows, disagreement = agreed((reply_readings(text, ["items"]) or {}).get("items", []), "'items'")
    if disagreement is not None:
        return f"the proposer's {disagreement.removeprefix('the ')}"
    if not isinstance(rows, list):
        return f"the proposer's reply is no JSON object of items: {text[:80]!r}"
    if not rows:
        return "the proposer found nothing exploited"
    try:
        return checklist_from_rows(rows, "proposer reply", "model").items
    except DatasetError as exc:
        return f"the proposer's items are unreadable: {exc}"


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


__all__ = ["VERSIONS_KEY", "Refresh", "recent", "refresh_callback", "refresh_checklist", "refreshes"]
