"""Agreement statistics with 95% intervals: raw agreement, Cohen's kappa (scikit-learn), Krippendorff's alpha
(`krippendorff`). Labels are coded a=0, b=1, tie=2.

Every interval resamples pairs (not single labels), so several annotators on one pair count as one cluster, and
never rests on the bootstrap alone (`charter.stats.intervals`): a share (agreement, any rate) spans its exact
Clopper-Pearson interval on as many observations as there are pairs; kappa (and alpha) span the same interval of
the agreement carried through kappa's formula, chance agreement held at its observed value,
(low - p_e) / (1 - p_e) .. (high - p_e) / (1 - p_e). Ten labels that all agree thus give agreement [0.69, 1], not
[1, 1].

Rates over pairs (a flip rate, a share of pairs supporting a principle) with their 95% intervals.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from charter.records import Record
from charter.stats.intervals import exact_interval, span

CODES = {"a": 0, "b": 1, "tie": 2}
TIE = 2


class Figure(Record):
    """A point estimate with its 95% interval and the number of observations it rests on."""

    value: float | None = None
    """The estimate; null when undefined (too few or one-sided labels)."""
    ci: list[float] | None = None
    """[low, high] of the 95% interval: a bootstrap over pairs spanned with the exact interval of a share (or, for
    kappa and alpha, that interval through the chance correction); null when it cannot be had honestly."""
    n: int = 0
    """Observations behind the estimate."""


class PairwiseFigures(Record):
    """Agreement and Cohen's kappa of two labelers, with and without ties."""

    agreement: Figure
    """Raw agreement on decisive labels (ties excluded)."""
    agreement_with_ties: Figure
    """Raw agreement, ties as a third category."""
    kappa: Figure
    """Cohen's kappa on decisive labels."""
    kappa_with_ties: Figure
    """Cohen's kappa, ties as a third category."""


class HumanHuman(Record):
    """Agreement among the human annotators (2 or more)."""

    comparisons: int = 0
    """Annotator pairs compared on a shared item."""
    agreement: Figure
    """Raw agreement on decisive labels."""
    agreement_with_ties: Figure
    """Raw agreement with ties."""
    krippendorff_alpha: Figure
    """Krippendorff's alpha (nominal)."""


def judge_label(p_a: float, band: float) -> str:
    """The judge's pick from P(A): 'a', 'b', or 'tie' inside the tie band."""
    if abs(p_a - 0.5) <= band:
        return "tie"
    return "a" if p_a > 0.5 else "b"


def _finite(value: float) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def decisive(h: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Mask of observations where neither side says tie."""
    return (h != TIE) & (j != TIE)


def compared(h: np.ndarray, j: np.ndarray, ties: bool) -> tuple[np.ndarray, np.ndarray]:
    """The observations a figure counts: all of them with `ties`, else the both-decisive ones."""
    if ties:
        return h, j
    keep = decisive(h, j)
    return h[keep], j[keep]


def agreement(h: np.ndarray, j: np.ndarray, ties: bool = False) -> float:
    """Share of observations where both sides pick the same; without ties, both-decisive ones only."""
    h, j = compared(h, j, ties)
    return float(np.mean(h == j)) if len(h) else math.nan


def kappa_fast(h: np.ndarray, j: np.ndarray, ties: bool = False) -> float:
    """Cohen's kappa from a confusion matrix (numpy, for the bootstrap; equals scikit-learn's)."""
    h, j = compared(h, j, ties)
    if not len(h):
        return math.nan
    m = np.bincount(h * 3 + j, minlength=9).reshape(3, 3) / len(h)
    po, pe = np.trace(m), float(m.sum(1) @ m.sum(0))
    return (po - pe) / (1 - pe) if pe < 1 else math.nan


def kappa(h: np.ndarray, j: np.ndarray, ties: bool = False) -> float:
    """Cohen's kappa (scikit-learn); NaN when undefined (a single category on both sides, or no data)."""
    from sklearn.metrics import cohen_kappa_score

    h, j = compared(h, j, ties)
    if not len(h):
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(cohen_kappa_score(h, j, labels=[0, 1, 2]))


#: Krippendorff's level of measurement: what a difference between two codes means.
AlphaLevel = Literal["nominal", "ordinal", "interval", "ratio"]


def krippendorff_alpha(
    matrix: np.ndarray,
    level: AlphaLevel = "nominal",
    domain: Sequence | None = None,
) -> float:
    """Krippendorff's alpha for a raters x units matrix (NaN = not rated); NaN when undefined."""
    import krippendorff

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return float(krippendorff.alpha(reliability_data=matrix, level_of_measurement=level, value_domain=domain))
    except (ValueError, ZeroDivisionError):
        return math.nan


def cluster_bootstrap(
    stat: Callable[[np.ndarray], float], clusters: np.ndarray, samples: int, seed: int
) -> list[float] | None:
    """95% percentile interval of `stat(indices)` over resamples of clusters (pair ids), seeded."""
    ids, inverse = np.unique(clusters, return_inverse=True)
    if len(ids) < 2:
        return None
    members = [np.flatnonzero(inverse == k) for k in range(len(ids))]
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(samples):
        picks = rng.integers(0, len(ids), len(ids))
        value = stat(np.concatenate([members[p] for p in picks]))
        if math.isfinite(value):
            values.append(value)
    if len(values) < samples / 2:  # the figure is undefined on most resamples: no honest interval
        return None
    low, high = np.percentile(values, [2.5, 97.5])
    return [float(low), float(high)]


def figure(
    point: float,
    stat: Callable[[np.ndarray], float],
    clusters: np.ndarray,
    n: int,
    samples: int,
    seed: int,
    floor: tuple[float, float] | None = None,
) -> Figure:
    """A point estimate with its bootstrap interval and the number of observations it rests on.

    Args:
        point: The estimate on all the data; NaN or infinite when undefined.
        stat: The estimate on a resample, given the indices of its observations.
        clusters: The cluster (pair id) of each observation; the bootstrap resamples clusters.
        n: Observations the estimate rests on.
        samples: Bootstrap resamples.
        seed: Seed of the resampling.
        floor: An interval the reported one must hold (the exact interval of a share, or kappa's bound through
            it): the bootstrap's alone collapses where every resample is alike.

    Returns:
        The figure: value None (and no interval) when `point` is not finite.
    """
    value = _finite(point)
    if value is None:
        return Figure(n=int(n))
    return Figure(value=value, ci=span(cluster_bootstrap(stat, clusters, samples, seed), floor), n=int(n))


def share_interval(hits: np.ndarray, clusters: np.ndarray) -> tuple[float, float] | None:
    """The exact interval of the share `mean(hits)` (values in [0, 1]) on as many observations as clusters."""
    if not len(hits):
        return None
    k = len(np.unique(clusters))
    return exact_interval(min(max(float(np.mean(hits)) * k, 0.0), k), k)


def share(hits: np.ndarray | Sequence[float], clusters: np.ndarray, samples: int, seed: int) -> Figure:
    """A share (0/1 outcomes, halves allowed) with its 95% interval: the exact one spanned with the cluster
    bootstrap's.

    Args:
        hits: One value in [0, 1] per observation.
        clusters: The cluster (pair id) of each observation.
        samples: Bootstrap resamples.
        seed: Seed of the resampling.

    Returns:
        The figure; value None without observations.
    """
    x = np.asarray(hits, dtype=float)
    point = float(x.mean()) if len(x) else math.nan
    floor = share_interval(x, clusters)
    return figure(point, lambda i: float(x[i].mean()), clusters, len(x), samples, seed, floor)


def chance_corrected(interval: tuple[float, float] | None, expected: float) -> tuple[float, float] | None:
    """An agreement interval carried through (p - p_e) / (1 - p_e), cut to [-1, 1]; None where p_e is 1."""
    if interval is None or not expected < 1:
        return None
    low, high = ((v - expected) / (1 - expected) for v in interval)
    return (max(low, -1.0), min(high, 1.0))


def _kappa_floor(h: np.ndarray, j: np.ndarray, clusters: np.ndarray, ties: bool) -> tuple[float, float] | None:
    if not ties:
        keep = decisive(h, j)
        h, j, clusters = h[keep], j[keep], clusters[keep]
    if not len(h):
        return None
    m = np.bincount(h * 3 + j, minlength=9).reshape(3, 3) / len(h)
    expected = float(m.sum(1) @ m.sum(0))
    return chance_corrected(share_interval((h == j).astype(float), clusters), expected)


def _share_floor(h: np.ndarray, j: np.ndarray, clusters: np.ndarray, ties: bool) -> tuple[float, float] | None:
    keep = np.ones(len(h), dtype=bool) if ties else decisive(h, j)
    return share_interval((h == j).astype(float)[keep], clusters[keep])


@dataclass(frozen=True)
class AgreementMetric:
    """One agreement metric: how it is computed and what it is called. The summary's figures, the agreement report,
    `charter agreement eval`, the dataset card and the gate read the table (`METRICS`)."""

    name: str
    """Its key in the figures, the stored summary and the gate (`kappa_with_ties`)."""
    label: str
    """Its name in words (`Cohen's kappa`)."""
    measure: Callable[..., float]
    """Its value on all the observations (NaN where undefined): of two aligned code arrays and `ties`, or of a
    raters x units matrix (`needs`)."""
    higher: str
    """What a higher value means."""
    needs: Literal["label pairs", "raters"] = "label pairs"
    """What it reads: two aligned label arrays (one entry an observation), or a raters x units matrix."""
    ties: bool = False
    """True: every observation, tie a third category; False: those where neither side says tie."""
    resampled: Callable[..., float] | None = None
    """Its value on a bootstrap resample (a faster equal of `measure`); None: `measure`."""
    floor: Callable[[np.ndarray, np.ndarray, np.ndarray, bool], tuple[float, float] | None] = _share_floor
    """The interval its reported one must hold: the exact interval of the agreement, or that carried through
    the chance correction."""
    on_card: bool = True
    """Whether the dataset card shows it (judge vs human)."""
    gate: str | None = None
    """Its name in the agreement gate's messages, where a run's config may bar it (`agreement.min_<name>`, judge vs
    human); None: no bar."""

    def title(self, without_ties: str = "no ties") -> str:
        """Its name with the observations it counts: `Cohen's kappa (no ties)`, `agreement (with ties)`."""
        return f"{self.label} ({'with ties' if self.ties else without_ties})"

    def figure(self, h: np.ndarray, j: np.ndarray, clusters: np.ndarray, samples: int, seed: int) -> Figure:
        """Its figure on two label arrays, with the interval of a bootstrap over pairs spanned with its floor."""
        n = len(h) if self.ties else int(decisive(h, j).sum())
        stat, ties = self.resampled or self.measure, self.ties
        floor = self.floor(h, j, clusters, ties)
        return figure(self.measure(h, j, ties), lambda i: stat(h[i], j[i], ties), clusters, n, samples, seed, floor)


#: every agreement metric, by name, in the order reports show them
METRICS: dict[str, AgreementMetric] = {
    m.name: m
    for m in (
        AgreementMetric("agreement", "agreement", agreement, "more often the same pick", gate="raw agreement"),
        AgreementMetric("agreement_with_ties", "agreement", agreement, "more often the same pick", ties=True),
        AgreementMetric("kappa", "Cohen's kappa", kappa, "agreement further above chance (0)",
                        resampled=kappa_fast, floor=_kappa_floor, gate="Cohen's kappa"),
        AgreementMetric("kappa_with_ties", "Cohen's kappa", kappa, "agreement further above chance (0)", ties=True,
                        resampled=kappa_fast, floor=_kappa_floor, on_card=False),
        AgreementMetric("krippendorff_alpha", "Krippendorff's alpha", krippendorff_alpha,
                        "agreement further above chance (0)", needs="raters", ties=True),
    )
}  # fmt: skip
#: the metrics of two label arrays (judge vs human, a baseline vs human, one annotator vs another)
PAIRWISE = [m for m in METRICS.values() if m.needs == "label pairs"]


def pairwise_figures(h: np.ndarray, j: np.ndarray, clusters: np.ndarray, samples: int, seed: int) -> PairwiseFigures:
    """Agreement and kappa, with and without ties, of two label arrays (one entry per observation).

    Args:
        h: One side's codes (a=0, b=1, tie=2), e.g. the human labels.
        j: The other side's codes, aligned with `h`, e.g. the judge's picks.
        clusters: The pair id of each observation; the bootstrap resamples pairs.
        samples: Bootstrap resamples per figure.
        seed: Seed of the resampling.

    Returns:
        The four figures; those without ties rest on the observations where neither side says tie.
    """
    return PairwiseFigures(**{m.name: m.figure(h, j, clusters, samples, seed) for m in PAIRWISE})


def rater_matrix(labels: dict[str, dict[str, int]]) -> tuple[np.ndarray, list[str]]:
    """annotator -> {unit: code} as a raters x units float matrix (NaN = missing) and the unit ids."""
    units = sorted({u for per in labels.values() for u in per})
    raters = sorted(labels)
    matrix = np.full((len(raters), len(units)), np.nan)
    col = {u: k for k, u in enumerate(units)}
    for r, rater in enumerate(raters):
        for unit, code in labels[rater].items():
            matrix[r, col[unit]] = code
    return matrix, units


def alpha_figure(
    matrix: np.ndarray,
    level: AlphaLevel,
    samples: int,
    seed: int,
    domain: Sequence | None = None,
    floor: tuple[float, float] | None = None,
) -> Figure:
    """Krippendorff's alpha with a bootstrap over units (columns), spanned with `floor` where given."""
    pairable = int((np.sum(~np.isnan(matrix), axis=0) >= 2).sum())
    point = krippendorff_alpha(matrix, level, domain)
    stat = lambda i: krippendorff_alpha(matrix[:, i], level, domain)  # noqa: E731
    return figure(point, stat, np.arange(matrix.shape[1]), pairable, samples, seed, floor)


def _alpha_floor(x: np.ndarray, y: np.ndarray, units: np.ndarray) -> tuple[float, float] | None:
    """Nominal alpha's bound through the agreement's exact interval, chance from the pooled codes (Scott's pi)."""
    pooled = np.bincount(np.concatenate([x, y]), minlength=3) / (2 * len(x))
    return chance_corrected(share_interval((x == y).astype(float), units), float(pooled @ pooled))


def human_pairs(labels: dict[str, dict[str, int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every (annotator, annotator) comparison on a shared unit: labels x, y and the unit ids."""
    raters = sorted(labels)
    xs, ys, units = [], [], []
    for i, r1 in enumerate(raters):
        for r2 in raters[i + 1 :]:
            for unit in sorted(set(labels[r1]) & set(labels[r2])):
                xs.append(labels[r1][unit])
                ys.append(labels[r2][unit])
                units.append(unit)
    return np.array(xs, dtype=int), np.array(ys, dtype=int), np.array(units, dtype=object)


def human_human(labels: dict[str, dict[str, int]], samples: int, seed: int) -> HumanHuman | None:
    """Human-human agreement (pairwise over annotators) and Krippendorff's alpha.

    Args:
        labels: annotator -> {pair id: code} (a=0, b=1, tie=2).
        samples: Bootstrap resamples per figure.
        seed: Seed of the resampling.

    Returns:
        The figures, all empty when no two annotators share a pair; None with fewer than 2 annotators.
    """
    if len(labels) < 2:
        return None
    x, y, units = human_pairs(labels)
    if not len(x):
        return HumanHuman(agreement=Figure(), agreement_with_ties=Figure(), krippendorff_alpha=Figure())
    matrix, _ = rater_matrix(labels)
    figures = pairwise_figures(x, y, units.astype(str), samples, seed)
    return HumanHuman(
        comparisons=int(len(x)),
        agreement=figures.agreement,
        agreement_with_ties=figures.agreement_with_ties,
        krippendorff_alpha=alpha_figure(
            matrix, "nominal", samples, seed, domain=[0, 1, 2], floor=_alpha_floor(x, y, units.astype(str))
        ),
    )


def flip_rate(original: np.ndarray, other: np.ndarray, ids: np.ndarray, samples: int, seed: int) -> Figure:
    """Share of the pairs the original decides (and the other judged) whose side reverses."""
    keep = (np.abs(original) == 1) & ~np.isnan(other)
    return share((other[keep] == -original[keep]).astype(float), ids[keep], samples, seed)
