"""Checklists from the constitution's criteria and from a dataset column: items, fingerprints, and a bad row as one
line naming the row, the item and the key."""

from __future__ import annotations

import pytest

from charter.checklist import Checklist, checklist_from_criteria, checklist_from_rows
from charter.constitutions import load_constitution
from charter.constitutions.schema import Constitution
from charter.errors import ConfigError, DatasetError

PRINCIPLE = {
    "description": "Be accurate.",
    "critique_request": "What is wrong?",
    "revision_request": "Fix it.",
    "comparison": "Which is more accurate?",
}


def _constitution() -> Constitution:
    return Constitution.model_validate(
        {
            "name": "c",
            "gate_cap": 0.25,
            "principles": [
                {
                    "id": "accurate",
                    **PRINCIPLE,
                    "criteria": [
                        {"id": "source", "requirement": "Names a source.", "category": "essential", "gate": True},
                        {
                            "id": "figure",
                            "requirement": "Gives 42.",
                            "weight": 2,
                            "verifier": "contains",
                            "reference": "42",
                        },
                    ],
                },
                {"id": "whole", **PRINCIPLE},
            ],
        }
    )


def test_the_criteria_become_the_items_with_their_weights_caps_and_verifiers() -> None:
    checklist = checklist_from_criteria(_constitution())
    assert checklist.source == "criteria" and [i.id for i in checklist.items] == ["source", "figure"]
    source, figure = checklist.items
    assert (source.weight, source.category, source.gate_cap, source.principle_id) == (
        1.0,
        "essential",
        0.25,
        "accurate",
    )
    assert (figure.weight, figure.category, figure.verifier, figure.reference) == (2.0, None, "contains", "42")
    assert [i.id for i in checklist.judged] == ["source"]


def test_a_constitution_without_criteria_has_no_checklist_of_criteria() -> None:
    with pytest.raises(ConfigError, match="carry no criteria"):
        checklist_from_criteria(load_constitution("harmless"))
    with pytest.raises(ConfigError, match="no principle 'nope'"):
        checklist_from_criteria(_constitution(), ["nope"])


def test_the_fingerprint_follows_the_items_and_survives_a_round_trip() -> None:
    checklist = checklist_from_criteria(_constitution())
    again = Checklist.model_validate(checklist.model_dump())  # the dumped fingerprint is recomputed, not refused
    assert again.fingerprint == checklist.fingerprint and len(checklist.fingerprint) == 64
    changed = checklist.model_copy(update={"version": 2})
    assert changed.fingerprint != checklist.fingerprint


def test_a_column_of_items_is_read_with_categories_weights_and_gates() -> None:
    rows = [
        {"id": "q1", "requirement": "Answers in French.", "category": "essential", "gate": True},
        {"id": "q2", "requirement": "Uses bullet points.", "weight": 0.5, "principle_id": "format"},
        {"id": "q3", "requirement": "Apologises.", "category": "pitfall", "gate": 0.4},
        {"id": "q4", "requirement": "Is polite."},
        {"id": "q5", "requirement": "Cites.", "gate": {"cap": 0.3}},
    ]
    checklist = checklist_from_rows(rows, "data.jsonl:3: checklist")
    q1, q2, q3, q4, q5 = checklist.items
    assert checklist.source == "column"
    assert (q1.weight, q1.gate_cap) == (1.0, 0.0) and (q2.weight, q2.category) == (0.5, None)
    assert (q3.weight, q3.gate_cap, q3.pitfall) == (-0.9, 0.4, True) and (q4.weight, q4.category) == (0.7, "important")
    assert q5.gate_cap == 0.3 and q4.gate_cap is None
    import json

    assert checklist_from_rows(json.dumps(rows), "x").fingerprint == checklist.fingerprint  # a JSON text alike


@pytest.mark.parametrize(
    "rows,said",
    [
        ([{"id": "a"}], "data.jsonl:3: checklist[0].requirement: required key is missing"),
        ([{"id": "a", "requirement": "x", "weight": "heavy"}], "data.jsonl:3: checklist[0].weight: Input should be"),
        ([{"id": "a", "requirement": "x", "weight": 0}], "data.jsonl:3: checklist[0].weight: a weight of 0"),
        ([{"id": "a", "requirement": "x", "category": "vital"}], "checklist[0].category: unknown category 'vital'"),
        ([{"id": "a", "requirement": "x", "weight": 1, "category": "optional"}], "checklist[0].weight: give a weight"),
        ([{"id": "a", "requirement": "x", "verifier": "exact"}], "checklist[0].verifier: verifier 'exact' needs"),
        ([{"id": "a", "requirement": "x", "colour": "red"}], "data.jsonl:3: checklist[0].colour: unknown key"),
        ([{"id": "a", "requirement": "x"}, "b"], "data.jsonl:3: checklist[1]: expected a mapping"),
        (
            [{"id": "a", "requirement": "x"}, {"id": "a", "requirement": "y"}],
            "checklist: items[1].id: duplicate item id",
        ),
        ([], "data.jsonl:3: checklist: the checklist is empty (give at least one item)"),
        ({"id": "a"}, "data.jsonl:3: checklist: expected a non-empty list of checklist items, got dict"),
        ([{"id": "a", "requirement": "x", "weight": float("nan")}], "checklist[0].weight: Input should be a finite"),
        ([{"id": "a", "requirement": "x", "weight": True}], "checklist[0].weight: expected a number, not true"),
        ([{"id": "a", "requirement": "x", "weight": 1e308}], "checklist[0].weight: Input should be less than or"),
        ("[{", "data.jsonl:3: checklist: not a JSON list"),
    ],
)
def test_a_bad_row_is_one_line_naming_the_row_and_the_key(rows: object, said: str) -> None:
    with pytest.raises(DatasetError) as caught:
        checklist_from_rows(rows, "data.jsonl:3: checklist")
    assert said in str(caught.value) and "\n" not in str(caught.value), str(caught.value)
