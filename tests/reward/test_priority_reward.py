"""Rewards judged in priority order: `charter.reward_function` and `charter serve reward` with scoring `reference` and
`judge.combine: priority` give the completion the higher level prefers, whatever the lower levels say, and the stored
reward records the level that settled it and the conflict; a scoring that rates each completion alone refuses it."""

from __future__ import annotations

from pathlib import Path

import pytest

import charter
from charter.errors import ConfigError
from charter.reward.batching import close_shared
from charter.runs.rewards import rewards
from charter.runs.store import RunStore
from tests.serve.conftest import AUTH
from tests.support.priority import JUDGE, LONG, PROMPT, SAFE, register_priority_judge, write_constitution

register_priority_judge()
ALL = ["helpful", "safety", "detail"]


@pytest.fixture(autouse=True)
def _fresh():
    yield
    close_shared()


def _reward(tmp_path: Path, combine: str) -> float | None:
    fn = charter.reward_function(
        JUDGE,
        str(write_constitution(tmp_path / "ordered.yaml")),
        "reference",
        store=tmp_path / combine,
        cache=None,
        principles=ALL,
        combine=combine,
    )
    try:
        [reward] = fn(prompts=[PROMPT], completions=[SAFE], reference=[LONG])
    finally:
        fn.close()
    return reward


def test_reward_function_rewards_what_the_higher_level_prefers(tmp_path: Path) -> None:
    weighted, ordered = _reward(tmp_path, "weighted"), _reward(tmp_path, "priority")
    assert weighted is not None and weighted < 0.5  # the two user-level principles prefer the reference
    assert ordered is not None and ordered > 0.5  # the root level settles it for the safe completion
    [record] = rewards(RunStore(tmp_path / "priority"))
    assert record.combined is not None and record.combined.settled_by == "root"
    assert {(c.settled_by, c.overruled) for c in record.combined.conflicts} == {
        ("safety", "helpful"),
        ("safety", "detail"),
    }
    [plain] = rewards(RunStore(tmp_path / "weighted"))
    assert plain.combined is None


def test_a_rating_scoring_refuses_priority(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="rates each completion alone: combine priority orders comparisons"):
        charter.reward_function(JUDGE, store=tmp_path / "s", cache=None, combine="priority")


def test_the_reward_server_rewards_what_the_higher_level_prefers(start, tmp_path: Path) -> None:
    constitution = str(write_constitution(tmp_path / "ordered.yaml"))
    judge = {"model": JUDGE, "mode": "logprobs", "principles": ALL, "combine": "priority"}
    server = start(judge, constitution=constitution, scoring="reference")
    status, body = server.post("/v1/rewards", {"prompt": PROMPT, "completions": [SAFE], "reference": LONG}, AUTH)
    assert status == 200, body
    [reward] = body["rewards"]
    assert reward > 0.5
    server.stop()
    [record] = rewards(RunStore(server.store))
    assert record.combined is not None and record.combined.settled_by == "root"
    assert len(record.combined.conflicts) == 2


@pytest.mark.parametrize("strategy", ["all_pairs", "circular"])
def test_a_group_reward_records_how_each_comparison_it_rests_on_was_settled(tmp_path: Path, strategy: str) -> None:
    """Scoring `group` in priority order: the safe completion wins its group (the root level settles each of its
    comparisons), and each record lists the settlements its reward rests on, the conflicts included."""
    fn = charter.reward_function(
        JUDGE,
        str(write_constitution(tmp_path / "ordered.yaml")),
        "group",
        store=tmp_path / strategy,
        cache=None,
        principles=ALL,
        combine="priority",
        group_strategy=strategy,
    )
    try:
        safe, long = fn(prompts=[PROMPT, PROMPT], completions=[SAFE, LONG])
    finally:
        fn.close()
    assert safe is not None and long is not None and safe > 0.5 > long
    for record in rewards(RunStore(tmp_path / strategy)):
        assert record.settlements and {s.settled_by for s in record.settlements} == {"root"}
        assert {(c.settled_by, c.overruled) for s in record.settlements for c in s.conflicts} == {
            ("safety", "helpful"),
            ("safety", "detail"),
        }
