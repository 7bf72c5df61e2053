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
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from charter.checklist import (
    Checklist,
    ChecklistItem,
    ItemVerdict,
    checklist_request,
    checklist_schema,
    preference,
    read_checklist_reply,
    score_checklist,
    verifier_verdicts,
)
from charter.constitutions.schema import CATEGORY_WEIGHTS, DEFAULT_GATE_CAP
from charter.errors import FatalProviderError, ProviderError
from charter.lab.infer import PROPOSE_HEAD, deduplicate, propose_each, request_for, screen
from charter.lab.learning import Estimate
from charter.lab.votes import LabelledPair, slug
from charter.providers.base import ChatModel, SamplingParams
from charter.records import Message
from charter.records.base import render_conversation
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


async def check_response(
    model: ChatModel, prompt: list[Message], response: str, checklist: Checklist, params: SamplingParams
) -> dict[str, ItemVerdict]:
    """Every item's verdict on one response: one checklist call for the judged items (a failed call fails each of
    them, with the error), the verifier's items by code."""
    verdicts = verifier_verdicts(checklist, response, render_conversation(prompt))
    ids = [item.id for item in checklist.judged]
    if not ids:
        return verdicts
    try:
        [completion] = await model.generate(
            [checklist_request(prompt, response, checklist)],
            params.model_copy(update={"json_schema": checklist_schema(ids)}),
        )
    except FatalProviderError:
        raise
    except ProviderError as exc:
        return {**verdicts, **{i: ItemVerdict(item_id=i, verdict="failed", error=str(exc)) for i in ids}}
    return {**verdicts, **read_checklist_reply(completion.text, ids)}


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
                found.update(await check_response(model, prompt, response, chunk, params))
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


class Share(Estimate):
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


class Gain(Estimate):
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
    "check_response",
    "gain",
    "item_hit",
    "parse_criteria",
    "propose",
    "propose_prompt",
    "rubric_hits",
    "wilson_share",
]
