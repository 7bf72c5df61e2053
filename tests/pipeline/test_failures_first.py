"""Failures and a judge at chance travel with the data: the report, `charter status`, `charter run`'s output, the
dataset card and the Croissant file say so first, with the figure; the stage table counts failed items apart."""

from __future__ import annotations

import hashlib
import io
import json
import re
from pathlib import Path

import mlcroissant as mlc
import pytest
from rich.console import Console

from charter.cli import main
from charter.hub.card import read_run
from charter.hub.export import build_folder
from charter.hub.push import check_gates
from charter.pipeline.api import run_sync
from charter.pipeline.config import load_run_config
from charter.pipeline.status.record import status
from charter.pipeline.status.show import print_status
from charter.providers import register_script
from charter.providers.scripted import ScriptedModel
from charter.runs.counts import set_stage
from tests.support.rundir import RunBuilder

CAI = ScriptedModel("cai")
QUESTIONS = [f"Question {i}: how do I do thing {i}?" for i in range(16)]


def _question(messages) -> int | None:
    found = re.findall(r"Question (\d+)", " ".join(m.content for m in messages if m.role == "user"))
    return int(found[-1]) if found else None


def _flaky(messages, params):
    """The cai judge, except that it answers nothing usable for three questions in four."""
    if "Response (A):" in messages[-1].content and (_question(messages) or 0) % 4:
        return "I would rather not say."
    return CAI.fn(messages, params)


def _first_position(messages, options):
    """The quickstart's 135M judge: the first position, by a hair, whatever is shown."""
    p_a = 0.503 + int(hashlib.sha256(messages[-1].content.encode()).hexdigest(), 16) % 7 / 1000
    return {o: (p_a if o == "A" else 1 - p_a) if o in "AB" else 0.0 for o in options}


def _repeats(messages, params):
    """A policy whose critiques find nothing and whose revisions repeat the first answer."""
    answer = f"Here is an answer to question {_question(messages)}."
    last = messages[-1].content
    if (
        len(messages) > 2
        and re.search(r"critique|identify", last, re.I)
        and not re.search(r"rewrite|revis", last, re.I)
    ):
        return "It is fine."
    return answer


register_script("flaky-judge", _flaky)
register_script("first-position", CAI.fn, _first_position)
register_script("repeats", _repeats)


def _run(make_config, **overrides) -> Path:
    path = make_config(prompts={"inline": QUESTIONS}, report=True, **overrides)
    return run_sync(load_run_config(path)).run_dir


def _printed(run_dir: Path) -> str:
    out = io.StringIO()
    print_status(run_dir, Console(file=out, width=200))
    return out.getvalue()


def _report_top(run_dir: Path) -> str:
    """The report's first screen: what comes before its first section."""
    return (run_dir / "report" / "report.md").read_text().split("\n- ", 1)[0]


def _exported(run_dir: Path, folder: Path) -> tuple[str, dict]:
    run = read_run(run_dir)
    build_folder(run, folder, "org/x", check_gates(run))
    card = (folder / "README.md").read_text().split("---", 2)[2]
    return card, json.loads((folder / "croissant.json").read_text())


@pytest.fixture
def flaky_run(make_config) -> Path:
    judge = {"model": "scripted:flaky-judge", "mode": "cot", "principles_per_pair": 1, "max_reasks": 0}
    return _run(make_config, judge=judge, max_failures=0.9)


def test_the_stage_table_counts_failed_judgments_apart_from_done_ones(flaky_run: Path) -> None:
    judge = next(row for row in status(flaky_run)["stages"] if row["stage"] == "judge")
    assert (judge["done"], judge["failed"], judge["total"]) == (4, 12, 16)
    assert "4/16 (25%), 12 failed" in _printed(flaky_run)
    assert "| judge | done | 4 | 12 | 16 |" in (flaky_run / "report" / "report.md").read_text()


def test_failures_are_said_first_in_status_report_and_card(flaky_run: Path, tmp_path: Path) -> None:
    failed = "12 of 16 judgments (unparseable: 12) failed; a failed item makes no row."
    few = "Only 4 preference rows from 16 response pairs (25.0%): 12 judgments failed."
    chance, *rest = status(flaky_run)["headline"]
    assert rest == [failed, few]
    assert chance.startswith("These preferences cannot yet be told from chance") and "in 4 of 4 pairs" in chance
    printed = _printed(flaky_run).split("\nStages")[0]  # before the stage table, under the run's name and models
    assert " ".join(printed.split()).endswith(" ".join([chance, failed, few]))
    top = _report_top(flaky_run)
    assert failed in top and few in top
    card, _ = _exported(flaky_run, tmp_path / "out")
    assert failed in card.split("Synthetic preference data", 1)[0]


def test_the_croissant_file_carries_the_failures(flaky_run: Path, tmp_path: Path) -> None:
    _, doc = _exported(flaky_run, tmp_path / "out")
    missing = doc["rai:dataCollectionMissingData"]
    assert "12 of 16 judgments (unparseable: 12) failed" in missing
    assert "12 of 16 response pairs (75.0%) made no preference row before the dataset filters" in missing
    measured = {v["name"]: v for v in doc["variableMeasured"]}
    assert measured["failed judge items"]["value"] == 12
    assert "unparseable 12" in measured["failed judge items"]["description"]
    assert measured["response pairs lost before the filters"]["value"] == pytest.approx(0.75)
    assert doc["rai:dataLimitations"][1].startswith("12 of 16 judgments")
    dataset = mlc.Dataset(jsonld=tmp_path / "out" / "croissant.json")
    assert not dataset.metadata.ctx.issues.errors
    assert dataset.metadata.data_collection_missing_data == missing


def test_a_judge_at_chance_is_said_first_with_the_figure(make_config, tmp_path: Path) -> None:
    judge = {"model": "scripted:first-position", "principles_per_pair": 1}
    run_dir = _run(make_config, judge=judge, filters={"min_confidence": 0.0, "drop_inconsistent": False})
    first = status(run_dir)["headline"][0]
    assert first == (
        "These preferences cannot be told from chance: the judge picked the same response in both orders in 0 of 16 "
        "pairs (0.0%, 95% CI 0.0-20.6%), where a judge that ignores the responses does so in at most half; 16 of 16 "
        "pairs (100.0%) were position-inconsistent."
    )
    assert first in _report_top(run_dir)
    assert first in (run_dir / "report" / "report.html").read_text().split('<div class="figures">')[0]
    card, doc = _exported(run_dir, tmp_path / "out")
    assert first in card.split("Synthetic preference data", 1)[0]
    assert doc["rai:dataLimitations"][0] == first


def test_a_judge_that_reads_the_responses_is_not_said_to_be_at_chance(make_config) -> None:
    run_dir = _run(make_config, judge={"model": "scripted:cai", "principles_per_pair": 1})
    assert status(run_dir)["headline"] == []


def test_a_run_of_no_rows_says_why_in_its_output_status_and_report(make_config, capsys) -> None:
    path = make_config(prompts={"inline": QUESTIONS}, report=True, policy="scripted:repeats")
    assert main(["run", str(path)]) == 0  # the run did what it was asked: the data says why it is empty
    why = "No preference rows: 16 of 16 prompts made no response pair (16 revisions repeat their first answer)."
    out = capsys.readouterr()
    assert why in " ".join((out.out + out.err).split())
    run_dir = load_run_config(path).run_dir()
    assert status(run_dir)["headline"] == [why]
    report = (run_dir / "report" / "report.md").read_text()
    assert why in _report_top(run_dir) and "No judged pairs yet." not in report


def test_a_stop_shared_by_stages_is_one_line(tmp_path: Path) -> None:
    with RunBuilder(tmp_path / "run") as run:
        for stage in ("critique", "judge"):
            set_stage(run.store, stage, "stopped: budget", {"reason": "the budget of 0.01 USD was reached"})
    lines = _printed(tmp_path / "run").splitlines()
    assert lines.count("stopped: the budget of 0.01 USD was reached") == 1


def test_the_forecast_beside_the_bill_finds_a_local_model_as_it_was_served(make_config) -> None:
    """The quickstart's shape: the forecast names `local:NAME`, the calls are billed as `local:NAME@bfloat16`. The
    report sets them side by side (not "not forecast", not 0 calls billed) and says local calls cost nothing."""
    from charter.pipeline.report.write import write_report
    from charter.runs.store import RunStore

    run_dir = _run(make_config, judge={"model": "scripted:cai", "principles_per_pair": 1})
    with RunStore(run_dir) as store:
        forecast = store.meta("forecast")
        for row in forecast["rows"]:
            row["model"] = "local:smollm2-135m-instruct"
        store.set_meta(forecast=forecast)
        store.write("UPDATE usage_events SET model = 'local:smollm2-135m-instruct@bfloat16'", [()])
        calls = {role: n for role, n in store.execute("SELECT role, SUM(calls) FROM usage_events GROUP BY role")}
    section = write_report(run_dir)[0].read_text().split("### Forecast beside the bill", 1)[1]
    section = section.split("## Failures")[0]
    assert "not forecast" not in section
    for row in forecast["rows"]:
        shown = f"| {row['role']} | `local:smollm2-135m-instruct` | {row['calls']['expected']} / {calls[row['role']]} |"
        assert calls[row["role"]] and shown in section
    assert "local:smollm2-135m-instruct ran on this machine: its calls are counted and cost nothing." in section
