"""The agreement metrics are one table (`charter.stats.agreement.METRICS`): the figures of two label arrays, the
stored summary's fields, the agreement report's rows and the dataset card's names are read from it."""

from __future__ import annotations

import numpy as np

from charter.agreement.report import FIGURES
from charter.agreement.summary import HumanHuman, PairwiseFigures
from charter.stats import agreement as stats

HUMAN = np.array([0, 1, 0, 2, 1, 0, 1, 1, 0, 2])
JUDGE = np.array([0, 1, 1, 2, 1, 0, 0, 1, 0, 0])
PAIRS = np.array([f"p{i}" for i in range(len(HUMAN))])


def test_the_figures_of_two_label_arrays_are_the_table_s_pairwise_metrics() -> None:
    figures = stats.pairwise_figures(HUMAN, JUDGE, PAIRS, samples=200, seed=0)
    names = [m.name for m in stats.PAIRWISE]
    assert list(figures.model_dump()) == names == list(PairwiseFigures.model_fields)
    assert {"agreement", "krippendorff_alpha"} <= set(HumanHuman.model_fields) <= {*stats.METRICS, "comparisons"}


def test_each_figure_is_its_entry_s_measure_on_the_observations_it_counts() -> None:
    figures = stats.pairwise_figures(HUMAN, JUDGE, PAIRS, samples=200, seed=0)
    decisive = int(stats.decisive(HUMAN, JUDGE).sum())
    for metric in stats.PAIRWISE:
        figure = getattr(figures, metric.name)
        assert figure.value == metric.measure(HUMAN, JUDGE, metric.ties)
        assert figure.n == (len(HUMAN) if metric.ties else decisive)
        low, high = figure.ci or (None, None)
        assert low is not None and high is not None and low <= figure.value <= high
    assert figures.agreement.value == 6 / 8 and figures.agreement_with_ties.value == 0.7


def test_the_report_and_the_card_name_the_figures_from_the_table() -> None:
    assert FIGURES == (
        ("agreement", "agreement (no ties)"),
        ("agreement_with_ties", "agreement (with ties)"),
        ("kappa", "Cohen's kappa (no ties)"),
        ("kappa_with_ties", "Cohen's kappa (with ties)"),
    )
    assert stats.METRICS["kappa"].title("ties excluded") == "Cohen's kappa (ties excluded)"
    assert [m.name for m in stats.METRICS.values() if m.needs == "raters"] == ["krippendorff_alpha"]
    assert all(m.higher for m in stats.METRICS.values())
