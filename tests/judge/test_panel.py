"""Pooling a panel's judgments and fitting its weights on human labels."""

from __future__ import annotations

import numpy as np
import pytest

from charter.judge.panel import fit_weights, member_p_a, pool
from charter.records import Failure, Judgment, Vote


def _judgment(model: str, p_a: float, p_ab: float, p_ba: float) -> Judgment:
    vote = Vote(principle_id="harm", p_a=p_a, p_a_ab=p_ab, p_a_ba=p_ba, consistent=(p_ab > 0.5) == (p_ba > 0.5))
    return Judgment(
        pair_id="p1",
        fingerprint="f",
        status="ok",
        mode="logprobs",
        orders="both",
        judge_model=model,
        principle_ids=["harm"],
        p_a=p_a,
        p_a_ab=p_ab,
        p_a_ba=p_ba,
        position_consistent=(p_ab > 0.5) == (p_ba > 0.5),
        principles=[vote],
        prompt_tokens=10,
        completion_tokens=1,
    )


def test_the_pool_is_the_weighted_mean_with_each_members_votes_named() -> None:
    members = [{"p1": _judgment("m1", 0.9, 0.8, 1.0)}, {"p1": _judgment("m2", 0.3, 0.6, 0.0)}]
    mean = pool(members, "m1 + m2")["p1"]
    assert mean.p_a == pytest.approx(0.6) and mean.p_a_ab == pytest.approx(0.7) and mean.p_a_ba == pytest.approx(0.5)
    assert [v.judge for v in mean.principles] == ["m1", "m2"] and mean.prompt_tokens == 20
    assert member_p_a(mean, "m2") == pytest.approx(0.3) and member_p_a(mean, "m3") is None
    weighted = pool(members, "m1*0.75 + m2*0.25", [0.75, 0.25])["p1"]
    assert weighted.p_a == pytest.approx(0.75 * 0.9 + 0.25 * 0.3)


def test_a_pair_one_member_failed_is_a_failed_judgment_of_the_panel() -> None:
    failed = _judgment("m2", 0.5, 0.5, 0.5).model_copy(
        update={"status": "failed", "p_a": None, "failure": Failure(kind="unparseable", message="no letter")}
    )
    pooled = pool([{"p1": _judgment("m1", 0.9, 0.8, 1.0)}, {"p1": failed}], "m1 + m2")["p1"]
    assert pooled.status == "failed" and pooled.p_a is None and pooled.principles == []
    assert pooled.failure is not None and pooled.failure.kind == "unparseable"
    missing = pool([{"p1": _judgment("m1", 0.9, 0.8, 1.0)}, {}], "m1 + m2")["p1"]
    assert missing.status == "failed" and missing.p_a is None


def test_fitted_weights_maximise_the_likelihood_of_the_human_choices() -> None:
    rng = np.random.default_rng(0)
    truth = rng.random(2000) < 0.5
    rights = [0.9, 0.7, 0.55]
    p = np.column_stack([np.where((rng.random(2000) < r) == truth, 0.8, 0.2) for r in rights])
    weights = fit_weights(p, truth)
    assert weights.sum() == pytest.approx(1) and np.all(weights >= 0)
    assert weights[0] > weights[1] > weights[2] - 1e-9

    def loglik(w: np.ndarray) -> float:
        pooled = p @ w
        return float(np.sum(np.log(np.where(truth, pooled, 1 - pooled))))

    best = loglik(weights)
    for other in rng.dirichlet(np.ones(3), 200):  # no point of the simplex does better
        assert loglik(other) <= best + 1e-6
