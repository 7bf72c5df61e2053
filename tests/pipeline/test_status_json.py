"""`charter status RUN --json` and `charter.status(RUN)`: the status as data, for a run directory, an online
training output and the output folder of an offline trainer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import charter
from charter.cli import main
from charter.errors import ArgumentError, RunStoreError
from charter.pipeline.status.record import usage_data
from charter.records import RewardRecord, UsageRow
from charter.runs.rewards import put_rewards
from charter.runs.store import RunStore
from charter.runs.usage import add_usage
from tests.pipeline.test_report import make_run


def _reward(key: str, step: int, reward: float | None) -> RewardRecord:
    return RewardRecord.model_validate(
        {
            "key": key,
            "step": step,
            "rank": 0,
            "scoring": "score",
            "prompt": [],
            "completion": "c",
            "reward": reward,
            "principle_ids": [],
            "judge_model": "scripted:cai",
            "fingerprint": "f",
            "failure": None if reward is not None else {"kind": "unparseable", "message": "no score in the reply"},
        }
    )


def test_a_run_as_data_has_what_the_table_shows(tmp_path: Path) -> None:
    report = charter.status(make_run(tmp_path / "run"))
    assert report["kind"] == "run" and report["run_id"] == "run-123"
    assert report["usage"]["cost_usd"] == pytest.approx(0.03)
    judge = next(row for row in report["usage"]["rows"] if row["role"] == "judge")
    assert (judge["calls"], judge["prompt_tokens"], judge["completion_tokens"]) == (10, 1000, 10)
    assert report["usage"]["totals"]["prompt_tokens"] == 1040 and report["usage"]["totals"]["calls"] == 14
    assert [s["stage"] for s in report["stages"]] == ["critique", "judge"]
    assert report["failures"]["by_stage"] == {"judge": 1} and report["failures"]["first"][0]["kind"]
    assert report["fingerprints"] is not None and report["fingerprints"]["judge"]
    assert report["counts"]["judged"] == 4
    assert report["dataset"] == {"written": False, "missing": ["preferences", "sft"], "ended_before_writing": True}
    assert any("dataset is not written" in note for note in report["notes"])
    assert report["online"] is None and report["training"] is None
    json.dumps(report)  # plain data through and through


def test_a_written_dataset_is_reported_written(tmp_path: Path) -> None:
    report = charter.status(make_run(tmp_path / "run", dataset=True))
    assert report["dataset"] == {"written": True, "missing": [], "ended_before_writing": False}
    assert report["filters"][0]["remaining"] > 0 and report["counts"]["preferences"] > 0


def test_every_usage_column_flows_through_without_naming_it() -> None:
    class Wider(UsageRow):
        cache_read_tokens: int = 0

    rows = [
        Wider(role="judge", model="m", calls=2, prompt_tokens=300, cache_read_tokens=200, cost_usd=0.5),
        Wider(role="policy", model="m", calls=1, prompt_tokens=100, cache_read_tokens=0, cost_usd=0.25),
    ]
    usage = usage_data(rows)  # type: ignore[arg-type]
    assert usage["cost_usd"] == 0.75 and usage["totals"]["cache_read_tokens"] == 200
    assert usage["rows"][0]["cache_read_tokens"] == 200


def test_an_online_output_has_its_rewards_per_step(tmp_path: Path) -> None:
    with RunStore(tmp_path / "grpo", create=True) as store:
        put_rewards(store, [_reward("a", 1, 0.5), _reward("b", 1, None), _reward("c", 2, 1.0)])
        add_usage(store, [UsageRow(role="judge", model="scripted:cai", calls=3, prompt_tokens=30, cost_usd=0.003)])
    report = charter.status(tmp_path / "grpo")
    assert report["kind"] == "online" and report["dataset"] is None
    online = report["online"]
    assert online is not None
    assert (online["steps"], online["rewards"], online["failures"]) == (2, 3, 1)
    assert [(row["step"], row["n"], row["failed"]) for row in online["per_step"]] == [(1, 2, 1), (2, 1, 0)]
    assert report["usage"]["cost_usd"] == pytest.approx(0.003)


@pytest.mark.parametrize(
    ("metrics", "kind"),
    [({"training": {"global_step": 3}, "accuracy": 0.7}, "reward_model"), ({"loss_type": ["sigmoid"]}, "dpo")],
)
def test_an_offline_trainer_folder_is_read_from_its_metrics(tmp_path: Path, metrics: dict, kind: str) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "metrics.json").write_text(json.dumps({**metrics, "config": {"model": "tiny"}}))
    report = charter.status(tmp_path / "out")
    assert report["kind"] == kind and report["training"] is not None
    assert report["models"] == {"model": "tiny"} and report["usage"]["cost_usd"] == 0.0


def test_the_cli_prints_json_alone_on_stdout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = make_run(tmp_path / "run")
    assert main(["status", str(run_dir), "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["usage"]["cost_usd"] == pytest.approx(0.03) and err == ""


def test_a_bad_run_is_one_line_on_stderr_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", str(tmp_path / "nothing"), "--json"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1 and "not a charter run directory" in err
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "metrics.json").write_text("{not json")
    with pytest.raises(RunStoreError, match="metrics.json"):
        charter.status(tmp_path / "bad")
    with pytest.raises(ArgumentError):
        charter.status(3)  # type: ignore[arg-type]


def test_the_table_view_of_a_trainer_folder_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "rm").mkdir()
    metrics = {"training": {"global_step": 12, "train_loss": 0.25, "seconds": 3.5}, "config": {"model": "tiny"}}
    (tmp_path / "rm" / "metrics.json").write_text(json.dumps(metrics))
    assert main(["status", str(tmp_path / "rm")]) == 0
    out = capsys.readouterr().out
    assert "Reward model trained from tiny: steps 12, train loss 0.25, seconds 3.5" in out
