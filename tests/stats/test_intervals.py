"""The betting interval of a bounded mean: it covers at least at its level at n = 3, 5, 10 and 30, for the
distributions of paired differences of shares that `learn-rubrics` meets (all alike, a few flips, anything in
between), and it is never a point where the values are all alike."""

from __future__ import annotations

import numpy as np
import pytest

from charter.errors import ArgumentError
from charter.stats.intervals import bounded_mean_interval

#: The values a per-pair difference of two rubric hits takes (each hit 0, 1/2 or 1).
SUPPORT = np.array([-1.0, -0.5, 0.0, 0.5, 1.0])
DISTRIBUTIONS = {
    "all +0.5": [0, 0, 0, 1, 0],
    "mostly +0.5, some -1": [0.15, 0, 0, 0.85, 0],
    "coin between -1 and +1": [0.5, 0, 0, 0, 0.5],
    "spread": [0.1, 0.1, 0.2, 0.3, 0.3],
    "mostly 0": [0, 0.05, 0.9, 0.05, 0],
}


@pytest.mark.parametrize("n", [3, 5, 10, 30])
@pytest.mark.parametrize("name", list(DISTRIBUTIONS))
def test_the_interval_covers_the_mean_at_small_n(n: int, name: str) -> None:
    rng = np.random.default_rng(n)
    p = np.array(DISTRIBUTIONS[name])
    mean, draws = float(SUPPORT @ p), 250
    held = 0
    for _ in range(draws):
        interval = bounded_mean_interval(rng.choice(SUPPORT, n, p=p), -1.0, 1.0)
        assert interval is not None
        held += interval[0] <= mean <= interval[1]
    assert held / draws >= 0.95, f"{name} at n={n}: {held}/{draws}"


def test_values_all_alike_give_a_narrow_interval_around_them_and_never_a_point() -> None:
    low, high = bounded_mean_interval([0.5] * 18, -1.0, 1.0) or (0.0, 0.0)
    assert 0.1 < low < 0.5 < high < 0.7  # no reading of "adds nothing"
    for n in (3, 5, 10):
        low, high = bounded_mean_interval([1.0] * n, -1.0, 1.0) or (1.0, 1.0)
        assert low < 1.0 == high
    assert bounded_mean_interval([], -1.0, 1.0) is None


@pytest.mark.parametrize("values", [[2.0], [float("nan")], [-1.5]])
def test_a_value_outside_the_bounds_is_refused(values: list[float]) -> None:
    with pytest.raises(ArgumentError):
        bounded_mean_interval(values, -1.0, 1.0)
