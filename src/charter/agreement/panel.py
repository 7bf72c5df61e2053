"""A run's judge panel, member by member: how often each member agrees with the panel and with people, how far the
members agree with each other (Krippendorff's alpha), what each cost, and, with enough human labels, the weights
that make the people's choices most likely, with their out-of-fold agreement beside the plain mean's."""

from __future__ import annotations

import numpy as np

from charter.agreement.config import AgreementConfig
from charter.agreement.labels import JudgedPair
from charter.agreement.summary import (
    MIN_LABELS,
    FittedWeights,
    PanelMemberFigures,
    PanelSummary,
)
from charter.judge.panel import fit_weights, member_p_a, weights_summing_to_one
from charter.records import Record
from charter.runs.store import RunStore
from charter.runs.usage import stored_usage
from charter.stats import agreement as stats
from charter.stats.agreement import judge_label

#: Folds of the out-of-fold comparison of fitted weights with the plain mean (grouped by pair).
FOLDS = 5


def members_of(judged: dict[str, JudgedPair]) -> list[str]:
    """A panel's members in pool order (from its votes), or [] for a single judge."""
    for item in judged.values():
        names = list(dict.fromkeys(v.judge for v in item.judgment.principles if v.judge is not None))
        if names:
            return names
    return []


def pool_weights(store: RunStore) -> list[float] | None:
    """The pool weights of the run's judge panel (None: the plain mean, or one judge)."""
    judge = (store.run_config() or {}).get("judge")
    weights = judge.get("weights") if isinstance(judge, dict) else None
    return [float(w) for w in weights] if weights else None


def _member_usage(store: RunStore, member: str) -> tuple[int, int, int, float]:
    rows = [r for r in stored_usage(store) if r.role == "judge" and r.model == member]
    return (
        sum(r.calls for r in rows),
        sum(r.cached for r in rows),
        sum(r.prompt_tokens + r.completion_tokens for r in rows),
        sum(r.cost_usd for r in rows),
    )


def panel_summary(
    store: RunStore,
    judged: dict[str, JudgedPair],
    labels: tuple[np.ndarray, np.ndarray],
    config: AgreementConfig,
    weights: list[float] | None = None,
) -> PanelSummary | None:
    """The panel figures of a run whose judge is a panel (None for one judge).

    Args:
        store: The run store (its usage).
        judged: The run's judged pairs.
        labels: The human labels, skips left out: each label's pair id and its code (a=0, b=1, tie=2).
        config: Tie band, bootstrap samples and seed.
        weights: The pool weights in effect (None: the mean).
    """
    members = members_of(judged)
    if not members:
        return None
    band, b, s = config.judge_tie_band, config.bootstrap_samples, config.seed
    p = {m: {pid: member_p_a(item.judgment, m) for pid, item in judged.items()} for m in members}
    pair_ids = [pid for pid in judged if all(p[m][pid] is not None for m in members)]
    picks = {m: {pid: stats.CODES[judge_label(float(p[m][pid] or 0.0), band)] for pid in pair_ids} for m in members}
    panel_pick = {pid: stats.CODES[judge_label(judged[pid].p_a, band)] for pid in pair_ids}
    label_ids, human_codes = labels
    shares = weights_summing_to_one(weights) if weights is not None else [None] * len(members)
    out = []
    for member, weight in zip(members, shares):
        pairs = [pid for pid in pair_ids if picks[member][pid] != stats.TIE and panel_pick[pid] != stats.TIE]
        flags = [
            (item.p_a_ab > 0.5) == (item.p_a_ba > 0.5)
            for pid in pair_ids
            for item in [_member_orders(judged[pid], member)]
            if item is not None
        ]
        human = None
        if len(human_codes):
            mine = np.array([picks[member].get(pid, stats.TIE) for pid in label_ids], dtype=int)
            human = stats.pairwise_figures(human_codes, mine, label_ids, b, s)
        calls, cached, tokens, cost = _member_usage(store, member)
        out.append(
            PanelMemberFigures(
                judge=member,
                weight=weight,
                pairs=len(pair_ids),
                with_panel=float(np.mean([picks[member][pid] == panel_pick[pid] for pid in pairs])) if pairs else None,
                position_consistency=float(np.mean(flags)) if flags else None,
                judge_vs_human=human,
                calls=calls,
                cached=cached,
                tokens=tokens,
                cost_usd=cost,
            )
        )
    return PanelSummary(
        pooling="mean" if weights is None else "weighted mean",
        pairs=len(pair_ids),
        members=out,
        between_judges=stats.human_human({f"{i}:{m}": picks[m] for i, m in enumerate(members)}, b, s),
        fitted=fitted_weights(members, p, label_ids, human_codes, s),
    )


class _Orders(Record):
    p_a_ab: float
    p_a_ba: float


def _member_orders(item: JudgedPair, member: str) -> _Orders | None:
    """A member's P(A) in each order on a pair (mean over its votes), when it was asked both."""
    votes = [v for v in item.judgment.principles if v.judge == member]
    if not votes or any(v.p_a_ba is None for v in votes):
        return None
    return _Orders(
        p_a_ab=float(np.mean([v.p_a_ab for v in votes])), p_a_ba=float(np.mean([float(v.p_a_ba or 0) for v in votes]))
    )


def fitted_weights(
    members: list[str], p: dict[str, dict[str, float | None]], pair_ids: np.ndarray, human: np.ndarray, seed: int
) -> FittedWeights | None:
    """Weights fitted on the decisive human labels, and the out-of-fold agreement they reach beside the mean's."""
    keep = [
        k for k, pid in enumerate(pair_ids) if human[k] != stats.TIE and all(p[m].get(pid) is not None for m in members)
    ]
    if len(keep) < MIN_LABELS:
        return None
    ids = pair_ids[keep]
    y = human[keep] == stats.CODES["a"]
    matrix = np.array([[float(p[m][pid] or 0.0) for m in members] for pid in ids])
    groups = np.unique(ids, return_inverse=True)[1]
    folds = min(FOLDS, int(groups.max()) + 1)
    order = np.random.default_rng(seed).permutation(int(groups.max()) + 1)
    fold_of = order[groups] % folds
    fitted = np.empty(len(ids))
    for fold in range(folds):
        test = fold_of == fold
        weights = fit_weights(matrix[~test], y[~test])
        fitted[test] = matrix[test] @ weights
    mean = matrix.mean(axis=1)
    return FittedWeights(
        weights={m: round(float(w), 4) for m, w in zip(members, fit_weights(matrix, y))},
        labels=len(ids),
        folds=folds,
        agreement_fitted=_agreement(fitted, y),
        agreement_mean=_agreement(mean, y),
    )


def _agreement(p_a: np.ndarray, human_a: np.ndarray) -> float | None:
    decided = p_a != 0.5
    return float(np.mean((p_a[decided] > 0.5) == human_a[decided])) if decided.any() else None


__all__ = ["fitted_weights", "members_of", "panel_summary", "pool_weights"]
