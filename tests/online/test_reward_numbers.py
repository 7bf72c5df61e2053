"""`reward_function(scoring="checklist")` at the edges of its numbers: a checklist column whose weight is not a finite
number (or a boolean, or so large that sums overflow) is one `DatasetError` naming the row, the item and the key,
before any call; every weight it takes gives a reward in 0..1 or None with a recorded failure; and no reward that
is not a finite number reaches the store."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import charter
from charter.errors import DatasetError
from charter.runs.rewards import rewards
from charter.testing.lab import CRITERIA, register_lab_models
from tests.support.numbers import huge_weights, json_not_finite, usable_weights

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
NAMES = ["number", "polite", "calm"]
TEXTS = ["It takes 4 days, thank you.", "NO IDEA", "About 3 hours, please wait?", "Maybe."]


@pytest.fixture
def reward(tmp_path: Path):
    register_lab_models()
    fn = charter.reward_function("scripted:checklist-judge", "harmless", scoring="checklist",
                                 store=tmp_path / "store", cache=None)  # fmt: skip
    yield fn
    fn.close()


def _items(weights: list[object]) -> list[dict]:
    return [{"id": n, "requirement": CRITERIA[n][0], "weight": w} for n, w in zip(NAMES, weights)]


@SETTINGS
@given(index=st.sampled_from([0, 1, 2]), spelled=json_not_finite())
def test_a_weight_that_is_not_a_finite_number_is_one_error_before_any_call(reward, index: int, spelled: str) -> None:
    weights: list[object] = [1.0, 0.5, -1.0]
    weights[index] = "@weight@"
    column = json.dumps(_items(weights)).replace('"@weight@"', spelled)  # JSON text, as a dataset's column holds
    with pytest.raises(DatasetError, match=r"^" + re.escape(f"checklist[1][{index}].weight: ")) as raised:
        reward(prompts=["Q?", "R?"], completions=["4", "5"], checklist=[_items([1, 1, 1]), column])
    assert "\n" not in str(raised.value)
    assert list(rewards(reward.store)) == []  # nothing was judged, nothing stored


@SETTINGS
@given(weight=huge_weights())
def test_weights_whose_sum_overflows_are_refused(reward, weight: float) -> None:
    with pytest.raises(DatasetError, match=r"^checklist\[0\]\[0\]\.weight: Input should be"):
        reward(prompts=["Q?"], completions=["4"], checklist=[_items([weight, weight, 1.0])])


@SETTINGS
@given(weights=st.lists(usable_weights(), min_size=3, max_size=3), text=st.sampled_from(TEXTS))
def test_every_weight_it_takes_gives_a_reward_in_0_to_1_or_none_with_its_failure(
    reward, weights: list[float], text: str
) -> None:
    [got] = reward(prompts=["How long?"], completions=[text], checklist=[_items(weights)])
    assert got is None or math.isfinite(got) and 0.0 <= got <= 1.0, got
    stored = list(rewards(reward.store))  # the store reads back, every reward explained
    assert stored and all(r.reward is not None or r.failure is not None for r in stored)
    assert all(r.checklist is not None and r.checklist.failed_share is not None for r in stored)


def test_a_reward_that_is_not_finite_is_stored_as_a_failure(reward) -> None:
    prompt = [charter.Message(role="user", content="Q?")]
    for value in (math.nan, math.inf, -math.inf):
        record = reward.session.record("key", 1, prompt, "a", value, principle_ids=[])
        assert record.reward is None and record.failure is not None and record.failure.kind == "non_finite"
        assert repr(value) in record.failure.message
