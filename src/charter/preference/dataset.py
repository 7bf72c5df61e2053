"""Preference and SFT datasets in TRL's conversational format: rows from pairs and judgments, the human
calibration joined in, filters, and the files written through the run directory's owner (RunFiles).

The dataset is always rebuilt from the run store: from the items of the settings in effect, with the
stored calibration, so nothing another command wrote (calibration) is ever lost by a rebuild.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterable, Iterator

from charter.messages import last_text
from charter.preference.config import FiltersConfig
from charter.preference.manifest import DatasetManifest, DatasetSettings
from charter.records import (
    CalibrationMap, Chain, ChosenVote, Judgment, Message, OrderProbs, Pair, PreferenceRow, Prompt, Provenance,
    SFTRow, as_dicts,
)
from charter.runs.files import RunFiles
from charter.runs.store import RunStore
from charter.verify import check, resolve, verifier_name


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def calibrated_p_a(judgment: Judgment, calibration: CalibrationMap | None) -> float | None:
    """The calibrated P(a) where the calibration was fitted on this judgment's judge settings, else None."""
    if calibration is None or judgment.p_a is None or calibration.judge_fingerprint != judgment.fingerprint:
        return None
    return calibration.apply(judgment.p_a)


class Checks:
    """The verifier of each prompt that has one (charter.verify), for the rows of its responses."""

    def __init__(self, prompts: Iterable[Prompt], default: str) -> None:
        self.by_prompt: dict[str, tuple[str, str | None, str]] = {}
        for p in prompts:
            name = verifier_name(p.verifier, p.reference, default)
            if name is not None:
                resolve(name)  # an unknown verifier is a one-line error before any row is written
                self.by_prompt[p.prompt_id] = (name, p.reference, last_text(p.messages))

    def __call__(self, prompt_id: str | None, response: str) -> bool | None:
        """Whether the response passes its prompt's check; None when the prompt has none."""
        found = self.by_prompt.get(prompt_id or "")
        return None if found is None else check(response, found[0], found[1], found[2])


def preference_row(pair: Pair, judgment: Judgment, provenance: Provenance,
                   calibration: CalibrationMap | None = None, checks: Checks | None = None) -> PreferenceRow:
    """One TRL preference row from a pair and its (ok) judgment: the preferred response is `chosen`."""
    if judgment.status != "ok" or judgment.p_a is None or judgment.p_a_ab is None:
        raise ValueError(f"pair {pair.pair_id}: a failed judgment makes no preference row")
    a_wins = judgment.p_a >= 0.5
    flip = (lambda p: p) if a_wins else (lambda p: None if p is None else 1.0 - p)
    chosen, rejected = (pair.a, pair.b) if a_wins else (pair.b, pair.a)
    p_chosen = flip(judgment.p_a)
    cal = calibrated_p_a(judgment, calibration)
    return PreferenceRow(
        **dict(provenance),
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
        chosen_verified=checks(pair.prompt_id, chosen) if checks else None,
        rejected_verified=checks(pair.prompt_id, rejected) if checks else None,
    )


def sft_row(chain: Chain, provenance: Provenance, checks: Checks | None = None) -> SFTRow:
    """One SFT row: the prompt and the final revision."""
    return SFTRow(**dict(provenance), messages=[*chain.prompt, Message(role="assistant", content=chain.final)],
                  prompt_id=chain.prompt_id, principle_ids=chain.principle_ids, rounds=len(chain.rounds),
                  verified=checks(chain.prompt_id, chain.final) if checks else None)


@dataclass(frozen=True, slots=True)
class Candidate:
    """What the filters look at in a preference row: a few fields and a digest of its texts. Small, so that
    a dataset of any size is filtered without holding its rows."""

    index: int
    prompt_id: str | None
    pair_kind: str
    chosen_source: str
    rejected_source: str
    p_chosen: float
    p_chosen_calibrated: float | None
    position_consistent: bool | None
    first_principle: str
    digest: bytes
    chosen_verified: bool | None = None

    @classmethod
    def of(cls, row: PreferenceRow, index: int) -> "Candidate":
        text = json.dumps([as_dicts(row.prompt), as_dicts(row.chosen), as_dicts(row.rejected)], ensure_ascii=False)
        return cls(index, row.prompt_id, row.pair_kind, row.chosen_source, row.rejected_source, row.p_chosen,
                   row.p_chosen_calibrated, row.position_consistent,
                   row.principle_ids[0] if row.principle_ids else "", hashlib.sha256(text.encode()).digest(),
                   row.chosen_verified)


def _best_vs_worst(rows: list[Candidate]) -> list[Candidate]:
    """Per prompt, keep only the judged pair of the best sample against the worst one."""
    by_prompt: dict[str | None, list[Candidate]] = defaultdict(list)
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
EPS = 1e-9  # 0.6 - 0.5 is 0.0999...: a margin equal to the threshold is not below it


def select(rows: list[Candidate], filters: FiltersConfig, strategy: str = "all",
           calibrated_min_confidence: float | None = None) -> tuple[list[int], dict[str, int]]:
    """The indices of the rows the filters keep, in the order kept, and how many each filter dropped.

    A row with a calibrated probability is held to the calibration's threshold (a row whose calibrated
    side flips is always dropped); others to `filters.min_confidence` on the judge's probability.
    """
    counts = {name: 0 for name in FILTER_COUNTS}
    counts["preferences_before_filters"] = len(rows)
    if any(row.chosen_verified is not None for row in rows):  # a step of the waterfall only where it can act
        counts["dropped_failed_verification"] = 0
    if strategy == "best_vs_worst":
        before = len(rows)
        rows = _best_vs_worst(rows)
        counts["dropped_not_best_vs_worst"] = before - len(rows)
    kept: list[int] = []
    seen: set[str] = set()
    per_principle: dict[str, int] = defaultdict(int)
    cal_min = filters.min_confidence if calibrated_min_confidence is None else calibrated_min_confidence
    calibrated = 0
    for row in rows:
        if filters.verify == "drop" and row.chosen_verified is False:
            counts["dropped_failed_verification"] += 1
        elif filters.drop_ties and abs(row.p_chosen - 0.5) < EPS:
            counts["dropped_ties"] += 1
        elif row.p_chosen_calibrated is not None and row.p_chosen_calibrated < 0.5 + cal_min - EPS:
            counts["dropped_low_confidence_calibrated"] += 1
        elif row.p_chosen_calibrated is None and row.p_chosen - 0.5 < filters.min_confidence - EPS:
            counts["dropped_low_confidence"] += 1
        elif filters.drop_inconsistent and row.position_consistent is False:
            counts["dropped_inconsistent"] += 1
        elif filters.dedupe and row.digest in seen:
            counts["dropped_duplicates"] += 1
        elif filters.max_per_principle and per_principle[row.first_principle] >= filters.max_per_principle:
            counts["dropped_principle_cap"] += 1
        else:
            seen.add(row.digest)
            per_principle[row.first_principle] += 1
            kept.append(row.index)
            calibrated += row.p_chosen_calibrated is not None
    counts["preferences"] = len(kept)
    counts["calibrated"] = calibrated
    return kept, counts


def apply_filters(rows: list[PreferenceRow], filters: FiltersConfig, strategy: str = "all",
                  calibrated_min_confidence: float | None = None) -> tuple[list[PreferenceRow], dict[str, int]]:
    """Filter preference rows; returns the kept rows and how many each filter dropped (see `select`)."""
    kept, counts = select([Candidate.of(row, i) for i, row in enumerate(rows)], filters, strategy,
                          calibrated_min_confidence)
    return [rows[i] for i in kept], counts


def _judged_rows(store: RunStore, settings: DatasetSettings, counts: dict[str, int] | None = None
                 ) -> Iterator[PreferenceRow]:
    """The preference row of every current pair with a successful judgment, in pair order, one at a time."""
    provenance, calibration = settings.provenance(), store.calibration()
    checks = Checks(store.iter_prompts(checked_only=True), settings.filters.verifier)
    kinds = set(settings.pairs.kinds)
    for pair, judgment in store.pairs_with_judgments(settings.fingerprints.sources(), settings.fingerprints.judge):
        if pair.kind not in kinds:
            continue
        if counts is not None:
            counts["pairs"] += 1
            counts["judged" if judgment is not None and judgment.status == "ok" else
                   "judge_failures" if judgment is not None else "unjudged"] += 1
        if judgment is not None and judgment.status == "ok":
            yield preference_row(pair, judgment, provenance, calibration, checks)


def build(store: RunStore, settings: DatasetSettings) -> tuple[list[int], dict[str, int]]:
    """Which current rows the dataset keeps (their positions in pair order), calibration joined and filters
    applied, with the counts. Two passes over the store keep memory flat: this one holds only candidates."""
    counts = {"pairs": 0, "judged": 0, "judge_failures": 0, "unjudged": 0}
    candidates = [Candidate.of(row, i) for i, row in enumerate(_judged_rows(store, settings, counts))]
    calibration = store.calibration()
    applies = calibration is not None and calibration.judge_fingerprint == settings.fingerprints.judge
    kept, filter_counts = select(candidates, settings.filters, settings.pairs.strategy,
                                 calibration.min_confidence if applies and calibration else None)
    del counts["unjudged"]
    return kept, {**(store.meta("prompt_counts") or {}), **counts, **filter_counts}


def kept_rows(store: RunStore, settings: DatasetSettings, kept: list[int]) -> Iterator[PreferenceRow]:
    """The second pass: the kept rows, in pair order."""
    wanted = set(kept)
    return (row for i, row in enumerate(_judged_rows(store, settings)) if i in wanted)


def sft_rows(store: RunStore, settings: DatasetSettings, counter: dict[str, int]) -> Iterator[SFTRow]:
    """The SFT rows of these settings' chains, one at a time (counted into `counter`)."""
    provenance = settings.provenance()
    if settings.fingerprints.critique is None:
        return
    checks = Checks(store.iter_prompts(checked_only=True), settings.filters.verifier)
    for chain in store.chains(settings.fingerprints.critique):
        row = sft_row(chain, provenance, checks)
        if row.verified is False:
            counter["sft_failed_verification"] = counter.get("sft_failed_verification", 0) + 1
            if settings.filters.verify == "drop":
                continue
        counter["sft"] = counter.get("sft", 0) + 1
        yield row


def write(store: RunStore, settings: DatasetSettings) -> DatasetManifest:
    """Build the datasets of these settings and write data/preferences.* and data/sft.*; returns the manifest
    (also stored as meta `dataset`). When neither the settings nor the store changed since the files were
    written, they are left as they are."""
    from charter.preference.manifest import dataset_manifest, store_marker

    marker = store_marker(store)
    files = RunFiles(store.run_dir)
    last = dataset_manifest(store)
    if (last is not None and last.settings == settings and last.store_marker == marker
            and files.has_dataset("preferences") and files.has_dataset("sft")):
        return last
    kept, counts = build(store, settings)
    files.write_dataset("preferences", kept_rows(store, settings, kept))
    sft_counts = {"sft": 0}
    files.write_dataset("sft", sft_rows(store, settings, sft_counts))
    counts.update(chains=sft_counts["sft"] + (sft_counts.get("sft_failed_verification", 0)
                                              if settings.filters.verify == "drop" else 0), **sft_counts)
    calibration = store.calibration()
    applies = calibration is not None and calibration.judge_fingerprint == settings.fingerprints.judge
    manifest = DatasetManifest(settings=settings, written_at=now_iso(), counts=counts,
                               calibration=calibration if applies else None, store_marker=marker)
    store.set_meta(dataset=manifest)
    return manifest


def rewrite(store: RunStore) -> DatasetManifest | None:
    """Write the datasets again with the settings they were last written with (after a calibration, say)."""
    from charter.preference.manifest import dataset_manifest

    manifest = dataset_manifest(store)
    return write(store, manifest.settings) if manifest is not None else None
