"""Checklists, one home: yes/no items (from a model, a dataset column or the constitution's criteria) and their
versions during training, the aggregation of their verdicts into a score and a preference, the wire format of the one
call a response that answers them, `check_response` (the one function that checks a response), judge mode
`checklist`'s pair judgment, and each prompt's checklist kept in a run store (`charter.checklist.store`)."""

from charter.checklist.aggregate import (
    ChecklistPreference,
    ChecklistScore,
    ItemVerdict,
    Verdict,
    preference,
    score_checklist,
    verifier_verdicts,
)
from charter.checklist.check import CheckedResponse, check_response, judge_checklist_pair
from charter.checklist.items import (
    Checklist,
    ChecklistBook,
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
    "CheckedResponse",
    "Checklist",
    "ChecklistBook",
    "ChecklistItem",
    "ChecklistPreference",
    "ChecklistScore",
    "ItemVerdict",
    "Verdict",
    "check_response",
    "checklist_from_criteria",
    "checklist_from_rows",
    "checklist_request",
    "checklist_schema",
    "item_from_data",
    "judge_checklist_pair",
    "preference",
    "read_checklist_prompt",
    "read_checklist_reply",
    "score_checklist",
    "verifier_verdicts",
    "write_checklist",
]
