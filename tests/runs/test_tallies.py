"""The store's sums and merges: usage summed once for status, the card and online training; a rank's store folded
into the output's."""

from __future__ import annotations

from pathlib import Path

from charter.records import RewardRecord, UsageRow
from charter.runs.merge import merge_rewards
from charter.runs.rewards import put_rewards
from charter.runs.store import RunStore
from charter.runs.tallies import usage_totals


def _usage(store: RunStore) -> None:
    store.add_usage(
        [
            UsageRow(role="judge", model="a", calls=2, cached=1, prompt_tokens=10, completion_tokens=3, cost_usd=0.5),
            UsageRow(role="judge", model="a", calls=1, prompt_tokens=5, completion_tokens=1, cost_usd=0.25, retries=2),
            UsageRow(role="judge", model="a", cache_read_tokens=4, cache_write_tokens=1, cache_saved_usd=0.125),
            UsageRow(role="policy", model="b", calls=4, cached=4, estimated=1),
        ]
    )


def test_usage_totals_sum_every_field_over_roles_and_models(tmp_path: Path) -> None:
    with RunStore(tmp_path / "run", create=True) as store:
        _usage(store)
        totals = usage_totals(store.usage())
    assert totals == {
        "calls": 7,
        "cached": 5,
        "retries": 2,
        "prompt_tokens": 15,
        "completion_tokens": 4,
        "cost_usd": 0.75,
        "estimated": 1,
        "cache_read_tokens": 4,
        "cache_write_tokens": 1,
        "cache_saved_usd": 0.125,
    }
    assert usage_totals([]) == dict.fromkeys(totals, 0)


def test_a_ranks_rewards_and_usage_are_appended_to_the_output_store(tmp_path: Path) -> None:
    reward = RewardRecord.model_validate(
        {
            "key": "k",
            "step": 1,
            "rank": 1,
            "scoring": "score",
            "prompt": [],
            "completion": "c",
            "reward": 0.5,
            "principle_ids": [],
            "judge_model": "scripted:x",
            "fingerprint": "f",
        }
    )
    with RunStore(tmp_path / "rank1", create=True) as other:
        _usage(other)
        put_rewards(other, [reward])
    with RunStore(tmp_path / "out", create=True) as store:
        merge_rewards(store, tmp_path / "rank1" / "run.sqlite")
        merge_rewards(store, tmp_path / "rank1" / "run.sqlite")
        assert store.count("rewards") == 2 and usage_totals(store.usage())["calls"] == 14
