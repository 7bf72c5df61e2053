"""`charter agreement` estimates how often people prefer the dataset's chosen responses: PPI beside people-only and
judge-only figures, on a run whose judge is overconfident, with a real stratified spot-check sample."""

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import charter
from charter.cli import app
from tests.agreement.conftest import make_run
from tests.support.rundir import RunBuilder


def _overconfident_run(tmp_path: Path, pairs: int = 300, sampled: int = 100) -> tuple[Path, float]:
    """The judge's p_chosen runs 0.55-0.99 (mean about 0.77); people prefer its chosen response with probability
    0.2 + 0.6 * (p_chosen - 0.5) / 0.5, about half the time. Returns the run and the true share over all rows."""
    rng = np.random.default_rng(5)
    p_chosen = rng.uniform(0.55, 0.99, pairs)
    a_chosen = rng.random(pairs) < 0.5
    p_a = np.where(a_chosen, p_chosen, 1 - p_chosen)
    prefers_chosen = rng.random(pairs) < 0.2 + 0.6 * (p_chosen - 0.5) / 0.5
    items = [
        {"pair_id": f"q{i:03d}", "p_a": float(p_a[i]), "principle": "harm" if i % 3 else "honesty"}
        for i in range(pairs)
    ]
    run = make_run(tmp_path / "run", items, preferences=True)
    sample = charter.spotcheck(run, n=sampled, seed=1)
    with RunBuilder.reopen(run) as builder:
        for row in sample:
            i = int(row.pair_id[1:])
            chosen = "a" if a_chosen[i] else "b"
            label = chosen if prefers_chosen[i] else ("b" if chosen == "a" else "a")
            builder.label(row.pair_id, "alice", label, row.shown_order, created_at=1000.0 + i)
    return run, float(prefers_chosen.mean())


def test_ppi_corrects_an_overconfident_judge_where_its_own_figure_does_not(tmp_path: Path) -> None:
    run, truth = _overconfident_run(tmp_path)
    found = charter.agreement_report(run).human_preference
    assert found is not None and found.overall.rows == 300 and found.overall.labeled == 100
    ppi, human, judge = found.overall.ppi, found.overall.human, found.overall.judge
    assert ppi is not None and human is not None and judge is not None
    assert ppi.low <= truth <= ppi.high and human.low <= truth <= human.high
    assert not judge.low <= truth <= judge.high and judge.value > 0.7  # the judge's own figure misses by far
    assert ppi.width < human.width and 0 < ppi.lam <= 1 and ppi.weighted
    assert set(found.by_principle) == {"harm", "honesty"}
    assert sum(g.rows for g in found.by_principle.values()) == 300


def test_the_agreement_page_and_command_show_the_three_figures(tmp_path: Path) -> None:
    run, _ = _overconfident_run(tmp_path)
    result = CliRunner().invoke(app, ["agreement", str(run)])
    assert result.exit_code == 0, result.output
    page = (run / "report" / "agreement.md").read_text()
    assert "## How often people prefer the chosen response" in page
    assert "| all rows | 300 | 100 |" in page and "| principle honesty |" in page


def test_the_gate_holds_the_ppi_lower_bound_and_the_card_shows_the_estimates(tmp_path: Path) -> None:
    from charter.agreement.config import AgreementConfig
    from charter.agreement.gate import evaluate_gate
    from charter.hub.card import agreement_rows

    run, _ = _overconfident_run(tmp_path)
    failed = evaluate_gate(run, AgreementConfig(min_human_preference_rate=0.7))
    assert not failed.passed and failed.figure == "human_preference" and "below the bar 0.7" in failed.message
    passed = evaluate_gate(run, AgreementConfig(min_human_preference_rate=0.3))
    assert passed.passed and failed.value == passed.value and passed.value is not None and 0.3 < passed.value < 0.7
    rows = {r["figure"]: r for r in agreement_rows(charter.agreement_report(run))}
    ppi = rows["people prefer the chosen response: PPI estimate (judge corrected by the labels)"]
    judge = rows["people prefer the chosen response: the judge's own mean p_chosen (uncorrected)"]
    assert ppi["n"] == "100" and judge["n"] == "300" and float(judge["value"]) > float(ppi["value"])


def test_an_active_sample_draws_where_the_judge_is_unsure_and_grows_without_breaking_its_design(
    tmp_path: Path,
) -> None:
    from charter.agreement.labels import open_labels, require_judged
    from charter.agreement.sampling import uncertainty
    from charter.errors import ArgumentError

    rng = np.random.default_rng(2)
    p_a = np.where(rng.random(400) < 0.7, rng.choice([0.02, 0.98], 400), rng.uniform(0.35, 0.65, 400))
    run = make_run(tmp_path / "run", [{"pair_id": f"r{i:03d}", "p_a": float(p)} for i, p in enumerate(p_a)])
    first = charter.spotcheck(run, n=60, seed=3, strategy="active")
    assert 40 <= len(first) <= 80 and all(r.inclusion_probability for r in first)
    with open_labels(run) as store:
        judged = require_judged(store)
    unsure = np.mean([uncertainty(judged[r.pair_id]) > 0.3 for r in first])
    assert unsure > 0.6  # a third of the pairs are uncertain; most of the sample is
    grown = charter.spotcheck(run, add=60)
    before = {r.pair_id: r.inclusion_probability for r in first}
    after = {r.pair_id: r.inclusion_probability for r in grown}
    assert set(before) <= set(after) and len(after) > len(before)
    assert all(after[k] >= before[k] for k in before)  # the design grew: every probability with it
    assert [r.pair_id for r in grown][: len(first)] == [r.pair_id for r in first]  # labeling order kept
    with pytest.raises(ArgumentError, match="drawn active"):
        charter.spotcheck(run, n=200, strategy="stratified")


def test_active_labels_are_weighted_back_and_the_command_says_how_many_more_are_needed(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    pairs = 400
    p_chosen = np.where(rng.random(pairs) < 0.6, 0.97, rng.uniform(0.52, 0.7, pairs))
    prefers_chosen = rng.random(pairs) < p_chosen - 0.1  # a slightly overconfident judge
    items = [{"pair_id": f"s{i:03d}", "p_a": float(p_chosen[i])} for i in range(pairs)]
    run = make_run(tmp_path / "run", items, preferences=True)
    drawn = CliRunner().invoke(app, ["spotcheck", str(run), "--n", "80", "--strategy", "active"])
    assert drawn.exit_code == 0 and "spot-check sample (active)" in drawn.output, drawn.output
    sample = charter.spotcheck(run)  # the stored sample: a smaller default n changes nothing
    with RunBuilder.reopen(run) as builder:
        for row in sample:
            i = int(row.pair_id[1:])
            builder.label(row.pair_id, "alice", "a" if prefers_chosen[i] else "b", row.shown_order, created_at=1.0 + i)
    result = CliRunner().invoke(app, ["agreement", str(run), "--target-width", "0.05"])
    assert result.exit_code == 0, result.output
    found = charter.agreement_report(run).human_preference
    assert found is not None and found.design == "active" and found.overall.ppi is not None
    truth = float(prefers_chosen.mean())
    assert found.overall.ppi.low <= truth <= found.overall.ppi.high and found.overall.ppi.weighted
    assert "people prefer the chosen response: PPI" in result.output
    assert "more labels would bring it to 0.05" in result.output and "--add" in result.output
    assert "inverse inclusion probability (active sample)" in (run / "report" / "agreement.md").read_text()
