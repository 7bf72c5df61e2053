"""A panel of judges (Verga et al. 2024, "Replacing Judges with Juries"): several judge models answer each
comparison, and the panel's P(A) is their mean, or a weighted mean with weights fitted on human labels.

A panel is a judge made of judges (as inspect_ai's `multi_scorer` is a scorer made of scorers): `judge_pair` judges
a pair with a panel as with one model, the panel asking each member and pooling their judgments. Each member's votes
stay in the judgment (`Vote.judge` names the member). A pair that any member fails to judge is a failed judgment of
the panel: never a mean of fewer judges.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from charter.constitutions.schema import Constitution
from charter.judge.judgment import ChecklistCriteria, JudgeOptions, gather_all
from charter.judge.pairwise import judge_pair
from charter.providers.base import ChatModel
from charter.records import Judgment, Pair

#: Member probabilities are held inside this band when weights are fitted: a member that says 0 or 1 on a pair people
#: decide the other way would otherwise make the likelihood zero whatever its weight.
_EDGE = 1e-3


def panel_label(models: Sequence[str], weights: Sequence[float] | None = None) -> str:
    """The panel as one model id: its members joined by ` + `, each with its weight where weights are set."""
    if weights is None:
        return " + ".join(models)
    return " + ".join(f"{m}*{w:g}" for m, w in zip(models, weights_summing_to_one(weights)))


def weights_summing_to_one(weights: Sequence[float]) -> list[float]:
    """Weights scaled to sum to 1, rounded to 4 places (as labels and fingerprints name them)."""
    total = float(sum(weights))
    return [round(float(w) / total, 4) for w in weights]


class Panel:
    """Judge models that answer as one judge: `judge_pair` takes a panel where it takes one judge model."""

    def __init__(self, members: Sequence[ChatModel], weights: Sequence[float] | None = None) -> None:
        if len(members) < 2:
            raise ValueError("a panel needs at least two judge models")
        if weights is not None and len(weights) != len(members):
            raise ValueError(f"{len(weights)} weights for {len(members)} judges")
        self.members = list(members)
        self.weights = weights_summing_to_one(weights) if weights is not None else None

    @property
    def model_id(self) -> str:
        """The members' model ids (and weights), as one label."""
        return panel_label([m.model_id for m in self.members], self.weights)

    @property
    def served_id(self) -> str:
        """The members' served ids (and weights): what the panel's fingerprints name."""
        return panel_label([m.served_id for m in self.members], self.weights)

    async def judge_pair(
        self,
        constitution: Constitution,
        pair: Pair,
        settings: JudgeOptions,
        principle_ids: list[str],
        judge_fp: str,
        criteria: ChecklistCriteria | None = None,
    ) -> Judgment:
        """The panel's judgment of one pair: each member's judgment, pooled (`pool`); every member's calls run to
        their end before an error that dooms the run is raised."""
        judgments = await gather_all(
            *(judge_pair(m, constitution, pair, settings, principle_ids, judge_fp, criteria) for m in self.members)
        )
        return pool([{pair.pair_id: j} for j in judgments], self.model_id, self.weights)[pair.pair_id]

    async def aclose(self) -> None:
        for member in self.members:
            await member.aclose()


judge_pair.register(Panel, Panel.judge_pair)


def weighted_mean(values: Sequence[float], weights: Sequence[float] | None) -> float:
    """The mean of the members' probabilities, weighted where weights are set."""
    return float(np.average(values, weights=weights))


def pool(members: list[dict[str, Judgment]], label: str, weights: Sequence[float] | None = None) -> dict[str, Judgment]:
    """The panel's judgment of each pair from its members' judgments (in member order).

    The panel's P(A), and P(A) in each order, is the members' mean (weighted with `weights`); its votes are the
    members' votes side by side, each naming its member; its tokens are their sum. A pair that any member failed
    to judge, or did not judge, is a failed judgment of the panel (the first member failure's reason).
    """
    pooled: dict[str, Judgment] = {}
    for pair_id in members[0]:
        found = [m.get(pair_id) for m in members]
        first = found[0]
        assert first is not None  # pair ids come from the first member
        failed = next((j for j in found if j is None or j.status != "ok"), None)
        if failed is not None or any(j is None for j in found):
            pooled[pair_id] = first.model_copy(
                update={
                    "status": "failed",
                    "failure": failed.failure if failed is not None else None,
                    "p_a": None,
                    "p_a_ab": None,
                    "p_a_ba": None,
                    "position_consistent": None,
                    "principles": [],
                    "judge_model": label,
                }
            )
            continue
        ok = [j for j in found if j is not None]
        pooled[pair_id] = pool_one(ok, label, weights)
    return pooled


def pool_one(judgments: Sequence[Judgment], label: str, weights: Sequence[float] | None = None) -> Judgment:
    """One pair's panel judgment from its members' ok judgments (in member order)."""
    first = judgments[0]
    p_ab = weighted_mean([float(j.p_a_ab or 0.0) for j in judgments], weights)
    both = all(j.p_a_ba is not None for j in judgments)
    p_ba = weighted_mean([float(j.p_a_ba or 0.0) for j in judgments], weights) if both else None
    return first.model_copy(
        update={
            "judge_model": label,
            "p_a": weighted_mean([float(j.p_a or 0.0) for j in judgments], weights),
            "p_a_ab": p_ab,
            "p_a_ba": p_ba,
            "position_consistent": None if p_ba is None else (p_ab > 0.5) == (p_ba > 0.5),
            "principles": [
                v.model_copy(update={"judge": v.judge or j.judge_model}) for j in judgments for v in j.principles
            ],
            "prompt_tokens": sum(j.prompt_tokens for j in judgments),
            "completion_tokens": sum(j.completion_tokens for j in judgments),
        }
    )


def member_p_a(judgment: Judgment, member: str) -> float | None:
    """A member's own P(A) on a panel's pair: the mean of its votes (None when it cast none)."""
    votes = [v.p_a for v in judgment.principles if v.judge == member]
    return float(np.mean(votes)) if votes else None


def fit_weights(p_a: np.ndarray, human_a: np.ndarray, iterations: int = 500, tol: float = 1e-10) -> np.ndarray:
    """Mixture weights of the members that make the people's choices most likely.

    The panel's P(A) is sum_i w_i p_i with w on the simplex; the log-likelihood of the human choices is concave in w,
    and EM's update (each weight becomes the mean share of its member in the likelihood of each choice) climbs to its
    maximum.

    Args:
        p_a: (pairs, members) each member's P(A).
        human_a: (pairs,) whether people preferred `a` (ties left out by the caller).

    Returns:
        The weights, summing to 1.
    """
    p = np.clip(np.asarray(p_a, dtype=float), _EDGE, 1 - _EDGE)
    likelihood = np.where(np.asarray(human_a, dtype=bool)[:, None], p, 1 - p)
    weights = np.full(p.shape[1], 1 / p.shape[1])
    for _ in range(iterations):
        share = likelihood * weights
        share /= share.sum(axis=1, keepdims=True)
        updated = share.mean(axis=0)
        if np.abs(updated - weights).max() < tol:
            return updated
        weights = updated
    return weights


__all__ = [
    "Panel",
    "fit_weights",
    "member_p_a",
    "panel_label",
    "pool",
    "pool_one",
    "weighted_mean",
    "weights_summing_to_one",
]
