"""How often people would prefer the dataset's chosen responses: the judge's figure corrected by the spot checks.

Every row of a run's dataset has the judge's p_chosen; the spot-checked rows also have people's labels. The
prediction-powered estimate (`charter.stats.ppi`) of the share of rows whose chosen response people prefer is
reported beside the people-only estimate from the same labels and the judge's own figure, overall and per
principle. The spot-check sample is not uniform: a stratified one weights each labelled row by its stratum (rows in
the stratum over labelled rows in it), an active one by its inverse inclusion probability.
"""

from __future__ import annotations

import random
from collections import defaultdict

import numpy as np
from pydantic import Field

from charter.agreement.config import AgreementConfig, bucket_label
from charter.agreement.labels import JudgedPair
from charter.agreement.sampling import confidence, pair_principle
from charter.records import Record
from charter.runs import labels as stored
from charter.runs.files import RunFiles
from charter.runs.store import RunStore
from charter.stats.ppi import Estimate, judge_mean, ppi_mean

#: A person's label as the share of the chosen response's win: the chosen side, a tie, the rejected side.
WON, TIED, LOST = 1.0, 0.5, 0.0
#: Fewest labelled rows a group needs for an interval: below it the normal interval is not to be trusted (four
#: labels that all agree would give a zero-width one).
MIN_LABELS = 10


class PreferenceEstimates(Record):
    """The share of rows whose chosen response people prefer, three ways, on one population of rows."""

    rows: int
    """Rows of the dataset in the population."""
    labeled: int
    """Of them, rows with a person's label."""
    ppi: Estimate | None = None
    """Prediction-powered (PPI++): the judge's p_chosen over all rows, corrected by the labelled ones; None with
    fewer than MIN_LABELS (10) labelled rows."""
    human: Estimate | None = None
    """From the labelled rows alone (the same weights); None with fewer than 10 labelled rows."""
    judge: Estimate | None = None
    """The judge's mean p_chosen: what the judge believes, with no check against people."""
    unlabeled_strata_rows: int = 0
    """Rows in sampling strata without any label: the correction cannot reach them."""


class HumanPreference(Record):
    """`charter agreement`'s estimate of how often people prefer the chosen response."""

    design: str = "stratified"
    """How the spot-check sample was drawn, hence the weights: stratified or active."""
    overall: PreferenceEstimates
    """All rows."""
    by_principle: dict[str, PreferenceEstimates] = Field(default_factory=dict)
    """Rows by the principle their spot check was (or would be) judged against."""


def human_preference(store: RunStore, judged: dict[str, JudgedPair], config: AgreementConfig) -> HumanPreference | None:
    """The estimates for a run with a dataset and labelled spot checks; None without a dataset or labels."""
    files = RunFiles(store.run_dir)
    pair_ids = [str(v) for batch in files.column_batches("preferences", "pair_id") for v in batch.to_pylist()]
    if not pair_ids:
        return None
    p_chosen = np.array([v for b in files.column_batches("preferences", "p_chosen") for v in b.to_pylist()], float)
    sample = {r.pair_id: r for r in stored.sample(store)}
    won = _human_wins(store, judged)
    seed = next(iter(sample.values())).seed if sample else config.seed
    strata = [_stratum(judged.get(pid), pid, seed, config) for pid in pair_ids]
    labeled = np.array([pid in won and pid in sample for pid in pair_ids])
    if not labeled.any():
        return None
    human = np.array([won.get(pid, np.nan) for pid in pair_ids])
    active = {pid: r.inclusion_probability for pid, r in sample.items() if r.inclusion_probability}

    def estimates(keep: np.ndarray) -> PreferenceEstimates:
        idx = np.flatnonzero(keep)
        lab = idx[labeled[idx]]
        if active:
            weights, uncovered = np.array([1 / active[pair_ids[i]] for i in lab]), 0
        else:
            weights, uncovered = _stratum_weights([strata[i] for i in idx], [strata[i] for i in lab])
        enough = lab.size >= MIN_LABELS
        return PreferenceEstimates(
            rows=int(idx.size),
            labeled=int(lab.size),
            unlabeled_strata_rows=uncovered,
            judge=judge_mean(p_chosen[idx]),
            ppi=ppi_mean(p_chosen[idx], p_chosen[lab], human[lab], weights=weights).within(0, 1) if enough else None,
            human=ppi_mean(p_chosen[idx], p_chosen[lab], human[lab], weights=weights, method="human").within(0, 1)
            if enough
            else None,
        )

    principles = np.array([s[0] for s in strata])
    return HumanPreference(
        design="active" if active else "stratified",
        overall=estimates(np.ones(len(pair_ids), dtype=bool)),
        by_principle={p: estimates(principles == p) for p in sorted(set(principles.tolist()))},
    )


def _human_wins(store: RunStore, judged: dict[str, JudgedPair]) -> dict[str, float]:
    """pair id -> the mean over its annotators of the chosen response's win (1, 0.5 for a tie, 0)."""
    votes: dict[str, list[float]] = defaultdict(list)
    for label in stored.labels(store):
        item = judged.get(label.pair_id)
        if label.label == "skip" or item is None:
            continue
        chosen = "a" if item.p_a >= 0.5 else "b"  # as the dataset row was made (preference_row)
        votes[label.pair_id].append(TIED if label.label == "tie" else WON if label.label == chosen else LOST)
    return {pid: float(np.mean(v)) for pid, v in votes.items()}


def _stratum(item: JudgedPair | None, pair_id: str, seed: int, config: AgreementConfig) -> tuple[str, str]:
    """The (principle, confidence bucket) stratum the spot-check sampling puts a pair in (`draw_sample`)."""
    if item is None:
        return ("(none)", "(none)")
    principle = pair_principle(item, random.Random(f"{seed}:{pair_id}"))
    return principle, bucket_label(confidence(item.p_a), config.confidence_buckets)


def _stratum_weights(population: list[tuple], labeled: list[tuple]) -> tuple[np.ndarray, int]:
    """Each labelled row's weight, its stratum's rows over its stratum's labelled rows; and the rows of strata
    with no label."""
    rows: dict[tuple, int] = defaultdict(int)
    have: dict[tuple, int] = defaultdict(int)
    for key in population:
        rows[key] += 1
    for key in labeled:
        have[key] += 1
    uncovered = sum(n for key, n in rows.items() if not have[key])
    return np.array([rows[key] / have[key] for key in labeled], dtype=float), uncovered
