"""Bradley–Terry scores of N models from pairwise judgments, with 95% intervals and rank ranges by bootstrap over
prompts, and a length-controlled variant (AlpacaEval 2.0's length term added to the Bradley–Terry model)."""

from __future__ import annotations

from typing import Any, NamedTuple, TypedDict


class Comparison(NamedTuple):
    """One judged comparison: models `i` and `j` on prompt `prompt`, the judge's P(i better) in `p_i`."""

    prompt: int
    i: int
    j: int
    p_i: float
    length_diff: float = 0.0
    """len(answer of i) - len(answer of j), in characters (for the length-controlled fit)."""


class Fit(TypedDict):
    """Scores on a log-odds scale, the reference model's at 0, with bootstrap intervals and rank ranges."""

    score: list[float]
    """Bradley–Terry score per model: log-odds of beating the reference model."""
    ci_low: list[float]
    """2.5th percentile of the score over bootstrap resamples of the prompts."""
    ci_high: list[float]
    """97.5th percentile of the score over the resamples."""
    rank: list[int]
    """1 for the highest score."""
    rank_low: list[int]
    """Best rank (2.5th percentile) over the resamples."""
    rank_high: list[int]
    """Worst rank (97.5th percentile) over the resamples."""
    draws: list[list[float]]
    """Every resample's scores (for intervals on differences)."""


#: Ridge of the fit (choix's `alpha`): keeps a model that never lost, or a disconnected resample, finite.
ALPHA = 1e-3


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
    """Scores with 95% percentile intervals and rank ranges, resampling prompts (each resampled prompt brings all
    its comparisons, so the judge's shared taste on one prompt is not counted as independent evidence).

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
    ranks = _ranks(d)
    return Fit(
        score=[float(v) for v in point],
        ci_low=[float(v) for v in np.percentile(d, 2.5, axis=0)],
        ci_high=[float(v) for v in np.percentile(d, 97.5, axis=0)],
        rank=[int(v) for v in _ranks(point[None, :])[0]],
        rank_low=[int(v) for v in np.floor(np.percentile(ranks, 2.5, axis=0))],
        rank_high=[int(v) for v in np.ceil(np.percentile(ranks, 97.5, axis=0))],
        draws=d.tolist(),
    )


def _ranks(scores: Any) -> Any:
    """Rank of each model in each row (1 = highest score)."""
    import numpy as np

    order = np.argsort(-scores, axis=1)
    ranks = np.empty_like(order)
    rows = np.arange(scores.shape[0])[:, None]
    ranks[rows, order] = np.arange(1, scores.shape[1] + 1)
    return ranks
