"""The length-controlled win rate (AlpacaEval 2.0): the judge's taste for longer answers modelled out."""

from __future__ import annotations

from typing import Any, TypedDict

from charter.logistic import sigmoid


class LengthControlled(TypedDict):
    """The win rate with the judge's taste for length taken out (AlpacaEval 2.0's length-controlled win rate)."""

    win_rate: float | None
    """sigmoid(intercept) of a logistic model of P(candidate better) on tanh(standardised length difference): the
    predicted win rate had both answers been equally long. None when it cannot be fitted (see `note`)."""
    ci95: list[float] | None
    """[low, high]: 95% percentile interval from resampling prompts; None when not fitted."""
    raw: float | None
    """The same judgments' mean P(candidate better), the rate the length term is taken out of."""
    length_coefficient: float | None
    """The length term's coefficient: above 0, the judge favours the longer answer."""
    longer_rate: float | None
    """Share of prompts where the candidate's answer is the longer one (characters)."""
    n: int
    """Judgments the model was fitted on."""
    note: str | None
    """Why it was not fitted (too few judgments, no variation in length)."""


#: Fewest successful judgments the length-controlled model is fitted on.
MIN_LENGTH_CONTROL = 10


def length_controlled(
    p_candidate: list[float], candidate: list[str], base: list[str], *, bootstrap: int = 1000, seed: int = 0
) -> LengthControlled:
    """The length-controlled win rate (Dubois et al. 2024, AlpacaEval 2.0).

    A logistic model (scikit-learn) of the judge's P(candidate better) on tanh((len(candidate) - len(base)) / sd),
    lengths in characters, sd that of the differences; its prediction with the length term removed,
    sigmoid(intercept), is the rate the candidate would win at were both answers equally long. A judge that favours
    longer answers otherwise decides win rates: a padded answer wins more often without being better.

    Args:
        p_candidate: The judge's P(candidate better) of each successful judgment.
        candidate: The candidate's answer of each, in the same order.
        base: The base model's answer of each.
        bootstrap: Resamples of the prompts for the interval.
        seed: Seed of the resampling.

    Returns:
        The length-controlled rate with its interval, the raw mean P(candidate better), the length coefficient and
        the share of longer candidate answers; without a fit (fewer than 10 judgments, a length difference that
        never varies) the rate is None and `note` says why.
    """
    import numpy as np

    p = np.asarray(p_candidate, dtype=float)
    diff = np.array([len(c) - len(b) for c, b in zip(candidate, base)], dtype=float)
    out = LengthControlled(win_rate=None, ci95=None, raw=float(p.mean()) if p.size else None,
                           length_coefficient=None, longer_rate=float((diff > 0).mean()) if p.size else None,
                           n=int(p.size), note=None)  # fmt: skip
    if p.size < MIN_LENGTH_CONTROL:
        return {**out, "note": f"needs at least {MIN_LENGTH_CONTROL} judgments, has {p.size}"}
    if diff.std() == 0:
        return {**out, "note": "the length difference never varies: its effect cannot be told from the candidate's"}
    x = np.tanh(diff / diff.std())
    intercept, slope = _fit_length_model(p, x)
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(bootstrap):
        pick = rng.integers(0, p.size, p.size)
        if x[pick].std() > 0:
            draws.append(sigmoid(_fit_length_model(p[pick], x[pick])[0]))
    low, high = (float(v) for v in np.percentile(draws, [2.5, 97.5])) if draws else (None, None)
    return {
        **out,
        "win_rate": sigmoid(intercept),
        "ci95": None if low is None or high is None else [low, high],
        "length_coefficient": slope,
    }


def _fit_length_model(p: Any, x: Any) -> tuple[float, float]:
    """(intercept, slope) of an unpenalised logistic regression of soft labels p on x (each row twice: as a win
    weighted p and as a loss weighted 1 - p)."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    features = np.concatenate([x, x])[:, None]
    outcome = np.concatenate([np.ones(p.size), np.zeros(p.size)])
    weight = np.concatenate([p, 1 - p])
    model = LogisticRegression(C=np.inf).fit(features, outcome, sample_weight=weight)
    return float(model.intercept_[0]), float(model.coef_[0][0])
