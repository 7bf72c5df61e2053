"""The rows of the datasets in TRL's conversational format: a preference row from a pair and its judgment (the human
calibration joined in, the prompt's check applied), an SFT row from a critique chain; and the rows of a run's
settings, read from its store one at a time."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from charter.checklist.check import side_score
from charter.checklist.store import stored_checklist
from charter.preference.manifest import DatasetSettings
from charter.records import (
    CalibrationMap,
    Chain,
    ChosenVote,
    Judgment,
    Message,
    OrderProbs,
    Pair,
    PreferenceRow,
    Prompt,
    Provenance,
    SFTRow,
)
from charter.records.base import last_text
from charter.runs.items import iter_prompts, pairs_with_judgments, stored_chains
from charter.runs.store import RunStore
from charter.verify import check, resolve, verifier_name


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


def preference_row(
    pair: Pair,
    judgment: Judgment,
    provenance: Provenance,
    calibration: CalibrationMap | None = None,
    checks: Checks | None = None,
    checklist: list[dict[str, Any]] | None = None,
) -> PreferenceRow:
    """One TRL preference row from a pair and its (ok) judgment: the preferred response is `chosen`."""
    if judgment.status != "ok" or judgment.p_a is None or judgment.p_a_ab is None:
        raise ValueError(f"pair {pair.pair_id}: a failed judgment makes no preference row")
    a_wins = judgment.p_a >= 0.5

    def flip(p: float) -> float:
        return p if a_wins else 1.0 - p

    def flip_or_none(p: float | None) -> float | None:
        return None if p is None else flip(p)

    def side(a: float | None, b: float | None, chosen_side: bool) -> float | None:
        return (a if a_wins else b) if chosen_side else (b if a_wins else a)

    def mean_score(chosen_side: bool) -> float | None:
        scores = [side(v.score_a, v.score_b, chosen_side) for v in judgment.principles]
        present = [s for s in scores if s is not None]
        return sum(present) / len(present) if present and len(present) == len(scores) else None

    chosen, rejected = (pair.a, pair.b) if a_wins else (pair.b, pair.a)
    steps = (pair.step("a"), pair.step("b")) if a_wins else (pair.step("b"), pair.step("a"))
    proposes = bool(pair.a_tool_calls or pair.b_tool_calls)
    p_chosen = flip(judgment.p_a)
    checked = judgment.checklist
    sides = (None, None) if checked is None else (checked.a, checked.b) if a_wins else (checked.b, checked.a)
    scores = (mean_score(True), mean_score(False))
    if checked is not None:  # the checklist's own scores, under the aggregation the judgment used
        scores = tuple(side_score(s, checked.aggregation) for s in sides)  # type: ignore[assignment]
    cal = calibrated_p_a(judgment, calibration)
    return PreferenceRow(
        **dict(provenance),
        prompt=pair.prompt,
        chosen=[steps[0]],
        rejected=[steps[1]],
        policy_actions="proposed" if proposes else None,
        p_chosen=p_chosen,
        p_chosen_calibrated=None if cal is None else round(flip(cal), 6),
        margin=2 * p_chosen - 1,
        pair_id=pair.pair_id,
        prompt_id=pair.prompt_id,
        pair_kind=pair.kind,
        chosen_source=pair.a_source if a_wins else pair.b_source,
        rejected_source=pair.b_source if a_wins else pair.a_source,
        principle_ids=judgment.principle_ids,
        per_principle=[
            ChosenVote(
                principle_id=v.principle_id,
                p_chosen=flip(v.p_a),
                p_chosen_ab=flip(v.p_a_ab),
                p_chosen_ba=flip_or_none(v.p_a_ba),
                consistent=v.consistent,
                score_chosen=side(v.score_a, v.score_b, True),
                score_rejected=side(v.score_a, v.score_b, False),
                judge=v.judge,
            )
            for v in judgment.principles
        ],
        per_order=OrderProbs(ab=flip(judgment.p_a_ab), ba=flip_or_none(judgment.p_a_ba)),
        first_violation_chosen=judgment.first_violation_a if a_wins else judgment.first_violation_b,
        first_violation_rejected=judgment.first_violation_b if a_wins else judgment.first_violation_a,
        position_consistent=judgment.position_consistent,
        judge_model=judgment.judge_model,
        judge_mode=judgment.mode,
        judge_fingerprint=judgment.fingerprint,
        chosen_verified=checks(pair.prompt_id, chosen) if checks else None,
        rejected_verified=checks(pair.prompt_id, rejected) if checks else None,
        score_chosen=scores[0],
        score_rejected=scores[1],
        checklist=checklist,
        checklist_chosen=sides[0],
        checklist_rejected=sides[1],
    )


def sft_row(
    chain: Chain,
    provenance: Provenance,
    checks: Checks | None = None,
    checklist: list[dict[str, Any]] | None = None,
) -> SFTRow:
    """One SFT row: the prompt and the final revision (with the prompt's checklist, where the run makes them)."""
    return SFTRow(
        **dict(provenance),
        messages=[*chain.prompt, Message(role="assistant", content=chain.final)],
        prompt_id=chain.prompt_id,
        principle_ids=chain.principle_ids,
        rounds=len(chain.rounds),
        verified=checks(chain.prompt_id, chain.final) if checks else None,
        checklist=checklist,
    )


def checklist_items(store: RunStore, settings: DatasetSettings, prompt_id: str | None) -> list[dict[str, Any]] | None:
    """The items of the prompt's stored checklist under these settings, as a `checklist` column takes them back
    (None without a `checklist:` section, or where its checklist could not be made)."""
    fp = settings.fingerprints.checklist
    found = None if fp is None or prompt_id is None else stored_checklist(store, prompt_id, fp)
    return None if found is None else json.loads(found.record)["items"]


def judged_rows(
    store: RunStore, settings: DatasetSettings, counts: dict[str, int] | None = None
) -> Iterator[PreferenceRow]:
    """The preference row of every current pair with a successful judgment, in pair order, one at a time."""
    provenance, calibration = settings.provenance(), store.calibration()
    checks = Checks(iter_prompts(store, checked_only=True), settings.filters.verifier)
    kinds = set(settings.pairs.kinds)
    for pair, judgment in pairs_with_judgments(store, settings.fingerprints.sources(), settings.fingerprints.judge):
        if pair.kind not in kinds:
            continue
        if counts is not None:
            counts["pairs"] += 1
            counts[
                "judged"
                if judgment is not None and judgment.status == "ok"
                else "judge_failures"
                if judgment is not None
                else "unjudged"
            ] += 1
        if judgment is not None and judgment.status == "ok":
            items = checklist_items(store, settings, pair.prompt_id)
            yield preference_row(pair, judgment, provenance, calibration, checks, items)


def sft_rows(store: RunStore, settings: DatasetSettings, counter: dict[str, int]) -> Iterator[SFTRow]:
    """The SFT rows of these settings' chains, one at a time (counted into `counter`)."""
    provenance = settings.provenance()
    if settings.fingerprints.critique is None:
        return
    checks = Checks(iter_prompts(store, checked_only=True), settings.filters.verifier)
    for chain in stored_chains(store, settings.fingerprints.critique):
        row = sft_row(chain, provenance, checks, checklist_items(store, settings, chain.prompt_id))
        if row.verified is False:
            counter["sft_failed_verification"] = counter.get("sft_failed_verification", 0) + 1
            if settings.filters.verify == "drop":
                continue
        counter["sft"] = counter.get("sft", 0) + 1
        yield row
