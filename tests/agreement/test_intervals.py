"""Intervals valid at every n: coverage at n = 5, 10, 20 with true rates near 0, 0.5 and 1 for each interval kind
shown (a share's, kappa's, the PPI mean's, the people-only mean's), and no zero-width interval where every label
agrees."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import charter
from charter.cli import app
from charter.stats import agreement as stats
from charter.stats.ppi import Estimate, labels_needed, ppi_mean
from tests.agreement.conftest import make_run
from tests.support.rundir import RunBuilder

RATES = (0.02, 0.5, 0.98)
SIZES = (5, 10, 20)
REPLICATIONS = 300
BOOTSTRAP = 40


def _coverage(draw, interval, truth: float, seed: int) -> float:
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(REPLICATIONS):
        low, high = interval(draw(rng))
        hits += low <= truth <= high
    return hits / REPLICATIONS


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("rate", RATES)
def test_a_share_covers_at_every_n(n: int, rate: float) -> None:
    ids = np.arange(n).astype(str)

    def interval(hits: np.ndarray) -> list[float]:
        ci = stats.share(hits, ids, BOOTSTRAP, 0).ci
        assert ci is not None
        return ci

    assert _coverage(lambda rng: (rng.random(n) < rate).astype(float), interval, rate, seed=n) >= 0.93


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("rate", RATES)
def test_the_ppi_and_people_only_means_cover_at_every_n(n: int, rate: float) -> None:
    """A judge right 80% of the time labels N = 200 items; people label n of them."""
    big_n = 200

    def draw(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        people = (rng.random(big_n) < rate).astype(float)
        judge = np.where(rng.random(big_n) < 0.8, people, 1 - people)
        return judge, people, rng.choice(big_n, n, replace=False)

    for method in ("ppi++", "human"):

        def interval(world: tuple, method: str = method) -> tuple[float, float]:
            judge, people, labelled = world
            found = ppi_mean(judge, judge[labelled], people[labelled], method=method).within(0, 1)  # type: ignore[arg-type]
            return found.low, found.high

        assert _coverage(draw, interval, rate, seed=n) >= 0.93, method


@pytest.mark.parametrize("n", (10, 20))
def test_kappa_covers_with_a_judge_that_agrees_nine_times_in_ten(n: int) -> None:
    """People pick a or b evenly; the judge agrees with 0.9: kappa's true value is 0.8."""
    ids = np.arange(n).astype(str)

    def draw(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        h = (rng.random(n) < 0.5).astype(int)
        return h, np.where(rng.random(n) < 0.9, h, 1 - h)

    def interval(pair: tuple) -> list[float]:
        ci = stats.pairwise_figures(pair[0], pair[1], ids, BOOTSTRAP, 0).kappa.ci
        return ci if ci is not None else [-1.0, 1.0]  # undefined (one category on both sides): no claim

    assert _coverage(draw, interval, 0.8, seed=n) >= 0.93


def test_agreement_and_kappa_of_ten_agreeing_labels_are_not_a_point() -> None:
    h = np.array([0, 1] * 5)
    figures = stats.pairwise_figures(h, h.copy(), np.arange(10).astype(str), 200, 0)
    low, high = figures.agreement.ci or [1.0, 1.0]
    assert figures.agreement.value == 1.0 and low < 0.75 and high == 1.0  # exact: 0.025 ** 0.1 = 0.69
    k_low, k_high = figures.kappa.ci or [1.0, 1.0]
    assert k_low < 0.5 and k_high == 1.0


def test_ten_ties_give_a_ppi_interval_with_width() -> None:
    found = ppi_mean(np.full(50, 0.5), np.full(10, 0.5), np.full(10, 0.5))
    assert found.value == 0.5 and found.low < 0.3 and found.high > 0.7


def _agreeing_run(tmp_path: Path, labelled: int = 10) -> Path:
    """40 judged pairs with a dataset; `labelled` spot checks whose label is the judge's pick."""
    items = [{"pair_id": f"q{i:02d}", "p_a": 0.9 if i % 2 else 0.1, "principle": "harm"} for i in range(40)]
    run = make_run(tmp_path / "run", items, preferences=True)
    sample = charter.spotcheck(run, n=labelled, seed=1)
    with RunBuilder.reopen(run) as builder:
        for k, row in enumerate(sample):
            picked = "a" if int(row.pair_id[1:]) % 2 else "b"
            builder.label(row.pair_id, "alice", picked, row.shown_order, created_at=1000.0 + k)
    return run


def test_ten_agreeing_labels_give_agreement_and_ppi_intervals_below_0_9(tmp_path: Path) -> None:
    run = _agreeing_run(tmp_path)
    summary = charter.agreement_report(run)
    agreement = summary.judge_vs_human.agreement
    assert agreement.value == 1.0 and agreement.n == 10 and agreement.ci is not None and agreement.ci[0] < 0.9
    assert summary.judge_vs_human.kappa.ci is not None and summary.judge_vs_human.kappa.ci[0] < 0.9
    found = summary.human_preference
    assert found is not None and found.overall.ppi is not None and found.overall.human is not None
    assert found.overall.ppi.value == 1.0 and found.overall.ppi.low < 0.9
    assert found.overall.human.low < 0.9
    more = labels_needed(found.overall.ppi, 0.05)
    assert more is not None and more > 100


def test_a_zero_width_interval_is_never_narrow_enough() -> None:
    point = Estimate(value=1.0, low=1.0, high=1.0, se=0.0, n_human=10, n_judge=40, lam=0.0, method="human")
    assert labels_needed(point, 0.05) is None


def test_target_width_does_not_call_ten_agreeing_labels_narrow_enough(tmp_path: Path) -> None:
    run = _agreeing_run(tmp_path)
    result = CliRunner().invoke(app, ["agreement", str(run), "--target-width", "0.05"])
    assert result.exit_code == 0, result.output
    assert "already within" not in result.output and "more labels would bring it to 0.05" in result.output
    assert "[1.000, 1.000]" not in result.output


def test_the_publish_gate_does_not_pass_ten_agreeing_labels_on_a_high_bar(tmp_path: Path) -> None:
    from charter.agreement.config import AgreementConfig
    from charter.agreement.gate import evaluate_gate

    run = _agreeing_run(tmp_path)
    assert not evaluate_gate(run, AgreementConfig(min_agreement=0.9, use_lower_ci_bound=True)).passed
    assert not evaluate_gate(run, AgreementConfig(min_human_preference_rate=0.9)).passed
