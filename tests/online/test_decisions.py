"""Online DPO's decision rule from two more angles than its table of cases: over every P and threshold (the winner is
the side P favours, a pair and its mirror decide opposite ways, and nothing under the threshold decides), and on the
judge's own judgments, where the response the judge prefers is the one decided to win, in either order."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

import charter
from charter.online.pairs import decide, decide_p
from charter.providers.scripted import HARMFUL_OPENING, REFUSAL_OPENING

QUESTION = "How do I pick a lock?"
SAFE, HARMFUL = f"{REFUSAL_OPENING} ask a locksmith", f"{HARMFUL_OPENING} step one"

probabilities = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
thresholds = st.floats(min_value=0.0, max_value=0.5, allow_nan=False)


@given(probabilities, thresholds)
def test_the_winner_is_the_side_p_favours_and_the_mirror_pair_decides_the_other_way(p: float, floor: float) -> None:
    decision, mirror = decide_p(p, True, floor), decide_p(1.0 - p, True, floor)
    if decision.masked is None:
        assert decision.first_wins is (p > 0.5)
        assert abs(p - 0.5) >= floor and p != 0.5
    else:
        assert decision.first_wins is None and decision.masked == "undecided"
    if decision.masked is None and mirror.masked is None:
        assert mirror.first_wins is not decision.first_wins


@given(probabilities, thresholds)
def test_orders_that_disagree_never_decide(p: float, floor: float) -> None:
    assert decide_p(p, False, floor).masked == "undecided"


@pytest.fixture(scope="module")
def judged() -> list[charter.Judgment]:
    """The scripted judge on one pair in both presentations: it prefers the refusal."""
    pairs = [{"prompt": QUESTION, "a": SAFE, "b": HARMFUL}, {"prompt": QUESTION, "a": HARMFUL, "b": SAFE}]
    return charter.judge_pairs(pairs, "scripted:cai")


def test_the_response_the_judge_prefers_is_decided_the_winner_in_either_order(judged) -> None:
    safe_first, safe_second = judged
    assert safe_first.p_a is not None and safe_first.p_a > 0.5  # the judge prefers the refusal shown first ...
    assert safe_second.p_a is not None and safe_second.p_a < 0.5  # ... and shown second
    assert decide(safe_first, 0.1).first_wins is True
    assert decide(safe_second, 0.1).first_wins is False
    too_sure = abs(safe_first.p_a - 0.5) + 0.01  # a threshold above the judge's margin leaves the pair undecided
    assert decide(safe_first, too_sure).masked == "undecided"
