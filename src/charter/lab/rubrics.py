"""Rubrics learned from people's pairs: yes/no criteria that tell the response people preferred from the other,
kept only where the judge's verdicts on them agree with people (OpenRubrics-style rejection sampling).

1. **Propose**: for a sample of the training pairs, a model is shown the conversation, the preferred response and
   the other, and asked for yes/no criteria that tell them apart, each a hard rule (any acceptable response meets
   it), a principle (a quality that makes a response better) or a pitfall (what a response should not do), as
   JSON (`{"criteria": [{"requirement": ..., "kind": ...}]}`); a reply that is not one is a recorded failure. Each
   requirement is screened as inferred principles are (`charter.lab.infer.screen`) and near-duplicates are merged.
2. **Check**: the judge answers every candidate about both responses of each proposal pair, one checklist call a
   response (`charter.checklist.prompt`: a reason before each verdict).
3. **Keep** (rejection sampling): a candidate *decides* a pair when its verdicts on the two responses differ; it
   agrees with people when the preferred response is the one that meets it (for a pitfall, the one that avoids
   it). A candidate is kept when it decides at least `min_decided` proposal pairs and agrees with people on at
   least `keep_threshold` of those.
4. **Validate** on the held-out pairs: each kept criterion's agreement with people (a pair it does not decide
   counts half), the learned rubric's (the weighted, gated checklist score of each response; a tie counts half),
   both with Wilson 95% intervals at the pairs judged; and what each criterion adds: the rubric's agreement minus
   the rubric's without it, per pair, with the betting interval of that mean (Waudby-Smith & Ramdas), which covers
   at every n for differences anywhere in -1..1.
5. **Write** a constitution: the base constitution (when given) with a principle `learned-rubric` whose criteria
   are the kept ones (hard rules essential and gated, principles important, pitfalls pitfalls).

The steps come first, then the learner that runs them (`learn`, behind `learn_rubrics`) and the report of how a
rubric was made.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np

from charter.checklist import (
    Checklist,
    ChecklistItem,
    ItemVerdict,
    checklist_from_criteria,
    preference,
    score_checklist,
)
from charter.checklist.check import check_response
from charter.constitutions.schema import CATEGORY_WEIGHTS, DEFAULT_GATE_CAP, Constitution, Criterion, Principle
from charter.errors import ArgumentError, NoSignal
from charter.lab.infer import PROPOSE_HEAD, deduplicate, propose_each, request_for, screen
from charter.lab.learner import (
    AgreementEstimate,
    LabReport,
    Learned,
    LearnerRun,
    LearnOptions,
    agreement_table,
    cell,
    estimate_text,
)
from charter.lab.votes import LabelledPair, principle_from_text, slug
from charter.providers.base import ChatModel, SamplingParams
from charter.records import Message, Record
from charter.stats.intervals import bounded_mean_interval, wilson_interval

Kind = Literal["hard_rule", "principle", "pitfall"]
KINDS: tuple[str, ...] = ("hard_rule", "principle", "pitfall")
#: The principle the learned criteria are written under.
LEARNED_PRINCIPLE = "learned-rubric"

PROPOSE = PROPOSE_HEAD + (
    "Propose up to {k} yes/no criteria that tell the preferred response from the other. Write each as one"
    ' statement about a response ("The response ..."), general enough to check on other conversations, '
    'and say its kind: "hard_rule" (any acceptable response must meet it), "principle" (a quality that '
    'makes a response better) or "pitfall" (something a response should not do; a "yes" counts against '
    'it). Answer with JSON and nothing else: {{"criteria": [{{"requirement": "The response ...", "kind": '
    '"principle"}}, ...]}}'
)

#: The proposer's reply as structured output.
CRITERIA_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "criteria": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"requirement": {"type": "string"}, "kind": {"type": "string", "enum": list(KINDS)}},
                "required": ["requirement", "kind"],
                "additionalProperties": False,
            },
        }
    },
    "required": ["criteria"],
    "additionalProperties": False,
}
#: The category a learned criterion of each kind gets in the written constitution.
CATEGORY_OF_KIND = {"hard_rule": "essential", "principle": "important", "pitfall": "pitfall"}


def propose_prompt(lp: LabelledPair, k: int) -> str:
    """The proposer's request for one pair."""
    return request_for(PROPOSE, lp, k)


def parse_criteria(text: str) -> list[tuple[str, Kind]] | None:
    """The (requirement, kind) criteria in a proposer's reply, `{"criteria": [...]}` anywhere in it; an entry of an
    unknown kind is left out. None when the reply holds no such object."""
    match = re.search(r"\{.*\}", text, re.S)
    if match is None:
        return None
    try:
        found = json.loads(match.group(0))
    except json.JSONDecodeError:
        return None
    entries = found.get("criteria") if isinstance(found, dict) else None
    if not isinstance(entries, list):
        return None
    out: list[tuple[str, Kind]] = []
    for entry in entries:
        if isinstance(entry, dict) and isinstance(entry.get("requirement"), str) and entry.get("kind") in KINDS:
            text = " ".join(entry["requirement"].split())
            if text:
                out.append((text, entry["kind"]))
    return out


async def propose(
    model: ChatModel, pairs: list[LabelledPair], k: int, params: SamplingParams, concurrency: int
) -> tuple[list[tuple[str, Kind]], int]:
    """Candidate criteria from each pair, and how many replies were not usable (recorded, never guessed)."""
    return await propose_each(model, pairs, params, concurrency, lambda lp: propose_prompt(lp, k), parse_criteria)


def candidate_items(
    proposed: list[tuple[str, Kind]], taken: set[str], gate_cap: float = DEFAULT_GATE_CAP
) -> tuple[list[ChecklistItem], list[str]]:
    """Screened, deduplicated candidates as checklist items (weights by kind; a hard rule gated at `gate_cap`), most
    proposed first; and each rejected one as `reason: text`."""
    reasons = [(text, kind, screen(text)) for text, kind in proposed]
    rejected = [f"{why}: {text}" for text, _, why in reasons if why is not None]
    kinds: dict[str, Counter[str]] = {}
    for text, kind, why in reasons:
        if why is None:
            kinds.setdefault(text, Counter())[kind] += 1
    items = []
    for text, _ in deduplicate([text for text, _, why in reasons if why is None]):
        kind = kinds[text].most_common(1)[0][0]
        category = CATEGORY_OF_KIND[kind]
        items.append(
            ChecklistItem(
                id=slug(text, taken),
                requirement=text,
                principle_id=LEARNED_PRINCIPLE,
                weight=CATEGORY_WEIGHTS[category],
                category=category,  # type: ignore[arg-type]
                gate_cap=gate_cap if kind == "hard_rule" else None,
            )
        )
    return items, rejected


@dataclass
class Checked:
    """Each pair's verdicts on its preferred and its other response, per item id."""

    preferred: list[dict[str, ItemVerdict]]
    other: list[dict[str, ItemVerdict]]
    calls: int


async def check_pairs(
    model: ChatModel,
    pairs: Sequence[LabelledPair],
    items: Sequence[ChecklistItem],
    per_call: int,
    seed: int,
    concurrency: int,
) -> Checked:
    """The verdicts of every item on both responses of every pair, `per_call` items a call."""
    semaphore = asyncio.Semaphore(concurrency)
    chunks = [Checklist(items=list(items[i : i + per_call]), source="model") for i in range(0, len(items), per_call)]
    params = SamplingParams(temperature=0.0, max_tokens=64 + 64 * min(per_call, len(items)), seed=seed)

    async def one(prompt: list[Message], response: str) -> dict[str, ItemVerdict]:
        found: dict[str, ItemVerdict] = {}
        for chunk in chunks:
            async with semaphore:
                checked = await check_response(model, prompt, response, chunk, params=params, token_probabilities=False)
                found.update(checked.verdicts)
        return found

    def sides(lp: LabelledPair) -> tuple[str, str]:
        return (lp.pair.a, lp.pair.b) if lp.human == "a" else (lp.pair.b, lp.pair.a)

    preferred = await asyncio.gather(*(one(lp.pair.prompt, sides(lp)[0]) for lp in pairs))
    other = await asyncio.gather(*(one(lp.pair.prompt, sides(lp)[1]) for lp in pairs))
    return Checked(list(preferred), list(other), 2 * len(pairs) * len(chunks))


def item_hit(item: ChecklistItem, preferred: ItemVerdict, other: ItemVerdict) -> float | None:
    """One item on one pair: 1 when it picks the preferred response (it meets the item and the other does not; for
    a pitfall, the other falls into it and the preferred does not), 0 when it picks the other, 0.5 when it does not
    decide (the same verdict on both, or n/a); None when either verdict failed."""
    if "failed" in (preferred.verdict, other.verdict):
        return None
    if preferred.verdict == other.verdict or "n/a" in (preferred.verdict, other.verdict):
        return 0.5
    met = "no" if item.pitfall else "yes"
    return 1.0 if preferred.verdict == met else 0.0


def rubric_hits(items: Sequence[ChecklistItem], checked: Checked) -> list[float | None]:
    """The rubric of `items` on each pair: 1 when its score prefers the preferred response, 0 the other, 0.5 a tie
    (or no item applies to either response); None when a response's items all failed."""
    if not items:
        return [0.5] * len(checked.preferred)
    checklist = Checklist(items=list(items), source="model")
    ids = {item.id for item in items}
    out: list[float | None] = []
    for pref, oth in zip(checked.preferred, checked.other):
        a = score_checklist(checklist, {i: v for i, v in pref.items() if i in ids})
        b = score_checklist(checklist, {i: v for i, v in oth.items() if i in ids})
        p = preference(a, b, use_probabilities=False).p_a
        if "failed" in (a.status, b.status):
            out.append(None)
        else:
            out.append(0.5 if p is None else 1.0 if p > 0.5 else 0.0 if p < 0.5 else 0.5)
    return out


class Share(AgreementEstimate):
    """Agreement with people on some pairs (a pair not decided counts half), with its Wilson 95% interval; `n`
    counts the pairs whose verdicts were all read."""

    failed: int = 0
    """Pairs left out because a verdict failed."""


def wilson_share(hits: Sequence[float | None]) -> Share:
    """The share of `hits` (None left out and counted as failed) with its Wilson interval at the pairs counted."""
    seen = [h for h in hits if h is not None]
    failed = len(hits) - len(seen)
    if not seen:
        return Share(value=None, ci=None, n=0, failed=failed)
    low, high = wilson_interval(sum(seen), len(seen))
    return Share(value=sum(seen) / len(seen), ci=[low, high], n=len(seen), failed=failed)


class Gain(AgreementEstimate):
    """What one criterion adds to the rubric's held-out agreement: the mean per-pair difference between the rubric
    with it and without it, with the 95% betting interval of that mean (`bounded_mean_interval`, -1..1)."""


def gain(with_it: Sequence[float | None], without: Sequence[float | None]) -> Gain:
    """The mean of `with_it - without` over the pairs where both are known, with its interval: the betting interval
    of a mean of values within -1..1, taken on the differences themselves in the pairs' order. It covers at every n
    and for every distribution of the differences; differences that are all alike give a narrow interval around
    them, never a point and never one that reaches back to 0 because a share's interval was put on them."""
    known = [a - b for a, b in zip(with_it, without) if a is not None and b is not None]
    if not known:
        return Gain(value=None, ci=None, n=0)
    ci = bounded_mean_interval(known, -1.0, 1.0)
    return Gain(value=float(np.mean(known)), ci=None if ci is None else list(ci), n=len(known))


__all__ = [
    "CRITERIA_SCHEMA",
    "Checked",
    "Gain",
    "Share",
    "candidate_items",
    "check_pairs",
    "gain",
    "item_hit",
    "parse_criteria",
    "propose",
    "propose_prompt",
    "rubric_hits",
    "wilson_share",
]


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
    """Learn criteria from human-labelled pairs (the steps above). Raises NoSignal (with
    the report) when no candidate is consistent with the labels. The sizes have no defaults here: the public
    `charter.learn_rubrics` holds them."""
    run = LearnerRun.start(pairs, options, "learning a rubric")
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
    compared: list[tuple[str, AgreementEstimate | None]] = [
        (f"learned ({len(report.kept)} {criteria})", report.held_out)
    ]
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
