"""The store's sums and merges: usage summed once for status, the card and online training; a rank's store folded
into the output's."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from charter.records import Failure, RewardRecord, UsageRow
from charter.runs.counts import FailureTallies, failure_tallies, usage_totals
from charter.runs.failures import StoredFailure, add_failure, resolve_failures, stored_failures
from charter.runs.items import merge_rewards
from charter.runs.rewards import put_rewards
from charter.runs.store import RunStore
from charter.runs.usage import add_usage, stored_usage


def _usage(store: RunStore) -> None:
    add_usage(
        store,
        [
            UsageRow(role="judge", model="a", calls=2, cached=1, prompt_tokens=10, completion_tokens=3, cost_usd=0.5),
            UsageRow(role="judge", model="a", calls=1, prompt_tokens=5, completion_tokens=1, cost_usd=0.25, retries=2),
            UsageRow(role="judge", model="a", cache_read_tokens=4, cache_write_tokens=1, cache_saved_usd=0.125),
            UsageRow(role="policy", model="b", calls=4, cached=4, estimated=1),
        ],
    )


def test_usage_totals_sum_every_field_over_roles_and_models(tmp_path: Path) -> None:
    with RunStore(tmp_path / "run", create=True) as store:
        _usage(store)
        totals = usage_totals(stored_usage(store))
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
        assert store.count("rewards") == 2 and usage_totals(stored_usage(store))["calls"] == 14


# -- failures counted by item, in SQL ------------------------------------------------------------------------------


def _by_item_in_python(store: RunStore, quarantine_after: int, first: int) -> FailureTallies:
    """The tallies as a pass over every stored failure would make them: the reference the SQL must equal."""
    latest: dict[tuple, StoredFailure] = {}
    resolved: set[tuple] = set()
    sessions: dict[tuple, set] = {}
    for stored in stored_failures(store):
        key = (stored.stage, stored.item_id, stored.fingerprint)
        if stored.resolved:
            resolved.add(key)
            continue
        latest[key] = stored
        sessions.setdefault(key, set()).add(stored.session)
    by_stage: dict[str, int] = {}
    for stage, _, _ in latest:
        by_stage[stage] = by_stage.get(stage, 0) + 1
    by_kind: dict[str, dict[str, int]] = {}
    for (stage, _, _), stored in latest.items():
        kinds = by_kind.setdefault(stage, {})
        kinds[stored.failure.kind] = kinds.get(stored.failure.kind, 0) + 1
    return FailureTallies(
        by_stage=dict(sorted(by_stage.items())),
        quarantined=sum(len(sessions[key]) >= quarantine_after for key in latest),
        resolved=len(resolved - set(latest)),
        by_kind=by_kind,
        first=[(stored, len(sessions[key])) for key, stored in list(latest.items())[:first]],
    )


FAILURE_EVENTS = st.lists(
    st.tuples(
        st.sampled_from(["critique", "judge"]),
        st.sampled_from(["i1", "i2", "i3", "i4"]),
        st.sampled_from([None, "fp1", "fp2"]),
        st.sampled_from([None, 1, 2, 3]),
        st.booleans(),  # a later attempt of the item succeeds
        st.sampled_from([None, "raw reply", "é" * 3]),
    ),
    max_size=25,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=FAILURE_EVENTS, quarantine_after=st.integers(1, 3), first=st.integers(0, 5))
def test_failure_tallies_are_the_pass_over_every_failure(tmp_path: Path, events, quarantine_after, first) -> None:
    folder = tmp_path / f"run-{len(list(tmp_path.iterdir()))}"
    with RunStore(folder, create=True) as store:
        for n, (stage, item, fingerprint, session, succeeds, raw) in enumerate(events):
            kind = ("parse", "provider")[n % 2]  # the latest failure's kind is the item's
            failure = Failure(kind=kind, message=f"error {n}", raw=raw, attempts=n % 3 + 1)
            add_failure(store, stage, item, failure, fingerprint, session)
            if succeeds:
                resolve_failures(store, stage, [item], fingerprint)
        assert failure_tallies(store, quarantine_after, first) == _by_item_in_python(store, quarantine_after, first)
