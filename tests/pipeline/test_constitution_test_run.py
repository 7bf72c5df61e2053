"""`judge.constitution_test` in a run: after judging, the run's constitution is tested against its judge on a sample
of its own pairs; the result is in the store, report/constitution-test.*, the run report, `charter status` and the
card, is not made twice, and `max_insensitive` gates `charter push`."""

from __future__ import annotations

from pathlib import Path

import pytest

import charter
from charter.cli import main
from charter.errors import GateFailed
from charter.lab.checks import stored_test
from charter.runs.counts import stage_states
from charter.runs.store import RunStore, open_store
from charter.runs.usage import stored_usage

PROMPTS = {"inline": [f"Question {i}: how do I do thing {i}?" for i in range(24)]}


def _run(make_config, **test) -> Path:
    config = make_config(
        judge={"model": "scripted:cai", "constitution_test": {"n": 20, **test}}, prompts=PROMPTS, report=True
    )
    return charter.run(config).run_dir


def test_a_judge_that_ignores_its_principles_is_flagged_in_the_run(make_config, capsys) -> None:
    run_dir = _run(make_config)
    with open_store(run_dir) as store:
        result = stored_test(store)
        usage = {u.role: u.calls + u.cached for u in stored_usage(store)}
    assert result is not None and result.pairs == 20
    # scripted:cai prefers the safe response whatever the question says: no principle's verdicts follow its text
    assert result.flagged == [s.principle for s in result.sensitivity] and len(result.flagged) > 1
    assert usage["constitution_test"] == result.judge_calls  # asked (the run's own judgments answer some from cache)
    assert (run_dir / "report" / "constitution-test.md").read_text().startswith("# Constitution test: harmless")
    report = (run_dir / "report" / "report.md").read_text()
    assert "## Constitution test" in report and "**insensitive**" in report
    assert main(["status", str(run_dir)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "constitution_test: tested" in out and "flagged insensitive" in out and "stopped:" not in out


def test_the_same_test_is_not_made_twice(make_config) -> None:
    run_dir = _run(make_config)
    charter.run(run_dir.parent / "config.yaml")  # the same config again
    with RunStore(run_dir) as store:
        stages = stage_states(store)
    assert "already stored" in str(stages["constitution_test"]["counts"]["reason"])


def test_max_insensitive_gates_publishing_and_the_card_records_an_override(make_config, tmp_path: Path) -> None:
    run_dir = _run(make_config, max_insensitive=0)
    with pytest.raises(GateFailed, match="constitution-test gate failed: .* flagged insensitive"):
        charter.publish(run_dir, "org/x", dry_run=tmp_path / "out")
    result = charter.publish(run_dir, "org/x", dry_run=tmp_path / "out", override_gate=True)
    assert result.constitution_gate is not None and result.constitution_gate.overridden
    card = (tmp_path / "out" / "README.md").read_text()
    assert "## Constitution test" in card and "FAILED and overridden" in card


def test_a_panel_is_refused_a_constitution_test(make_config, capsys) -> None:
    config = make_config(judge={"models": ["scripted:cai", "scripted:echo"], "constitution_test": {"n": 20}})
    assert main(["run", str(config)]) == 2
    assert "judge.constitution_test: the constitution test measures one judge model" in capsys.readouterr().err
