"""Calibrating the judge's P(A preferred) to human labels: Platt or temperature scaling, or isotonic.

A fit gives a `CalibrationMap` (charter.records): the map's parameters, stored in the run store and
joined into the dataset's `p_chosen_calibrated` whenever the dataset is written.
"""

from __future__ import annotations

import math
from typing import TypedDict

import numpy as np

from charter.logistic import EPS, logit, sigmoid
from charter.records import CalibrationMap, CalibrationMethod


class PlattParams(TypedDict):
    """Platt scaling: calibrated P(A) = sigmoid(slope * logit(p) + intercept)."""

    slope: float
    """Coefficient of logit(p)."""
    intercept: float
    """The intercept."""


class TemperatureParams(TypedDict):
    """Temperature scaling: calibrated P(A) = sigmoid(logit(p) / temperature)."""

    temperature: float
    """T, above 1 to soften the judge's probabilities, below 1 to sharpen them."""


class IsotonicParams(TypedDict):
    """Isotonic regression: a monotone map, linear between thresholds and clipped outside."""

    x: list[float]
    """Increasing thresholds of p."""
    y: list[float]
    """The calibrated P(A) at each threshold."""


def fit_platt(p: np.ndarray, y: np.ndarray) -> PlattParams:
    """Platt scaling: logistic regression of the human label on logit(p) (slope and intercept).

    Args:
        p: The judge's P(A).
        y: Human labels, 1 where A is preferred, 0 where B is; both classes must occur.

    Returns:
        The fitted slope and intercept.
    """
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=1e6, max_iter=1000).fit(logit(p)[:, None], y)
    return {"slope": float(model.coef_[0][0]), "intercept": float(model.intercept_[0])}


def fit_temperature(p: np.ndarray, y: np.ndarray) -> TemperatureParams:
    """Temperature scaling: sigmoid(logit(p) / T), T fitted by maximum likelihood (keeps P(A) = 1 - P(B)).

    Args:
        p: The judge's P(A).
        y: Human labels, 1 where A is preferred, 0 where B is.

    Returns:
        The fitted temperature, searched for between e^-5 and e^5.
    """
    from scipy.optimize import minimize_scalar

    z = logit(p)

    def nll(log_t: float) -> float:
        q = np.clip(sigmoid(z / math.exp(log_t)), EPS, 1 - EPS)
        return float(-np.mean(y * np.log(q) + (1 - y) * np.log(1 - q)))

    return {"temperature": math.exp(minimize_scalar(nll, bounds=(-5, 5), method="bounded").x)}


def fit_isotonic(p: np.ndarray, y: np.ndarray) -> IsotonicParams:
    """Isotonic regression of the human label on p (monotone, non-parametric; linear between thresholds).

    Args:
        p: The judge's P(A).
        y: Human labels, 1 where A is preferred, 0 where B is.

    Returns:
        The thresholds of p and the calibrated P(A) at each, within [0, 1].
    """
    from sklearn.isotonic import IsotonicRegression

    model = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(p, y)
    return {"x": [float(v) for v in model.X_thresholds_], "y": [float(v) for v in model.y_thresholds_]}


FITTERS = {"platt": fit_platt, "temperature": fit_temperature, "isotonic": fit_isotonic}


def fit(
    method: CalibrationMethod, p: np.ndarray, y: np.ndarray, judge_fingerprint: str = "", **fields: object
) -> CalibrationMap:
    """A calibration map from judge probabilities p = P(A) and human labels y (1: A preferred)."""
    params = FITTERS[method](np.asarray(p, dtype=float), np.asarray(y, dtype=float))
    return CalibrationMap(
        method=method,
        judge_fingerprint=judge_fingerprint,
        labels=len(p),
        **params,  # type: ignore[arg-type]
        **fields,
    )


def apply(calibration: CalibrationMap, p: np.ndarray) -> np.ndarray:
    """The map applied to an array of P(A)."""
    return np.array([calibration.apply(float(v)) for v in np.asarray(p, dtype=float)])


def ece(p: np.ndarray, y: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error: bin P(A) in equal-width bins, weight |mean p - share of A| by bin size."""
    p, y = np.asarray(p, dtype=float), np.asarray(y, dtype=float)
    if not len(p):
        return math.nan
    idx = np.minimum((p * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        mask = idx == b
        if mask.any():
            total += mask.sum() * abs(p[mask].mean() - y[mask].mean())
    return float(total / len(p))


def cross_fitted(
    method: CalibrationMethod, p: np.ndarray, y: np.ndarray, groups: np.ndarray, folds: int = 5
) -> np.ndarray | None:
    """Out-of-fold calibrated probabilities (grouped by pair), for an honest 'after' ECE; None if too few."""
    from sklearn.model_selection import GroupKFold

    k = min(folds, len(set(groups.tolist())))
    if k < 2:
        return None
    out = np.empty(len(p))
    for train, test in GroupKFold(n_splits=k).split(p, y, groups):
        if len(set(y[train].tolist())) < 2:
            return None
        out[test] = apply(fit(method, p[train], y[train]), p[test])
    return out


def reliability_points(p: np.ndarray, y: np.ndarray, bins: int) -> tuple[list[float], list[float], list[int]]:
    """(mean predicted, observed share, count) per non-empty bin."""
    idx = np.minimum((np.asarray(p) * bins).astype(int), bins - 1)
    xs, ys, ns = [], [], []
    for b in range(bins):
        mask = idx == b
        if mask.any():
            xs.append(float(np.mean(p[mask])))
            ys.append(float(np.mean(y[mask])))
            ns.append(int(mask.sum()))
    return xs, ys, ns


def reliability_diagram(path: str, p: np.ndarray, calibrated: np.ndarray, y: np.ndarray, bins: int, title: str) -> None:
    """Write a reliability diagram (before and after) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfect")
    for probs, name, marker in ((p, "judge", "o"), (calibrated, "calibrated", "s")):
        xs, ys, ns = reliability_points(np.asarray(probs), y, bins)
        ax.plot(xs, ys, marker=marker, label=f"{name} (ECE {ece(probs, y, bins):.3f})")
        for x, yy, n in zip(xs, ys, ns):
            ax.annotate(str(n), (x, yy), textcoords="offset points", xytext=(4, -10), fontsize=7)
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="judge P(A preferred)", ylabel="share of humans preferring A", title=title)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
