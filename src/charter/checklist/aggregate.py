"""The explicit aggregation of a checklist: item verdicts into a response's score, two scores into a preference.

Each item's verdict is `yes`, `no`, `n/a` (the item does not apply to this prompt) or `failed` (the judge's answer
for it could not be read, or the call failed: a recorded failure, never a pass or a fail).

- **Score.** Over the items answered yes or no (the *counted* items), with `P` the sum of the positive weights and
  `N` the sum of the pitfalls' |weight|: `score = (sum of w_i over the items answered yes + N) / (P + N)`, on 0..1.
  A response that meets every item and falls into no pitfall scores 1; one that meets none and falls into every
  pitfall scores 0.
- **n.a. and failed items** are left out of both the sum and the denominator. The share of the applicable weight
  left out because its items failed (`failed_share`: the failed items' |weight| over the failed and counted items')
  is recorded with the failed ids. A response whose applicable items all failed has no score (`None`, status
  `failed`), never 0; one whose items are all n.a. has none either (status `not_applicable`).
- **Gates.** A counted gated item that is failed (a `no`; a `yes` for a pitfall) caps the score at its `gate_cap`:
  `score = min(score, cap)`, the lowest cap where several gates fail. A gated item that is n.a. caps nothing; one
  whose verdict failed caps nothing and is listed in `gates_unread`.
- **Expected score.** Where every counted item carries P(yes) (from the judge's log-probabilities; a verifier's
  verdict is certain), `expected` is the same formula with P(yes) in place of 1 or 0, capped by the same gates.
- **Preference.** Two scores `s_a`, `s_b` give `p_a = 0.5 + (s_a - s_b) / 2` (the expected scores where both
  responses have them), as the rating modes turn two scores into a vote: 0.5 is a tie, which the preference rows
  treat as every other mode's tie (`filters.drop_ties`). A response without a score makes the pair undecided:
  `p_a` None, masked, never 0.5.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Literal, cast

from charter.checklist.items import Checklist, ChecklistItem
from charter.errors import ConfigError
from charter.records import MAX_WEIGHT, ChecklistScore, ItemVerdict, Record, Verdict, VerdictBy
from charter.verify import resolve

#: How a checklist's verdicts become a response's score: `explicit`, by the items' weights with gates (the rules
#: above); `implicit`, by the judge's overall score of the response given the checklist, asked in the same call.
Aggregation = Literal["explicit", "implicit"]
AGGREGATIONS: tuple[Aggregation, ...] = ("explicit", "implicit")
#: Two scores closer than this are a tie.
TIE_EPS = 1e-9


def fails_gate(item: ChecklistItem, verdict: Verdict) -> bool:
    """Whether a counted verdict fails the item: a `no`, or a `yes` for a pitfall."""
    return verdict == ("yes" if item.pitfall else "no")


def _normalised(met: Mapping[str, float], items: Mapping[str, ChecklistItem]) -> float:
    """`(sum of w_i * met_i + N) / (P + N)` over the counted items (`met`: 1 or 0, or P(yes))."""
    positive = sum(items[i].weight for i in met if items[i].weight > 0)
    negative = sum(-items[i].weight for i in met if items[i].weight < 0)
    raw = sum(items[i].weight * m for i, m in met.items())
    return min(max((raw + negative) / (positive + negative), 0.0), 1.0)  # within 0..1 whatever the rounding


def _by_item(
    checklist: Checklist, verdicts: Iterable[ItemVerdict] | Mapping[str, ItemVerdict]
) -> dict[str, ItemVerdict]:
    """Each item's verdict; an item with none is a failed one (recorded, never a default)."""
    if isinstance(verdicts, Mapping):
        given = dict(cast("Mapping[str, ItemVerdict]", verdicts))
    else:
        given = {v.item_id: v for v in verdicts}
    return {
        item.id: given.get(item.id) or ItemVerdict(item_id=item.id, verdict="failed", error="no verdict given")
        for item in checklist.items
    }


def score_checklist(
    checklist: Checklist, verdicts: Iterable[ItemVerdict] | Mapping[str, ItemVerdict]
) -> ChecklistScore:
    """A response's score from its items' verdicts (a sequence, or a mapping by item id; an item without one is
    failed). See the module's rules."""
    items = {item.id: item for item in checklist.items}
    unusable = [i.id for i in checklist.items if not (math.isfinite(i.weight) and 0 < abs(i.weight) <= MAX_WEIGHT)]
    if unusable:  # only a checklist built without validation (`model_construct`) gets here
        raise ConfigError(f"checklist items {', '.join(unusable)}: a weight is a finite number, not 0, at most 1e6")
    by_item = _by_item(checklist, verdicts)
    counted = [i for i, v in by_item.items() if v.verdict in ("yes", "no")]
    failed = [i for i, v in by_item.items() if v.verdict == "failed"]
    not_applicable = [i for i, v in by_item.items() if v.verdict == "n/a"]
    weight = lambda ids: sum(abs(items[i].weight) for i in ids)  # noqa: E731
    applicable = weight(counted) + weight(failed)
    common = {
        "counted": counted,
        "failed": failed,
        "not_applicable": not_applicable,
        "failed_share": weight(failed) / applicable if applicable else 0.0,
        "gates_unread": [i for i in failed if items[i].gate_cap is not None],
        "checklist_fingerprint": checklist.fingerprint,
        "checklist_version": checklist.version,
    }
    if not counted:
        return ChecklistScore(score=None, status="failed" if failed else "not_applicable", **common)
    hard = {i: 1.0 if by_item[i].verdict == "yes" else 0.0 for i in counted}
    gates = [i for i in counted if items[i].gate_cap is not None and fails_gate(items[i], by_item[i].verdict)]
    cap = min((items[i].gate_cap for i in gates), default=None)  # type: ignore[type-var]
    capped = lambda s: s if cap is None else min(s, cap)  # noqa: E731
    soft = {i: _p_yes(by_item[i]) for i in counted}
    expected = None
    if all(p is not None for p in soft.values()):
        expected = capped(_normalised({i: p for i, p in soft.items() if p is not None}, items))
    return ChecklistScore(
        score=capped(_normalised(hard, items)),
        status="ok",
        expected=expected,
        cap=cap,
        gates_failed=gates,
        **common,
    )


def _p_yes(verdict: ItemVerdict) -> float | None:
    if verdict.p_yes is not None:
        return verdict.p_yes
    if verdict.by == "verifier":  # a program's verdict is certain
        return 1.0 if verdict.verdict == "yes" else 0.0
    return None


class ChecklistPreference(Record):
    """Two responses' checklist scores as a preference between them."""

    p_a: float | None
    """0.5 + (s_a - s_b) / 2; None when either response has no score (the pair is undecided and masked)."""
    decision: Literal["a", "b", "tie"] | None
    score_a: float | None
    score_b: float | None
    from_probabilities: bool
    """Whether the expected scores (from the items' P(yes)) were compared, rather than the verdicts' scores."""


def preference(a: ChecklistScore, b: ChecklistScore, use_probabilities: bool = True) -> ChecklistPreference:
    """The preference between two responses from their checklist scores (see the module's rules)."""
    soft = use_probabilities and a.expected is not None and b.expected is not None
    s_a, s_b = (a.expected, b.expected) if soft else (a.score, b.score)
    if s_a is None or s_b is None:
        return ChecklistPreference(p_a=None, decision=None, score_a=s_a, score_b=s_b, from_probabilities=soft)
    gap = s_a - s_b
    if abs(gap) < TIE_EPS:
        return ChecklistPreference(p_a=0.5, decision="tie", score_a=s_a, score_b=s_b, from_probabilities=soft)
    return ChecklistPreference(
        p_a=0.5 + gap / 2, decision="a" if gap > 0 else "b", score_a=s_a, score_b=s_b, from_probabilities=soft
    )


def verifier_verdicts(checklist: Checklist, response: str, prompt: str = "") -> dict[str, ItemVerdict]:
    """The verdicts of the items that name a verifier, checked by code (`charter.verify`): a pass is `yes`, and a
    verifier that raises on this response fails the item (recorded with the error, never a pass or a fail). The
    judge is never asked about them."""
    return {
        item.id: _verified(item, item.verifier, response, prompt)
        for item in checklist.items
        if item.verifier is not None
    }


def _verified(item: ChecklistItem, verifier: str, response: str, prompt: str) -> ItemVerdict:
    fn = resolve(verifier)  # an unknown verifier is a ConfigError for the run, not this response's failure
    try:
        passed = bool(fn(response, item.reference, prompt))
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - a user's verifier that crashes on one response fails that item
        error = f"verifier {verifier!r} raised {type(exc).__name__}: {exc}"
        return ItemVerdict(item_id=item.id, verdict="failed", by="verifier", error=error)
    return ItemVerdict(item_id=item.id, verdict="yes" if passed else "no", by="verifier")


__all__ = [
    "AGGREGATIONS",
    "Aggregation",
    "ChecklistPreference",
    "ChecklistScore",
    "ItemVerdict",
    "TIE_EPS",
    "Verdict",
    "VerdictBy",
    "fails_gate",
    "preference",
    "score_checklist",
    "verifier_verdicts",
]
