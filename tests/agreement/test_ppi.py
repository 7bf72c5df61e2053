"""Prediction-powered estimates, checked against ppi-python and by simulation (numpy, seeded).

The worlds: N = 2,000 items the judge labels, n = 100 that people label, each item drawn from a population where
people prefer A half the time. The truth is that population share, 0.5: the estimand of PPI (the items at hand are a
sample of what the data stands for)."""

import numpy as np
import pytest

from charter.errors import ArgumentError, DatasetError
from charter.stats.ppi import (
    Estimate,
    inclusion_probabilities,
    judge_mean,
    poisson_sample,
    ppi_mean,
)

N, n = 2000, 100


def _close(estimate: Estimate, value: float, interval: tuple, floored: bool = False) -> None:
    """ppi-python's point estimate; an interval holding its normal one, as wide but for the small-sample terms (t on
    n - 1 degrees of freedom, n - 1 in the variance) unless the rectifier's variance floor binds."""
    low, high = (float(np.ravel(end)[0]) for end in interval)
    assert estimate.value == pytest.approx(float(np.ravel(value)[0]), abs=1e-12)
    assert estimate.low <= low and estimate.high >= high
    if not floored:
        assert estimate.width == pytest.approx(high - low, rel=0.025)


def test_ppi_and_ppi_plus_plus_match_ppi_python() -> None:
    ppi_py = pytest.importorskip("ppi_py")
    rng = np.random.default_rng(7)
    for noise in (0.2, 1.5):  # a good judge (lam clipped at 1) and a poor one (lam strictly between 0 and 1)
        human = (rng.random(n) < 0.6).astype(float)
        judged = np.clip(human + rng.normal(0, noise, n), 0, 1)
        judge_all = np.clip((rng.random(N) < 0.6) + rng.normal(0, noise, N), 0, 1)
        tuned = ppi_mean(judge_all, judged, human, alpha=0.1)
        _close(
            tuned,
            ppi_py.ppi_mean_pointestimate(human, judged, judge_all),
            ppi_py.ppi_mean_ci(human, judged, judge_all, alpha=0.1),
            floored=noise < 1,  # a good judge: the rectifier varies less than the floor allows at n = 100
        )
        classical = ppi_mean(judge_all, judged, human, alpha=0.1, method="ppi")
        _close(
            classical,
            ppi_py.ppi_mean_pointestimate(human, judged, judge_all, lam=1),
            ppi_py.ppi_mean_ci(human, judged, judge_all, alpha=0.1, lam=1),
            floored=noise < 1,
        )
        people = ppi_mean(judge_all, judged, human, alpha=0.1, method="human")
        _close(people, human.mean(), ppi_py.classical_mean_ci(human, alpha=0.1))
        assert classical.lam == 1 and people.lam == 0 and tuned.n_human == n and tuned.n_judge == N
    assert 0 < tuned.lam < 1  # the poor judge: power tuning shrinks its weight


def _biased_judge_world(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """People prefer A in half the items; the judge is right 80% of the time and every error says A."""
    rng = np.random.default_rng(seed)
    people = (rng.random(N) < 0.5).astype(float)
    judge = np.where(people == 1, 1.0, (rng.random(N) < 0.4).astype(float))
    return people, judge


def test_ppi_covers_the_truth_with_narrower_intervals_where_the_judge_alone_does_not() -> None:
    covered = {"ppi": 0, "human": 0, "judge": 0}
    widths = {"ppi": [], "human": []}
    accuracy = []
    seeds = 1000
    for seed in range(seeds):
        people, judge = _biased_judge_world(seed)
        accuracy.append((people == judge).mean())
        labeled = np.random.default_rng(10_000 + seed).choice(N, n, replace=False)
        truth = 0.5
        estimates = {
            "ppi": ppi_mean(judge, judge[labeled], people[labeled]),
            "human": ppi_mean(judge, judge[labeled], people[labeled], method="human"),
            "judge": judge_mean(judge),
        }
        for name, estimate in estimates.items():
            covered[name] += estimate.low <= truth <= estimate.high
        widths["ppi"].append(estimates["ppi"].width)
        widths["human"].append(estimates["human"].width)
    assert np.mean(accuracy) == pytest.approx(0.8, abs=0.005)
    assert 0.93 <= covered["ppi"] / seeds <= 0.97
    assert 0.93 <= covered["human"] / seeds <= 0.97
    assert covered["judge"] / seeds < 0.5
    assert np.mean(widths["ppi"]) <= 0.8 * np.mean(widths["human"])  # measured: 0.77 (coverage 0.943)


def _uncertain_judge_world(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A calibrated judge, sure of 70% of the items (p 0.02 or 0.98) and unsure of the rest (p in 0.3..0.7)."""
    rng = np.random.default_rng(seed)
    sure = rng.random(N) < 0.7
    p = np.where(sure, np.where(rng.random(N) < 0.5, 0.02, 0.98), rng.uniform(0.3, 0.7, N))
    people = (rng.random(N) < p).astype(float)
    return people, p


def test_active_selection_narrows_the_interval_and_keeps_coverage() -> None:
    seeds = 1000
    covered = {"uniform": 0, "active": 0}
    widths: dict[str, list[float]] = {"uniform": [], "active": []}
    sizes = []
    for seed in range(seeds):
        people, p = _uncertain_judge_world(seed)
        truth = 0.5
        rng = np.random.default_rng(20_000 + seed)
        labeled = rng.choice(N, n, replace=False)
        uniform = ppi_mean(p, p[labeled], people[labeled])
        pi = inclusion_probabilities(np.sqrt(p * (1 - p)), n)
        drawn = poisson_sample(pi, rng.random(N))
        sizes.append(drawn.size)
        active = ppi_mean(p, p[drawn], people[drawn], weights=1 / pi[drawn])
        assert active.weighted and not uniform.weighted
        for name, estimate in (("uniform", uniform), ("active", active)):
            covered[name] += estimate.low <= truth <= estimate.high
            widths[name].append(estimate.width)
    assert np.mean(sizes) == pytest.approx(n, abs=1.5)  # the same number of labels, on average
    assert 0.93 <= covered["active"] / seeds <= 0.97 and 0.92 <= covered["uniform"] / seeds <= 0.97
    assert np.mean(widths["active"]) < 0.9 * np.mean(widths["uniform"])  # measured: 0.85


def test_weighted_estimate_with_equal_probabilities_is_the_uniform_one() -> None:
    people, judge = _biased_judge_world(3)
    labeled = np.random.default_rng(3).choice(N, n, replace=False)
    uniform = ppi_mean(judge, judge[labeled], people[labeled], method="ppi")
    weighted = ppi_mean(judge, judge[labeled], people[labeled], method="ppi", weights=np.full(n, N / n))
    assert weighted.value == pytest.approx(uniform.value)
    assert weighted.width == pytest.approx(uniform.width, rel=0.05)


def test_inclusion_probabilities_sum_to_n_stay_in_bounds_and_grow_with_n() -> None:
    u = np.r_[np.full(10, 5.0), np.full(990, 0.01), 0.0]
    small, large = inclusion_probabilities(u, 20), inclusion_probabilities(u, 60)
    for pi, total in ((small, 20), (large, 60)):
        assert pi.sum() == pytest.approx(total) and pi.max() <= 1 and pi.min() > 0
    assert np.all(large >= small - 1e-12) and np.all(small[:10] == 1.0)
    draws = np.random.default_rng(0).random(u.size)
    assert set(poisson_sample(small, draws)) <= set(poisson_sample(large, draws))  # --add only adds


def test_bad_inputs_are_one_clear_error() -> None:
    with pytest.raises(DatasetError, match="at least two human labels"):
        ppi_mean([0.5, 0.5], [1.0], [1.0])
    with pytest.raises(DatasetError, match="3 human labels but 2 judge labels"):
        ppi_mean([0.5] * 5, [1.0, 0.0], [1.0, 0.0, 1.0])
    with pytest.raises(DatasetError, match="at least 1"):
        ppi_mean([0.5] * 5, [1.0, 0.0], [1.0, 0.0], weights=[0.5, 2.0])
    with pytest.raises(
        ArgumentError, match=r"judge_all\[1\]: must be a finite number at least 0 and at most 1 \(got nan\)"
    ):
        ppi_mean([0.5, float("nan")], [1.0, 0.0], [1.0, 0.0])
    with pytest.raises(ArgumentError, match=r"human_labeled\[0\]: must be at least 0 and at most 1 \(got 2.0\)"):
        ppi_mean([0.5, 0.5], [1.0, 0.0], [2.0, 0.0])
