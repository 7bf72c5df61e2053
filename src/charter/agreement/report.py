"""`charter agreement RUN_DIR`: judge vs human agreement with bootstrap intervals, breakdowns and baselines."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

import numpy as np

from charter.agreement.config import AgreementConfig, bucket_label, config_for
from charter.agreement.estimates import human_preference
from charter.agreement.items import item_agreement
from charter.agreement.labels import JudgedPair, open_labels, require_judged
from charter.agreement.panel import panel_summary, pool_weights
from charter.agreement.sampling import confidence
from charter.agreement.summary import AgreementSummary
from charter.errors import UserError
from charter.records import Judgment, Pair
from charter.runs import labels as stored
from charter.runs.store import RunStore
from charter.stats import agreement as stats
from charter.stats.agreement import judge_label


class NoLabels(UserError):
    """There are no human labels to compare the judge with yet."""


class GroupFigures(TypedDict):
    """Judge-vs-human figures of one group of labels (the dict that `summary.GroupFigures` validates)."""

    labels: int
    """Labels in the group, ties included."""
    agreement: stats.Figure
    """Raw agreement, ties excluded."""
    kappa: stats.Figure
    """Cohen's kappa, ties excluded."""


class PositionConsistency(TypedDict):
    """How often the judge's two presentation orders picked the same winner (`summary.Consistency`)."""

    rate: float | None
    """Share of consistent judgments; None without both-order judgments."""
    n: int
    """Judgments made in both orders."""


@dataclass
class Observations:
    """One row per (pair, annotator) decisive-or-tie label, with what each predictor says."""

    pair_ids: np.ndarray
    human: np.ndarray
    judge: np.ndarray
    longer: np.ndarray
    first_shown: np.ndarray
    principle: np.ndarray
    bucket: np.ndarray
    p_a: np.ndarray


def longer_label(pair: Pair) -> str:
    """The 'longer response wins' baseline."""
    la, lb = len(pair.a.strip()), len(pair.b.strip())
    return "a" if la > lb else "b" if lb > la else "tie"


def first_shown_label(judgment: Judgment | None, page_order: str) -> str:
    """The 'first-shown response wins' baseline: what the judge saw first when it saw one order (a),
    otherwise what the annotator saw first on the labeling page."""
    if judgment is not None and judgment.orders == "one":
        return "a"
    return page_order[0]


def collect(store: RunStore, judged: dict[str, JudgedPair], config: AgreementConfig) -> Observations:
    """Human labels (skips left out) lined up with the judge and the baselines."""
    sample = {r.pair_id: r for r in stored.sample(store)}
    rows: list[tuple] = []
    for label in stored.labels(store):
        item = judged.get(label.pair_id)
        if label.label == "skip" or item is None:
            continue
        spot = sample.get(label.pair_id)
        rows.append(
            (
                item.pair_id,
                label.label,
                judge_label(item.p_a, config.judge_tie_band),
                longer_label(item.pair),
                first_shown_label(item.judgment, label.shown_order),
                spot.principle_id if spot else "(none)",
                bucket_label(confidence(item.p_a), config.confidence_buckets),
                item.p_a,
            )
        )
    cols = list(zip(*rows)) if rows else [()] * 8
    code = lambda values: np.array([stats.CODES[v] for v in values], dtype=int)  # noqa: E731
    return Observations(
        np.array(cols[0], dtype=object).astype(str),
        code(cols[1]),
        code(cols[2]),
        code(cols[3]),
        code(cols[4]),
        np.array(cols[5], dtype=object).astype(str),
        np.array(cols[6], dtype=object).astype(str),
        np.array(cols[7], dtype=float),
    )


def _subset(obs: Observations, keep: np.ndarray) -> Observations:
    return Observations(*(getattr(obs, f)[keep] for f in Observations.__dataclass_fields__))


def breakdown(obs: Observations, key: np.ndarray, config: AgreementConfig) -> dict[str, GroupFigures]:
    """Agreement and kappa (ties excluded) per group.

    Args:
        obs: The labels lined up with the judge.
        key: The group of each observation (a principle id, a confidence bucket), aligned with `obs`.
        config: Bootstrap samples and seed.

    Returns:
        group -> its figures, groups in sorted order.
    """
    out: dict[str, GroupFigures] = {}
    for group in sorted(set(key.tolist())):
        part = _subset(obs, key == group)
        figures = stats.pairwise_figures(part.human, part.judge, part.pair_ids, config.bootstrap_samples, config.seed)
        out[group] = {"labels": int(len(part.human)), "agreement": figures["agreement"], "kappa": figures["kappa"]}
    return out


def human_codes(store: RunStore) -> dict[str, dict[str, int]]:
    """annotator -> {pair_id: code} for non-skip labels."""
    out: dict[str, dict[str, int]] = {}
    for row in stored.labels(store):
        if row.label != "skip":
            out.setdefault(row.annotator, {})[row.pair_id] = stats.CODES[row.label]
    return out


def position_consistency(judged: dict[str, JudgedPair], pair_ids: set[str]) -> PositionConsistency:
    """Share of the judge's both-order judgments (on the labeled pairs) that pick the same winner.

    Args:
        judged: pair id -> the pair with its judgment.
        pair_ids: The labeled pairs; those not in `judged` are passed over.

    Returns:
        The share and the number of both-order judgments it rests on.
    """
    flags = [judged[p].judgment.position_consistent for p in pair_ids if p in judged]
    flags = [f for f in flags if f is not None]
    return {"rate": float(np.mean(flags)) if flags else None, "n": len(flags)}


def compute_summary(store: RunStore, config: AgreementConfig) -> AgreementSummary:
    """The agreement summary of a run (raises NoLabels when nobody has labeled anything yet)."""
    judged = require_judged(store)
    obs = collect(store, judged, config)
    sampled, labels = stored.sample(store), stored.labels(store)
    if not len(obs.human):
        raise NoLabels(
            f"{store.run_dir}: no human labels yet ({len(sampled)} pairs sampled, {len(labels)} labels incl. skips);"
            " draw a spot-check sample (spotcheck) and label it first"
        )
    b, s = config.bootstrap_samples, config.seed
    figures = lambda pred: stats.pairwise_figures(obs.human, pred, obs.pair_ids, b, s)  # noqa: E731
    fingerprints = store.fingerprints()
    return AgreementSummary.model_validate(
        {
            "computed_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "judge_fingerprint": fingerprints.judge if fingerprints else None,
            "sampled_pairs": len(sampled),
            "labels": len(labels),
            "skips": sum(1 for r in labels if r.label == "skip"),
            "labeled_pairs": int(len(set(obs.pair_ids.tolist()))),
            "annotators": sorted({r.annotator for r in labels}),
            "judge_vs_human": figures(obs.judge),
            "human_human": stats.human_human(human_codes(store), b, s),
            "baselines": {"longer_wins": figures(obs.longer), "first_shown_wins": figures(obs.first_shown)},
            "position_consistency": position_consistency(judged, set(obs.pair_ids.tolist())),
            "by_principle": breakdown(obs, obs.principle, config),
            "by_confidence": breakdown(obs, obs.bucket, config),
            "bootstrap": {"samples": b, "seed": s, "interval": "95% percentile, resampling pairs"},
            "judge_tie_band": config.judge_tie_band,
            "human_preference": human_preference(store, judged, config),
            "panel": panel_summary(store, judged, (obs.pair_ids, obs.human), config, pool_weights(store)),
            "checklist_items": item_agreement(store, judged),
        }
    )


def agreement_summary(run_dir: str | Path, config: AgreementConfig | None = None) -> AgreementSummary:
    """Compute the summary without writing anything (used by the gate)."""
    store = open_labels(run_dir)
    try:
        return compute_summary(store, config or config_for(store))
    finally:
        store.close()
