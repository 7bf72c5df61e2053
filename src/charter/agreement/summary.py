"""How often people would prefer the dataset's chosen responses: the judge's figure corrected by the spot checks.

Every row of a run's dataset has the judge's p_chosen; the spot-checked rows also have people's labels. The
prediction-powered estimate (`charter.stats.ppi`) of the share of rows whose chosen response people prefer is
reported beside the people-only estimate from the same labels and the judge's own figure, overall and per
principle. The spot-check sample is not uniform: a stratified one weights each labelled row by its stratum (rows in
the stratum over labelled rows in it), an active one by its inverse inclusion probability.

The agreement summary as a typed record: what `charter agreement` stores (meta `agreement`), writes to
report/agreement.md, and what the gate and the dataset card read.
"""

from __future__ import annotations

import random
from collections import defaultdict

import numpy as np
from pydantic import Field

from charter.agreement.config import AgreementConfig, bucket_label
from charter.agreement.items import ItemAgreement, StepAgreement
from charter.agreement.labels import JudgedPair
from charter.agreement.sampling import confidence, pair_principle
from charter.records import Record
from charter.runs import labels as stored
from charter.runs.files import RunFiles
from charter.runs.store import RunStore
from charter.stats.agreement import Figure, HumanHuman, PairwiseFigures
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


class Baselines(Record):
    """What trivial judges would score against the same human labels."""

    longer_wins: PairwiseFigures
    """'The longer response is better'."""
    first_shown_wins: PairwiseFigures
    """'The response shown first is better'."""


class Consistency(Record):
    """How often the judge's two presentation orders picked the same winner."""

    rate: float | None = None
    """Share of consistent judgments; null without both-order judgments."""
    n: int = 0
    """Judgments in both orders."""


class GroupFigures(Record):
    """Judge-vs-human figures for one group (a principle, a confidence bucket)."""

    labels: int
    """Labels in the group."""
    agreement: Figure
    """Raw agreement, ties excluded."""
    kappa: Figure
    """Cohen's kappa, ties excluded."""


class Bootstrap(Record):
    """How the intervals were made."""

    samples: int
    """Resamples."""
    seed: int
    """Seed."""
    interval: str
    """Kind of interval."""


class CalibrationFit(Record):
    """The calibration `charter agreement` fitted (or why it did not)."""

    skipped: str | None = None
    """Why no calibration was fitted; null when one was."""
    method: str | None = None
    """platt, temperature or isotonic."""
    labels: int = 0
    """Decisive human labels it was fitted on."""
    ece_before: float | None = None
    """Expected calibration error of the judge's P(A) on those labels."""
    ece_after: float | None = None
    """ECE of the calibrated P(A), in sample."""
    ece_after_cv: float | None = None
    """ECE of the calibrated P(A), cross-fitted (out of fold, by pair)."""
    temperature: float | None = None
    """The fitted temperature (temperature scaling)."""
    min_confidence: float | None = None
    """The calibrated confidence threshold rows are held to in the dataset."""
    reliability_png: str | None = None
    """The reliability diagram, relative to the run directory."""


class PanelMemberFigures(Record):
    """One member of a run's judge panel, on its own."""

    judge: str
    """The member's model."""
    weight: float | None = None
    """Its weight in the pool (null: the plain mean)."""
    pairs: int = 0
    """Pairs it judged (those the whole panel judged)."""
    with_panel: float | None = None
    """Share of the pairs where the member and the panel both pick a side on which they pick the same one."""
    position_consistency: float | None = None
    """Share of its both-order judgments whose two orders picked the same winner."""
    judge_vs_human: PairwiseFigures | None = None
    """Its own pick against the human labels (null before there are labels)."""
    calls: int = 0
    """Calls it answered (the call cache's answers not counted)."""
    cached: int = 0
    """Calls the call cache answered."""
    tokens: int = 0
    """Prompt and completion tokens of its answered calls."""
    cost_usd: float = 0.0
    """Priced cost of its answered calls."""


class FittedWeights(Record):
    """Pool weights fitted on the human labels, checked out of fold against the plain mean."""

    weights: dict[str, float]
    """Member -> weight, fitted on all the decisive labels (to put in `judge.weights`)."""
    labels: int
    """Decisive human labels they were fitted on."""
    folds: int
    """Folds of the out-of-fold check (grouped by pair)."""
    agreement_fitted: float | None = None
    """Out-of-fold agreement with people of the pool with weights fitted on the other folds."""
    agreement_mean: float | None = None
    """Agreement with people of the plain mean on the same labels (it fits nothing)."""


class PanelSummary(Record):
    """A run's judge panel: each member, the members against each other, and fitted weights."""

    pooling: str
    """How the members' P(A) are pooled: `mean` or `weighted mean`."""
    pairs: int
    """Pairs the whole panel judged."""
    members: list[PanelMemberFigures]
    """Each member on its own."""
    between_judges: HumanHuman | None = None
    """The members' picks against each other: pairwise agreement and Krippendorff's alpha (nominal), with 95%
    intervals over pairs."""
    fitted: FittedWeights | None = None
    """Weights fitted on the human labels (null with fewer than 10 decisive labels)."""


class AgreementSummary(Record):
    """Judge vs human agreement of a run, with 95% intervals, baselines and breakdowns."""

    computed_at: str
    """When (ISO 8601, UTC)."""
    judge_fingerprint: str | None = None
    """The judge settings whose judgments were compared."""
    sampled_pairs: int
    """Pairs in the spot-check sample."""
    labels: int
    """Labels, skips included."""
    skips: int
    """Skipped pairs."""
    labeled_pairs: int
    """Pairs with at least one non-skip label."""
    annotators: list[str]
    """Who labeled."""
    judge_vs_human: PairwiseFigures
    """The judge against the human labels."""
    human_human: HumanHuman | None = None
    """Humans against each other (2+ annotators)."""
    baselines: Baselines
    """Trivial judges against the same labels."""
    position_consistency: Consistency
    """The judge's position consistency on the labeled pairs."""
    by_principle: dict[str, GroupFigures] = Field(default_factory=dict)
    """Per principle."""
    by_confidence: dict[str, GroupFigures] = Field(default_factory=dict)
    """Per judge-confidence bucket."""
    bootstrap: Bootstrap
    """How the intervals were made."""
    judge_tie_band: float = 0.0
    """|P(A) - 0.5| at or below which the judge counts as saying tie."""
    calibration: CalibrationFit | None = None
    """The calibration fitted from these labels."""
    human_preference: HumanPreference | None = None
    """How often people would prefer the dataset's chosen responses: PPI, people-only and judge-only estimates
    (None before the run has a dataset)."""
    panel: PanelSummary | None = None
    """A judge panel's members against people, the panel and each other, their cost, and fitted weights (None
    for one judge)."""
    checklist_items: list[ItemAgreement] = Field(default_factory=list)
    """Judge mode `checklist`: people's agreement with the judge item by item (verdicts on single items), each with
    a Wilson 95% interval; empty when nobody judged an item."""
    trajectory_steps: list[StepAgreement] = Field(default_factory=list)
    """A step-judging mode: people's first violating steps of trajectories against the judge's, per principle, with
    the share of the same step and of the same verdict (violates or not), each with a Wilson 95% interval; empty
    when nobody labeled a step."""


def stored_summary(store: RunStore) -> AgreementSummary | None:
    """The latest agreement summary of a run, if `charter agreement` has been run."""
    return store.meta_record("agreement", AgreementSummary)
