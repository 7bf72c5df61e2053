"""Bradley–Terry scores of N models from pairwise judgments, with 95% intervals (a bootstrap over prompts spanned
with a profile-likelihood interval, never zero wide) and rank ranges, and a length-controlled variant (AlpacaEval
2.0's length term added to the Bradley–Terry model).

The length-controlled win rate (AlpacaEval 2.0): the judge's taste for longer answers modelled out.
"""

from __future__ import annotations

from typing import Any, NamedTuple, TypedDict

from charter.logistic import sigmoid
from charter.stats.intervals import span


class Comparison(NamedTuple):
    """One judged comparison: models `i` and `j` on prompt `prompt`, the judge's P(i better) in `p_i`."""

    prompt: int
    i: int
    j: int
    p_i: float
    length_diff: float = 0.0
    """len(answer of i) - len(answer of j), in characters (for the length-controlled fit)."""


class Fit(TypedDict):
    """Scores on a log-odds scale, the reference model's at 0, with 95% intervals and rank ranges."""

    score: list[float]
    """Bradley–Terry score per model: log-odds of beating the reference model."""
    ci_low: list[float | None]
    """Low end of the score's 95% interval: the lower of the bootstrap's 2.5th percentile and the profile-likelihood
    interval's low end (see `fit`); None for the reference, whose score is 0 by definition."""
    ci_high: list[float | None]
    """High end of the score's 95% interval (likewise); None for the reference."""
    rank: list[int]
    """1 for the highest score; models whose scores differ by less than `TIE_TOLERANCE` share a rank."""
    rank_low: list[int]
    """Best rank the data allow: the better of the bootstrap's 2.5th percentile rank and 1 + the models surely
    above (the interval of the difference wholly above 0)."""
    rank_high: list[int]
    """Worst rank the data allow: the worse of the bootstrap's 97.5th percentile rank and N - the models surely
    below."""
    draws: list[list[float]]
    """Every resample's scores (for intervals on differences)."""


#: Ridge of the fit (choix's `alpha`): keeps a model that never lost, or a disconnected resample, finite.
ALPHA = 1e-3

#: Scores closer than this (log-odds) are the same score: the fit's numerical noise, not a difference.
TIE_TOLERANCE = 1e-6


def bt_scores(n: int, comparisons: list[Comparison], reference: int = 0) -> Any:
    """Bradley–Terry scores (numpy array) by choix's ILSR on the matrix of fractional wins (soft labels: a judge's
    P(i better) of 0.75 adds 0.75 wins of i over j and 0.25 of j over i; a tie is half a win each), the
    reference model's score subtracted.

    Raises:
        MissingExtra: choix is not installed (the `agreement` extra).
    """
    import numpy as np

    try:
        import choix
    except ImportError:
        from charter.errors import missing_extra

        raise missing_extra("choix", "agreement") from None

    wins = np.zeros((n, n))
    for c in comparisons:
        wins[c.i, c.j] += c.p_i
        wins[c.j, c.i] += 1.0 - c.p_i
    scores = np.asarray(choix.ilsr_pairwise_dense(wins, alpha=ALPHA))
    return scores - scores[reference]


def lc_scores(n: int, comparisons: list[Comparison], reference: int = 0) -> tuple[Any, float]:
    """Length-controlled scores and the length coefficient: a logistic model of the soft labels on the model
    indicators (+1 for i, -1 for j) and tanh(length difference / its sd), as AlpacaEval 2.0 adds to its model;
    the scores are what the judge would say were the answers equally long.

    Raises:
        MissingExtra: scikit-learn is not installed (the `agreement` extra).
    """
    import numpy as np

    try:
        from sklearn.linear_model import LogisticRegression
    except ImportError:
        from charter.errors import missing_extra

        raise missing_extra("scikit-learn", "agreement") from None

    p = np.array([c.p_i for c in comparisons])
    diff = np.array([c.length_diff for c in comparisons])
    sd = diff.std() or 1.0
    x = np.zeros((len(comparisons), n + 1))
    for row, c in enumerate(comparisons):
        x[row, c.i], x[row, c.j] = 1.0, -1.0
    x[:, n] = np.tanh(diff / sd)
    features = np.concatenate([x, x])
    outcome = np.concatenate([np.ones(p.size), np.zeros(p.size)])
    weight = np.concatenate([p, 1 - p])
    model = LogisticRegression(C=1e4, fit_intercept=False).fit(features, outcome, sample_weight=weight)
    coef = model.coef_[0]
    return coef[:n] - coef[reference], float(coef[n])


def fit(n: int, comparisons: list[Comparison], reference: int = 0, *, bootstrap: int = 200, seed: int = 0) -> Fit:
    """Scores with 95% intervals and rank ranges.

    A score's interval spans two: the percentile bootstrap over prompts (each resampled prompt brings all its
    comparisons, so the judge's shared taste on one prompt is not counted as independent evidence), and the
    profile-likelihood interval of the Bradley–Terry likelihood under a Gaussian prior on each score
    (`charter.stats.bt_likelihood`). The bootstrap alone is too narrow on a handful of prompts, and collapses to a
    point where every resample is alike; the profile interval is never zero wide, and finite where a model won or
    lost everything. Ranks treat scores within `TIE_TOLERANCE` as tied; a rank range spans the bootstrap's with the
    ranks the data allow: two models stand either way round unless the interval of their difference, spanned the
    same way, leaves out 0.

    Args:
        n: Number of models.
        comparisons: The successful judgments (a failed one is left out, never a tie).
        reference: The model whose score is 0.
        bootstrap: Resamples of the prompts.
        seed: Seed of the resampling.

    Returns:
        Scores, intervals, ranks, rank ranges and every resample's scores.
    """
    import numpy as np

    from charter.stats import bt_likelihood

    point = bt_scores(n, comparisons, reference)
    by_prompt: dict[int, list[Comparison]] = {}
    for c in comparisons:
        by_prompt.setdefault(c.prompt, []).append(c)
    groups = list(by_prompt.values())
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(bootstrap):
        pick = rng.integers(0, len(groups), len(groups))
        draws.append(bt_scores(n, [c for k in pick for c in groups[k]], reference))
    d = np.array(draws) if draws else point[None, :]
    data = bt_likelihood.data(n, comparisons)
    top = bt_likelihood.maximum(data)
    bounds: list[list[float] | None] = [
        None
        if m == reference
        else span(
            list(np.percentile(d[:, m], [2.5, 97.5])), bt_likelihood.interval(data, top, m, reference), [point[m]] * 2
        )
        for m in range(n)
    ]
    above = _surely_above(point, d, data, top)
    ranks = _ranks(d)
    return Fit(
        score=[float(v) for v in point],
        ci_low=[None if b is None else b[0] for b in bounds],
        ci_high=[None if b is None else b[1] for b in bounds],
        rank=[int(v) for v in _ranks(point[None, :])[0]],
        rank_low=[min(int(v), 1 + int(above[m].sum())) for m, v in enumerate(np.percentile(ranks, 2.5, axis=0))],
        rank_high=[
            max(int(np.ceil(v)), n - int(above[:, m].sum())) for m, v in enumerate(np.percentile(ranks, 97.5, axis=0))
        ],
        draws=d.tolist(),
    )


def _surely_above(point: Any, draws: Any, data: Any, top: Any) -> Any:
    """above[m, k]: model k is surely above model m, the 95% interval of s_k - s_m wholly above 0 (the
    bootstrap's 2.5th percentile and the profile likelihood at 0 both say so)."""
    import numpy as np

    from charter.stats import bt_likelihood

    n = len(point)
    above = np.zeros((n, n), dtype=bool)
    for m in range(n):
        for k in range(n):
            if k != m and point[k] - point[m] > TIE_TOLERANCE:
                above[m, k] = (
                    np.percentile(draws[:, k] - draws[:, m], 2.5) > TIE_TOLERANCE
                    and bt_likelihood.deviance(data, top, k, m, 0.0) > bt_likelihood.CHI2_95
                )
    return above


def _ranks(scores: Any) -> Any:
    """Rank of each model in each row: 1 + the models scoring higher by more than `TIE_TOLERANCE` (tied models
    share the best of their ranks)."""
    return 1 + (scores[:, None, :] > scores[:, :, None] + TIE_TOLERANCE).sum(axis=2)


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
