"""A constitution's compiled rubric in words and as data (`charter constitutions rubric`)."""

from __future__ import annotations

from typing import Any

from charter.checklist.items import Checklist, checklist_from_criteria
from charter.constitutions.schema import Constitution

#: How a checklist's verdicts become a score, in one paragraph (the rules are `charter.checklist.aggregate`'s).
SCORING = (
    "score = (sum of the weights of the items answered yes + the pitfalls' total |weight|) / (the positive weights + "
    "the pitfalls' |weight|), over the items answered yes or no, on 0..1; n/a and failed items are left out of both "
    "sums (the failed share is recorded; all failed: no score); a failed gate (a no, or a yes for a pitfall) caps "
    "the score at its cap."
)


def compiled_rubric(constitution: Constitution) -> Checklist | None:
    """The checklist of the constitution's criteria, or None when no principle carries any."""
    return checklist_from_criteria(constitution) if constitution.has_criteria else None


def rubric_data(constitution: Constitution) -> dict[str, Any]:
    """The compiled rubric as JSON data: the constitution, its checklist (null without criteria), the principles
    judged as a whole, and the scoring rule."""
    checklist = compiled_rubric(constitution)
    return {
        "constitution": constitution.name,
        "constitution_hash": constitution.hash,
        "checklist": None if checklist is None else checklist.model_dump(mode="json"),
        "judged_whole": [p.id for p in constitution.principles if not p.criteria],
        "scoring": SCORING,
    }


def rubric_lines(constitution: Constitution) -> list[str]:
    """The compiled rubric, a line per criterion under its principle."""
    checklist = compiled_rubric(constitution)
    lines = [f"{constitution.name} version {constitution.version}, sha256 {constitution.short_hash}"]
    if checklist is None:
        return [*lines, "no principle carries criteria: each principle is judged as a whole"]
    lines.append(f"checklist fingerprint {checklist.fingerprint[:12]}, {len(checklist.items)} items")
    for principle in constitution.principles:
        if not principle.criteria:
            lines.append(f"{principle.id}: no criteria (judged as a whole)")
            continue
        lines.append(f"{principle.id}:")
        for item in (i for i in checklist.items if i.principle_id == principle.id):
            kind = f"{item.category} " if item.category else ""
            gate = f", gate: caps at {item.gate_cap:g}" if item.gate_cap is not None else ""
            checked = f", checked by verifier {item.verifier}" if item.verifier else ""
            lines.append(f"  [{kind}{item.weight:+g}{gate}{checked}] {item.id}: {item.requirement}")
    lines.append(f"scoring: {SCORING}")
    return lines


__all__ = ["SCORING", "compiled_rubric", "rubric_data", "rubric_lines"]
