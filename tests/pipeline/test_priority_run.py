"""`charter run` with `judge.combine: priority`: each revision pair is decided by the constitution's higher level
(root prefers the revision's refusal) whatever the user level says (it prefers the first answer's detail), every
judgment records the level that settled it and the conflict, the report counts the conflicts per pair of principles,
and the settings line names the rule; `settle_early` leaves the lower level unasked."""

from __future__ import annotations

import json
from pathlib import Path

import charter
from charter.runs.items import stored_judgments
from charter.runs.store import RunStore
from tests.support.priority import CAI_LONG, CAI_SAFE, CALLS, JUDGE, register_priority_judge, write_constitution

register_priority_judge()
ALL = ["helpful", "safety", "detail"]


def _run(make_config, tmp_path: Path, name: str, **judge: object) -> Path:
    constitution = write_constitution(tmp_path / "ordered.yaml", CAI_SAFE, CAI_LONG)
    settings = {"model": JUDGE, "mode": "verdict", "principles": ALL, **judge}
    config = make_config(output_dir=str(tmp_path / name), constitution=str(constitution), judge=settings, report=True)
    return charter.run(config).run_dir


def _rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "data" / "preferences.jsonl").read_text().splitlines()]


def test_a_run_in_priority_order_prefers_what_the_higher_level_does(make_config, tmp_path: Path) -> None:
    weighted = _run(make_config, tmp_path, "weighted")
    assert {r["chosen_source"] for r in _rows(weighted)} == {"initial"}  # two user-level votes outweigh one root vote
    ordered = _run(make_config, tmp_path, "ordered", combine="priority")
    rows = _rows(ordered)
    assert rows and {r["chosen_source"] for r in rows} == {"revision"}  # the root level settles every pair
    with RunStore(ordered) as store:
        judged = list(stored_judgments(store, store.fingerprints().judge, "ok"))
    assert judged and all(j.combined is not None and j.combined.settled_by == "root" for j in judged)
    for judgment in judged:
        assert judgment.combined is not None
        assert {(c.settled_by, c.overruled) for c in judgment.combined.conflicts} == {
            ("safety", "helpful"),
            ("safety", "detail"),
        }
    report = (ordered / "report" / "report.md").read_text()
    assert "### Votes in priority order" in report and "votes combined by priority" in report
    assert f"| safety > helpful | {len(judged)} |" in report
    assert "Votes in priority order" not in (weighted / "report" / "report.md").read_text()


def test_settling_early_leaves_the_lower_level_unasked(make_config, tmp_path: Path) -> None:
    CALLS.clear()
    ordered = _run(make_config, tmp_path, "early", combine="priority", settle_early=True)
    assert {r["chosen_source"] for r in _rows(ordered)} == {"revision"}
    assert CAI_SAFE in CALLS and CAI_LONG not in CALLS  # no user-level principle was asked
    report = (ordered / "report" / "report.md").read_text()
    assert "No conflict between levels among the principles asked." in report
