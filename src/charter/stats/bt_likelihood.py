"""The Bradley–Terry likelihood of soft labels under a Gaussian prior on each score, and profile-likelihood
intervals of score differences: an interval valid on a handful of prompts, never zero wide, and finite where a
model won or lost everything (the prior bounds it), which a Wald interval is not (at a clean sweep its width
grows without limit, and it no longer tells the sweeping model from any other).

A comparison counts as one trial of its soft label (the judge's P(i better), both orders averaged): the two
orders of one pair of answers are not independent evidence.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from charter.stats.ranking import ALPHA

#: The prior's precision on each score (sd 10 on the log-odds scale): weak enough not to move a well-determined
#: score, strong enough to keep the interval of a clean sweep finite.
PRIOR_PRECISION = ALPHA

#: The chi-square(1) quantile of a 95% profile-likelihood interval, and its square root.
CHI2_95 = 3.841458820694124
Z95 = CHI2_95**0.5


class Data(NamedTuple):
    """Comparisons as arrays: a row per comparison, +1 in model i's column and -1 in model j's, and the judge's
    P(i better)."""

    x: np.ndarray
    y: np.ndarray


def data(n: int, comparisons: list) -> Data:
    """The arrays of `Comparison`s (anything with `i`, `j` and `p_i`) among `n` models."""
    x = np.zeros((len(comparisons), n))
    rows = np.arange(len(comparisons))
    x[rows, [c.i for c in comparisons]] = 1.0
    x[rows, [c.j for c in comparisons]] = -1.0
    return Data(x, np.array([c.p_i for c in comparisons], dtype=float))


def loglik(d: Data, s: np.ndarray, prior: float = PRIOR_PRECISION) -> float:
    """The log-likelihood of the soft labels at scores `s`, plus the log prior (up to a constant)."""
    z = d.x @ s
    return float(-np.sum(d.y * np.logaddexp(0, -z) + (1 - d.y) * np.logaddexp(0, z)) - 0.5 * prior * s @ s)


def _slope(d: Data, s: np.ndarray, prior: float) -> tuple[np.ndarray, np.ndarray]:
    """The gradient of `loglik` at `s`, and its information (minus its Hessian)."""
    p = 0.5 * (1.0 + np.tanh(0.5 * (d.x @ s)))
    grad = d.x.T @ (d.y - p) - prior * s
    return grad, (d.x.T * (p * (1.0 - p))) @ d.x + prior * np.eye(len(s))


def _newton(d: Data, s: np.ndarray, prior: float, contrast: np.ndarray | None) -> tuple[np.ndarray, float]:
    """The maximum of `loglik` from `s` and its value, on the line `contrast @ s == contrast @ s` where a contrast
    is given (Newton's method on the constrained problem, halving a step that lowers the objective)."""
    n, value = len(s), loglik(d, s, prior)
    for _ in range(100):
        grad, info = _slope(d, s, prior)
        if contrast is None:
            step = np.linalg.solve(info, grad)
        else:  # the KKT system keeps the contrast where it is
            kkt = np.zeros((n + 1, n + 1))
            kkt[:n, :n], kkt[:n, n], kkt[n, :n] = info, contrast, contrast
            step = np.linalg.solve(kkt, np.append(grad, 0.0))[:n]
        while True:
            moved = loglik(d, s + step, prior)
            if moved >= value - 1e-12 or np.max(np.abs(step)) < 1e-12:
                break
            step = step / 2
        s, value = s + step, moved
        if np.max(np.abs(step)) < 1e-8:
            break
    return s, value


def maximum(d: Data, prior: float = PRIOR_PRECISION) -> np.ndarray:
    """The scores that maximise `loglik` (maximum a posteriori)."""
    return _newton(d, np.zeros(d.x.shape[1]), prior, None)[0]


def _contrast(n: int, a: int, b: int) -> np.ndarray:
    c = np.zeros(n)
    c[a], c[b] = 1.0, -1.0
    return c


def _profile(d: Data, near: np.ndarray, contrast: np.ndarray, t: float, prior: float) -> tuple[np.ndarray, float]:
    """The scores that maximise `loglik` with contrast @ s = t, and that maximum, from the nearby scores `near`."""
    return _newton(d, near + (t - contrast @ near) * contrast / 2, prior, contrast)


def deviance(d: Data, top: np.ndarray, a: int, b: int, t: float, prior: float = PRIOR_PRECISION) -> float:
    """Twice the fall of the log-likelihood from its maximum `top` to its largest value with s_a - s_b = t (the
    profile); the interval of s_a - s_b is where this stays within `CHI2_95`."""
    return 2.0 * (loglik(d, top, prior) - _profile(d, top, _contrast(len(top), a, b), t, prior)[1])


def interval(d: Data, top: np.ndarray, a: int, b: int, prior: float = PRIOR_PRECISION) -> tuple[float, float]:
    """The 95% profile-likelihood interval of s_a - s_b: where the signed root of the deviance, nearly linear in
    s_a - s_b, is within ±1.96 (found from the Wald interval's ends outwards)."""
    from scipy.optimize import brentq

    contrast, peak = _contrast(len(top), a, b), loglik(d, top, prior)
    centre, last = float(contrast @ top), top
    known = {centre: 0.0}

    def signed_root(t: float) -> float:
        nonlocal last
        if t not in known:  # brentq asks again for the ends of the bracket found here
            last, value = _profile(d, last, contrast, t, prior)
            known[t] = float(np.sign(t - centre) * np.sqrt(max(2.0 * (peak - value), 0.0)))
        return known[t]

    sd = float(np.sqrt(contrast @ np.linalg.solve(_slope(d, top, prior)[1], contrast)))
    bounds = []
    for z in (-Z95, Z95):
        near, far = centre, centre + z * sd
        while (signed_root(far) - z) * np.sign(z) < 0:  # the prior makes the deviance grow without limit
            near, far = far, centre + 2 * (far - centre)
        bounds.append(brentq(lambda t, z=z: signed_root(t) - z, min(near, far), max(near, far), xtol=1e-4))
    return float(bounds[0]), float(bounds[1])
