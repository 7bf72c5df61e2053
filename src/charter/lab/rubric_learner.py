"""`learn_rubrics`: a constitution with criteria learned from people's pairs, and the report of how it was made
(the steps are in `charter.lab.rubrics`)."""

from __future__ import annotations

from typing import ClassVar

from charter.checklist import ChecklistItem, checklist_from_criteria
from charter.constitutions.schema import DEFAULT_GATE_CAP, Constitution, Criterion, Principle
from charter.errors import ArgumentError, NoSignal
from charter.lab.learner import Estimate, LabReport, Learned, LearnOptions, Tally, agreement_table, cell, estimate_text
from charter.lab.rubrics import (
    CRITERIA_SCHEMA,
    LEARNED_PRINCIPLE,
    Checked,
    Gain,
    Share,
    candidate_items,
    check_pairs,
    gain,
    item_hit,
    propose,
    rubric_hits,
    wilson_share,
)
from charter.lab.votes import LabelledPair, principle_from_text
from charter.providers.base import ChatModel, SamplingParams
from charter.records import Record

#: Agreement with people of a rubric that picks at random.
CHANCE = 0.5


class CriterionFigures(Record):
    """One candidate criterion: how it fared on the proposal pairs, and (when kept) on the held-out pairs."""

    id: str
    requirement: str
    category: str
    gated: bool
    decided: int
    """Proposal pairs on which its verdicts on the two responses differ."""
    agreed: int
    """Of those, the pairs on which it picks the response people preferred."""
    failed: int
    """Proposal pairs left out because a verdict on it failed."""
    consistency: float | None
    """agreed / decided (None: it decided none)."""
    kept: bool = False
    held_out: Share | None = None
    """Its own agreement with people on the held-out pairs (a pair it does not decide counts half)."""
    adds: Gain | None = None
    """What it adds to the learned rubric's held-out agreement (the rubric with it minus without it)."""


class RubricReport(LabReport[Share]):
    """What `charter constitutions learn-rubrics` found and how (a criterion is a candidate)."""

    made_by: ClassVar[str] = "Learned by charter constitutions learn-rubrics"

    proposal_pairs: int
    """Training pairs the proposer was asked about; the criteria are kept or rejected on them."""
    keep_threshold: float
    min_decided: int
    candidates: list[CriterionFigures]
    """The deduplicated candidates, most proposed first."""
    kept: list[str]
    base: Share | None = None
    """The base constitution's rubric on the same pairs (its criteria; a principle without any as one item)."""
    base_name: str | None = None
    verdict: str
    """In one sentence, whether the learned rubric agrees with people beyond chance on the held-out pairs."""

    def markdown(self) -> str:
        return report_markdown(self)

    def learned_lines(self) -> list[str]:
        by_id = {c.id: c for c in self.candidates}
        kept = [by_id[k] for k in self.kept]
        return [
            f"kept {len(self.kept)} of {len(self.candidates)} candidate criteria from {self.pairs} pairs:",
            *(f"  {c.id} ({c.category}): {c.requirement}  adds {estimate_text(c.adds, True)}" for c in kept),
        ]

    def compared_lines(self) -> list[str]:
        base = [f"base {self.base_name}: {estimate_text(self.base)}"] if self.base_name is not None else []
        return [*base, f"verdict: {self.verdict}"]


class LearnedRubric(Learned[RubricReport]):
    """A constitution with learned criteria, and its report."""


def chance_verdict(share: Share) -> str:
    """Whether the rubric's held-out agreement is above, below or indistinguishable from chance, said plainly."""
    if share.value is None or share.ci is None:
        return "no held-out pair could be scored: the learned rubric's agreement with people is unknown"
    said = f"{share.value:.3f} [{share.ci[0]:.3f}, {share.ci[1]:.3f}] on {share.n} held-out pairs"
    if share.ci[0] > CHANCE:
        return f"the learned rubric agrees with people above chance: {said}"
    if share.ci[1] < CHANCE:
        return f"the learned rubric agrees with people less often than chance: {said}"
    return f"the learned rubric is not distinguishable from chance (0.5): {said}; its criteria may be noise"


def base_items(base: Constitution) -> list[ChecklistItem]:
    """The base constitution as a checklist: its criteria, and each principle without any as one item (`meets
    this principle: ...`, weighted by the principle's weight)."""
    items = checklist_from_criteria(base).items if base.has_criteria else []
    items += [
        ChecklistItem(
            id=f"principle.{p.id}",
            requirement=f"The response meets this principle: {' '.join(p.description.split())}",
            principle_id=p.id,
            weight=p.weight,
        )
        for p in base.principles
        if not p.criteria
    ]
    return items


def _figures(
    items: list[ChecklistItem], checked: Checked, threshold: float, min_decided: int
) -> list[CriterionFigures]:
    out = []
    for item in items:
        hits = [item_hit(item, p[item.id], o[item.id]) for p, o in zip(checked.preferred, checked.other)]
        decided = sum(1 for h in hits if h in (0.0, 1.0))
        agreed = sum(1 for h in hits if h == 1.0)
        consistency = agreed / decided if decided else None
        out.append(
            CriterionFigures(
                id=item.id,
                requirement=item.requirement,
                category=item.category or "",
                gated=item.gate_cap is not None,
                decided=decided,
                agreed=agreed,
                failed=sum(1 for h in hits if h is None),
                consistency=consistency,
                kept=consistency is not None and decided >= min_decided and consistency >= threshold,
            )
        )
    return out


def learned_constitution(base: Constitution | None, items: list[ChecklistItem], pairs: int, name: str) -> Constitution:
    """`base` (or nothing) with a principle whose criteria are `items`."""
    criteria = [
        Criterion(id=i.id, requirement=i.requirement, category=i.category, gate=i.gate_cap is not None) for i in items
    ]
    taken = set(base.principle_ids) if base is not None else set()
    pid, n = LEARNED_PRINCIPLE, 2
    while pid in taken:
        pid, n = f"{LEARNED_PRINCIPLE}-{n}", n + 1
    text = f"Select the response that meets the criteria learned from {pairs} human-labelled pairs."
    learned = Principle.model_validate({**principle_from_text(pid, text).model_dump(), "criteria": criteria})
    if base is None:
        return Constitution(
            name=name, description=f"Criteria learned from {pairs} human-labelled pairs.", principles=[learned]
        )
    return Constitution.model_validate({**base.model_dump(), "name": name, "principles": [*base.principles, learned]})


async def learn(
    pairs: list[LabelledPair],
    proposer: ChatModel,
    judge: ChatModel,
    options: LearnOptions,
    *,
    base: Constitution | None = None,
    keep_threshold: float,
    min_decided: int,
    max_criteria: int,
    items_per_call: int,
) -> LearnedRubric:
    """Learn criteria from human-labelled pairs (see `charter.lab.rubrics` for the steps). Raises NoSignal (with
    the report) when no candidate is consistent with the labels. The sizes have no defaults here: the public
    `charter.learn_rubrics` holds them."""
    run = Tally.start(pairs, options, "learning a rubric")
    seed, concurrency = options.seed, options.concurrency
    asked_pairs, test_pairs = run.ask(), [pairs[i] for i in run.test]
    params = SamplingParams(temperature=0.0, max_tokens=600, seed=seed, json_schema=CRITERIA_SCHEMA)
    raw, run.failed = await propose(proposer, asked_pairs, options.per_pair, params, concurrency)
    run.raw = len(raw)
    taken = {c.id for p in base.principles for c in p.criteria} if base is not None else set()
    cap = base.gate_cap if base is not None and base.gate_cap is not None else DEFAULT_GATE_CAP
    items, run.rejected = candidate_items(raw, taken, cap)
    if not items:
        raise ArgumentError(
            "model",
            f"the proposer gave no usable criterion for {len(run.asked)} pairs ({run.failed} replies were not a JSON "
            f"object of criteria, {len(run.rejected)} candidates rejected by the screen)",
        )
    proposal = await check_pairs(judge, asked_pairs, items, items_per_call, seed, concurrency)
    figures = _figures(items, proposal, keep_threshold, min_decided)
    ranked = sorted((f for f in figures if f.kept), key=lambda f: (-(f.consistency or 0), -f.decided))
    kept_ids = [f.id for f in ranked[:max_criteria]]
    for f in figures:
        f.kept = f.id in kept_ids
    kept = [next(i for i in items if i.id == k) for k in kept_ids]
    run.judge_calls = proposal.calls
    held = Share(value=None, ci=None, n=0)
    base_share = None
    if kept:
        checked = await check_pairs(judge, test_pairs, kept, items_per_call, seed, concurrency)
        run.judge_calls += checked.calls
        full = rubric_hits(kept, checked)
        held = wilson_share(full)
        by_id = {f.id: f for f in figures}
        for item in kept:
            hits = [item_hit(item, p[item.id], o[item.id]) for p, o in zip(checked.preferred, checked.other)]
            by_id[item.id].held_out = wilson_share(hits)
            by_id[item.id].adds = gain(full, rubric_hits([i for i in kept if i.id != item.id], checked))
        if base is not None:
            listed = base_items(base)
            base_checked = await check_pairs(judge, test_pairs, listed, items_per_call, seed, concurrency)
            run.judge_calls += base_checked.calls
            base_share = wilson_share(rubric_hits(listed, base_checked))
    constitution = learned_constitution(base, kept, len(pairs), options.name) if kept else None
    report = RubricReport(
        **run.report_fields(proposer.model_id, judge.model_id, constitution),
        proposal_pairs=len(run.asked),
        keep_threshold=keep_threshold,
        min_decided=min_decided,
        candidates=figures,
        kept=kept_ids,
        held_out=held,
        base=base_share,
        base_name=base.name if base is not None else None,
        verdict=chance_verdict(held) if kept else "no criterion was kept: none is consistent with the labels",
    )
    if constitution is None:
        raise NoSignal(
            f"no candidate criterion agrees with people on at least {keep_threshold:g} of the at least {min_decided} "
            f"proposal pairs it decides: no rubric is learned ({len(items)} candidates tried)",
            report,
        )
    return LearnedRubric(constitution, report)


def report_markdown(report: RubricReport) -> str:
    """The report page."""
    criteria = "criterion" if len(report.kept) == 1 else "criteria"
    compared: list[tuple[str, Estimate | None]] = [(f"learned ({len(report.kept)} {criteria})", report.held_out)]
    if report.base_name is not None:
        compared.append((f"base `{report.base_name}`", report.base))
    lines = [
        "# Learned rubric",
        "",
        f"From {report.pairs} human-labelled pairs ({report.train_pairs} for training, {report.test_pairs} held out);"
        f" proposer `{report.proposer}`, judge `{report.judge}`, seed {report.seed}. {report.proposal_pairs} pairs"
        f" asked for criteria ({report.proposals_failed} replies unusable); {report.candidates_raw} candidates"
        f" ({report.candidates_rejected} rejected by the screen), {len(report.candidates)} after deduplication;"
        f" kept: agreeing with people on at least {report.keep_threshold:g} of at least {report.min_decided} proposal"
        f" pairs decided. {report.judge_calls:,} judge calls; {report.wall_s} s.",
        "",
        f"**Verdict: {report.verdict}.**",
        "",
        *agreement_table("rubric", "Wilson 95% CI", compared),
        "",
        "A tie (or a criterion that does not decide a pair) counts half. *Adds*: the learned rubric's agreement minus"
        " its agreement without the criterion, per held-out pair, with its 95% interval.",
        "",
        "## Candidates",
        "",
        "| id | requirement | category | decided | agreed | consistency | kept | held-out | adds |",
        "|---|---|---|---:|---:|---:|---|---|---|",
    ]
    for c in report.candidates:
        consistency = "n/a" if c.consistency is None else f"{c.consistency:.3f}"
        lines.append(
            f"| `{c.id}` | {cell(c.requirement)} | {c.category}{' (gate)' if c.gated else ''} | {c.decided} |"
            f" {c.agreed} | {consistency} | {'yes' if c.kept else ''} | {estimate_text(c.held_out) if c.kept else ''} |"
            f" {estimate_text(c.adds, signed=True) if c.kept else ''} |"
        )
    lines += report.rejected_table("Rejected by the screen")
    return "\n".join(lines) + "\n"


__all__ = [
    "CriterionFigures",
    "LearnedRubric",
    "RubricReport",
    "base_items",
    "chance_verdict",
    "learn",
    "learned_constitution",
    "report_markdown",
]
