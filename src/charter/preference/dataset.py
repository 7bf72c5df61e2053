"""Preference and SFT datasets in TRL's conversational format: rows from pairs and judgments, the human
calibration joined in, filters, and the files written through the run directory's owner (RunFiles).

The dataset is always rebuilt from the run store: from the items of the settings in effect, with the
stored calibration, so nothing another command wrote (calibration) is ever lost by a rebuild.
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime, timezone

from charter.preference.config import FiltersConfig
from charter.preference.manifest import DatasetManifest, DatasetSettings
from charter.records import (
    CalibrationMap, Chain, ChosenVote, Judgment, Message, OrderProbs, Pair, PreferenceRow, Provenance, SFTRow,
    as_dicts,
)
from charter.runs.files import RunFiles
from charter.runs.store import RunStore


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def calibrated_p_a(judgment: Judgment, calibration: CalibrationMap | None) -> float | None:
    """The calibrated P(a) where the calibration was fitted on this judgment's judge settings, else None."""
    if calibration is None or judgment.p_a is None or calibration.judge_fingerprint != judgment.fingerprint:
        return None
    return calibration.apply(judgment.p_a)


def preference_row(pair: Pair, judgment: Judgment, provenance: Provenance,
                   calibration: CalibrationMap | None = None) -> PreferenceRow:
    """One TRL preference row from a pair and its (ok) judgment: the preferred response is `chosen`."""
    if judgment.status != "ok" or judgment.p_a is None or judgment.p_a_ab is None:
        raise ValueError(f"pair {pair.pair_id}: a failed judgment makes no preference row")
    a_wins = judgment.p_a >= 0.5
    flip = (lambda p: p) if a_wins else (lambda p: None if p is None else 1.0 - p)
    chosen, rejected = (pair.a, pair.b) if a_wins else (pair.b, pair.a)
    p_chosen = flip(judgment.p_a)
    cal = calibrated_p_a(judgment, calibration)
    return PreferenceRow(
        **provenance.model_dump(),
        prompt=pair.prompt,
        chosen=[Message(role="assistant", content=chosen)],
        rejected=[Message(role="assistant", content=rejected)],
        p_chosen=p_chosen, p_chosen_calibrated=None if cal is None else round(flip(cal), 6),
        margin=2 * p_chosen - 1,
        pair_id=pair.pair_id, prompt_id=pair.prompt_id, pair_kind=pair.kind,
        chosen_source=pair.a_source if a_wins else pair.b_source,
        rejected_source=pair.b_source if a_wins else pair.a_source,
        principle_ids=[v.principle_id for v in judgment.principles],
        per_principle=[ChosenVote(principle_id=v.principle_id, p_chosen=flip(v.p_a), p_chosen_ab=flip(v.p_a_ab),
                                  p_chosen_ba=flip(v.p_a_ba), consistent=v.consistent) for v in judgment.principles],
        per_order=OrderProbs(ab=flip(judgment.p_a_ab), ba=flip(judgment.p_a_ba)),
        position_consistent=judgment.position_consistent,
        judge_model=judgment.judge_model, judge_mode=judgment.mode, judge_fingerprint=judgment.fingerprint,
    )


def sft_row(chain: Chain, provenance: Provenance) -> SFTRow:
    """One SFT row: the prompt and the final revision."""
    return SFTRow(**provenance.model_dump(), messages=[*chain.prompt, Message(role="assistant", content=chain.final)],
                  prompt_id=chain.prompt_id, principle_ids=chain.principle_ids, rounds=len(chain.rounds))


def _best_vs_worst(rows: list[PreferenceRow]) -> list[PreferenceRow]:
    """Per prompt, keep only the judged pair of the best sample against the worst one."""
    by_prompt: dict[str | None, list[PreferenceRow]] = defaultdict(list)
    kept = [r for r in rows if r.pair_kind != "samples"]
    for row in rows:
        if row.pair_kind == "samples":
            by_prompt[row.prompt_id].append(row)
    for group in by_prompt.values():
        score: dict[str, list[float]] = defaultdict(list)
        for row in group:
            score[row.chosen_source].append(row.p_chosen)
            score[row.rejected_source].append(1 - row.p_chosen)
        mean = {s: sum(v) / len(v) for s, v in score.items()}
        best, worst = max(mean, key=mean.get), min(mean, key=mean.get)  # type: ignore[arg-type]
        kept += [r for r in group if {r.chosen_source, r.rejected_source} == {best, worst}]
    return kept


FILTER_COUNTS = ("dropped_ties", "dropped_low_confidence_calibrated", "dropped_low_confidence",
                 "dropped_inconsistent", "dropped_duplicates", "dropped_principle_cap")


def apply_filters(rows: list[PreferenceRow], filters: FiltersConfig, strategy: str = "all",
                  calibrated_min_confidence: float | None = None) -> tuple[list[PreferenceRow], dict[str, int]]:
    """Filter preference rows; returns the kept rows and how many each filter dropped.

    A row with a calibrated probability is held to the calibration's threshold (a row whose calibrated
    side flips is always dropped); others to `filters.min_confidence` on the judge's probability.
    """
    counts = {name: 0 for name in FILTER_COUNTS}
    counts["preferences_before_filters"] = len(rows)
    if strategy == "best_vs_worst":
        before = len(rows)
        rows = _best_vs_worst(rows)
        counts["dropped_not_best_vs_worst"] = before - len(rows)
    kept: list[PreferenceRow] = []
    seen: set[str] = set()
    per_principle: dict[str, int] = defaultdict(int)
    cal_min = filters.min_confidence if calibrated_min_confidence is None else calibrated_min_confidence
    for row in rows:
        key = _dedupe_key(row) if filters.dedupe else ""
        first = row.principle_ids[0] if row.principle_ids else ""
        if filters.drop_ties and abs(row.p_chosen - 0.5) < 1e-9:
            counts["dropped_ties"] += 1
        elif row.p_chosen_calibrated is not None and row.p_chosen_calibrated < 0.5 + cal_min:
            counts["dropped_low_confidence_calibrated"] += 1
        elif row.p_chosen_calibrated is None and row.p_chosen - 0.5 < filters.min_confidence:
            counts["dropped_low_confidence"] += 1
        elif filters.drop_inconsistent and row.position_consistent is False:
            counts["dropped_inconsistent"] += 1
        elif filters.dedupe and key in seen:
            counts["dropped_duplicates"] += 1
        elif filters.max_per_principle and per_principle[first] >= filters.max_per_principle:
            counts["dropped_principle_cap"] += 1
        else:
            seen.add(key)
            per_principle[first] += 1
            kept.append(row)
    counts["preferences"] = len(kept)
    counts["calibrated"] = sum(1 for r in kept if r.p_chosen_calibrated is not None)
    return kept, counts


def _dedupe_key(row: PreferenceRow) -> str:
    return json.dumps([as_dicts(row.prompt), as_dicts(row.chosen), as_dicts(row.rejected)], ensure_ascii=False)


def current_pairs(store: RunStore, settings: DatasetSettings) -> list[Pair]:
    """The pairs built from the chains and samples of these settings, of the pair kinds asked for."""
    wanted = set(settings.pairs.kinds)
    return [p for p in store.pairs(settings.fingerprints.sources()) if p.kind in wanted]


def build(store: RunStore, settings: DatasetSettings) -> tuple[list[PreferenceRow], list[SFTRow], dict[str, int]]:
    """The preference and SFT rows of these settings, calibration joined and filters applied, with counts."""
    provenance = settings.provenance()
    calibration = store.calibration()
    judge_fp = settings.fingerprints.judge
    pairs = current_pairs(store, settings)
    judgments = {j.pair_id: j for j in store.judgments(judge_fp)}
    rows = [preference_row(p, judgments[p.pair_id], provenance, calibration) for p in pairs
            if p.pair_id in judgments and judgments[p.pair_id].status == "ok"]
    applies = calibration is not None and calibration.judge_fingerprint == judge_fp
    kept, filter_counts = apply_filters(rows, settings.filters, settings.pairs.strategy,
                                        calibration.min_confidence if applies and calibration else None)
    chains = list(store.chains(settings.fingerprints.critique)) if settings.fingerprints.critique else []
    sft = [sft_row(chain, provenance) for chain in chains]
    judged = [judgments[p.pair_id] for p in pairs if p.pair_id in judgments]
    counts = {**(store.meta("prompt_counts") or {}), "chains": len(chains), "pairs": len(pairs),
              "judged": sum(1 for j in judged if j.status == "ok"),
              "judge_failures": sum(1 for j in judged if j.status == "failed"), **filter_counts, "sft": len(sft)}
    return kept, sft, counts


def write(store: RunStore, settings: DatasetSettings) -> DatasetManifest:
    """Build the datasets of these settings and write data/preferences.* and data/sft.*; returns the manifest
    (also stored as meta `dataset`)."""
    rows, sft, counts = build(store, settings)
    files = RunFiles(store.run_dir)
    files.write_dataset("preferences", rows)
    files.write_dataset("sft", sft)
    calibration = store.calibration()
    applies = calibration is not None and calibration.judge_fingerprint == settings.fingerprints.judge
    manifest = DatasetManifest(settings=settings, written_at=now_iso(), counts=counts,
                               calibration=calibration if applies else None)
    store.set_meta(dataset=manifest)
    return manifest


def rewrite(store: RunStore) -> DatasetManifest | None:
    """Write the datasets again with the settings they were last written with (after a calibration, say)."""
    from charter.preference.manifest import dataset_manifest

    manifest = dataset_manifest(store)
    return write(store, manifest.settings) if manifest is not None else None
