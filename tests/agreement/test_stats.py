"""Agreement statistics against hand-checked values."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from charter.agreement.api import agreement_report
from charter.agreement.config import AgreementConfig
from charter.agreement.labels import new_label, open_labels, put_labels
from charter.stats import agreement as stats

CONFIG = AgreementConfig(bootstrap_samples=200, calibration="none")


def test_judge_vs_human_hand_values(hand_run: Path) -> None:
    s = agreement_report(hand_run, CONFIG).model_dump()
    jh = s["judge_vs_human"]
    # judge picks a a a b b b a b a b; alice a a a a b b b b tie tie
    assert jh["agreement"]["value"] == pytest.approx(6 / 8) and jh["agreement"]["n"] == 8
    assert jh["agreement_with_ties"]["value"] == pytest.approx(6 / 10)
    assert jh["kappa"]["value"] == pytest.approx(0.5)  # po .75, pe .5
    assert jh["kappa_with_ties"]["value"] == pytest.approx(1 / 3)  # po .6, pe .4
    lo, hi = jh["agreement"]["ci"]
    assert 0 <= lo <= 0.75 <= hi <= 1 and hi - lo > 0.1
    longer = s["baselines"]["longer_wins"]
    assert longer["agreement"]["value"] == pytest.approx(0.5) and longer["kappa"]["value"] == pytest.approx(0.0)
    first = s["baselines"]["first_shown_wins"]
    assert first["agreement"]["value"] == pytest.approx(7 / 8)
    assert first["agreement_with_ties"]["value"] == pytest.approx(7 / 10)
    assert s["by_principle"]["harm"]["agreement"]["value"] == pytest.approx(4 / 5)
    assert s["by_principle"]["honesty"]["agreement"]["value"] == pytest.approx(2 / 3)
    assert s["by_confidence"]["0.80-0.90"]["labels"] == 3  # p_a 0.8, 0.2 and 0.2
    assert s["human_human"] is None
    assert (hand_run / "report" / "agreement.md").read_text().count("Cohen's kappa") >= 2
    with open_labels(hand_run) as store:
        assert store.meta("agreement")["judge_vs_human"]["kappa"]["value"] == pytest.approx(0.5)


def test_bootstrap_is_seeded(hand_run: Path) -> None:
    one = agreement_report(hand_run, CONFIG, write=False).model_dump()["judge_vs_human"]["kappa"]["ci"]
    two = agreement_report(hand_run, CONFIG, write=False).model_dump()["judge_vs_human"]["kappa"]["ci"]
    # at 8 labels the exact interval holds the bootstrap's; the resampling itself still follows the seed
    hits = np.random.default_rng(0).random(200) < 0.7
    others = [stats.cluster_bootstrap(lambda i: float(hits[i].mean()), np.arange(200), 200, seed) for seed in (1, 2, 3)]
    assert one == two and len({tuple(c or ()) for c in others}) > 1


def test_human_human_with_two_annotators(hand_run: Path) -> None:
    bob = ["a", "b", "a", "a", "b", "tie"]  # alice: a a a a b b on p0..p5
    with open_labels(hand_run) as store:
        put_labels(store, [new_label(f"p{i}", "bob", lab, "ab") for i, lab in enumerate(bob)])
    hh = agreement_report(hand_run, CONFIG, write=False).model_dump()["human_human"]
    assert hh["comparisons"] == 6
    assert hh["agreement_with_ties"]["value"] == pytest.approx(4 / 6)
    assert hh["agreement"]["value"] == pytest.approx(4 / 5)
    # coincidences: aa 6, ab/ba 1+1, bb 2, b-tie 1+1; n_a 7, n_b 4, n_tie 1, n 12
    assert hh["krippendorff_alpha"]["value"] == pytest.approx(1 - (4 / 12) / (78 / 132))


def test_fast_kappa_matches_scikit_learn() -> None:
    rng = np.random.default_rng(1)
    for _ in range(20):
        h, j = rng.integers(0, 3, 40), rng.integers(0, 3, 40)
        for ties in (False, True):
            assert stats.kappa_fast(h, j, ties) == pytest.approx(stats.kappa(h, j, ties))


def alpha_by_hand(matrix: np.ndarray, squared: bool) -> float:
    """Krippendorff's alpha from the coincidence definition (interval: squared differences)."""
    values = []
    for column in matrix.T:
        column = column[~np.isnan(column)]
        if len(column) >= 2:
            values.append(column)
    n = sum(len(v) for v in values)
    d = (lambda x, y: (x - y) ** 2) if squared else (lambda x, y: float(x != y))
    d_o = (
        sum(sum(d(x, y) for i, x in enumerate(v) for k, y in enumerate(v) if i != k) / (len(v) - 1) for v in values) / n
    )
    pooled = np.concatenate(values)
    d_e = sum(d(x, y) for i, x in enumerate(pooled) for k, y in enumerate(pooled) if i != k) / (n * (n - 1))
    return 1 - d_o / d_e


def test_krippendorff_multi_rater_csv(shared_data: Path) -> None:
    frame = pd.read_csv(shared_data / "human_preferences" / "pyrit_hate_speech_multi_rater.csv", skiprows=1)
    matrix = frame[["human_score_1", "human_score_2", "human_score_3"]].to_numpy(dtype=float).T
    assert matrix.shape == (3, 199)
    fig = stats.alpha_figure(matrix, "interval", samples=200, seed=0)
    assert fig.value == pytest.approx(alpha_by_hand(matrix, squared=True), abs=1e-9)
    assert fig.n == 199 and fig.value is not None and fig.ci is not None and fig.ci[0] < fig.value < fig.ci[1]
    ordinal = stats.krippendorff_alpha(matrix, "ordinal")
    assert 0 < ordinal <= 1 and math.isfinite(ordinal)
    nominal = stats.krippendorff_alpha(matrix, "nominal")
    assert nominal == pytest.approx(alpha_by_hand(matrix, squared=False), abs=1e-9)
