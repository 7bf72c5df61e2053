"""Strengths of items from comparisons: Bradley–Terry scores of N models from pairwise judgments, with 95% intervals
(a bootstrap over prompts spanned with a profile-likelihood interval, never zero wide) and rank ranges; a
length-controlled variant (AlpacaEval 2.0's length term added to the Bradley–Terry model: the judge's taste for longer
answers modelled out); Plackett–Luce strengths from full orderings; the win rates strengths imply, and the sparse
pairings of a group.

The profile-likelihood interval is that of the Bradley–Terry likelihood of soft labels under a Gaussian prior on each
score: valid on a handful of prompts, never zero wide, and finite where a model won or lost everything (the prior
bounds it), which a Wald interval is not (at a clean sweep its width grows without limit, and it no longer tells the
sweeping model from any other). A comparison counts as one trial of its soft label (the judge's P(i better), both
orders averaged): the two orders of one pair of answers are not independent evidence.

Under either model the probability that item i beats item j is sigmoid(s_i - s_j), so `expected_win_rates` turns
strengths into each item's mean chance of beating the others: a reward on the same 0..1 scale as an all-pairs win
rate. A fit is defined only over items the data connect: `connected` tells whether the comparisons join every item.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple, TypedDict

import numpy as np

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


#: The precision of the Gaussian prior on each strength (sd 10 on the log-odds scale) of the Plackett–Luce fit and of
#: the likelihood behind the intervals: weak enough not to move a well-determined strength, strong enough to keep a
#: clean sweep finite.
ALPHA = 0.01

#: Ridge of the Bradley–Terry point fit (choix's ILSR `alpha`): keeps a model that never lost, or a disconnected
#: resample, finite.
ILSR_RIDGE = 1e-3

#: The chi-square(1) quantile of a 95% profile-likelihood interval, and its square root.
CHI2_95 = 3.841458820694124
Z95 = CHI2_95**0.5

#: Scores closer than this (log-odds) are the same score: the fit's numerical noise, not a difference.
TIE_TOLERANCE = 1e-6


def bt_scores(n: int, comparisons: list[Comparison], reference: int = 0) -> Any:
    """Bradley–Terry scores (numpy array) by choix's ILSR on the matrix of fractional wins (soft labels: a judge's
    P(i better) of 0.75 adds 0.75 wins of i over j and 0.25 of j over i; a tie is half a win each), the
    reference model's score subtracted.

    Raises:
        MissingExtra: choix is not installed (the `agreement` extra).
    """
    try:
        import choix
    except ImportError:
        from charter.errors import missing_extra

        raise missing_extra("choix", "agreement") from None

    wins = np.zeros((n, n))
    for c in comparisons:
        wins[c.i, c.j] += c.p_i
        wins[c.j, c.i] += 1.0 - c.p_i
    scores = np.asarray(choix.ilsr_pairwise_dense(wins, alpha=ILSR_RIDGE))
    return scores - scores[reference]


def lc_scores(n: int, comparisons: list[Comparison], reference: int = 0) -> tuple[Any, float]:
    """Length-controlled scores and the length coefficient: a logistic model of the soft labels on the model
    indicators (+1 for i, -1 for j) and tanh(length difference / its sd), as AlpacaEval 2.0 adds to its model;
    the scores are what the judge would say were the answers equally long.

    Raises:
        MissingExtra: scikit-learn is not installed (the `agreement` extra).
    """
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
    (`likelihood_interval`). The bootstrap alone is too narrow on a handful of prompts, and collapses to a
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
    data = likelihood_data(n, comparisons)
    top = likelihood_maximum(data)
    bounds: list[list[float] | None] = [
        None
        if m == reference
        else span(
            list(np.percentile(d[:, m], [2.5, 97.5])), likelihood_interval(data, top, m, reference), [point[m]] * 2
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
    n = len(point)
    above = np.zeros((n, n), dtype=bool)
    for m in range(n):
        for k in range(n):
            if k != m and point[k] - point[m] > TIE_TOLERANCE:
                above[m, k] = (
                    np.percentile(draws[:, k] - draws[:, m], 2.5) > TIE_TOLERANCE
                    and deviance(data, top, k, m, 0.0) > CHI2_95
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
    from sklearn.linear_model import LogisticRegression

    features = np.concatenate([x, x])[:, None]
    outcome = np.concatenate([np.ones(p.size), np.zeros(p.size)])
    weight = np.concatenate([p, 1 - p])
    model = LogisticRegression(C=np.inf).fit(features, outcome, sample_weight=weight)
    return float(model.intercept_[0]), float(model.coef_[0][0])


class SoftLabels(NamedTuple):
    """Comparisons as arrays: a row per comparison, +1 in model i's column and -1 in model j's, and the judge's
    P(i better)."""

    x: np.ndarray
    y: np.ndarray


def likelihood_data(n: int, comparisons: list) -> SoftLabels:
    """The arrays of `Comparison`s (anything with `i`, `j` and `p_i`) among `n` models."""
    x = np.zeros((len(comparisons), n))
    rows = np.arange(len(comparisons))
    x[rows, [c.i for c in comparisons]] = 1.0
    x[rows, [c.j for c in comparisons]] = -1.0
    return SoftLabels(x, np.array([c.p_i for c in comparisons], dtype=float))


def loglik(d: SoftLabels, s: np.ndarray, prior: float = ALPHA) -> float:
    """The log-likelihood of the soft labels at scores `s`, plus the log prior (up to a constant)."""
    z = d.x @ s
    return float(-np.sum(d.y * np.logaddexp(0, -z) + (1 - d.y) * np.logaddexp(0, z)) - 0.5 * prior * s @ s)


def _slope(d: SoftLabels, s: np.ndarray, prior: float) -> tuple[np.ndarray, np.ndarray]:
    """The gradient of `loglik` at `s`, and its information (minus its Hessian)."""
    p = 0.5 * (1.0 + np.tanh(0.5 * (d.x @ s)))
    grad = d.x.T @ (d.y - p) - prior * s
    return grad, (d.x.T * (p * (1.0 - p))) @ d.x + prior * np.eye(len(s))


def _newton(d: SoftLabels, s: np.ndarray, prior: float, contrast: np.ndarray | None) -> tuple[np.ndarray, float]:
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


def likelihood_maximum(d: SoftLabels, prior: float = ALPHA) -> np.ndarray:
    """The scores that maximise `loglik` (maximum a posteriori)."""
    return _newton(d, np.zeros(d.x.shape[1]), prior, None)[0]


def _contrast(n: int, a: int, b: int) -> np.ndarray:
    c = np.zeros(n)
    c[a], c[b] = 1.0, -1.0
    return c


def _profile(d: SoftLabels, near: np.ndarray, contrast: np.ndarray, t: float, prior: float) -> tuple[np.ndarray, float]:
    """The scores that maximise `loglik` with contrast @ s = t, and that maximum, from the nearby scores `near`."""
    return _newton(d, near + (t - contrast @ near) * contrast / 2, prior, contrast)


def deviance(d: SoftLabels, top: np.ndarray, a: int, b: int, t: float, prior: float = ALPHA) -> float:
    """Twice the fall of the log-likelihood from its maximum `top` to its largest value with s_a - s_b = t (the
    profile); the interval of s_a - s_b is where this stays within `CHI2_95`."""
    return 2.0 * (loglik(d, top, prior) - _profile(d, top, _contrast(len(top), a, b), t, prior)[1])


def likelihood_interval(d: SoftLabels, top: np.ndarray, a: int, b: int, prior: float = ALPHA) -> tuple[float, float]:
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


def plackett_luce(k: int, orderings: Sequence[Sequence[int]], alpha: float = ALPHA) -> np.ndarray:
    """Plackett–Luce strengths of `k` items from orderings, each the items' indexes best first (`choix`).

    Raises:
        ValueError: an ordering that is not a permutation of some of the items.
    """
    import choix

    for order in orderings:
        if len(set(order)) != len(order) or any(not 0 <= x < k for x in order):
            raise ValueError(f"an ordering must list items of 0..{k - 1} once each, not {list(order)}")
    if not orderings:
        return np.zeros(k)
    strengths = np.asarray(choix.opt_rankings(k, [tuple(o) for o in orderings], alpha=alpha), dtype=float)
    return strengths - strengths.mean()


def expected_win_rates(strengths: np.ndarray) -> np.ndarray:
    """Each item's mean chance of beating each other item, sigmoid(s_i - s_j) averaged over j != i."""
    k = len(strengths)
    if k < 2:
        raise ValueError("a win rate needs at least two items")
    chances = sigmoid(strengths[:, None] - strengths[None, :])
    np.fill_diagonal(chances, 0.0)
    return chances.sum(axis=1) / (k - 1)


def connected(k: int, edges: Sequence[tuple[int, int]]) -> bool:
    """Whether the edges join all `k` items into one component (a fit compares only items the data connect)."""
    parent = list(range(k))

    def root(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in edges:
        parent[root(a)] = root(b)
    return len({root(x) for x in range(k)}) <= 1


def circular_pairs(k: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """Each item against its neighbour in a random cycle: k pairs for k >= 3 items (one for two), instead of
    k(k-1)/2; every item is compared twice and the pairs join all items."""
    if k < 2:
        return []
    if k == 2:
        return [(0, 1)]
    cycle = [int(x) for x in rng.permutation(k)]
    return [(cycle[n], cycle[(n + 1) % k]) for n in range(k)]
