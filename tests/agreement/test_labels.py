"""Sampling, the label store and its bad input, export/import, the terminal UI and the CLI."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from charter.agreement.exchange import ImportResult, export_labels, import_labels
from charter.agreement.labels import LabelError, open_labels, put_label
from charter.agreement.sampling import spotcheck
from charter.cli import app
from charter.errors import RunStoreError
from charter.runs.items import stored_pairs
from charter.runs.labels import labels as label_rows
from charter.runs.labels import sample as sample_rows

from .conftest import make_run

runner = CliRunner()


def many_items(n: int = 60) -> list[dict]:
    probs = [0.55, 0.65, 0.75, 0.85, 0.95, 0.3, 0.1]
    return [
        {"pair_id": f"r{i:03d}", "p_a": probs[i % len(probs)], "principle": ("harm", "honesty", "privacy")[i % 3]}
        for i in range(n)
    ]


def snapshot(run: Path) -> tuple:
    with open_labels(run) as store:
        return (
            sorted(map(tuple, store.execute("SELECT * FROM human_labels"))),
            store.count("label_events"),
            store.count("spot_sample"),
        )


def test_spotcheck_is_stratified_reproducible_and_extends(tmp_path: Path) -> None:
    one = make_run(tmp_path / "one", many_items())
    two = make_run(tmp_path / "two", many_items())
    a, b = spotcheck(one, 20, seed=5), spotcheck(two, 20, seed=5)
    assert [r.pair_id for r in a] == [r.pair_id for r in b] and len(a) == 20
    per_principle = Counter(r.principle_id for r in a)
    assert set(per_principle) == {"harm", "honesty", "privacy"} and min(per_principle.values()) >= 5
    strata = {(r.principle_id, r.confidence_bucket) for r in a}
    assert len(strata) == 15  # 3 principles x 5 confidence buckets, each present
    assert {r.shown_order for r in a} == {"ab", "ba"}
    c = spotcheck(make_run(tmp_path / "three", many_items()), 20, seed=6)
    assert [r.pair_id for r in c] != [r.pair_id for r in a]
    bigger = spotcheck(one, 30, seed=5)
    assert len(bigger) == 30 and [r.pair_id for r in bigger[:20]] == [r.pair_id for r in a]
    assert len(spotcheck(one, 500)) == 60  # capped at the judged pairs


def test_no_judged_pairs_is_a_clear_error(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", [{"pair_id": "f", "p_a": 0.5, "status": "failed"}])
    with pytest.raises(RunStoreError, match="no judged pairs yet .*run the judge stage first"):
        spotcheck(run, 5)
    result = runner.invoke(app, ["agreement", str(run)])
    assert result.exit_code != 0 and "no judged pairs" in str(result.exception)
    with open_labels(run) as store:
        assert store.count("spot_sample") == 0 and store.count("judgments") == 1


def test_bad_labels_are_refused_and_replacements_recorded(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", many_items(10))
    spotcheck(run, 5, seed=0)
    with open_labels(run) as store:
        first = sample_rows(store)[0].pair_id
        with pytest.raises(LabelError, match="pair 'nope' does not exist"):
            put_label(store, "nope", "alice", "a", "ab")
        with pytest.raises(LabelError, match="label 'maybe' is not one of"):
            put_label(store, first, "alice", "maybe", "ab")
        with pytest.raises(LabelError, match="annotator name"):
            put_label(store, first, "<b>x</b>", "a", "ab")
        assert store.count("human_labels") == 0
        put_label(store, first, "alice", "a", "ab")
        put_label(store, first, "alice", "b", "ab")
        rows = label_rows(store)
        assert len(rows) == 1 and rows[0].label == "b" and rows[0].replaced_count == 1
        events = store.execute("SELECT action, label, previous FROM label_events ORDER BY id")
        assert events == [("label", "a", None), ("replace", "b", "a")]


def labeled_run(tmp_path: Path) -> Path:
    run = make_run(tmp_path / "run", many_items(12))
    spotcheck(run, 6, seed=1)
    with open_labels(run) as store:
        sample = sample_rows(store)
        put_label(store, sample[0].pair_id, "alice", "a", sample[0].shown_order)
        put_label(store, sample[1].pair_id, "alice", "tie", sample[1].shown_order)
        put_label(store, sample[0].pair_id, "bob", "b", sample[0].shown_order)
    return run


@pytest.mark.parametrize("fmt", ["argilla", "labelstudio", "csv"])
def test_export_import_round_trip(tmp_path: Path, fmt: str) -> None:
    src = labeled_run(tmp_path)
    out = tmp_path / f"export.{fmt}"
    assert export_labels(src, fmt, out) == 6
    with open_labels(src) as store:
        before = {(r.pair_id, r.annotator, r.label) for r in label_rows(store)}
        store.execute("DELETE FROM human_labels")
    assert import_labels(src, out, fmt) == ImportResult(new=3, replaced=0, unchanged=0)
    with open_labels(src) as store:
        assert {(r.pair_id, r.annotator, r.label) for r in label_rows(store)} == before
    assert import_labels(src, out, fmt) == ImportResult(new=0, replaced=0, unchanged=3)  # nothing stored twice


def test_export_shows_responses_in_recorded_order(tmp_path: Path) -> None:
    run = labeled_run(tmp_path)
    export_labels(run, "csv", tmp_path / "x.csv")
    with open_labels(run) as store:
        pairs = {p.pair_id: p for p in stored_pairs(store)}
        order = {r.pair_id: r.shown_order for r in sample_rows(store)}
    for row in csv.DictReader((tmp_path / "x.csv").open()):
        pair = pairs[row["pair_id"]]
        assert row["response_A"] == (pair.a if order[row["pair_id"]] == "ab" else pair.b)


def test_wrong_format_imports_are_one_line_and_change_nothing(tmp_path: Path) -> None:
    run = labeled_run(tmp_path)
    export_labels(run, "labelstudio", tmp_path / "ls.json")
    export_labels(run, "csv", tmp_path / "ok.csv")
    before = snapshot(run)
    with pytest.raises(LabelError, match=r"ls.json: item 1: missing or malformed 'metadata'"):
        import_labels(run, tmp_path / "ls.json", "argilla")
    with pytest.raises(LabelError, match=r"line 1: not a charter label CSV"):
        import_labels(run, tmp_path / "ls.json", "csv")
    lines = (tmp_path / "ok.csv").read_text().splitlines()
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(lines[:3] + [lines[3].rsplit(",", 1)[0] + ",maybe"] + lines[4:]) + "\n")
    with pytest.raises(LabelError, match=r"bad.csv: line 4: label 'maybe'"):
        import_labels(run, bad, "csv")
    ghost = tmp_path / "ghost.json"
    tasks = json.loads((tmp_path / "ls.json").read_text())
    tasks[1]["data"]["pair_id"] = "ghost"
    tasks[1]["annotations"] = [{"completed_by": 3, "result": [{"type": "choices", "value": {"choices": ["A"]}}]}]
    ghost.write_text(json.dumps(tasks))
    with pytest.raises(LabelError, match=r"ghost.json: item 2: pair 'ghost' does not exist"):
        import_labels(run, ghost, "labelstudio")  # item 1 is valid, but nothing is written
    (tmp_path / "broken.json").write_text('[{"id": 1,\n "data": }]')
    result = runner.invoke(app, ["label", "import", str(run), str(tmp_path / "broken.json"), "--format", "argilla"])
    assert result.exit_code != 0 and "broken.json: line 2: not valid JSON" in str(result.exception)
    assert snapshot(run) == before


def test_tui_labels_from_piped_stdin_and_escapes_markup(tmp_path: Path) -> None:
    items = many_items(4)
    items[0]["a"] = "[bold red]not markup[/bold red] <script>x</script>"
    run = make_run(tmp_path / "run", items)
    spotcheck(run, 4, seed=0)
    result = runner.invoke(app, ["label", str(run), "--tui", "--annotator", "carol"], input="1\n2\nu\nt\ns\nx\n3\n")
    assert result.exit_code == 0, result.output
    assert "undid the label" in result.output and "unknown key 'x'" in result.output
    assert "4 / 4 labeled by carol" in result.output
    assert "[bold red]not markup[/bold red] <script>x</script>" in result.output  # all 4 pairs are shown
    with open_labels(run) as store:
        sample = sample_rows(store)
        labels = {r.pair_id: r.label for r in label_rows(store, "carol")}
    # keys: 1 (A) on pair 1, 2 (B) on pair 2, undo pair 2, t on pair 2, s on pair 3, 3 (tie) on pair 4
    expected = ["first", "tie", "skip", "tie"]
    from charter.agreement.labels import to_pair_terms

    assert [labels[r.pair_id] for r in sample] == [to_pair_terms(e, r.shown_order) for e, r in zip(expected, sample)]


def test_cli_spotcheck_agreement_and_export(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", many_items(30), config={"agreement": {"bootstrap_samples": 100}})
    result = runner.invoke(app, ["spotcheck", str(run), "--n", "12", "--seed", "3"])
    assert result.exit_code == 0 and "12 pairs" in result.output
    result = runner.invoke(app, ["agreement", str(run)])
    assert "no human labels yet" in str(result.exception)
    with open_labels(run) as store:
        for r in sample_rows(store):
            put_label(store, r.pair_id, "dana", "a", r.shown_order)
    result = runner.invoke(app, ["agreement", str(run)])
    assert result.exit_code == 0, result.output
    assert "Cohen's kappa" in result.output and (run / "report" / "agreement.md").exists()
    result = runner.invoke(app, ["label", "export", str(run), "--format", "argilla", "-o", str(tmp_path / "a.json")])
    assert result.exit_code == 0 and len(json.loads((tmp_path / "a.json").read_text())) == 12
