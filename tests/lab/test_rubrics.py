"""`charter constitutions learn-rubrics`: from pairs labelled by a planted rule, the scripted proposer offers yes/no
criteria (the planted one among others), the scripted checklist judge answers them truthfully, rejection sampling
keeps the planted one only, and the held-out report says how far people agree with it and that it beats chance; a
judge at chance is reported as such, never dressed up."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from charter.checklist import ChecklistItem, ItemVerdict, checklist_from_criteria
from charter.cli import app, main
from charter.constitutions import load_constitution
from charter.errors import NoSignal
from charter.lab.api import learn_rubrics
from charter.lab.rubrics import Share, chance_verdict, gain, item_hit, parse_criteria, report_markdown, wilson_share
from charter.providers import register_script
from charter.testing.lab import CRITERIA, make_pairs, register_lab_models
from tests.support.tiny_models import write_jsonl

register_lab_models()
NUMBER = CRITERIA["number"][0]


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("rubrics") / "pairs.jsonl", make_pairs(60, "number", seed=3))


def test_the_planted_criterion_is_kept_validated_and_written(planted: Path, tmp_path: Path) -> None:
    out = tmp_path / "learned.yaml"
    result = learn_rubrics(
        planted, "scripted:rubric-proposer", judge="scripted:checklist-judge", base="harmless", output=out, cache=None
    )
    report = result.report
    by_id = {c.id: c for c in report.candidates}
    [kept] = report.kept
    assert by_id[kept].requirement == NUMBER and by_id[kept].consistency == 1.0
    assert all(c.consistency is not None and c.consistency < 0.75 for c in report.candidates if not c.kept)
    assert report.test_pairs == 18 and report.held_out.n == 18 and report.held_out.value == 1.0
    assert report.held_out.ci is not None and 0.8 < report.held_out.ci[0] < 1.0  # Wilson at n=18, not a point
    held = by_id[kept].held_out
    assert held is not None and held.value == 1.0 and held.n == 18
    adds = by_id[kept].adds
    assert adds is not None and adds.value == pytest.approx(0.5) and adds.ci is not None
    assert 0.0 < adds.ci[0] < 0.5 < adds.ci[1] < 1.0  # +0.5 on each of 18 pairs: clear of 0, never a point
    # the base's principles as whole items are ones the scripted judge cannot check: every pair a tie
    assert report.base is not None and report.base.value == 0.5 and report.base_name == "harmless"
    assert "above chance" in report.verdict
    written = load_constitution(out)
    assert written.hash == result.constitution.hash == report.constitution_hash
    assert written.principle_ids[:-1] == load_constitution("harmless").principle_ids
    [item] = checklist_from_criteria(written).items
    assert item.requirement == NUMBER and item.category == "important" and item.principle_id == "learned-rubric"
    page = (tmp_path / "learned.report.md").read_text()
    assert page.startswith("# Learned rubric") and "above chance" in page
    assert json.loads((tmp_path / "learned.report.json").read_text())["kept"] == [kept]


def test_a_judge_at_chance_is_reported_as_at_chance(planted: Path) -> None:
    result = learn_rubrics(
        planted,
        "scripted:rubric-proposer",
        judge="scripted:checklist-coin",
        keep_threshold=0.5,
        min_decided=1,
        cache=None,
    )
    report = result.report
    assert report.kept and report.held_out.ci is not None
    assert report.held_out.ci[0] <= 0.5 <= report.held_out.ci[1]
    assert "not distinguishable from chance" in report.verdict and "not distinguishable" in report_markdown(report)


def test_no_consistent_criterion_writes_no_constitution_and_says_so(
    planted: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "none.yaml"
    with pytest.raises(NoSignal) as caught:
        learn_rubrics(planted, "scripted:rubric-proposer", judge="scripted:checklist-coin", output=out, cache=None)
    assert caught.value.report is not None and caught.value.report.kept == []
    assert not out.exists() and (tmp_path / "none.report.md").is_file()
    code = main(
        [
            "constitutions",
            "learn-rubrics",
            "--pairs",
            str(planted),
            "--model",
            "scripted:rubric-proposer",
            "--judge",
            "scripted:checklist-coin",
            "-o",
            str(out),
            "--cache",
            "",
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "no rubric is learned" in err[0]


def test_the_command_writes_the_constitution_and_prints_the_verdict(planted: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli.yaml"
    result = CliRunner().invoke(
        app,
        [
            "constitutions",
            "learn-rubrics",
            "--pairs",
            str(planted),
            "--model",
            "scripted:rubric-proposer",
            "--judge",
            "scripted:checklist-judge",
            "-o",
            str(out),
            "--cache",
            "",
        ],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    assert "verdict: the learned rubric agrees with people above chance" in result.output
    assert load_constitution(out).has_criteria


def test_unusable_proposals_are_counted_never_guessed(planted: Path) -> None:
    def half_mute(messages, params):  # noqa: ANN001, ANN202
        if "task 1" in messages[-1].content:
            return "no JSON here"
        return json.dumps({"criteria": [{"requirement": NUMBER, "kind": "principle"}]})

    register_script("rubric-half-mute", half_mute)
    report = learn_rubrics(planted, "scripted:rubric-half-mute", judge="scripted:checklist-judge", cache=None).report
    asked = report.proposal_pairs
    assert (
        0 < report.proposals_failed < asked and report.kept and report.candidates_raw == asked - report.proposals_failed
    )


def test_the_proposers_reply_is_read_strictly() -> None:
    reply = (
        'Sure: {"criteria": [{"requirement": "The response  is short.", "kind": "hard_rule"}, '
        '{"requirement": "x", "kind": "vibe"}, {"kind": "pitfall"}]}'
    )
    assert parse_criteria(reply) == [("The response is short.", "hard_rule")]
    assert parse_criteria("nothing") is None and parse_criteria('{"principles": []}') is None


def test_an_item_picks_a_side_only_where_its_verdicts_differ() -> None:
    item = ChecklistItem(id="x", requirement="Has x.", weight=1.0)
    pitfall = ChecklistItem(id="x", requirement="Pads.", weight=-0.9)
    v = lambda said: ItemVerdict(item_id="x", verdict=said)  # noqa: E731
    assert item_hit(item, v("yes"), v("no")) == 1.0 and item_hit(item, v("no"), v("yes")) == 0.0
    assert item_hit(item, v("yes"), v("yes")) == 0.5 and item_hit(item, v("n/a"), v("no")) == 0.5
    assert item_hit(item, v("failed"), v("no")) is None
    assert item_hit(pitfall, v("no"), v("yes")) == 1.0 and item_hit(pitfall, v("yes"), v("no")) == 0.0


def test_the_intervals_are_valid_at_their_n() -> None:
    share = wilson_share([1.0, 1.0, 1.0, None])
    assert share.n == 3 and share.failed == 1 and share.value == 1.0
    assert share.ci is not None and share.ci[0] < 0.5  # three of three is no certainty
    assert wilson_share([None]).value is None
    same = gain([1.0] * 5, [0.0] * 5)
    assert same.value == 1.0 and same.ci is not None and same.ci[0] < 0.5  # five pairs: wide, never zero width
    steady = gain([1.0] * 18, [0.5] * 18)  # the criterion turns every tie into a win: +0.5 on all 18 pairs
    assert steady.value == 0.5 and steady.ci is not None and 0.0 < steady.ci[0] < 0.5 < steady.ci[1] < 0.75
    assert gain([None, 1.0], [0.0, None]).n == 0
    assert "not distinguishable" in chance_verdict(Share(value=0.6, ci=[0.4, 0.78], n=20))
    assert "less often than chance" in chance_verdict(Share(value=0.2, ci=[0.08, 0.42], n=20))
    assert "unknown" in chance_verdict(Share(value=None, ci=None, n=0))


def test_on_the_shared_human_pairs_the_report_is_held_out_and_honest(shared_data: Path) -> None:
    """The scripted criteria (numbers, questions, courtesy, capitals, length) do not explain the HHH labels: none is
    consistent enough to keep, and with a lower bar the one kept is reported at chance on the held-out rows."""
    pairs = shared_data / "human_preferences" / "hhh_harmless_helpful.jsonl"
    models = ("scripted:rubric-proposer",)
    with pytest.raises(NoSignal) as caught:
        learn_rubrics(pairs, *models, judge="scripted:checklist-judge", seed=1, cache=None)
    report = caught.value.report
    assert report.pairs == 117 and report.test_pairs == 35 and report.proposal_pairs == report.train_pairs == 82
    assert report.kept == [] and "no criterion was kept" in report.verdict
    lower = learn_rubrics(pairs, *models, judge="scripted:checklist-judge", seed=1, keep_threshold=0.6, cache=None)
    held = lower.report.held_out
    assert len(lower.report.kept) == 1 and held.n == 35 and held.ci is not None  # every held-out row, only those
    assert held.ci[0] <= 0.5 <= held.ci[1] and "not distinguishable from chance" in lower.report.verdict
