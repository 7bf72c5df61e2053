"""`charter run` with a checklist for each prompt and judge mode `checklist` (scripted writer and judge)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from charter.checklist import Checklist
from charter.checklist.check import judge_checklist_pair
from charter.checklist.store import count_checklists
from charter.cli import main
from charter.judge.modes import CHECKLIST_MODE, CHECKS_ITEMS, MODES, register_mode
from charter.pipeline.api import run
from charter.providers import register_script
from charter.runs.failures import failing_items
from charter.runs.store import RunStore
from charter.runs.usage import stored_usage
from charter.testing.lab import checklist_server_reply, register_lab_models, verdict_alternatives
from charter.testing.loopback import LoopbackServer

register_lab_models()
register_script("checklist-mute", lambda messages, params: "I would rather not write a checklist.")
register_script("checklist-silent", lambda messages, params: "Looks fine to me.")
ANSWERS = (
    "It is 42. Want more?",
    "Here is a longer answer with no figure in it at all, which goes on for well over fifteen words in total.",
    "About 7 steps, roughly, depending on how you count them and on what you call a step.",
)
# a policy whose answers meet the writer's items (a number, a closing question, at most 15 words) to differing degrees
register_script("checklist-policy", lambda messages, params: ANSWERS[(params.seed or 0) % len(ANSWERS)])

CHECKLIST = {"source": "model", "model": "scripted:checklist-writer"}


def checklist_config(make_config, **overrides: object) -> Path:
    settings: dict = {
        "policy": "scripted:checklist-policy",
        "critic": "scripted:cai",
        "judge": {"model": "scripted:checklist-judge", "mode": "checklist", "principles_per_pair": 2},
        "checklist": CHECKLIST,
    }
    settings.update(overrides)
    return make_config(**settings)


def rows_of(tmp_path: Path, name: str = "preferences") -> list[dict]:
    return [json.loads(line) for line in (tmp_path / f"run/data/{name}.jsonl").read_text().splitlines()]


def calls(run_dir: Path, role: str) -> int:
    with RunStore(run_dir) as store:
        return sum(r.calls for r in stored_usage(store) if r.role == role)


def test_checklist_mode_writes_rows_with_the_checklist_verdicts_and_reasons(make_config, tmp_path):
    result = run(checklist_config(make_config))
    rows = rows_of(tmp_path)
    assert rows and result.counts["preferences"] == len(rows)
    row = rows[0]
    items = json.loads(row["checklist"])
    assert [i["id"] for i in items] == ["number", "question", "concise"]
    assert all(i["principle_id"] for i in items)
    chosen, rejected = json.loads(row["checklist_chosen"]), json.loads(row["checklist_rejected"])
    for side in (chosen, rejected):
        assert [v["item_id"] for v in side["verdicts"]] == ["number", "question", "concise"]
        assert all(v["verdict"] in ("yes", "no") and v["reason"] for v in side["verdicts"])
    assert chosen["score"]["score"] >= rejected["score"]["score"]
    assert row["score_chosen"] == chosen["score"]["score"] and row["judge_mode"] == "checklist"
    assert row["p_chosen"] == pytest.approx(0.5 + (chosen["score"]["score"] - rejected["score"]["score"]) / 2)
    sft = {r["prompt_id"]: r for r in rows_of(tmp_path, "sft")}
    assert json.loads(sft[row["prompt_id"]]["checklist"]) == items  # the SFT rows carry the prompt's checklist too
    run_dir = tmp_path / "run"
    with RunStore(run_dir) as store:
        assert count_checklists(store, result_fingerprint(run_dir)) == 6
        provenance = store.execute("SELECT source, model, prompt_format, version FROM checklists LIMIT 1")[0]
    assert provenance == ("model", "scripted:checklist-writer", 1, 1)
    assert calls(run_dir, "checklist") == 6  # one call a prompt


def result_fingerprint(run_dir: Path) -> str:
    with RunStore(run_dir) as store:
        return store.meta("settings")["fingerprints"]["checklist"]


def test_a_second_run_makes_no_new_call(make_config, tmp_path):
    config = checklist_config(make_config)
    run(config)
    run_dir = tmp_path / "run"
    before = {role: calls(run_dir, role) for role in ("checklist", "judge")}
    run(config)
    assert {role: calls(run_dir, role) for role in ("checklist", "judge")} == before


def test_the_report_names_the_checklists(make_config, tmp_path):
    run(checklist_config(make_config, report=True))
    report = (tmp_path / "run/report/report.md").read_text()
    assert (
        "Checklists: source model written by scripted:checklist-writer, 6 stored, judged item by item (explicit "
        "aggregation)" in report
    )


def test_implicit_aggregation_compares_the_judges_overall_scores(make_config, tmp_path):
    run(checklist_config(make_config, checklist={**CHECKLIST, "aggregation": "implicit"}))
    rows = rows_of(tmp_path)
    assert rows
    for row in rows:
        chosen, rejected = json.loads(row["checklist_chosen"]), json.loads(row["checklist_rejected"])
        assert row["score_chosen"] == chosen["overall"] and 1 <= chosen["overall"] <= 10
        assert row["p_chosen"] == pytest.approx(0.5 + (chosen["overall"] - rejected["overall"]) / 18)
    with RunStore(tmp_path / "run") as store:
        assert store.meta("settings")["checklist"]["aggregation"] == "implicit"


def test_an_unwritable_checklist_is_the_prompts_recorded_failure(make_config, tmp_path):
    config = checklist_config(
        make_config, checklist={"source": "model", "model": "scripted:checklist-mute", "max_reasks": 1}
    )
    assert main(["run", str(config)]) != 0  # every item failed: over max_failures
    run_dir = tmp_path / "run"
    with RunStore(run_dir) as store:
        assert len(failing_items(store, "checklist", result_fingerprint(run_dir))) == 6
        assert store.count("judgments") == 0  # nothing judged without a checklist, nothing made up
    assert calls(run_dir, "checklist") == 12  # asked again once, then recorded


def judgments_by(make_config, tmp_path: Path, judge: str, max_reasks: int) -> list[dict]:
    """The stored judgments of a run whose checklist judge is `judge` (failures allowed)."""
    judging = {"model": judge, "mode": "checklist", "max_reasks": max_reasks}
    run(checklist_config(make_config, judge=judging, max_failures=100))
    with RunStore(tmp_path / "run") as store:
        return [json.loads(r) for (r,) in store.execute("SELECT record FROM judgments")]


def test_a_judge_reply_without_verdicts_fails_the_items_and_masks_the_pair(make_config, tmp_path):
    records = judgments_by(make_config, tmp_path, "scripted:checklist-silent", max_reasks=1)
    assert records and all(r["status"] == "failed" and r["p_a"] is None for r in records)
    side = records[0]["checklist"]["a"]
    assert side["score"]["score"] is None and side["score"]["status"] == "failed"
    assert side["score"]["failed_share"] == 1.0
    assert all(v["verdict"] == "failed" and v["error"] for v in side["verdicts"])
    assert not (tmp_path / "run/data/preferences.jsonl").exists() or rows_of(tmp_path) == []


def test_samples_are_paired_best_against_worst_by_checklist_score(make_config, tmp_path):
    run(checklist_config(make_config, pairs={"kinds": ["samples"], "k": 4}))
    rows = rows_of(tmp_path)
    assert rows and all(r["pair_kind"] == "samples" for r in rows)
    for row in rows:
        chosen, rejected = json.loads(row["checklist_chosen"]), json.loads(row["checklist_rejected"])
        assert chosen["score"]["score"] >= rejected["score"]["score"]


def test_a_checklist_column_and_its_errors(make_config, tmp_path):
    good = [
        {"id": "number", "requirement": "The response gives a specific number.", "category": "essential"},
        {"id": "concise", "requirement": "The response is at most 15 words long.", "weight": 2, "gate": True},
    ]
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(
        "".join(json.dumps({"prompt": f"How many legs has animal {i}?", "checklist": good}) + "\n" for i in range(3))
    )
    run(checklist_config(make_config, prompts={"path": str(prompts)}, checklist={"source": "column"}))
    assert json.loads(rows_of(tmp_path)[0]["checklist"])[0]["id"] == "number"
    bad = [{"id": "number", "requirement": "x", "weight": 0}]
    prompts.write_text(json.dumps({"prompt": "How many?", "checklist": bad}) + "\n")
    config = checklist_config(
        make_config, output_dir=str(tmp_path / "run2"), prompts={"path": str(prompts)}, checklist={"source": "column"}
    )
    assert main(["run", str(config)]) == 2


@pytest.mark.parametrize(
    ("overrides", "said"),
    [
        ({"checklist": None}, "judge.mode"),
        ({"checklist": {"source": "model"}}, "checklist.model"),
        ({"checklist": {"source": "criteria"}}, "checklist.source: criteria"),
        ({"checklist": {"source": "column", "aggregation": "both"}}, "checklist.aggregation"),
    ],
)
def test_a_bad_checklist_section_is_one_line_and_exit_2(make_config, overrides, said, capsys):
    config = checklist_config(make_config, **overrides)
    assert main(["run", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    assert said in err and "Traceback" not in err


def test_the_forecast_counts_one_judge_call_a_checked_response(make_config, tmp_path):
    """The cost forecast walks mode `checklist` as the run judges it: one call a response (the run's own count), not
    the re-asks of a reply it cannot read."""
    import charter

    config = checklist_config(make_config)
    forecast = charter.estimate(config)
    result = run(config)
    [judge] = [row for row in forecast.rows if row.role == "judge"]
    assert judge.calls.expected == calls(result.run_dir, "judge") > 0


async def _judge_by_halves(model, pair, criteria, settings, principle_ids, judge_fp):
    """A checklist kind of another count: each response checked against the checklist's first item, then against the
    rest, in a call each (four calls a pair where mode `checklist` makes two)."""
    checklist = criteria.checklist
    for items in (checklist.items[:1], checklist.items[1:]):
        half = Checklist(items=items, source=checklist.source, version=checklist.version)
        judged = await judge_checklist_pair(model, pair, half, settings, criteria.aggregation, principle_ids, judge_fp)
    return judged


def test_a_new_mode_that_needs_each_prompts_checklist_is_forecast_as_its_entry_judges(make_config, tmp_path):
    """A mode is one table entry: the forecast asks the entry what context a mode needs and walks the pair through the
    mode's own callables, so a new mode that judges by checklist with another number of calls is counted as the run
    makes them, with no edit to the forecast."""
    import charter

    halves = replace(
        CHECKLIST_MODE, name="checklist-halves", kind=replace(CHECKS_ITEMS, judge_by_checklist=_judge_by_halves)
    )
    register_mode(halves)
    try:
        judge = {"model": "scripted:checklist-judge", "mode": halves.name, "principles_per_pair": 2}
        config = checklist_config(make_config, judge=judge)
        forecast = charter.estimate(config)
        result = run(config)
    finally:
        del MODES[halves.name]
    [judge_row] = [row for row in forecast.rows if row.role == "judge"]
    made = calls(result.run_dir, "judge")
    assert judge_row.calls.expected == made > 0
    assert made == 2 * 2 * result.counts["preferences"]  # four calls a pair: the new entry's count, not two


def test_a_new_mode_that_needs_each_prompts_checklist_is_refused_by_its_name_without_a_checklist_section(
    make_config, capsys
):
    graded = register_mode(replace(CHECKLIST_MODE, name="checklist-graded"))
    try:
        config = make_config(judge={"model": "scripted:checklist-judge", "mode": graded.name})
        assert main(["run", str(config)]) == 2
    finally:
        del MODES[graded.name]
    err = capsys.readouterr().err
    assert "judge mode checklist-graded judges by each prompt's checklist: add a `checklist:` section" in err
    assert "Traceback" not in err


def test_an_outside_judge_with_log_probabilities_gives_each_item_p_yes_and_the_pair_its_probability(
    make_config, tmp_path
):
    sure = 0.9
    with LoopbackServer(reply=checklist_server_reply, alternatives=verdict_alternatives(sure)).start() as server:
        judge = {"model": f"openai-compatible:checklist-judge@{server.openai_url}", "mode": "checklist",
                 "principles_per_pair": 2}  # fmt: skip
        run(checklist_config(make_config, judge=judge))
    assert all(r.body["top_logprobs"] == 5 for r in server.requests)
    rows = rows_of(tmp_path)
    assert rows
    for row in rows:
        chosen, rejected = json.loads(row["checklist_chosen"]), json.loads(row["checklist_rejected"])
        for side in (chosen, rejected):
            for v in side["verdicts"]:
                assert v["p_yes"] == pytest.approx(sure if v["verdict"] == "yes" else 1 - sure)
        gap = chosen["score"]["expected"] - rejected["score"]["expected"]
        assert row["p_chosen"] == pytest.approx(0.5 + gap / 2)  # from the items' P(yes), not the verdicts
        assert chosen["score"]["expected"] != chosen["score"]["score"]


def test_the_report_shows_each_examples_checklist_with_verdicts_and_reasons(make_config, tmp_path):
    run(checklist_config(make_config, report=True))
    report = (tmp_path / "run/report/report.md").read_text()
    examples = report.split("## Examples", 1)[1]
    assert examples.count("| Item | Chosen | Rejected |") == examples.count("### Example ") > 0
    assert "| number: The response gives a specific number. | " in examples
    assert "yes: It does hold." in examples and "no: It does not hold." in examples
    assert "Checklist: score chosen " in examples
    html = (tmp_path / "run/report/report.html").read_text()
    assert '<table class="checklist">' in html and "<td>yes: It does hold.</td>" in html


def test_examples_read_from_the_store_show_the_stored_checklist(make_config, tmp_path):
    from charter.pipeline.report.examples import examples
    from charter.records import Fingerprints

    run(checklist_config(make_config))
    for data in (tmp_path / "run/data").iterdir():
        data.unlink()
    with RunStore(tmp_path / "run") as store:
        fp = Fingerprints.model_validate(store.meta("settings")["fingerprints"])
        shown, source = examples(store, fp)
    assert source.startswith("the judged pairs") and shown
    for example in shown:
        items = example["checklist"]["items"]
        assert [i["item"].split(":")[0] for i in items] == ["number", "question", "concise"]
        assert all(i["chosen"].split(":")[0] in ("yes", "no") for i in items)


def test_the_forecast_counts_one_writer_call_a_prompt_as_the_run_makes_them(make_config, tmp_path, capsys):
    import charter

    config = checklist_config(make_config)
    forecast = charter.estimate(config)
    [writer] = [row for row in forecast.rows if row.role == "checklist"]
    assert writer.model == "scripted:checklist-writer" and forecast.rows[0] is writer
    assert writer.calls.low == writer.calls.expected == 6 and writer.calls.high == 6 * 3  # max_reasks: 2 re-asks
    assert writer.prompt_tokens.expected > 0 and writer.completion_tokens.expected > 0
    assert main(["run", str(config), "--dry-run", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert [r["calls"]["expected"] for r in rows if r["role"] == "checklist"] == [6]
    result = run(config)
    assert writer.calls.expected == calls(result.run_dir, "checklist")


@pytest.mark.parametrize("source", ["column", "criteria"])
def test_the_forecast_counts_no_writer_call_for_a_column_or_the_criteria(make_config, tmp_path, source):
    import charter

    items = [{"id": "number", "requirement": "The response gives a specific number.", "category": "essential"}]
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"How many legs has animal {i}?", "checklist": items}) + "\n"
                               for i in range(3)))  # fmt: skip
    constitution = Path(__file__).parents[2] / "examples" / "rubric-constitution.yaml"
    config = checklist_config(make_config, prompts={"path": str(prompts)}, checklist={"source": source},
                              constitution=str(constitution))  # fmt: skip
    forecast = charter.estimate(config)
    assert {row.role for row in forecast.rows} == {"policy", "critic", "judge"}


def test_the_checklist_example_runs_from_the_command_in_a_fresh_process(tmp_path):
    """`scripted:checklist-writer` and `scripted:checklist-judge` are charter's own test doubles: a fresh `charter`
    process knows them by name (the `charter.scripts` entry points), so the example runs as the guide shows it."""
    import subprocess
    import sys

    example = Path(__file__).resolve().parents[2] / "examples" / "checklist.yaml"
    done = subprocess.run(
        [sys.executable, "-m", "charter.cli", "run", str(example), "--set", f"output_dir={tmp_path / 'run'}"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [json.loads(line) for line in (tmp_path / "run" / "data" / "preferences.jsonl").read_text().splitlines()]
    assert rows and all(r["judge_mode"] == "checklist" and json.loads(r["checklist"]) for r in rows)
    verdicts = json.loads(rows[0]["checklist_chosen"])["verdicts"]
    assert verdicts and all(v["verdict"] in ("yes", "no", "n/a") and v["reason"] for v in verdicts)


def _torn(messages, params):  # noqa: ANN001, ANN202
    """A checklist judge that answers every item yes, then changes its mind in a second object."""
    from charter.checklist.prompt import read_checklist_prompt

    shown = read_checklist_prompt(messages[-1].content)
    assert shown is not None
    said = {i: {"reason": "It does.", "verdict": "yes"} for i, _ in shown[0]}
    unsaid = {i: {"reason": "On second thought, it does not.", "verdict": "no"} for i, _ in shown[0]}
    return json.dumps(said) + "\nWait.\n" + json.dumps(unsaid)


register_script("checklist-torn-run", _torn)


def test_a_judge_that_contradicts_itself_fails_the_items_with_both_readings(make_config, tmp_path):
    records = judgments_by(make_config, tmp_path, "scripted:checklist-torn-run", max_reasks=0)
    assert records and all(r["status"] == "failed" and r["p_a"] is None for r in records)
    verdicts = records[0]["checklist"]["a"]["verdicts"]
    judged = [v for v in verdicts if v["by"] == "judge"]
    assert judged and all(v["verdict"] == "failed" for v in judged)
    assert all("It does." in v["error"] and "On second thought" in v["error"] for v in judged)
