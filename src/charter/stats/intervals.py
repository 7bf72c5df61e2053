"""Intervals for a share: the one policy behind every proportion charter shows.

- A share of 0/1 outcomes (agreement, a flip rate, a bias rate) gets the exact Clopper-Pearson interval, which
  covers at least at its level for every n and every true rate, 0 and 1 included. Halves (an abstention, a tie
  counted as half a win) enter as fractional successes of the same beta quantiles.
- Where the observations cluster (several labels on one pair), the share's exact interval is taken on as many
  observations as there are clusters, and the cluster bootstrap's percentile interval is added to it (the interval
  shown spans both): a bootstrap alone collapses to a point when every resample is the same (ten labels that all
  agree give [1, 1]), which no 95% interval may do.
- The win rate keeps Wilson's score interval (`wilson_interval`), as winrate.json's `ci_method` says.
"""

from __future__ import annotations

import math

from charter.errors import ArgumentError


def wilson_interval(successes: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for a proportion (ties counted as half a success)."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def exact_interval(successes: float, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """The Clopper-Pearson (exact) interval of a share: `successes` of `n`, halves allowed.

    Args:
        successes: Observations counted as a success (0..n; a half for an abstention or a tie).
        n: Observations.
        alpha: One minus the interval's level.

    Returns:
        (low, high) within [0, 1]; (0, 1) without observations.

    Raises:
        ArgumentError: `successes` outside 0..n, a negative `n`, or `alpha` outside (0, 1).
    """
    if n < 0:
        raise ArgumentError("n", f"must be at least 0, got {n}")
    if not 0 <= successes <= n:
        raise ArgumentError("successes", f"must be within 0..n ({n}), got {successes}")
    if not 0 < alpha < 1:
        raise ArgumentError("alpha", f"must be in (0, 1), got {alpha}")
    if n == 0:
        return (0.0, 1.0)
    from scipy.stats import beta

    low = 0.0 if successes <= 0 else float(beta.ppf(alpha / 2, successes, n - successes + 1))
    high = 1.0 if successes >= n else float(beta.ppf(1 - alpha / 2, successes + 1, n - successes))
    return (low, high)


def span(*intervals: tuple[float, float] | list[float] | None) -> list[float] | None:
    """The smallest interval holding every given one (None where none is given)."""
    given = [i for i in intervals if i is not None]
    if not given:
        return None
    return [float(min(i[0] for i in given)), float(max(i[1] for i in given))]


def degenerate(low: float, high: float, value: float | None = None) -> bool:
    """An interval that cannot be read as narrow: zero width, or one that leaves out its own estimate."""
    return not high > low or (value is not None and not low <= value <= high)
