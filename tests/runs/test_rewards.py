"""The reward store at its edges: no record is written whose reward is None without its failure, and a store that
an earlier charter corrupted (a row with reward, failure and the checklist's failed share all null, from a NaN
weight) reads without a traceback, the row a failure of unknown cause, said so by `charter serve merge`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from charter.cli import main
from charter.records import Failure, Message, RewardChecklist, RewardRecord
from charter.runs.rewards import UNKNOWN_FAILURE, per_step, put_rewards, rewards, stored_rewards, unexplained
from charter.runs.store import STORE_FILE, RunStore


def _record(key: str, reward: float | None, **fields) -> RewardRecord:
    checklist = RewardChecklist(fingerprint="f", version=1, source="column", aggregation="explicit",
                                verdicts={"a": "yes", "b": "no"}, failed_share=0.0)  # fmt: skip
    return RewardRecord(key=key, step=1, rank=0, scoring="checklist", prompt=[Message(role="user", content="Q?")],
                        completion=f"answer {key}", reward=reward, principle_ids=[], judge_model="scripted:j",
                        fingerprint="fp", checklist=checklist, **fields)  # fmt: skip


def _corrupted_store(folder: Path) -> RunStore:
    """A store holding one good reward and one row as an earlier charter wrote it from a NaN weight."""
    store = RunStore(folder, create=True)
    put_rewards(store, [_record("good", 0.75), _record("bad", 0.5)])
    row = json.loads(_record("bad", 0.5).model_dump_json())
    row["reward"], row["failure"], row["checklist"]["failed_share"] = None, None, None
    store.write("UPDATE rewards SET reward = NULL, record = ? WHERE key = 'bad'", [(json.dumps(row),)])
    return store


def test_a_record_with_no_reward_carries_its_failure() -> None:
    with pytest.raises(ValidationError, match="a reward of None is a failure"):
        _record("k", None)
    assert _record("k", None, failure=Failure(kind="checklist", message="every item failed")).reward is None
    with pytest.raises(ValidationError, match="finite number"):
        _record("k", float("nan"))


def test_a_corrupted_row_reads_as_a_failure_of_unknown_cause(tmp_path: Path) -> None:
    store = _corrupted_store(tmp_path / "store")
    read = {r.key: r for r in rewards(store)}
    assert read["good"].reward == 0.75 and read["good"].failure is None
    bad = read["bad"]
    assert bad.reward is None and bad.failure == UNKNOWN_FAILURE and "unknown cause" in bad.failure.message
    assert bad.checklist is not None and bad.checklist.failed_share is None  # not known, not made up
    assert set(stored_rewards(store, ["good", "bad"])) == {"good"}  # never answers a completion again
    assert unexplained(store) == 1
    assert per_step(store)[0]["failed"] == 1 and per_step(store)[0]["mean"] == 0.75
    store.close()


def test_serve_merge_reads_a_corrupted_store_and_says_so(tmp_path: Path, capsys) -> None:
    _corrupted_store(tmp_path / "server-0").close()
    assert (tmp_path / "server-0" / STORE_FILE).exists()
    assert main(["serve", "merge", str(tmp_path / "merged"), str(tmp_path / "server-0")]) == 0
    out, err = capsys.readouterr()
    assert "2 rewards in" in out and "Traceback" not in err
    assert "1 of them were stored with neither a reward nor a failure" in err and "unknown cause" in err
