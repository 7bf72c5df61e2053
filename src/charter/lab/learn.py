"""`learn_rubrics`: a constitution with criteria learned from people's pairs, and the report of how it was made
(the steps are in `charter.lab.rubrics`)."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path

from charter.checklist import ChecklistItem, checklist_from_criteria
from charter.constitutions.schema import DEFAULT_GATE_CAP, Constitution, Criterion, Principle
from charter.errors import ArgumentError, NoSignal
from charter.lab.infer import cell, split
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


class RubricReport(Record):
    """What `charter constitutions learn-rubrics` found and how."""

    pairs: int
    train_pairs: int
    test_pairs: int
    proposal_pairs: int
    """Training pairs the proposer was asked about; the criteria are kept or rejected on them."""
    proposer: str
    judge: str
    seed: int
    proposals_failed: int
    """Replies that were not a JSON object of criteria (recorded, not guessed at)."""
    candidates_raw: int
    candidates_rejected: int
    rejected: list[str] = []
    keep_threshold: float
    min_decided: int
    candidates: list[CriterionFigures]
    """The deduplicated candidates, most proposed first."""
    kept: list[str]
    held_out: Share
    """The learned rubric's agreement with people on the held-out pairs (a tie counts half)."""
    base: Share | None = None
    """The base constitution's rubric on the same pairs (its criteria; a principle without any as one item)."""
    base_name: str | None = None
    verdict: str
    """In one sentence, whether the learned rubric agrees with people beyond chance on the held-out pairs."""
    judge_calls: int
    proposer_calls: int
    wall_s: float
    constitution_hash: str
    """The written constitution's hash; empty when no criterion was kept."""


@dataclass
class LearnedRubric:
    """A constitution with learned criteria, and its report."""

    constitution: Constitution
    report: RubricReport


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
    *,
    base: Constitution | None = None,
    proposals: int,
    per_pair: int,
    test_fraction: float,
    keep_threshold: float,
    min_decided: int,
    max_criteria: int,
    items_per_call: int,
    seed: int,
    concurrency: int,
    name: str,
) -> LearnedRubric:
    """Learn criteria from human-labelled pairs (see `charter.lab.rubrics` for the steps). Raises NoSignal (with
    the report) when no candidate is consistent with the labels. The sizes have no defaults here: the public
    `charter.learn_rubrics` holds them."""
    if len(pairs) < 10:
        raise ArgumentError("pairs", f"{len(pairs)} labelled pairs: learning a rubric needs at least 10")
    started = time.perf_counter()
    train, test = split(pairs, test_fraction, seed)
    asked = sorted(random.Random(seed).sample(train, min(proposals, len(train))))
    asked_pairs, test_pairs = [pairs[i] for i in asked], [pairs[i] for i in test]
    params = SamplingParams(temperature=0.0, max_tokens=600, seed=seed, json_schema=CRITERIA_SCHEMA)
    raw, failed = await propose(proposer, asked_pairs, per_pair, params, concurrency)
    taken = {c.id for p in base.principles for c in p.criteria} if base is not None else set()
    cap = base.gate_cap if base is not None and base.gate_cap is not None else DEFAULT_GATE_CAP
    items, rejected = candidate_items(raw, taken, cap)
    if not items:
        raise ArgumentError(
            "model",
            f"the proposer gave no usable criterion for {len(asked)} pairs ({failed} replies were not a JSON object "
            f"of criteria, {len(rejected)} candidates rejected by the screen)",
        )
    proposal = await check_pairs(judge, asked_pairs, items, items_per_call, seed, concurrency)
    figures = _figures(items, proposal, keep_threshold, min_decided)
    ranked = sorted((f for f in figures if f.kept), key=lambda f: (-(f.consistency or 0), -f.decided))
    kept_ids = [f.id for f in ranked[:max_criteria]]
    for f in figures:
        f.kept = f.id in kept_ids
    kept = [next(i for i in items if i.id == k) for k in kept_ids]
    calls = proposal.calls
    held = Share(value=None, ci=None, n=0)
    base_share = None
    if kept:
        checked = await check_pairs(judge, test_pairs, kept, items_per_call, seed, concurrency)
        calls += checked.calls
        full = rubric_hits(kept, checked)
        held = wilson_share(full)
        ids = [lp.pair.pair_id for lp in test_pairs]
        by_id = {f.id: f for f in figures}
        for item in kept:
            hits = [item_hit(item, p[item.id], o[item.id]) for p, o in zip(checked.preferred, checked.other)]
            by_id[item.id].held_out = wilson_share(hits)
            by_id[item.id].adds = gain(full, rubric_hits([i for i in kept if i.id != item.id], checked), ids, seed)
        if base is not None:
            listed = base_items(base)
            base_checked = await check_pairs(judge, test_pairs, listed, items_per_call, seed, concurrency)
            calls += base_checked.calls
            base_share = wilson_share(rubric_hits(listed, base_checked))
    constitution = learned_constitution(base, kept, len(pairs), name) if kept else None
    report = RubricReport(
        pairs=len(pairs),
        train_pairs=len(train),
        test_pairs=len(test),
        proposal_pairs=len(asked),
        proposer=proposer.model_id,
        judge=judge.model_id,
        seed=seed,
        proposals_failed=failed,
        candidates_raw=len(raw),
        candidates_rejected=len(rejected),
        rejected=rejected,
        keep_threshold=keep_threshold,
        min_decided=min_decided,
        candidates=figures,
        kept=kept_ids,
        held_out=held,
        base=base_share,
        base_name=base.name if base is not None else None,
        verdict=chance_verdict(held) if kept else "no criterion was kept: none is consistent with the labels",
        judge_calls=calls,
        proposer_calls=len(asked),
        wall_s=round(time.perf_counter() - started, 1),
        constitution_hash=constitution.hash if constitution is not None else "",
    )
    if constitution is None:
        raise NoSignal(
            f"no candidate criterion agrees with people on at least {keep_threshold:g} of the at least {min_decided} "
            f"proposal pairs it decides: no rubric is learned ({len(items)} candidates tried)",
            report,
        )
    return LearnedRubric(constitution, report)


def _figure(share: Share | Gain | None, signed: bool = False) -> str:
    if share is None or share.value is None:
        return "n/a"
    fmt = "+.3f" if signed else ".3f"
    ci = f" [{share.ci[0]:{fmt}}, {share.ci[1]:{fmt}}]" if share.ci else ""
    return f"{share.value:{fmt}}{ci} (n={share.n})"


def report_markdown(report: RubricReport) -> str:
    """The report page."""
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
        "## Held-out agreement with people",
        "",
        "| rubric | agreement [Wilson 95% CI] |",
        "|---|---|",
        f"| learned ({len(report.kept)} {'criterion' if len(report.kept) == 1 else 'criteria'}) |"
        f" {_figure(report.held_out)} |",
    ]
    if report.base_name is not None:
        lines.append(f"| base `{report.base_name}` | {_figure(report.base)} |")
    lines += [
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
            f" {c.agreed} | {consistency} | {'yes' if c.kept else ''} | {_figure(c.held_out) if c.kept else ''} |"
            f" {_figure(c.adds, signed=True) if c.kept else ''} |"
        )
    if report.rejected:
        lines += ["", "## Rejected by the screen", "", "| reason | candidate |", "|---|---|"]
        lines += [f"| {reason} | {cell(text)} |" for reason, text in (r.split(": ", 1) for r in report.rejected)]
    return "\n".join(lines) + "\n"


def write_report(report: RubricReport, out: Path) -> tuple[Path, Path]:
    """The report beside the constitution path `out`: `NAME.report.md` and `NAME.report.json`."""
    stem = out.with_suffix("")
    md, js = Path(f"{stem}.report.md"), Path(f"{stem}.report.json")
    md.write_text(report_markdown(report), encoding="utf-8")
    js.write_text(report.model_dump_json(indent=1) + "\n", encoding="utf-8")
    return md, js


def write_outputs(result: LearnedRubric, out: Path) -> dict[str, Path]:
    """The constitution YAML at `out`, the report beside it."""
    from charter.constitutions.importers import dump_constitution_yaml

    r = result.report
    md, js = write_report(r, out)
    header = (
        f"Learned by charter constitutions learn-rubrics from {r.pairs} human-labelled pairs (proposer {r.proposer},"
        f" judge {r.judge}, seed {r.seed}); held-out agreement with people {_figure(r.held_out)}. See {md.name}."
    )
    dump_constitution_yaml(result.constitution, out, header=header)
    return {"constitution": out, "report": md, "json": js}


def summary_lines(report: RubricReport) -> list[str]:
    """A few terminal lines."""
    out = [f"kept {len(report.kept)} of {len(report.candidates)} candidate criteria from {report.pairs} pairs:"]
    by_id = {c.id: c for c in report.candidates}
    out += [
        f"  {k} ({by_id[k].category}): {by_id[k].requirement}  adds {_figure(by_id[k].adds, True)}" for k in report.kept
    ]
    out.append(f"held-out agreement with people: {_figure(report.held_out)}")
    if report.base_name is not None:
        out.append(f"base {report.base_name}: {_figure(report.base)}")
    out.append(f"verdict: {report.verdict}")
    return out


__all__ = [
    "CriterionFigures",
    "LearnedRubric",
    "RubricReport",
    "base_items",
    "chance_verdict",
    "learn",
    "learned_constitution",
    "report_markdown",
    "summary_lines",
    "write_outputs",
    "write_report",
]
