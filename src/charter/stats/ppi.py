"""Prediction-powered inference: a few human labels correct many judge labels, with valid intervals.

The judge labels every item; people label a sample of them. The estimate of a mean (the share of rows whose chosen
response people prefer, a win rate) is the judge's mean plus a correction measured where both labelled:

    value = lam * mean(judge, all items) + mean(human - lam * judge, labelled items)

Classical PPI (Angelopoulos et al., Science 2023) takes lam = 1; PPI++ (Angelopoulos, Duchi and Zrnic 2023) tunes it
to the variance-minimising value, clipped to [0, 1], so the interval is never wider than the humans' own (lam = 0)
by more than the tuning's noise. Whatever the judge's quality, the estimate is unbiased and the normal interval
covers at its level; the better the judge, the narrower it is.

With `weights`, the labelled items were drawn with unequal probabilities (active selection: Zrnic and Candès, ICML
2024) and `weights` are the inverse inclusion probabilities. The correction is then their weighted mean (the ratio
form, which adapts to the number of items drawn),

    value = lam * mean(judge, all items) + sum(w * (human - lam * judge)) / sum(w),

which stays consistent, and with items chosen where the judge is unsure, narrower than uniform sampling at the same
number of labels. With equal weights it is the unweighted estimate.

The interval stays valid with few labels. It is value +- t * se, with Student's t quantile on n - 1 degrees of
freedom (n the human labels), the rectifier's variance estimated with n - 1 in the denominator, and that variance
never below n z^2 / (n + z^2)^2: the variance Wilson's score interval implies for a labelled sample with no variance
at all. Ten labels that all agree with the judge thus give about [0.68, 1] (Wilson's [0.72, 1]), not [1, 1], and
coverage holds at n = 5, 10, 20 for shares near 0, 0.5 and 1 (tests/agreement/test_intervals.py). With many labels
the floor does not bind and t tends to z: the interval is PPI's normal one.
"""

from __future__ import annotations

from collections.abc import Sequence
from statistics import NormalDist
from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from charter.api_args import Range, public
from charter.errors import DatasetError
from charter.stats.intervals import degenerate

#: How the judge's labels enter: tuned (PPI++), fully (classical PPI), not at all (the humans' own estimate).
Method = Literal["ppi++", "ppi", "human"]


class Estimate(BaseModel):
    """A mean with its confidence interval, and how it was made."""

    model_config = ConfigDict(frozen=True, use_attribute_docstrings=True)
    value: float
    """The point estimate."""
    low: float
    """Lower end of the (1 - alpha) interval."""
    high: float
    """Upper end."""
    se: float
    """Its standard error."""
    n_human: int
    """Human labels used."""
    n_judge: int
    """Judge labels used (0 for the humans' own estimate of an unweighted sample)."""
    lam: float
    """The power-tuning factor: 1 is classical PPI, 0 ignores the judge."""
    method: Literal["ppi++", "ppi", "human", "judge"]
    """`ppi++` (lam tuned), `ppi` (lam = 1), `human` (people only) or `judge` (the judge alone: no correction, and
    its interval covers only the judge's own mean, not what people would say)."""
    weighted: bool = False
    """The human sample was drawn with unequal probabilities (active selection) and reweighted."""
    alpha: float = 0.05
    """One minus the interval's level."""

    @property
    def width(self) -> float:
        """high - low."""
        return self.high - self.low

    def within(self, low: float = 0.0, high: float = 1.0) -> Estimate:
        """The estimate with its interval (and value) cut to the values' range, e.g. [0, 1] for a share."""
        cut = lambda v: min(max(v, low), high)  # noqa: E731
        return self.model_copy(update={"value": cut(self.value), "low": cut(self.low), "high": cut(self.high)})


def _z(alpha: float) -> float:
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    return NormalDist().inv_cdf(1 - alpha / 2)


def _array(values: Sequence[float] | np.ndarray, what: str) -> np.ndarray:
    array = np.asarray(values, dtype=float).reshape(-1)
    if not np.all(np.isfinite(array)):
        raise DatasetError(f"{what}: every value must be a finite number (a failed label is left out, not filled)")
    return array


def _interval(value: float, se: float, alpha: float, df: int | None = None) -> tuple[float, float]:
    """value +- quantile * se: the normal quantile, or Student's t on `df` degrees of freedom."""
    if df is None:
        half = _z(alpha) * se
    else:
        from scipy.stats import t

        _z(alpha)  # checks alpha
        half = float(t.ppf(1 - alpha / 2, df)) * se
    return value - half, value + half


def variance_floor(n: int, alpha: float = 0.05) -> float:
    """The least variance a rectifier of `n` labels is given: n z^2 / (n + z^2)^2, the variance that Wilson's score
    interval implies for a sample of n values in [0, 1] that are all alike (its half-width, z / (n + z^2) * sqrt(n)
    standard errors, made a standard error)."""
    z2 = _z(alpha) ** 2
    return n * z2 / (n + z2) ** 2


def _rectifier_variance(values: np.ndarray, alpha: float) -> float:
    """The rectifier's variance: unbiased (n - 1), never below `variance_floor`."""
    return max(float(values.var(ddof=1)), variance_floor(values.size, alpha))


def judge_mean(judge_all: Sequence[float] | np.ndarray, *, alpha: float = 0.05) -> Estimate:
    """The judge's mean alone, with the naive interval: how sure the judge is of itself, not of what people prefer.

    Args:
        judge_all: The judge's value for every item (a 0/1 label or a probability).
        alpha: One minus the interval's level.

    Returns:
        The estimate (method `judge`, lam 1, no human labels).

    Raises:
        DatasetError: No values, or a value that is not a finite number.
    """
    judge = _array(judge_all, "judge labels")
    if not judge.size:
        raise DatasetError("judge labels: none given")
    value, se = float(judge.mean()), float(judge.std() / np.sqrt(judge.size))
    low, high = _interval(value, se, alpha)
    return Estimate(value=value, low=low, high=high, se=se, n_human=0, n_judge=judge.size, lam=1.0, method="judge",
                    alpha=alpha)  # fmt: skip


@public
def ppi_mean(
    judge_all: Annotated[Sequence[float] | np.ndarray, Range(ge=0, le=1, each=True)],
    judge_labeled: Annotated[Sequence[float] | np.ndarray, Range(ge=0, le=1, each=True)],
    human_labeled: Annotated[Sequence[float] | np.ndarray, Range(ge=0, le=1, each=True)],
    *,
    alpha: Annotated[float, Range(gt=0, lt=1)] = 0.05,
    weights: Annotated[Sequence[float] | np.ndarray | None, Range(each=True)] = None,
    method: Method = "ppi++",
) -> Estimate:
    """The prediction-powered estimate of a mean, with its (1 - alpha) interval.

    Args:
        judge_all: The judge's value for every item, the labelled ones included (N values: a 0/1 label or a
            probability).
        judge_labeled: The judge's value for each human-labelled item (n values).
        human_labeled: The people's value for the same items, in the same order (n values).
        alpha: One minus the interval's level.
        weights: For an actively chosen sample, each labelled item's inverse inclusion probability (>= 1); None
            for a uniform sample.
        method: `ppi++` (the judge's weight tuned to minimise the variance), `ppi` (weight 1) or `human` (weight
            0: the people's own estimate, from the same sample and design).

    Returns:
        The estimate with its interval, counts and the tuning factor used.

    Raises:
        DatasetError: Fewer than two human labels, mismatched lengths, no judge labels, a value that is not a
            finite number, or a weight below 1.
    """
    judge = _array(judge_all, "judge labels")
    judged = _array(judge_labeled, "judge labels of the labelled items")
    human = _array(human_labeled, "human labels")
    n, big_n = human.size, judge.size
    if judged.size != n:
        raise DatasetError(f"{n} human labels but {judged.size} judge labels of the labelled items")
    if n < 2:
        raise DatasetError(f"an interval needs at least two human labels, got {n}")
    if not big_n:
        raise DatasetError("judge labels: none given")
    if weights is None:
        lam = _tuned(judge, judged, human) if method == "ppi++" else 1.0 if method == "ppi" else 0.0
        value = float(lam * judge.mean() + (human - lam * judged).mean())
        rectifier = _rectifier_variance(human - lam * judged, alpha)
        se = float(np.sqrt((lam * judge).std() ** 2 / big_n + rectifier / n))
    else:
        w = _array(weights, "weights")
        if w.size != n:
            raise DatasetError(f"{n} human labels but {w.size} weights")
        if np.any(w < 1 - 1e-9):
            raise DatasetError("weights are inverse inclusion probabilities: each must be at least 1")
        lam = _tuned_weighted(judge, judged, human, w) if method == "ppi++" else 1.0 if method == "ppi" else 0.0
        value, se = _weighted(judge, judged, human, w, lam, alpha)
    low, high = _interval(value, se, alpha, df=n - 1)
    return Estimate(value=value, low=low, high=high, se=se, n_human=n, n_judge=big_n, lam=float(lam),
                    method=method, weighted=weights is not None, alpha=alpha)  # fmt: skip


def _tuned(judge: np.ndarray, judged: np.ndarray, human: np.ndarray) -> float:
    """PPI++'s variance-minimising lam for a mean, clipped to [0, 1] (as ppi_py computes it)."""
    n, big_n = human.size, judge.size
    cov = float(((human - human.mean()) * (judged - judged.mean())).mean())
    var = float(np.var(np.concatenate([judged, judge]), ddof=1))
    if var <= 0:
        return 0.0  # a constant judge carries nothing
    return float(np.clip(cov / ((1 + n / big_n) * var), 0.0, 1.0))


def _weighted(
    judge: np.ndarray, judged: np.ndarray, human: np.ndarray, w: np.ndarray, lam: float, alpha: float
) -> tuple[float, float]:
    """The estimate with the correction reweighted (the ratio, Hajek, form: it adapts to the number drawn) and its
    standard error by linearisation, the rectifier's variance floored as the unweighted one's. With equal weights
    both are the unweighted PPI's."""
    n, big_n = human.size, judge.size
    norm = w * n / w.sum()  # weights with mean 1
    r = human - lam * judged
    correction = float((norm * r).sum() / n)
    rectifier = max(float(((norm * (r - correction)) ** 2).sum() / (n - 1)), variance_floor(n, alpha))
    value = float(lam * judge.mean() + correction)
    return value, float(np.sqrt(lam**2 * judge.var() / big_n + rectifier / n))


def _tuned_weighted(judge: np.ndarray, judged: np.ndarray, human: np.ndarray, w: np.ndarray) -> float:
    """The lam minimising `_weighted`'s variance, lam^2 V / N + sum(norm^2 (hc - lam jc)^2) / n^2 with hc and jc the
    human and judge values less their weighted means, clipped to [0, 1]."""
    n, big_n = human.size, judge.size
    norm = w * n / w.sum()
    hc = human - (norm * human).sum() / n
    jc = judged - (norm * judged).sum() / n
    denominator = judge.var() / big_n + float((norm**2 * jc**2).sum()) / n**2
    if denominator <= 0:
        return 0.0
    return float(np.clip(float((norm**2 * jc * hc).sum()) / n**2 / denominator, 0.0, 1.0))


def labels_needed(estimate: Estimate, target_width: float) -> int | None:
    """More human labels the interval needs to narrow to `target_width`, at the current rate (width shrinks as one
    over the square root of the labels; the judge's share of the variance is left as it is): 0 when it is there.

    Args:
        estimate: A PPI or people-only estimate.
        target_width: The interval width wanted (high - low).

    Returns:
        The number of labels to add (0 when the interval is already narrow enough); None when the interval is
        degenerate (zero width, or leaving out its own value): it is never read as narrow.

    Raises:
        ValueError: `target_width` is not positive.
    """
    if target_width <= 0:
        raise ValueError(f"target width must be positive, got {target_width}")
    if degenerate(estimate.low, estimate.high, estimate.value):
        return None
    if estimate.width <= target_width:
        return 0
    return int(np.ceil(estimate.n_human * (estimate.width / target_width) ** 2)) - estimate.n_human


# -- active selection ------------------------------------------------------------------------------------------------


def inclusion_probabilities(
    uncertainty: Sequence[float] | np.ndarray, n: float, *, uniform_share: float = 0.1
) -> np.ndarray:
    """Each item's probability of being labelled, growing with the judge's uncertainty about it.

    Proportional to `uncertainty` (for a calibrated judge the best choice is sqrt(p (1 - p)), Zrnic and Candès
    2024), mixed with a uniform share so that no item is nearly impossible to draw (its weight would be huge), scaled
    to sum to `n`, and capped at 1 with the excess spread over the others. Raising `n` never lowers a probability,
    so a sample drawn with permanent random numbers grows without breaking its design (`poisson_sample`).

    Args:
        uncertainty: One non-negative number per item; higher is more uncertain.
        n: The expected number of labels (at most the number of items).
        uniform_share: The share of each probability spread evenly over all items (0..1).

    Returns:
        The inclusion probabilities, in (0, 1], summing to `n`.

    Raises:
        DatasetError: No items, a negative or non-finite uncertainty, or `n` outside (0, number of items].
    """
    u = _array(uncertainty, "uncertainties")
    big_n = u.size
    if not big_n or np.any(u < 0):
        raise DatasetError("uncertainties: at least one, none negative")
    if not 0 < n <= big_n:
        raise DatasetError(f"expected labels must be in (0, {big_n}], got {n}")
    if not 0 <= uniform_share <= 1:
        raise ValueError(f"uniform_share must be in [0, 1], got {uniform_share}")
    share = np.full(big_n, 1 / big_n) if u.sum() == 0 else u / u.sum()
    share = (1 - uniform_share) * share + uniform_share / big_n
    pi = np.zeros(big_n)
    capped = np.zeros(big_n, dtype=bool)
    while True:  # water-filling: items past 1 are capped, the rest share what is left of n
        free = ~capped
        pi[free] = (n - capped.sum()) * share[free] / share[free].sum()
        over = free & (pi >= 1)
        if not over.any():
            break
        capped |= over
        pi[capped] = 1.0
        if capped.all():
            break
    return np.clip(pi, 0.0, 1.0)


def poisson_sample(probabilities: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """Indices of the items drawn: item i is in the sample when its permanent random number draws[i] (uniform on
    [0, 1), fixed per item) is below its inclusion probability. With larger probabilities the sample only grows."""
    return np.flatnonzero(np.asarray(draws) < np.asarray(probabilities))
