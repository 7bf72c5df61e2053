"""The change of a set-level statistic (distinct-n, the Vendi score, self-BLEU, ...) between two sets of texts, with
a 95% interval from the leave-one-out jackknife (Efron & Stein 1981).

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

from charter.stats.intervals import degenerate

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
