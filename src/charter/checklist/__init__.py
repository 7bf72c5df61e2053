"""Checklists: yes/no items (from a model, a dataset column or the constitution's criteria), the explicit
aggregation of their verdicts into a score and a preference, and the wire format of the one call a response that
answers them."""

from charter.checklist.aggregate import (
    ChecklistPreference,
    ChecklistScore,
    ItemVerdict,
    Verdict,
    preference,
    score_checklist,
    verifier_verdicts,
)
from charter.checklist.items import (
    Checklist,
    ChecklistItem,
    checklist_from_criteria,
    checklist_from_rows,
    item_from_data,
)
from charter.checklist.prompt import (
    CHECKLIST_FORMAT,
    checklist_request,
    checklist_schema,
    read_checklist_prompt,
    read_checklist_reply,
    write_checklist,
)

__all__ = [
    "CHECKLIST_FORMAT",
    "Checklist",
    "ChecklistItem",
    "ChecklistPreference",
    "ChecklistScore",
    "ItemVerdict",
    "Verdict",
    "checklist_from_criteria",
    "checklist_from_rows",
    "checklist_request",
    "checklist_schema",
    "item_from_data",
    "preference",
    "read_checklist_prompt",
    "read_checklist_reply",
    "score_checklist",
    "verifier_verdicts",
    "write_checklist",
]
