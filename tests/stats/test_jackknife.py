"""The jackknife interval of a change: on a mean it is the textbook t-interval, and it is never made up."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from charter.stats.intervals import _t, change_interval


def mean_of(values):
    return lambda positions: float(np.mean([values[i] for i in positions]))


def test_paired_change_of_a_mean_is_the_paired_t_interval() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(1.0, 1.0, 12), rng.normal(0.0, 1.0, 12)
    found = change_interval(mean_of(a), 12, mean_of(b), 12, paired=True)
    d = a - b
    expected = stats.t.interval(0.95, 11, loc=d.mean(), scale=d.std(ddof=1) / np.sqrt(12))
    assert found["change"] == pytest.approx(d.mean())
    assert found["ci95"] == pytest.approx(list(expected))


def test_independent_change_adds_the_two_variances() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(1.0, 1.0, 10), rng.normal(0.0, 2.0, 20)
    found = change_interval(mean_of(a), 10, mean_of(b), 20, paired=False)
    se = np.sqrt(a.var(ddof=1) / 10 + b.var(ddof=1) / 20)
    half = stats.t.ppf(0.975, 9) * se
    assert found["ci95"] == pytest.approx([a.mean() - b.mean() - half, a.mean() - b.mean() + half])


def test_no_interval_where_it_cannot_be_had() -> None:
    few = change_interval(mean_of([1.0, 2.0]), 2, mean_of([0.0, 1.0]), 2, paired=True)
    assert few["change"] == pytest.approx(1.0) and few["ci95"] is None and "fewer than 3" in few["note"]
    same = change_interval(mean_of([1.0] * 5), 5, mean_of([0.0] * 5), 5, paired=True)
    assert same["ci95"] is None and "do not vary" in same["note"]
    missing = change_interval(lambda p: None, 5, mean_of([0.0] * 5), 5, paired=False)
    assert missing["change"] is None and missing["ci95"] is None


@pytest.mark.parametrize("df", [1, 2, 4, 9, 29, 999])
def test_the_t_quantile_is_scipy_stats_own_to_the_last_digit(df: int) -> None:
    assert _t(df) == float(stats.t.ppf(0.975, df))
