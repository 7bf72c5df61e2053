"""A preference dataset's number columns (`p_chosen`, `p_chosen_calibrated`, `margin`) hold finite numbers, P in
0..1: text, a boolean, NaN or an infinity is a `DatasetError` naming the row (counted from 1) and the column, never a
margin or a label smoothing made from it."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from charter.errors import DatasetError
from charter.training.data import mean_p_chosen, to_training_rows
from tests.support.numbers import python_not_finite


def _rows(column: str, bad: object) -> list[dict]:
    row = {"prompt": "Q?", "chosen": "yes", "rejected": "no", "p_chosen": 0.8, "margin": 0.6}
    return [dict(row), {**row, column: bad}]


@settings(max_examples=100, deadline=None)
@given(
    column=st.sampled_from(["p_chosen", "p_chosen_calibrated", "margin"]),
    margin=st.sampled_from(["margin", "logit"]),
    bad=python_not_finite(),
)
def test_a_number_column_that_is_not_a_finite_number_names_the_row_and_column(
    column: str, margin: str, bad: object
) -> None:
    rows = _rows(column, bad)
    calibrated = column == "p_chosen_calibrated"
    if column == "margin":
        rows[1].pop("p_chosen")  # a margin column stands in for p_chosen in `margin` mode only
        margin = "margin"
    with pytest.raises(DatasetError, match=rf"^data\.jsonl: row 2: {column}: ") as caught:
        to_training_rows(rows, "data.jsonl", margin=margin, calibrated=calibrated)  # type: ignore[arg-type]
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("p", [1.5, -0.1, math.nan, True, "0.9"])
def test_the_mean_p_chosen_refuses_a_p_that_is_not_one(p: object) -> None:
    with pytest.raises(DatasetError, match=r"^prefs\.jsonl: row 2: p_chosen: "):
        mean_p_chosen([{"p_chosen": 0.7}, {"p_chosen": p}], source="prefs.jsonl")
    assert mean_p_chosen([{"p_chosen": 0.7}, {"p_chosen": 0.9}]) == pytest.approx(0.8)


def test_good_columns_give_the_margins_they_did() -> None:
    rows = _rows("p_chosen", 0.9)
    logits = [r["margin"] for r in to_training_rows(rows, "data.jsonl", margin="logit")]
    assert logits == pytest.approx([math.log(0.8 / 0.2), math.log(0.9 / 0.1)])
    margins = [r["margin"] for r in to_training_rows(rows, "data.jsonl", margin="margin")]
    assert margins == pytest.approx([0.6, 0.6])  # the margin column where a row has one
