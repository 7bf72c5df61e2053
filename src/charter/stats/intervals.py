"""Intervals for a share: the one policy behind every proportion charter shows.

- A share of 0/1 outcomes (agreement, a flip rate, a bias rate) gets the exact Clopper-Pearson interval, which
  covers at least at its level for every n and every true rate, 0 and 1 included. Halves (an abstention, a tie
  counted as half a win) enter as fractional successes of the same beta quantiles.
- Where the observations cluster (several labels on one pair), the share's exact interval is taken on as many
  observations as there are clusters, and the cluster bootstrap's percentile interval is added to it (the interval
  shown spans both): a bootstrap alone collapses to a point when every resample is the same (ten labels that all
  agree give [1, 1]), which no 95% interval may do.
- The win rate keeps Wilson's score interval (`wilson_interval`), as winrate.json's `ci_method` says.
- A mean of values that are not 0/1 but lie within known bounds (a paired difference of shares, in -1..1) gets the
  betting interval of Waudby-Smith & Ramdas (2024, "Estimating means of bounded random variables by betting"),
  `bounded_mean_interval`: it covers at least at its level for every distribution within the bounds and every n, and
  it is narrow where the values vary little, yet never a point: eighteen differences that are all +0.5 give about
  [+0.15, +0.64], not a share's interval that reaches below 0, nor a bootstrap's [+0.5, +0.5].

**The jackknife.** The change of a set-level statistic (distinct-n, the Vendi score, self-BLEU, ...) between two
sets of texts, with a 95% interval from the leave-one-out jackknife (Efron & Stein 1981).

A set-level statistic has no per-item scores to bootstrap, and a bootstrap resample repeats texts, which alone
lowers every diversity figure; leaving one item out repeats nothing. For two answer sets to the same probes
(paired: round r against round 0) item i is left out of both, so the probe-to-probe variation cancels; for two
independent sets (a round against a sample of real data) each set's jackknife variance is computed apart and the
two are added. The interval is the change ± t(0.975, n - 1) times the jackknife standard error (the smaller n
for independent sets). Cost: n + 1 evaluations of the statistic per set.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

import numpy as np

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


#: Candidate means per unit of the bounds' range at which the betting interval is evaluated.
BETTING_GRID = 4000
#: The most a bet stakes, as a share of what it can afford (the paper's c).
BETTING_STAKE = 0.75


def bounded_mean_interval(
    values: Sequence[float] | np.ndarray, low: float = 0.0, high: float = 1.0, alpha: float = 0.05
) -> tuple[float, float] | None:
    """The hedged-capital betting interval of the mean of values within [low, high] (Waudby-Smith & Ramdas 2024,
    Theorem 3, with the fixed-n plug-in bets of their section 5.1): every mean at which a gambler betting on the
    values, in their order, for and against it at once, would not have multiplied the stake by 1/alpha.

    Args:
        values: The observations, in an order that does not depend on their values.
        low: The least value an observation can take.
        high: The greatest.
        alpha: One minus the interval's level.

    Returns:
        (low, high) within the bounds (widened to the grid of 4,000 steps of their range); None without observations.

    Raises:
        ArgumentError: A value outside the bounds or not finite, bounds that are not ordered, or `alpha` outside (0, 1).
    """
    if not math.isfinite(low) or not math.isfinite(high) or not low < high:
        raise ArgumentError("low", f"must be finite and below high, got {low} and {high}")
    if not 0 < alpha < 1:
        raise ArgumentError("alpha", f"must be in (0, 1), got {alpha}")
    x = np.asarray(values, dtype=float)
    if not np.all(np.isfinite(x)) or np.any((x < low) | (x > high)):
        raise ArgumentError("values", f"must be finite and within {low}..{high}")
    if not x.size:
        return None
    x = (x - low) / (high - low)
    n, i = x.size, np.arange(1, x.size + 1)
    running_mean = (0.5 + np.cumsum(x)) / (i + 1)
    spread = np.concatenate([[0.0], np.cumsum((x - running_mean) ** 2)[:-1]])
    variance = (0.25 + spread) / i  # the variance estimate before each value: each bet is made before it is seen
    bet = np.sqrt(2 * math.log(2 / alpha) / (n * variance))
    m = np.linspace(0.0, 1.0, BETTING_GRID + 1)[:, None]
    with np.errstate(divide="ignore"):
        up = np.minimum(bet, BETTING_STAKE / m)
        down = np.minimum(bet, BETTING_STAKE / (1 - m))
    wealth_up = np.log1p(up * (x - m)).sum(axis=1)
    wealth_down = np.log1p(-down * (x - m)).sum(axis=1)
    kept = m[np.maximum(wealth_up, wealth_down) + math.log(0.5) < math.log(1 / alpha), 0]
    if not kept.size:  # a grid too coarse for a sample this large: the point estimate's cell
        kept = np.array([float(x.mean())])
    step = 1 / BETTING_GRID  # an edge lies between the last mean kept and the next: the cell is kept whole
    lo, hi = max(float(kept.min()) - step, 0.0), min(float(kept.max()) + step, 1.0)
    return (low + lo * (high - low), low + hi * (high - low))


#: the fewest items per set for an interval (n - 1 >= 2 degrees of freedom)
MIN_ITEMS = 3

Statistic = Callable[[Sequence[int]], float | None]
"""The statistic of the items at these positions of one set (None where it cannot be computed)."""


def _leave_one_out(statistic: Statistic, n: int) -> np.ndarray | None:
    values = [statistic([j for j in range(n) if j != i]) for i in range(n)]
    return None if any(v is None for v in values) else np.array(values, dtype=float)


def _variance(values: np.ndarray) -> float:
    """The jackknife variance of a statistic from its leave-one-out values."""
    n = len(values)
    return float((n - 1) / n * ((values - values.mean()) ** 2).sum())


@lru_cache(maxsize=256)
def _t(df: int) -> float:
    """t(0.975, df): `scipy.special.stdtrit`, the function `scipy.stats.t.ppf` evaluates (the same value, without
    loading `scipy.stats`, which costs a fresh process about a second)."""
    from scipy.special import stdtrit

    return float(stdtrit(df, 0.975))


def change_interval(statistic_a: Statistic, n_a: int, statistic_b: Statistic, n_b: int, paired: bool) -> dict[str, Any]:
    """`change` = statistic(a) - statistic(b) on all items, with `ci95` (None and `note` where no interval can be
    had: fewer than `MIN_ITEMS` items, a statistic missing on a leave-one-out set, or values that do not vary).
    Paired sets must have the same n (item i of one answers what item i of the other answers)."""
    a, b = statistic_a(range(n_a)), statistic_b(range(n_b))
    if a is None or b is None:
        return {"change": None, "ci95": None, "note": "not measured on one of the sets"}
    out: dict[str, Any] = {"change": a - b, "ci95": None, "note": None}
    if min(n_a, n_b) < MIN_ITEMS:
        out["note"] = f"no interval: fewer than {MIN_ITEMS} texts"
        return out
    loo_a, loo_b = _leave_one_out(statistic_a, n_a), _leave_one_out(statistic_b, n_b)
    if loo_a is None or loo_b is None:
        out["note"] = "no interval: the measure is missing without one of the texts"
        return out
    if paired:
        if n_a != n_b:
            raise ValueError(f"paired sets of {n_a} and {n_b} items")
        variance, df = _variance(loo_a - loo_b), n_a - 1
    else:
        variance, df = _variance(loo_a) + _variance(loo_b), min(n_a, n_b) - 1
    half = _t(df) * math.sqrt(variance)
    low, high = out["change"] - half, out["change"] + half
    if degenerate(low, high):
        out["note"] = "no interval: the leave-one-out values do not vary"
        return out
    out["ci95"] = [low, high]
    return out


#: the fewest items for a one-set interval: below it the jackknife interval covers too seldom (checked by simulation
#: on real prompts: tests/stats/test_diversity_coverage.py)
MIN_SET_ITEMS = 5


def set_interval(
    value: float,
    leave_one_out: np.ndarray,
    bounds: tuple[float, float] = (-math.inf, math.inf),
    log_offset: float | None = None,
) -> tuple[list[float] | None, str | None]:
    """The 95% jackknife interval of a set-level statistic of n items from its n leave-one-out values: `value` ±
    t(0.975, n - 1) times the jackknife standard error, cut to the statistic's `bounds`; or None and why (fewer
    than `MIN_SET_ITEMS` items, or leave-one-out values that do not vary). With `log_offset` c the interval is
    taken on log(statistic + c) and mapped back: a statistic piled up near 0 with a long right tail (self-BLEU of a
    few texts) is skewed, and a symmetric interval on its own scale falls short of the mean too often."""
    n = len(leave_one_out)
    if n < MIN_SET_ITEMS:
        return None, f"no interval below {MIN_SET_ITEMS} texts (at {n}, a 95% interval would not cover 95%)"
    forward, back = (lambda x: x), (lambda y: y)
    if log_offset is not None:
        forward, back = (lambda x: np.log(x + log_offset)), (lambda y: math.exp(y) - log_offset)
    centre = float(forward(value))
    half = _t(n - 1) * math.sqrt(_variance(forward(np.asarray(leave_one_out, dtype=float))))
    low, high = max(back(centre - half), bounds[0]), min(back(centre + half), bounds[1])
    if degenerate(low, high):
        return None, f"no interval: the figure is the same without any one of the {n} texts"
    return [low, high], None
