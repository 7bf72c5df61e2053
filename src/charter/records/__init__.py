"""Typed records: everything that crosses a stage boundary, and its row form in the data files.

Stages take and return these records, the run store keeps them as JSON, and the data files hold
their row form (`to_row` / `from_row`, the one place where records become parquet/JSONL rows).
docs/reference/formats.md is generated from the field docstrings here (`python docs/hooks/reference.py`).
"""

from __future__ import annotations

from charter.records.accounts import CalibrationMap, CalibrationMethod, Fingerprints, HumanLabel, LabelRow, UsageRow
from charter.records.base import (
    GENERATOR,
    MAX_WEIGHT,
    Message,
    Number,
    Probability,
    Record,
    Role,
    ToolCall,
    Weight,
    as_dicts,
    as_records,
    fingerprint,
    fingerprint_strings,
)
from charter.records.items import (
    Chain,
    ChecklistJudgment,
    ChecklistScore,
    ChecklistSide,
    Combined,
    Conflict,
    CritiqueRound,
    Failure,
    ItemVerdict,
    Judgment,
    Pair,
    Prompt,
    RewardChecklist,
    RewardRecord,
    Sample,
    Verdict,
    VerdictBy,
    Vote,
)
from charter.records.rows import ChosenVote, OrderProbs, PreferenceRow, Provenance, SFTRow
from charter.records.trajectory import READERS, Trajectory, read_trajectory, to_trl

__all__ = [
    "CalibrationMap",
    "CalibrationMethod",
    "Chain",
    "ChecklistJudgment",
    "ChecklistScore",
    "ChecklistSide",
    "ChosenVote",
    "Combined",
    "Conflict",
    "READERS",
    "CritiqueRound",
    "Failure",
    "Fingerprints",
    "GENERATOR",
    "HumanLabel",
    "ItemVerdict",
    "Judgment",
    "LabelRow",
    "MAX_WEIGHT",
    "Message",
    "Number",
    "OrderProbs",
    "Pair",
    "PreferenceRow",
    "Probability",
    "Prompt",
    "Provenance",
    "Record",
    "RewardChecklist",
    "RewardRecord",
    "Role",
    "SFTRow",
    "Sample",
    "ToolCall",
    "Trajectory",
    "UsageRow",
    "Verdict",
    "VerdictBy",
    "Vote",
    "Weight",
    "as_dicts",
    "as_records",
    "fingerprint",
    "fingerprint_strings",
    "read_trajectory",
    "to_trl",
]


#: Every record that has a row or store form, in the order docs/reference/formats.md lists them.
DOCUMENTED: tuple[type[Record], ...] = (
    Message,
    ToolCall,
    Trajectory,
    Prompt,
    Chain,
    CritiqueRound,
    Sample,
    Pair,
    Judgment,
    Vote,
    Combined,
    Conflict,
    Failure,
    PreferenceRow,
    ChosenVote,
    OrderProbs,
    SFTRow,
    Provenance,
    HumanLabel,
    LabelRow,
    UsageRow,
    CalibrationMap,
    Fingerprints,
)
