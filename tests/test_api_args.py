"""Every number argument of the public API refuses a value that is not a finite number: NaN, an infinity, a boolean
or a numeric string is an `ArgumentError` naming the argument (and the item, in a list), before the body runs."""

from __future__ import annotations

import math
import typing

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import charter
from charter.api_args import Range, public
from charter.errors import ArgumentError
from tests.support.numbers import python_not_finite


def _takes_numbers(annotation: typing.Any) -> bool:
    text = str(annotation)
    return "float" in text and "Callable" not in text


def number_arguments() -> list[tuple[str, str, bool]]:
    """(function, argument, takes a list) of every public function's argument that takes numbers."""
    found = []
    for name in charter.__all__:
        spec = getattr(getattr(charter, name), "__charter_checked__", None)
        if spec is None:
            continue
        for argument, param in spec.params.items():
            if param.kinds is None and _takes_numbers(param.annotation):
                found.append((name, argument, "Sequence" in str(param.annotation) or "list" in str(param.annotation)))
    return found


ARGUMENTS = number_arguments()


def test_the_number_arguments_are_found() -> None:
    names = {(function, argument) for function, argument, _ in ARGUMENTS}
    assert {("ppi_mean", "alpha"), ("ppi_mean", "judge_all"), ("learn_rubrics", "test_fraction")} <= names


@settings(max_examples=100, deadline=None)
@given(place=st.sampled_from(ARGUMENTS), bad=python_not_finite())
def test_a_value_that_is_not_a_finite_number_is_refused_naming_the_argument(
    place: tuple[str, str, bool], bad: object
) -> None:
    function, argument, takes_list = place
    param = getattr(charter, function).__charter_checked__.params[argument]
    value = [0.5, bad] if takes_list and not isinstance(bad, str) else bad
    if takes_list and isinstance(bad, str | bool) and "str" in str(param.annotation):
        return  # an argument that takes names as well takes a string
    with pytest.raises(ArgumentError) as caught:
        param.check(value)
    assert caught.value.argument in (argument, f"{argument}[1]"), str(caught.value)
    assert "\n" not in str(caught.value)


def test_an_item_that_is_not_finite_is_named_with_its_place() -> None:
    with pytest.raises(ArgumentError, match=r"^judge_all\[1\]: must be a finite number at least 0 and at most 1"):
        charter.ppi_mean([0.5, math.inf], [0.5], [1.0])
    with pytest.raises(ArgumentError, match=r"^alpha: must be a finite number above 0 and below 1 \(got nan\)$"):
        charter.ppi_mean([0.5], [0.5], [1.0], alpha=math.nan)


def test_a_range_alone_refuses_infinity() -> None:
    @public
    def f(x: typing.Annotated[typing.Any, Range(ge=0)] = 0) -> object:
        return x

    with pytest.raises(ArgumentError, match=r"^x: must be a finite number at least 0 \(got inf\)$"):
        f(math.inf)
    assert f(2.5) == 2.5


def test_a_lone_number_where_numbers_are_expected_is_refused_naming_the_argument() -> None:
    with pytest.raises(ArgumentError, match=r"^judge_all: expected Sequence\[float\] \| ndarray \(got int 0\)$"):
        charter.ppi_mean(0, [0.5], [1.0])
    weights = np.array([1.0, math.nan])
    with pytest.raises(ArgumentError, match=r"^weights\[1\]: must be a finite number \(got np.float64\(nan\)\)$"):
        charter.ppi_mean([0.5, 0.5], [0.5, 0.5], [1.0, 0.0], weights=weights)
